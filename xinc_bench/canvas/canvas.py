"""The in-memory implicit neural canvas: per-layer contribution maps plus the signal.

A layer can be far larger than memory (the paper NeRV's block 1 over 30 frames at 128x256 is
72 GB as float32), so a layer is either a tensor or a :class:`LayerSource` that reads a range of
frames on demand. Probes read big layers frame chunk by frame chunk through
:meth:`Canvas.frame_chunks`, whose size is bounded by :func:`default_chunk_bytes` (1 GiB, or the
environment variable ``XINC_CHUNK_BYTES``). Every read refuses NaN and inf values (:func:`non_finite`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol

import torch

from ..data.signal import index_text
from ..errors import XincError

#: default upper bound of one float32 frame chunk handed to a probe (at least one frame is read)
CHUNK_BYTES = 1 << 30


def default_chunk_bytes() -> int:
    """The frame-chunk budget: ``XINC_CHUNK_BYTES`` from the environment, else :data:`CHUNK_BYTES`."""
    value = os.environ.get("XINC_CHUNK_BYTES")
    if value is None:
        return CHUNK_BYTES
    if not value.isdigit() or int(value) < 1:
        raise XincError(f"XINC_CHUNK_BYTES={value!r} is not a positive number of bytes; unset it or give e.g. 1073741824")
    return int(value)


class LayerSource(Protocol):
    """A lazily read layer ``[N, T, H, W]``: its shape and a reader of a range of frames.

    A source whose every read returns a tensor of its own, held by no one else (a traced layer's),
    may say so with a class attribute ``fresh_reads = True``: its reader may then modify what it
    read (:meth:`Canvas.reads_fresh`).
    """

    shape: tuple[int, int, int, int]

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of the layer, ``[N, stop - start, H, W]`` (any float dtype)."""
        ...


@dataclass(frozen=True)
class NonFinite:
    """Where a chunk ``[N, t, H, W]`` holds NaN or inf: the frames, the neurons, and which values."""

    frames: tuple[int, ...]
    neurons: int
    num_neurons: int
    nan: bool
    inf: bool

    def __str__(self) -> str:
        kinds = " and ".join(kind for kind, present in (("NaN", self.nan), ("inf", self.inf)) if present)
        which = "frame" if len(self.frames) == 1 else "frames"
        return f"{kinds} values in {which} {index_text(list(self.frames))} ({self.neurons} of its {self.num_neurons} neurons)"


def non_finite(chunk: torch.Tensor, start: int = 0) -> NonFinite | None:
    """``None`` when every value of ``chunk[N, t, H, W]`` (frames ``start ..``) is finite, else where they are not.

    A sum propagates NaN and inf, so a finite sum proves every value finite at the cost of one
    reduction; only a non-finite sum (or an overflowing one) pays for the element-wise test.
    """
    if torch.isfinite(chunk.sum(dtype=torch.float32)):
        return None
    bad = ~torch.isfinite(chunk)
    frames = bad.any(dim=(0, 2, 3)).nonzero().flatten()
    if len(frames) == 0:  # the sum overflowed; every value is finite
        return None
    return NonFinite(
        frames=tuple(start + int(t) for t in frames),
        neurons=int(bad.any(dim=(1, 2, 3)).sum()),
        num_neurons=int(chunk.shape[0]),
        nan=bool(torch.isnan(chunk).any()),
        inf=bool(torch.isinf(chunk).any()),
    )


@dataclass
class Canvas:
    """Contributions ``C[N, T, H, W]`` of every neuron of every traced layer to every pixel.

    Attributes:
        layers: layer name -> ``[N, T, H, W]`` tensor or :class:`LayerSource` (lazy, e.g.
            file-backed); insertion order is network order.
        frames: ``[T, H, W, 3]`` float32 in [0, 1], the signal the model represents.
        recon: optional ``[T, H, W, 3]`` reconstruction.
        masks: optional ``[T, H, W]`` int32 segment ids (0 = unlabelled).
        flow: optional ``[T, H, W, 2]`` motion from t-1 to t.
        metadata: model, tracer, data and fidelity descriptions (JSON-serialisable).
        chunk_bytes: upper bound of one float32 chunk yielded by :meth:`frame_chunks` (default:
            :func:`default_chunk_bytes`).
    """

    layers: Mapping[str, torch.Tensor | LayerSource]
    frames: torch.Tensor
    recon: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk_bytes: int = field(default_factory=default_chunk_bytes)

    @property
    def layer_names(self) -> list[str]:
        """Traced layers in network order."""
        return list(self.layers)

    def layer_shape(self, name: str) -> tuple[int, int, int, int]:
        """``(N, T, H, W)`` of one layer, without reading it."""
        return tuple(self.layers[name].shape)  # type: ignore[return-value]

    def reads_fresh(self, name: str) -> bool:
        """Whether each read of layer ``name`` (:meth:`layer_frames`) is a tensor of its own that no one else
        holds, so that its reader may modify it: a source's that says so (``fresh_reads``), not a stored
        tensor's (its reads are views of it)."""
        return bool(getattr(self.layers[name], "fresh_reads", False))

    def layer(self, name: str) -> torch.Tensor:
        """The whole ``[N, T, H, W]`` canvas of one layer, as float32 (see :meth:`frame_chunks`)."""
        return self.layer_frames(name, 0, self.layer_shape(name)[1])

    def layer_frames(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of one layer, ``[N, stop - start, H, W]`` float32.

        Every read is checked: a chunk holding NaN or inf would turn scores into silent
        garbage, so it raises instead (one reduction over the chunk, see :func:`non_finite`).

        Raises:
            XincError: the frames hold NaN or inf; the message names the layer and the frames.
        """
        value = self.layers[name]
        stored = value[:, start:stop] if isinstance(value, torch.Tensor) else value.read(start, stop)
        chunk = stored.float()
        found = non_finite(chunk, start)
        if found is not None:
            overflow = stored.dtype == torch.float16 and not found.nan
            fix = ("the contributions overflow float16: recompute the canvas without --float16" if overflow else
                   "the model diverged or the canvas file is corrupt: refit the model (e.g. with a lower --lr) "
                   "and recompute the canvas")
            raise XincError(f"canvas layer {name!r} holds {found}; {fix}")
        return chunk

    def frames_per_chunk(self, name: str) -> int:
        """How many frames of layer ``name`` fit in :attr:`chunk_bytes` as float32 (at least 1)."""
        num_neurons, _, height, width = self.layer_shape(name)
        return max(1, self.chunk_bytes // max(1, 4 * num_neurons * height * width))

    def frame_chunks(self, name: str) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, chunk)`` over layer ``name`` in frame order, ``chunk`` float32 ``[N, t, H, W]``
        holding frames ``start .. start + t - 1`` (``t`` = :meth:`frames_per_chunk`, fewer at the end)."""
        num_frames = self.layer_shape(name)[1]
        step = self.frames_per_chunk(name)
        for start in range(0, num_frames, step):
            yield start, self.layer_frames(name, start, min(num_frames, start + step))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of the signal."""
        t, h, w, _ = self.frames.shape
        return int(t), int(h), int(w)
