"""The ``color`` probe (SPEC 5.2, paper section 4.1): does contribution follow colour?

For each layer, over all ``P = T * H * W`` pixels, with ``S(p) = sum_n |C_n(p)|`` and
``I(p)`` = the sum of the min-max normalised RGB channels:

* ``intensity_pearson`` / ``intensity_spearman``: Pearson and Spearman correlation of S with I.
* ``neuron_channel_correlation``: the median over neurons and channels of the Pearson correlation
  of ``|C_n|`` with each RGB channel; per layer also ``neuron_{red,green,blue}_correlation``
  (median over neurons for one channel).

A correlation with a constant input (an all-zero neuron or layer, a flat image) is undefined:
it is NaN and left out of medians and layer means.
"""

from __future__ import annotations

from typing import Any

import torch

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .base import ProbeResult
from .features import (
    collect_scores,
    finite_median,
    intensity,
    magnitudes,
    minmax,
    pearson,
    pearson_rows,
    pyplot,
    spearman,
)

CHANNELS = ("red", "green", "blue")


def layer_color(layer: torch.Tensor, frames: torch.Tensor) -> dict[str, float]:
    """Colour scores of one layer ``[N, T, H, W]`` against ``frames[T, H, W, 3]``."""
    mags = magnitudes(layer)
    total = mags.sum(dim=0)
    light = intensity(frames).reshape(-1)
    scores = {
        "intensity_pearson": pearson(total, light),
        "intensity_spearman": spearman(total, light),
    }
    per_channel = torch.stack([pearson_rows(mags, frames[..., c].reshape(-1)) for c in range(3)], dim=1)
    for c, channel in enumerate(CHANNELS):
        scores[f"neuron_{channel}_correlation"] = finite_median(per_channel[:, c])
    scores["neuron_channel_correlation"] = finite_median(per_channel.reshape(-1))
    return scores


@PROBES.register("color")
def color(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.2 for every layer; headline scores are means over layers. No parameters."""
    per_layer = {name: layer_color(canvas.layer(name), canvas.frames) for name in canvas.layer_names}
    return ProbeResult(scores=collect_scores(per_layer), figures={"contribution_vs_intensity": _figure(canvas)})


def _figure(canvas: Canvas) -> Any:
    """Per layer (rows), frame 0: min-max S beside min-max I and their difference."""
    plt = pyplot()
    names = canvas.layer_names
    light = minmax(intensity(canvas.frames[:1]))[0]
    fig, axes = plt.subplots(len(names), 3, figsize=(11, 2.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        total = minmax(canvas.layer(name)[:, 0].abs().sum(dim=0))
        panels = (
            (total, f"{name}: S(p)", "magma", (0, 1)),
            (light, "I(p)", "gray", (0, 1)),
            (total - light, "S - I (min-max)", "coolwarm", (-1, 1)),
        )
        for axis, (image, title, cmap, limits) in zip(row, panels):
            shown = axis.imshow(image.numpy(), cmap=cmap, vmin=limits[0], vmax=limits[1])
            axis.set_title(title, fontsize=9)
            axis.axis("off")
            fig.colorbar(shown, ax=axis, fraction=0.03)
    fig.tight_layout()
    return fig
