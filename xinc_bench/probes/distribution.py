"""The ``distribution`` probe (SPEC 5.1, paper section 4.2): how distributed is the canvas?

For each layer, with ``|C|[N, P]`` over the ``P = T * H * W`` pixels, ``S(p) = sum_n |C_n(p)|`` and
shares ``f_n(p) = |C_n(p)| / S(p)``:

(a) ``neurons_per_pixel_a{a}``: sort every entry of ``|C|`` in decreasing order; ``tau_a`` is the entry
    at which the cumulative sum first reaches ``(1 - a)`` of the total (so entries above ``tau_a`` hold
    ``1 - a`` of all contribution mass). Per pixel, the fraction of neurons with ``|C| > tau_a``;
    median over pixels.
(b) ``pixels_per_neuron``: per neuron, the fraction of pixels where ``f_n(p) > 1 / N``; median over
    neurons.
(c) ``top_neuron_dominance``: the fraction of pixels whose largest neuron holds more than half of S(p).
(d) ``gini``: the mean over pixels of the Gini coefficient of ``f(p)``.

Pixels with ``S(p) = 0`` (no neuron contributes) have no shares and are left out of (b)-(d); a layer
whose canvas is all zero scores 0 everywhere. ``zero_maps`` counts neurons whose map is all zero
(SPEC 8.7: the reference ReLU rule zeroes active neurons whose outgoing weights sum below 0).
Headline scores are the means over layers.

Layers are read in frame chunks. (b)-(d) and the per-pixel counts of (a) are per pixel; ``tau_a``
is a statistic of the whole layer: a layer that fits in one chunk is sorted, a larger one is
searched in two streaming passes (:func:`streamed_thresholds`: the entry the sort gives, barring
float64 rounding of the cumulative mass at a boundary between entries).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .base import ProbeResult
from .features import magnitude_chunks, magnitudes

#: entries of ``|C|`` scored at once per pixel, and histogrammed at once by :func:`streamed_thresholds`
_BLOCK_ELEMENTS = 1 << 22

#: the radix levels of :func:`streamed_thresholds`: (shift, bits) of the 31 bits of a float32 >= 0
_RADIX_LEVELS = ((15, 16), (0, 15))


def contribution_threshold(magnitudes: np.ndarray, alpha: float) -> float:
    """``tau_a``: the entry at which the decreasing cumulative sum of ``magnitudes`` reaches ``1 - alpha``."""
    values = np.sort(magnitudes, axis=None)[::-1]
    cumulative = np.cumsum(values, dtype=np.float64)
    if cumulative[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(cumulative, (1.0 - alpha) * cumulative[-1]))
    return float(values[min(index, values.size - 1)])


def layer_thresholds(canvas: Canvas, name: str, alphas: list[float]) -> dict[float, float]:
    """``tau_a`` of layer ``name`` for every ``a``: sorted when the layer fits in one chunk, else streamed."""
    num_frames = canvas.layer_shape(name)[1]
    if canvas.frames_per_chunk(name) >= num_frames:
        values = magnitudes(canvas.layer_frames(name, 0, num_frames)).numpy()
        return {a: contribution_threshold(values, a) for a in alphas}
    return streamed_thresholds(canvas, name, alphas)


def streamed_thresholds(canvas: Canvas, name: str, alphas: list[float]) -> dict[float, float]:
    """:func:`contribution_threshold` of every ``a`` over layer ``name``, in two passes of frame chunks.

    ``tau_a`` is the largest entry ``x`` whose mass ``M(>= x)`` (sum of the entries ``>= x``) reaches
    ``(1 - a)`` of the total. A float32 ``>= 0`` orders as its 31-bit pattern, so ``x`` is found by
    radix selection: pass 1 histograms the entries' mass and count over their top 16 bits (and
    gives the total); pass 2 histograms, inside the bin where the mass from the top crosses the
    target, the low 15 bits, which pins ``x`` down exactly. Masses are float64 as in the sort; they
    are summed in another order, so a target within rounding of a boundary between two distinct
    entries could pick the neighbouring entry.
    """
    prefixes = {a: 0 for a in alphas}
    above = {a: 0.0 for a in alphas}
    targets: dict[float, float] = {}
    previous_shift = 31
    for shift, bits in _RADIX_LEVELS:
        histograms = _radix_histograms(canvas, name, set(prefixes.values()), previous_shift, shift, bits)
        if not targets:
            mass, _ = histograms[0]
            total = float(torch.cumsum(mass.flip(0), dim=0)[-1])  # summed as _crossing_bin sums it
            if total <= 0:
                return {a: 0.0 for a in alphas}
            targets = {a: (1.0 - a) * total for a in alphas}
        for a in alphas:
            mass, count = histograms[prefixes[a]]
            chosen, above[a] = _crossing_bin(mass, count, above[a], targets[a])
            prefixes[a] = (prefixes[a] << bits) | chosen
        previous_shift = shift
    return {a: float(np.array(prefix, dtype=np.int32).view(np.float32)) for a, prefix in prefixes.items()}


def _radix_histograms(
    canvas: Canvas, name: str, prefixes: set[int], previous_shift: int, shift: int, bits: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per prefix, the float64 mass and int64 count ``[2 ** bits]`` of the entries of ``|C|`` whose
    bit pattern ``>> previous_shift`` equals the prefix, binned by bits ``shift .. shift + bits - 1``."""
    size = 1 << bits
    out = {p: (torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.int64)) for p in prefixes}
    for _, mags in magnitude_chunks(canvas, name):
        flat = mags.reshape(-1)
        for start in range(0, flat.numel(), _BLOCK_ELEMENTS):
            values = flat[start : start + _BLOCK_ELEMENTS]
            pattern = values.view(torch.int32)
            for prefix, (mass, count) in out.items():
                kept_values, kept_pattern = values, pattern
                if previous_shift < 31:
                    keep = (pattern >> previous_shift) == prefix
                    kept_values, kept_pattern = values[keep], pattern[keep]
                index = ((kept_pattern >> shift) & (size - 1)).long()
                mass += torch.bincount(index, weights=kept_values.double(), minlength=size)
                count += torch.bincount(index, minlength=size)
    return out


def _crossing_bin(mass: torch.Tensor, count: torch.Tensor, above: float, target: float) -> tuple[int, float]:
    """The highest non-empty bin where ``above`` plus the mass from the top bin down reaches
    ``target`` (the lowest non-empty bin when none does), and the mass above that bin."""
    from_top = torch.cumsum(mass.flip(0), dim=0)
    filled = count.flip(0) > 0
    reached = filled & (above + from_top >= target)
    position = int(torch.nonzero(reached)[0]) if bool(reached.any()) else int(torch.nonzero(filled)[-1])
    before = float(from_top[position - 1]) if position > 0 else 0.0
    return mass.numel() - 1 - position, above + before


def gini(shares: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of each column of non-negative ``shares[N, P]`` summing to 1: ``[P]``."""
    n = shares.shape[0]
    ordered, _ = torch.sort(shares, dim=0)
    ranks = torch.arange(1, n + 1, dtype=shares.dtype, device=shares.device)[:, None]
    return (2.0 * (ranks * ordered).sum(dim=0)) / n - (n + 1.0) / n


def layer_distribution(canvas: Canvas, name: str, alphas: list[float]) -> dict[str, float]:
    """Distribution scores (a)-(d) of layer ``name``, read in frame chunks."""
    num_neurons = canvas.layer_shape(name)[0]
    columns = max(1, _BLOCK_ELEMENTS // num_neurons)
    thresholds = layer_thresholds(canvas, name, alphas)
    per_pixel_counts: dict[float, list[torch.Tensor]] = {a: [] for a in alphas}
    nonzero = torch.zeros(num_neurons, dtype=torch.bool)
    above_mean_share = torch.zeros(num_neurons, dtype=torch.float64)
    dominant = 0
    gini_sum = 0.0
    covered = 0
    for _, mags in magnitude_chunks(canvas, name):
        nonzero |= mags.amax(dim=1) > 0
        for start in range(0, mags.shape[1], columns):
            chunk = mags[:, start : start + columns]
            for a, tau in thresholds.items():
                per_pixel_counts[a].append((chunk > tau).float().mean(dim=0))
            total = chunk.sum(dim=0, dtype=torch.float64)
            active = total > 0
            if not bool(active.any()):
                continue
            # float64: float32 sums over the neurons round differently with the width of the block
            shares = chunk[:, active].double() / total[active]
            covered += int(active.sum())
            above_mean_share += (shares > 1.0 / num_neurons).sum(dim=1, dtype=torch.float64)
            dominant += int((shares.amax(dim=0) > 0.5).sum())
            gini_sum += float(gini(shares).sum(dtype=torch.float64))
    scores: dict[str, float] = {"zero_maps": float((~nonzero).sum())}
    for a in alphas:
        scores[f"neurons_per_pixel_a{a:g}"] = float(torch.cat(per_pixel_counts[a]).median())
    if covered == 0:
        scores.update(pixels_per_neuron=0.0, top_neuron_dominance=0.0, gini=0.0)
        return scores
    scores["pixels_per_neuron"] = float((above_mean_share / covered).median())
    scores["top_neuron_dominance"] = dominant / covered
    scores["gini"] = gini_sum / covered
    return scores


@PROBES.register("distribution")
def distribution(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.1 (a)-(d) for every layer; headline scores are means over layers."""
    alphas = [float(a) for a in params.get("alphas", [0.1, 0.5])]
    scores: dict[str, float] = {}
    per_layer: dict[str, dict[str, float]] = {}
    for name in canvas.layer_names:
        per_layer[name] = layer_distribution(canvas, name, alphas)
        scores.update({f"{name}/{metric}": value for metric, value in per_layer[name].items()})
    for metric in next(iter(per_layer.values())):
        if metric != "zero_maps":
            scores[metric] = float(np.mean([values[metric] for values in per_layer.values()]))
    return ProbeResult(scores=scores, figures={"neurons_per_pixel": _neurons_per_pixel_figure(canvas, alphas[0])})


def _neurons_per_pixel_figure(canvas: Canvas, alpha: float) -> Any:
    """Per layer, the map of the fraction of neurons above ``tau_alpha`` of frame 0 at each pixel of frame 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = canvas.layer_names
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 2.6), squeeze=False)
    for axis, name in zip(axes[0], names):
        frame = canvas.layer_frames(name, 0, 1)[:, 0].abs()
        tau = contribution_threshold(frame.numpy(), alpha)
        image = axis.imshow((frame > tau).float().mean(dim=0).numpy(), cmap="magma", vmin=0)
        axis.set_title(f"{name}: neurons per pixel (a={alpha:g})", fontsize=9)
        axis.axis("off")
        fig.colorbar(image, ax=axis, fraction=0.03)
    fig.tight_layout()
    return fig
