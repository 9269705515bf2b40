"""The in-memory implicit neural canvas: per-layer contribution maps plus the signal.

A layer can be far larger than memory (the paper NeRV's block 1 over 30 frames at 128x256 is
72 GB as float32), so a layer is either a tensor or a :class:`LayerSource` that reads a range of
frames on demand. Probes read big layers frame chunk by frame chunk through
:meth:`Canvas.frame_chunks`, whose size is bounded by :func:`default_chunk_bytes` (1 GiB, or the
environment variable ``XINC_CHUNK_BYTES``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol

import torch

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
    """A lazily read layer ``[N, T, H, W]``: its shape and a reader of a range of frames."""

    shape: tuple[int, int, int, int]

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of the layer, ``[N, stop - start, H, W]`` (any float dtype)."""
        ...


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

    def layer(self, name: str) -> torch.Tensor:
        """The whole ``[N, T, H, W]`` canvas of one layer, as float32 (see :meth:`frame_chunks`)."""
        return self.layer_frames(name, 0, self.layer_shape(name)[1])

    def layer_frames(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of one layer, ``[N, stop - start, H, W]`` float32."""
        value = self.layers[name]
        if isinstance(value, torch.Tensor):
            return value[:, start:stop].float()
        return value.read(start, stop).float()

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
