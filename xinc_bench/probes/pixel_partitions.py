"""Pixel partitions: integer label maps ``[T, H, W]`` with labels ``0..K-1``.

k-means pixel clusters on RGB or on Gabor responses (:mod:`.kmeans`), the contiguous grid of K
near-equal cells and the reference's strided lattice ``(y mod 4, x mod 8)`` (SPEC 8.1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .image_features import gabor_responses
from .kmeans import kmeans_labels

#: the reference's lattice: pixel (y, x) belongs to cell (y mod 4, x mod 8)
REFERENCE_STRIDE = (4, 8)


def rgb_clusters(frames: torch.Tensor, num_clusters: int, seed: int = 0) -> torch.Tensor:
    """k-means clusters of the pixels' RGB values over all frames: ``[T, H, W]`` int64."""
    shape = frames.shape[:3]
    labels = kmeans_labels(frames.reshape(-1, 3).numpy(), num_clusters, seed)
    return torch.from_numpy(labels).reshape(shape)


def gabor_clusters(frames: torch.Tensor, num_clusters: int, seed: int = 0, bank: str = "full") -> torch.Tensor:
    """k-means clusters of the pixels' Gabor responses over all frames: ``[T, H, W]`` int64."""
    responses = gabor_responses(frames, bank)
    labels = kmeans_labels(responses.reshape(-1, responses.shape[-1]), num_clusters, seed)
    return torch.from_numpy(labels).reshape(frames.shape[:3])


def contiguous_grid(shape: tuple[int, int, int], num_cells: int) -> torch.Tensor:
    """``num_cells`` contiguous, near-equal rectangular cells per frame: ``[T, H, W]`` int64.

    The frame is cut into ``r ~ sqrt(K H / W)`` horizontal bands of equal height; band ``i`` is cut
    into ``K // r`` or ``K // r + 1`` columns of equal width, so any K (a prime too) gives exactly
    K cells of near-square shape. Every frame uses the same cells.
    """
    num_frames, height, width = shape
    cells = max(1, min(int(num_cells), height * width))
    rows = int(np.clip(round(math.sqrt(cells * height / width)), 1, min(cells, height)))
    while math.ceil(cells / rows) > width:
        rows += 1
    per_row = [cells // rows + (1 if i < cells % rows else 0) for i in range(rows)]
    row_edges = np.linspace(0, height, rows + 1).round().astype(int)
    labels = np.empty((height, width), dtype=np.int64)
    offset = 0
    columns = np.arange(width)
    for band, count in enumerate(per_row):
        col_edges = np.linspace(0, width, count + 1).round().astype(int)
        band_labels = offset + np.searchsorted(col_edges, columns, side="right") - 1
        labels[row_edges[band] : row_edges[band + 1]] = band_labels
        offset += count
    return torch.from_numpy(labels).expand(num_frames, height, width).contiguous()


def strided_grid(shape: tuple[int, int, int], stride: tuple[int, int] = REFERENCE_STRIDE) -> torch.Tensor:
    """The reference lattice: pixel (y, x) in cell ``(y mod sy, x mod sx)``, ``[T, H, W]`` int64 (SPEC 8.1)."""
    num_frames, height, width = shape
    sy, sx = stride
    ys = torch.arange(height)[:, None] % sy
    xs = torch.arange(width)[None, :] % sx
    return (ys * sx + xs).expand(num_frames, height, width).contiguous()


def relabel(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Renumber arbitrary integer labels to ``0..K-1``; returns (labels, the original values [K])."""
    values, inverse = torch.unique(labels.reshape(-1), return_inverse=True)
    return inverse.reshape(labels.shape), values
