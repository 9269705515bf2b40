"""The ``edges`` probe (SPEC 5.3): is the canvas shaped by edges?

Edge pixels are the top ``edge_fraction`` (default 10%) of all ``T * H * W`` pixels by the Sobel
gradient magnitude of the frames' luma; the others are the rest. For each layer, with
``S(p) = sum_n |C_n(p)|``, ``I(p)`` the summed min-max RGB and ``D(p) = |minmax(S) - minmax(I)|``:

* ``edge_error_ratio``: mean of D on edge pixels / mean of D on the rest (where S departs from
  intensity, relative to elsewhere);
* ``edge_contribution_ratio``: mean of S on edge pixels / mean of S on the rest.

A flat signal has no edges and a zero mean on the rest leaves a ratio undefined: both give NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .base import ProbeResult
from .features import (
    collect_scores,
    intensity,
    layer_total,
    minmax,
    pyplot,
    safe_ratio,
    sobel_magnitude,
    top_fraction_mask,
)


def edge_mask(frames: torch.Tensor, fraction: float) -> torch.Tensor | None:
    """Flat ``[T * H * W]`` mask of the top ``fraction`` Sobel pixels; None when the signal is flat."""
    gradient = sobel_magnitude(frames)
    if float(gradient.max() - gradient.min()) <= 0:
        return None
    return top_fraction_mask(gradient, fraction)


def layer_edges(total: torch.Tensor, frames: torch.Tensor, edges: torch.Tensor | None) -> dict[str, float]:
    """Edge scores of one layer from its ``S(p)`` ``[T, H, W]`` (see ``layer_total``) given the flat edge mask."""
    if edges is None or bool(edges.all()):
        return {"edge_error_ratio": math.nan, "edge_contribution_ratio": math.nan}
    flat = total.reshape(-1).double()
    error = (minmax(flat) - minmax(intensity(frames)).reshape(-1)).abs().double()
    return {
        "edge_error_ratio": safe_ratio(float(error[edges].mean()), float(error[~edges].mean())),
        "edge_contribution_ratio": safe_ratio(float(flat[edges].mean()), float(flat[~edges].mean())),
    }


@PROBES.register("edges")
def edges(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.3 for every layer; headline scores are means over layers.

    Params:
        edge_fraction: share of pixels counted as edges (default 0.1).
    """
    fraction = float(params.get("edge_fraction", 0.1))
    mask = edge_mask(canvas.frames, fraction)
    per_layer: dict[str, dict[str, float]] = {}
    first_frames: dict[str, torch.Tensor] = {}
    for name in canvas.layer_names:
        total = layer_total(canvas, name)
        per_layer[name] = layer_edges(total, canvas.frames, mask)
        first_frames[name] = minmax(total)[0]
    return ProbeResult(scores=collect_scores(per_layer), figures={"edges": _figure(canvas, mask, first_frames)})


def _figure(canvas: Canvas, mask: torch.Tensor | None, first_frames: dict[str, torch.Tensor]) -> Any:
    """Frame 0: the edge pixels, then per layer the error map D(p).

    Args:
        first_frames: per layer, frame 0 of ``minmax(S)`` (normalised over all frames), ``[H, W]``.
    """
    plt = pyplot()
    _, height, width = canvas.shape
    names = canvas.layer_names
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 2.4), squeeze=False)
    edge_image = torch.zeros(height, width) if mask is None else mask[: height * width].reshape(height, width).float()
    axes[0][0].imshow(edge_image.numpy(), cmap="gray")
    axes[0][0].set_title("edge pixels (Sobel top fraction)", fontsize=9)
    light = minmax(intensity(canvas.frames))[0]
    for axis, name in zip(axes[0][1:], names):
        error = (first_frames[name] - light).abs()
        shown = axis.imshow(error.numpy(), cmap="magma", vmin=0, vmax=1)
        axis.set_title(f"{name}: |minmax(S) - minmax(I)|", fontsize=9)
        fig.colorbar(shown, ax=axis, fraction=0.03)
    for axis in axes[0]:
        axis.axis("off")
    fig.tight_layout()
    return fig
