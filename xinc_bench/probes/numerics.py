"""Tensor numerics the probes share: group sums, correlations, top fractions, scaling, NaN-aware means,
and the values every probe derives from a block of the canvas (computed once per block).

Every function returns NaN instead of warning when its statistic is undefined (constant input,
empty group, zero denominator), so degenerate canvases give defined, clearly marked results.

**Block values shared by the probes.** The driver hands the same block to every accumulator of a
pass (:func:`~xinc_bench.probes.accumulator.accumulate`), and most probes start from the same
quantities of it: ``|C|``, ``S(p) = sum_n |C_n(p)|``, each neuron's extrema and total. The
``block_*`` functions compute each of them once for the block last asked about and hand the same
tensor to every caller (who must not modify it); a block is recognised by identity and in-place
version, and its values are dropped as soon as another block is asked about or the block itself is
freed. Memory: the values of one block (``|C|`` is a block-sized float32 copy, the others are per
pixel or per neuron). Reductions to float64 run in numpy, which casts on the fly (torch's
``sum(dtype=float64)`` along the neuron axis is an order of magnitude slower on CPU).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

#: elements of one temporary block (rows x pixels) in the blocked loops below and in k-means
BLOCK_ELEMENTS = 1 << 24
#: float64 entries of a one-hot block ``[pixels, columns]`` and of a block of values in :func:`stacked_group_sums`
_ONEHOT_ELEMENTS = 1 << 22
#: label maps with at most this many groups are summed by a matmul with their one-hot; larger ones
#: by an ``index_add_`` each (a matmul costs ``2 K`` flops per value and map, a scatter about as
#: much as a matmul with some 30 columns)
_ONEHOT_MAX_GROUPS = 32


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


def stacked_group_sums(values: torch.Tensor, stacks: Sequence[tuple[torch.Tensor, int]]) -> list[torch.Tensor]:
    """Per-row sums of ``values[N, p]`` over the groups of every label map of several stacks, from one read.

    Each block of values is converted to float64 once for all maps. The maps of stacks with at
    most :data:`_ONEHOT_MAX_GROUPS` groups are served together by one matmul per block with their
    stacked one-hot ``[b, sum R K]``; a stack with more groups (e.g. hundreds of felzenszwalb
    segments, whose one-hot would be large and mostly zeros) gets one ``index_add_`` per map. Memory:
    blocks of :data:`_ONEHOT_ELEMENTS` float64 entries.

    Args:
        values: ``[N, p]`` (e.g. ``|C|`` of a block), float.
        stacks: per stack, its label maps ``[R, p]`` (integers in ``0..K-1``) and ``K``.

    Returns:
        Per stack, ``[R, N, K]`` float64.
    """
    rows, pixels = values.shape
    outs = [torch.zeros(labels.shape[0], rows, groups, dtype=torch.float64) for labels, groups in stacks]
    dense = [i for i, (_, groups) in enumerate(stacks) if groups <= _ONEHOT_MAX_GROUPS]
    sparse = [i for i in range(len(stacks)) if i not in dense]
    widths = [stacks[i][0].shape[0] * stacks[i][1] for i in dense]
    columns = sum(widths)
    pixel_step = max(1, _ONEHOT_ELEMENTS // max(1, columns)) if dense else pixels
    row_step = max(1, _ONEHOT_ELEMENTS // max(1, min(pixel_step, pixels)))
    for first in range(0, pixels, pixel_step):
        block = slice(first, min(first + pixel_step, pixels))
        onehot = _stacked_onehot([stacks[i] for i in dense], block, columns) if dense else None
        indices = {i: stacks[i][0][:, block].long() for i in sparse}
        for start in range(0, rows, row_step):
            part = slice(start, min(start + row_step, rows))
            source = values[part, block].double()
            if onehot is not None:
                product = source @ onehot
                offset = 0
                for i, width in zip(dense, widths):
                    reps, groups = stacks[i][0].shape[0], stacks[i][1]
                    chunk = product[:, offset : offset + width].reshape(-1, reps, groups)
                    outs[i][:, part] += chunk.permute(1, 0, 2)
                    offset += width
            for i, index in indices.items():
                for rep in range(index.shape[0]):
                    outs[i][rep, part].index_add_(1, index[rep], source)
    return outs


def _stacked_onehot(stacks: Sequence[tuple[torch.Tensor, int]], block: slice, columns: int) -> torch.Tensor:
    """The one-hot ``[b, columns]`` float64 of the pixels ``block`` of every map of ``stacks``, side by side."""
    maps = [labels[:, block].long() + (torch.arange(labels.shape[0]) * groups)[:, None] for labels, groups in stacks]
    offsets = [0]
    for labels, groups in stacks:
        offsets.append(offsets[-1] + labels.shape[0] * groups)
    index = torch.cat([m + offset for m, offset in zip(maps, offsets)])  # [sum R, b]
    onehot = torch.zeros(index.shape[1], columns, dtype=torch.float64)
    onehot.scatter_(1, index.T.contiguous(), 1.0)
    return onehot


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


def row_sums(values: torch.Tensor) -> torch.Tensor:
    """Sum of each row of float32 ``values[N, P]``: ``[N]`` float64 (numpy's pairwise summation along the row)."""
    return torch.from_numpy(np.add.reduce(_array(values), axis=1, dtype=np.float64))


def column_sums(values: torch.Tensor) -> torch.Tensor:
    """Sum of each column of float32 ``values[N, P]``: ``[P]`` float64, accumulated row after row."""
    return torch.from_numpy(np.add.reduce(_array(values), axis=0, dtype=np.float64))


def _array(values: torch.Tensor) -> np.ndarray:
    """``values`` as a numpy array sharing its memory (made contiguous first if it is not)."""
    return values.contiguous().numpy()


class _BlockValues:
    """The values derived from the block last asked about (see the module docstring)."""

    def __init__(self) -> None:
        self.block: weakref.ref[torch.Tensor] | None = None
        self.version = -1
        self.values: dict[str, Any] = {}

    def get(self, block: torch.Tensor, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` for ``block``, computed at most once while ``block`` is the block last asked about."""
        if self.block is None or self.block() is not block or self.version != block._version:
            self.values = {}
            self.block = weakref.ref(block, self._forget)
            self.version = block._version
        if key not in self.values:
            self.values[key] = compute()
        return self.values[key]

    def _forget(self, ref: weakref.ref[torch.Tensor]) -> None:
        """The block was freed: drop its values (unless another block took its place already)."""
        if self.block is ref:
            self.block, self.values = None, {}


_BLOCK = _BlockValues()


def block_magnitudes(block: torch.Tensor) -> torch.Tensor:
    """``|C|`` of a block ``[N, t, H, W]`` as ``[N, t * H * W]`` float32, shared by every caller (read only)."""
    return _BLOCK.get(block, "magnitudes", lambda: magnitudes(block))


def block_pixel_totals(block: torch.Tensor) -> torch.Tensor:
    """``S(p) = sum_n |C_n(p)|`` of a block ``[N, t, H, W]``: ``[t * H * W]`` float64, shared (read only)."""
    return _BLOCK.get(block, "pixel_totals", lambda: column_sums(block_magnitudes(block)))


def block_neuron_totals(block: torch.Tensor) -> torch.Tensor:
    """``sum_p |C_n(p)|`` of a block ``[N, t, H, W]`` for each neuron: ``[N]`` float64, shared (read only)."""
    return _BLOCK.get(block, "neuron_totals", lambda: row_sums(block_magnitudes(block)))


def block_neuron_extrema(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's minimum and maximum of ``|C|`` over a block ``[N, t, H, W]``: two ``[N]`` float32, shared."""

    def extrema() -> tuple[torch.Tensor, torch.Tensor]:
        mags = block_magnitudes(block)
        return mags.amin(dim=1), mags.amax(dim=1)

    return _BLOCK.get(block, "neuron_extrema", extrema)
