"""Reading a canvas layer in frame chunks: ``|C|``, the per-pixel total, per-group sums, per-neuron extrema.

A layer may be far larger than memory, so probes read it in frame chunks
(:meth:`Canvas.frame_chunks`) and accumulate: the helpers here give the per-pixel total S(p),
per-neuron sums over pixel groups and per-neuron extrema in one pass each, with bounded memory.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..canvas.canvas import Canvas
from .numerics import group_sums


def magnitudes(layer: torch.Tensor) -> torch.Tensor:
    """``|C|`` of a ``[N, T, H, W]`` layer as ``[N, T * H * W]`` float32 (a copy)."""
    return layer.reshape(layer.shape[0], -1).abs()


def magnitude_chunks(canvas: Canvas, name: str) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, |C|[N, t * H * W])`` over layer ``name`` in frame chunks (see ``Canvas.frame_chunks``)."""
    for start, chunk in canvas.frame_chunks(name):
        yield start, magnitudes(chunk)


def layer_total(canvas: Canvas, name: str) -> torch.Tensor:
    """``S(p) = sum_n |C_n(p)|`` of layer ``name`` as ``[T, H, W]`` float64, read in frame chunks."""
    return torch.cat([mags.sum(dim=0, dtype=torch.float64) for _, mags in magnitude_chunks(canvas, name)]).reshape(
        canvas.shape
    )


def layer_group_sums(canvas: Canvas, name: str, labels: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Per-neuron sums of ``|C|`` over each pixel group, ``[N, K]`` float64, read in frame chunks.

    Args:
        labels: ``[T, H, W]`` int64 group of each pixel in ``0..num_groups-1``.
    """
    frame_labels = labels.reshape(labels.shape[0], -1)
    out = torch.zeros(canvas.layer_shape(name)[0], num_groups, dtype=torch.float64)
    for start, mags in magnitude_chunks(canvas, name):
        stop = start + mags.shape[1] // frame_labels.shape[1]
        out += group_sums(mags, frame_labels[start:stop].reshape(-1), num_groups)
    return out


def layer_extrema(canvas: Canvas, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron minimum and maximum of ``|C|`` over all pixels, ``([N], [N])``, read in frame chunks."""
    low, high = None, None
    for _, mags in magnitude_chunks(canvas, name):
        chunk_low, chunk_high = mags.amin(dim=1), mags.amax(dim=1)
        low = chunk_low if low is None else torch.minimum(low, chunk_low)
        high = chunk_high if high is None else torch.maximum(high, chunk_high)
    return low, high
