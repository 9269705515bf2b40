"""The signal an INR represents: frames plus optional annotations (SPEC section 2)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import XincError


@dataclass
class Signal:
    """A video ``frames[T, H, W, 3]`` float32 in [0, 1]; an image is T = 1.

    Attributes:
        frames: ``[T, H, W, 3]`` float32 in [0, 1].
        name: short name of the source (``astronaut``, a file stem, ...).
        masks: optional ``[T, H, W]`` int32 segment ids, 0 = unlabelled.
        flow: optional ``[T, H, W, 2]`` float32 motion from frame t-1 to t in pixels (dx, dy);
            frame 0 is zeros.
        categories: optional map segment id -> semantic category id (for the objects probe).
        source: how the signal was made (source name, path, size, frame range), kept in records.
    """

    frames: torch.Tensor
    name: str
    masks: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    categories: dict[int, int] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def kind(self) -> str:
        """``"image"`` for one frame, ``"video"`` otherwise."""
        return "image" if self.num_frames == 1 else "video"

    @property
    def num_pixels(self) -> int:
        """T * H * W."""
        return self.num_frames * self.height * self.width

    def content_hash(self) -> str:
        """SHA-256 of the frames' float32 bytes (first 16 hex digits)."""
        data = self.frames.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
        return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start:stop:step`` of a video (``stop=None`` = to the end)."""

    start: int = 0
    stop: int | None = None
    step: int = 1

    def indices(self, total: int) -> list[int]:
        """The selected frame indices of a video with ``total`` frames."""
        stop = total if self.stop is None else self.stop
        if self.start >= total or stop > total:
            raise XincError(
                f"frames {self} are out of range: the video has {total} frames "
                f"(valid indices 0..{total - 1}); choose a range inside it"
            )
        return list(range(self.start, stop, self.step))

    def __str__(self) -> str:
        stop = "" if self.stop is None else str(self.stop)
        step = "" if self.step == 1 else f":{self.step}"
        return f"{self.start}:{stop}{step}"


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"128x256"``) into positive ``(H, W)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match or int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
        raise XincError(f"invalid size {text!r}: give positive HEIGHTxWIDTH, e.g. 128x256")
    return int(match.group(1)), int(match.group(2))


def parse_frames(text: str) -> FrameRange:
    """Parse ``"START:STOP[:STEP]"`` (e.g. ``"0:30"``, ``"10:"``, ``"0:60:2"``)."""
    match = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*(?::\s*(\d+)\s*)?", text or "")
    if not match:
        raise XincError(f"invalid frame range {text!r}: give START:STOP[:STEP], e.g. 0:30")
    start = int(match.group(1) or 0)
    stop = int(match.group(2)) if match.group(2) else None
    step = int(match.group(3) or 1)
    if step <= 0 or (stop is not None and stop <= start):
        raise XincError(
            f"invalid frame range {text!r}: STOP must exceed START and STEP be positive, e.g. 0:30"
        )
    return FrameRange(start, stop, step)


def index_text(indices: list[int], limit: int = 8) -> str:
    """Sorted frame indices as runs for messages: ``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``.

    After ``limit`` runs the rest is counted: ``"0, 2, 4, ... (12 in all)"``.
    """
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"... ({len(indices)} in all)")
    return ", ".join(parts)
