"""Pixel features, pixel partitions and the numerics the probes share.

Pixel features are computed from the signal ``frames[T, H, W, 3]`` and returned as maps over
``(T, H, W)``; partitions are integer label maps ``[T, H, W]`` with labels ``0..K-1``:

* :func:`intensity` (SPEC 5: ``I(p)`` = sum of min-max normalised RGB) and :func:`sobel_magnitude`.
* The Gabor bank (SPEC 5.4: 4 orientations x 2 sigmas x 3 frequencies = 24 real filters, float
  responses). ``bank="reference"`` reproduces the XINC reference exactly: its loop returns after
  the first orientation (6 filters, SPEC 8.2) and it filters a uint8 image into a uint8 output, so
  negative responses wrap around (SPEC 8.8).
* k-means pixel clusters on RGB or on Gabor responses (scikit-learn, fixed seed, one init, as the
  reference), the contiguous grid of K near-equal cells and the reference's strided lattice
  ``(y mod 4, x mod 8)`` (SPEC 8.1).

The numerics (:func:`group_sums`, :func:`pearson`, :func:`pearson_rows`, :func:`spearman`,
:func:`collect_scores`) return NaN instead of warning when a statistic is undefined (constant
input, empty group), so degenerate canvases give defined, clearly marked results.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import rankdata

from ..canvas.canvas import Canvas
from ..errors import XincError

#: Gabor bank of SPEC 5.4 (ref): orientations k * pi / 4, Gaussian sigmas and frequencies
GABOR_ORIENTATIONS = 4
GABOR_SIGMAS = (1.0, 3.0)
GABOR_FREQUENCIES = (0.05, 0.25, 0.5)
GABOR_BANKS = ("full", "reference")

#: the reference's lattice: pixel (y, x) belongs to cell (y mod 4, x mod 8)
REFERENCE_STRIDE = (4, 8)

#: pixels used to fit k-means (pixels beyond are assigned to the fitted centres)
KMEANS_MAX_FIT = 65536

_BLOCK_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------------------
# canvas access and score bookkeeping
#
# A layer may be far larger than memory, so probes read it in frame chunks
# (:meth:`Canvas.frame_chunks`) and accumulate: the helpers below give the per-pixel total S(p),
# per-neuron sums over pixel groups and per-neuron extrema in one pass each, with bounded memory.


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


def finite_mean(values: Iterable[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else math.nan


def finite_median(values: torch.Tensor) -> float:
    """Median (lower middle value, as ``torch.median``) of the finite entries; NaN when none."""
    finite = values[torch.isfinite(values)]
    return float(finite.median()) if finite.numel() else math.nan


def collect_scores(per_layer: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``"<layer>/<metric>"`` for every layer plus the headline ``"<metric>"`` = mean over layers.

    Layers where a metric is NaN (undefined, e.g. an all-zero layer) are left out of its mean; a
    metric undefined in every layer is NaN.
    """
    scores = {
        f"{layer}/{metric}": float(value) for layer, values in per_layer.items() for metric, value in values.items()
    }
    metrics = dict.fromkeys(metric for values in per_layer.values() for metric in values)
    for metric in metrics:
        scores[metric] = finite_mean(values[metric] for values in per_layer.values() if metric in values)
    return scores


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero or either is not finite."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    return float(numerator / denominator)


# ---------------------------------------------------------------------------------------------
# statistics


def group_sums(values: torch.Tensor, labels: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Per-row sums of ``values[N, P]`` over the pixels of each group: ``[N, K]`` float64.

    Args:
        values: ``[N, P]`` (e.g. ``|C|`` flattened over ``T * H * W``).
        labels: ``[P]`` int64 group of each pixel, in ``0..num_groups-1``.
        num_groups: K.
    """
    rows = values.shape[0]
    out = torch.zeros(rows, num_groups, dtype=torch.float64)
    block = max(1, _BLOCK_ELEMENTS // max(1, values.shape[1]))
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
    block = max(1, _BLOCK_ELEMENTS // max(1, rows.shape[1]))
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


# ---------------------------------------------------------------------------------------------
# pixel features


def intensity(frames: torch.Tensor) -> torch.Tensor:
    """``I(p)``: sum over RGB of each channel min-max normalised over the signal, ``[T, H, W]``."""
    return sum(minmax(frames[..., c]) for c in range(3))


def luminance(frames: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B`` of ``[T, H, W, 3]`` frames: ``[T, H, W]``."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
    return frames.float() @ weights


def sobel_magnitude(frames: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of each frame's luma, ``[T, H, W]`` (scikit-image ``sobel``)."""
    from skimage.filters import sobel

    luma = luminance(frames).numpy()
    return torch.from_numpy(np.stack([sobel(frame) for frame in luma]).astype(np.float32))


def gabor_kernels(bank: str = "full") -> list[np.ndarray]:
    """Real Gabor kernels: all 24 (``full``) or the reference's first orientation only (6)."""
    from skimage.filters import gabor_kernel

    _check_choice("gabor_bank", bank, GABOR_BANKS)
    orientations = 1 if bank == "reference" else GABOR_ORIENTATIONS
    return [
        np.real(gabor_kernel(frequency, theta=k / GABOR_ORIENTATIONS * np.pi, sigma_x=sigma, sigma_y=sigma))
        for k in range(orientations)
        for sigma in GABOR_SIGMAS
        for frequency in GABOR_FREQUENCIES
    ]


def gabor_responses(frames: torch.Tensor, bank: str = "full") -> np.ndarray:
    """Gabor filter responses of each frame's grey image: ``[T, H, W, F]`` float32.

    ``full``: float luma in [0, 1], 24 filters. ``reference``: the XINC code path, a uint8 grey
    image (PIL ``convert("L")`` of the 0..255 frame) filtered into uint8 (wrap-around) by 6 filters.
    Filters wrap around the image borders, as in the reference.
    """
    kernels = gabor_kernels(bank)
    if bank == "reference":
        from PIL import Image

        rgb8 = (frames.clamp(0, 1) * 255).numpy().astype(np.uint8)
        grey = [np.asarray(Image.fromarray(frame).convert("L")) for frame in rgb8]
    else:
        grey = list(luminance(frames).numpy().astype(np.float64))
    responses = [np.stack([ndimage.convolve(g, k, mode="wrap") for k in kernels], axis=-1) for g in grey]
    return np.stack(responses).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# partitions


def kmeans_centres(features: np.ndarray, num_clusters: int, seed: int, max_fit: int = KMEANS_MAX_FIT) -> np.ndarray:
    """k-means centres ``[K', D]`` of the rows of ``features[P, D]``.

    One k-means++ initialisation with ``random_state=seed`` (the reference's setting), fitted on
    at most ``max_fit`` rows drawn with the same seed. ``K' = min(num_clusters, distinct rows)``,
    so a flat image gives one centre instead of a degenerate fit.
    """
    from sklearn.cluster import KMeans

    rows = np.asarray(features, dtype=np.float64)
    if rows.shape[0] > max_fit:
        rows = rows[np.sort(np.random.default_rng(seed).choice(rows.shape[0], max_fit, replace=False))]
    distinct = np.unique(rows, axis=0)
    clusters = max(1, min(int(num_clusters), distinct.shape[0]))
    if clusters == 1:
        return distinct[:1]
    return KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(rows).cluster_centers_


def nearest_centre(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of each row of ``features[P, D]``: ``[P]`` int64."""
    rows = torch.from_numpy(np.asarray(features, dtype=np.float64))
    targets = torch.from_numpy(np.asarray(centres, dtype=np.float64))
    block = max(1, _BLOCK_ELEMENTS // max(1, targets.shape[0] * max(1, rows.shape[1])))
    labels = [torch.cdist(rows[i : i + block], targets).argmin(dim=1) for i in range(0, rows.shape[0], block)]
    return torch.cat(labels).numpy().astype(np.int64)


def kmeans_labels(features: np.ndarray, num_clusters: int, seed: int, max_fit: int = KMEANS_MAX_FIT) -> np.ndarray:
    """k-means cluster of each row of ``features[P, D]`` (:func:`kmeans_centres`): ``[P]`` int64.

    Labels are renumbered so that every label in ``0..K'-1`` is used.
    """
    labels = nearest_centre(features, kmeans_centres(features, num_clusters, seed, max_fit))
    return np.unique(labels, return_inverse=True)[1].astype(np.int64).reshape(-1)


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


# ---------------------------------------------------------------------------------------------
# parameters and canvas annotations


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise XincError(f"parameter {name}={value!r} is not one of {', '.join(choices)}; choose one of them")


def choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    """``params[name]`` (default ``choices[0]``), checked against ``choices``."""
    value = params.get(name, choices[0])
    _check_choice(name, value, choices)
    return str(value)


def require_masks(canvas: Any, probe: str) -> torch.Tensor:
    """The canvas masks ``[T, H, W]`` int64, or an error naming how to supply them."""
    if canvas.masks is None:
        raise XincError(
            f"the {probe} probe needs segment masks but this canvas has none; compute the canvas on a "
            "signal with masks or give a mask source (gt, sam, felzenszwalb, slic)"
        )
    return canvas.masks.long()


def require_flow(canvas: Any, probe: str) -> torch.Tensor:
    """The canvas flow ``[T, H, W, 2]`` float32, or an error naming how to supply it."""
    if canvas.flow is None:
        raise XincError(
            f"the {probe} probe needs optical flow but this canvas has none; compute the canvas on a "
            "signal with flow or give a flow source (gt, dis, farneback, raft)"
        )
    return canvas.flow.float()


def require_video(canvas: Any, probe: str) -> None:
    """Error unless the canvas has at least two frames."""
    if canvas.shape[0] < 2:
        raise XincError(f"the {probe} probe needs a video canvas (2 or more frames); this canvas has 1 frame")


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
