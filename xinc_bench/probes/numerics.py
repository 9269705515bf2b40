"""Tensor numerics the probes share: group sums, correlations, top fractions, scaling, NaN-aware means.

Every function returns NaN instead of warning when its statistic is undefined (constant input,
empty group, zero denominator), so degenerate canvases give defined, clearly marked results.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from scipy.stats import rankdata

#: elements of one temporary block (rows x pixels) in the blocked loops below and in k-means
BLOCK_ELEMENTS = 1 << 24


def finite_mean(values: Iterable[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else math.nan


def finite_median(values: torch.Tensor) -> float:
    """Median (lower middle value, as ``torch.median``) of the finite entries; NaN when none."""
    finite = values[torch.isfinite(values)]
    return float(finite.median()) if finite.numel() else math.nan


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero or either is not finite."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    return float(numerator / denominator)


def group_sums(values: torch.Tensor, labels: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Per-row sums of ``values[N, P]`` over the pixels of each group: ``[N, K]`` float64.

    Args:
        values: ``[N, P]`` (e.g. ``|C|`` flattened over ``T * H * W``).
        labels: ``[P]`` int64 group of each pixel, in ``0..num_groups-1``.
        num_groups: K.
    """
    rows = values.shape[0]
    out = torch.zeros(rows, num_groups, dtype=torch.float64)
    block = max(1, BLOCK_ELEMENTS // max(1, values.shape[1]))
    for start in range(0, rows, block):
        out[start : start + block].index_add_(1, labels, values[start : start + block].double())
    return out


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two flat tensors; NaN when either is constant."""
    return float(pearson_rows(x.reshape(1, -1), y.reshape(-1))[0])


def pearson_rows(rows: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of ``rows[N, P]`` with ``other[P]`` (or its own row of ``other[N, P]``).

    Returns ``[N]`` float64; NaN where either side is constant (max == min, tested exactly so that
    rounding in the mean cannot turn a constant into noise).
    """
    out = torch.empty(rows.shape[0], dtype=torch.float64)
    block = max(1, BLOCK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], block):
        a = rows[start : start + block].double()
        b = (other if other.dim() == 1 else other[start : start + block]).double().expand_as(a)
        valid = (a.amax(dim=1) > a.amin(dim=1)) & (b.amax(dim=1) > b.amin(dim=1))
        a = a - a.mean(dim=1, keepdim=True)
        b = b - b.mean(dim=1, keepdim=True)
        norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
        correlation = (a * b).sum(dim=1) / torch.where(valid, norms, 1.0)
        out[start : start + block] = torch.where(valid, correlation, math.nan)
    return out.clamp(-1.0, 1.0)


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either is constant."""
    rank_x = torch.from_numpy(rankdata(x.reshape(-1).double().numpy()))
    rank_y = torch.from_numpy(rankdata(y.reshape(-1).double().numpy()))
    return pearson(rank_x, rank_y)


def top_fraction_mask(values: torch.Tensor, fraction: float, largest: bool = True) -> torch.Tensor:
    """Boolean mask of the ``ceil(fraction * P)`` largest (or smallest) entries of flat ``values``.

    Ties are broken by position (stable sort), so the selected count is exact.
    """
    flat = values.reshape(-1)
    count = min(flat.numel(), max(1, math.ceil(fraction * flat.numel())))
    order = torch.sort(flat, descending=largest, stable=True).indices[:count]
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order] = True
    return mask


def minmax(values: torch.Tensor) -> torch.Tensor:
    """``(v - min) / (max - min)`` over all entries, float32; a constant input maps to zeros."""
    values = values.float()
    low, high = values.min(), values.max()
    span = high - low
    return (values - low) / span if span > 0 else torch.zeros_like(values)


def magnitudes(layer: torch.Tensor) -> torch.Tensor:
    """``|C|`` of a ``[N, T, H, W]`` layer (or block) as ``[N, T * H * W]`` float32 (a copy)."""
    return layer.reshape(layer.shape[0], -1).abs()
