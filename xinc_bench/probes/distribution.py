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
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .base import ProbeResult

_PIXEL_CHUNK = 65536


def contribution_threshold(magnitudes: np.ndarray, alpha: float) -> float:
    """``tau_a``: the entry at which the decreasing cumulative sum of ``magnitudes`` reaches ``1 - alpha``."""
    values = np.sort(magnitudes, axis=None)[::-1]
    cumulative = np.cumsum(values, dtype=np.float64)
    if cumulative[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(cumulative, (1.0 - alpha) * cumulative[-1]))
    return float(values[min(index, values.size - 1)])


def gini(shares: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of each column of non-negative ``shares[N, P]`` summing to 1: ``[P]``."""
    n = shares.shape[0]
    ordered, _ = torch.sort(shares, dim=0)
    ranks = torch.arange(1, n + 1, dtype=shares.dtype, device=shares.device)[:, None]
    return (2.0 * (ranks * ordered).sum(dim=0)) / n - (n + 1.0) / n


def layer_distribution(layer: torch.Tensor, alphas: list[float]) -> dict[str, float]:
    """Distribution scores (a)-(d) of one layer's canvas ``[N, T, H, W]``."""
    magnitudes = layer.reshape(layer.shape[0], -1).abs()
    num_neurons, num_pixels = magnitudes.shape
    scores: dict[str, float] = {
        "zero_maps": float((magnitudes.amax(dim=1) == 0).sum()),
    }
    thresholds = {a: contribution_threshold(magnitudes.numpy(), a) for a in alphas}
    per_pixel_counts = {a: [] for a in alphas}
    above_mean_share = torch.zeros(num_neurons, dtype=torch.float64)
    dominant = 0
    gini_sum = 0.0
    covered = 0
    for start in range(0, num_pixels, _PIXEL_CHUNK):
        chunk = magnitudes[:, start : start + _PIXEL_CHUNK]
        for a, tau in thresholds.items():
            per_pixel_counts[a].append((chunk > tau).float().mean(dim=0))
        total = chunk.sum(dim=0)
        active = total > 0
        if not bool(active.any()):
            continue
        shares = chunk[:, active] / total[active]
        covered += int(active.sum())
        above_mean_share += (shares > 1.0 / num_neurons).sum(dim=1, dtype=torch.float64)
        dominant += int((shares.amax(dim=0) > 0.5).sum())
        gini_sum += float(gini(shares).sum(dtype=torch.float64))
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
        per_layer[name] = layer_distribution(canvas.layer(name), alphas)
        scores.update({f"{name}/{metric}": value for metric, value in per_layer[name].items()})
    for metric in next(iter(per_layer.values())):
        if metric != "zero_maps":
            scores[metric] = float(np.mean([values[metric] for values in per_layer.values()]))
    return ProbeResult(scores=scores, figures={"neurons_per_pixel": _neurons_per_pixel_figure(canvas, alphas[0])})


def _neurons_per_pixel_figure(canvas: Canvas, alpha: float) -> Any:
    """Per layer, the map of the fraction of neurons above ``tau_alpha`` at each pixel of frame 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = canvas.layer_names
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 2.6), squeeze=False)
    for axis, name in zip(axes[0], names):
        magnitudes = canvas.layer(name)[:, 0].abs()
        tau = contribution_threshold(magnitudes.numpy(), alpha)
        image = axis.imshow((magnitudes > tau).float().mean(dim=0).numpy(), cmap="magma", vmin=0)
        axis.set_title(f"{name}: neurons per pixel (a={alpha:g})", fontsize=9)
        axis.axis("off")
        fig.colorbar(image, ax=axis, fraction=0.03)
    fig.tight_layout()
    return fig
