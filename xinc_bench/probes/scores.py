"""Per-layer scores into the keys a record stores: ``"<layer>/<metric>"`` and the headline ``"<metric>"``."""

from __future__ import annotations

from typing import Mapping

from .numerics import finite_mean


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
