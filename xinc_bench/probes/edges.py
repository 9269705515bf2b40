"""The ``edges`` probe (SPEC 5.3): is the canvas shaped by edges?

Edge pixels are the top ``edge_fraction`` (default 10%) of all ``T * H * W`` pixels by the Sobel
gradient magnitude of the frames' luma; the others are the rest. For each layer, with
``S(p) = sum_n |C_n(p)|``, ``I(p)`` the summed min-max RGB and ``D(p) = |minmax(S) - minmax(I)|``:

* ``edge_error_ratio``: mean of D on edge pixels / mean of D on the rest (where S departs from
  intensity, relative to elsewhere);
* ``edge_contribution_ratio``: mean of S on edge pixels / mean of S on the rest.

A flat signal has no edges and a zero mean on the rest leaves a ratio undefined: both give NaN
(a flat signal also puts both scores into ``ProbeResult.absent`` with the reason).

Null (``pixel_permutation``): the signal's pixels are permuted within each frame, so the edge mask
(with the intensity of its pixels) lands on random pixels of the canvas (each frame keeps its
number of edge pixels), and both ratios are recomputed on the per-pixel S already summed for the
observed value: ``D`` masked sums of per-pixel maps, no further pass over the canvas.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .accumulator import ProbeAccumulator, ProbeResult
from .image_features import intensity, sobel_magnitude
from .nulls import null_order
from .numerics import block_pixel_totals, minmax, safe_ratio, top_fraction_mask
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

#: the reason both scores are absent on a flat signal
FLAT_REASON = "the signal is flat (no Sobel gradient): it has no edge pixels"


def edge_mask(frames: torch.Tensor, fraction: float) -> torch.Tensor | None:
    """Flat ``[T * H * W]`` mask of the top ``fraction`` Sobel pixels; None when the signal is flat."""
    gradient = sobel_magnitude(frames)
    if float(gradient.max() - gradient.min()) <= 0:
        return None
    return top_fraction_mask(gradient, fraction)


def layer_edges(total: torch.Tensor, frames: torch.Tensor, edges: torch.Tensor | None) -> dict[str, float]:
    """Edge scores of one layer from its ``S(p)`` ``[T, H, W]`` (see :class:`EdgesProbe`) given the flat edge mask."""
    if edges is None or bool(edges.all()):
        return {"edge_error_ratio": math.nan, "edge_contribution_ratio": math.nan}
    flat = total.reshape(-1).double()
    error = (minmax(flat) - minmax(intensity(frames)).reshape(-1)).abs().double()
    return {
        "edge_error_ratio": safe_ratio(float(error[edges].mean()), float(error[~edges].mean())),
        "edge_contribution_ratio": safe_ratio(float(flat[edges].mean()), float(flat[~edges].mean())),
    }


def layer_edge_draws(
    total: torch.Tensor, frames: torch.Tensor, edges: torch.Tensor | None, order: torch.Tensor
) -> list[dict[str, float]]:
    """The edge scores of one layer under each null draw: the signal's pixels gathered at ``order[d]``.

    The edge mask and the intensity move together (what :func:`layer_edges` gives on the permuted
    frames), so ``D(p)`` of a draw compares S with the intensity of the pixel the mask now puts
    at p. Permuting the mask alone would compare edge pixels of the permuted mask with an
    intensity image whose values on the true edges differ from the rest, and a canvas with no
    structure at all (a constant S) would lie far from that null.

    Args:
        total: ``S(p)`` ``[T, H, W]``; edges: the flat edge mask (None: flat signal).
        order: ``[D, P]`` within-frame pixel permutations (:func:`~xinc_bench.probes.nulls.null_order`).

    Returns:
        ``D`` dicts of :func:`layer_edges`'s scores, NaN where a draw leaves a ratio undefined.
    """
    draws = order.shape[0]
    if edges is None or bool(edges.all()):
        return [{"edge_error_ratio": math.nan, "edge_contribution_ratio": math.nan} for _ in range(draws)]
    flat = total.reshape(-1).double()
    masks = edges[order].double()  # [D, P]
    error = (minmax(flat)[None, :] - minmax(intensity(frames)).reshape(-1)[order]).abs().double()  # [D, P]
    inside = masks.sum(dim=1)
    on_edges = torch.stack([(masks * error).sum(dim=1), masks @ flat], dim=1)  # [D, 2]
    everywhere = torch.stack([error.sum(dim=1), flat.sum().expand(draws)], dim=1)
    edge_means = on_edges / inside[:, None]
    rest_means = (everywhere - on_edges) / (flat.numel() - inside)[:, None]
    valid = torch.isfinite(edge_means) & torch.isfinite(rest_means) & (rest_means != 0)
    ratios = torch.where(valid, edge_means / torch.where(valid, rest_means, 1.0), math.nan)
    return [{"edge_error_ratio": float(row[0]), "edge_contribution_ratio": float(row[1])} for row in ratios]


@PROBES.register("edges")
class EdgesProbe(ProbeAccumulator):
    """SPEC 5.3 for every layer; headline scores are means over layers.

    One pass: each block adds its per-pixel ``S`` (shared with the other probes of the pass,
    :func:`~xinc_bench.probes.numerics.block_pixel_totals`) to the layer's ``[T, H, W]`` map
    (float64); the scores and the null draws are computed from those maps.

    Params:
        edge_fraction: share of pixels counted as edges (default 0.1).
        null_draws, null_seed: pixel-permutation null draws of the signal (0: none) and their seed.
    """

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        self.totals = {name: torch.zeros(canvas.shape, dtype=torch.float64) for name in canvas.layer_names}

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        self.totals[layer][start : start + chunk.shape[1]] = block_pixel_totals(chunk).reshape(chunk.shape[1:])

    def compute(self) -> ProbeResult:
        canvas, params = self.canvas, self.params
        mask = edge_mask(canvas.frames, float(params.get("edge_fraction", 0.1)))
        order = null_order(canvas, params)
        num_draws = 0 if order is None else order.shape[0]
        per_layer: dict[str, dict[str, float]] = {}
        draws: list[dict[str, dict[str, float]]] = [{} for _ in range(num_draws)]
        for name, total in self.totals.items():
            per_layer[name] = layer_edges(total, canvas.frames, mask)
            if order is not None:
                for draw, values in zip(draws, layer_edge_draws(total, canvas.frames, mask, order)):
                    draw[name] = values
        scores = collect_scores(per_layer)
        first_frames = {name: minmax(total)[0] for name, total in self.totals.items()}
        return ProbeResult(
            scores=scores,
            figures={"edges": _figure(canvas, mask, first_frames)},
            nulls={"pixel_permutation": collect_null_draws(draws)} if num_draws else {},
            absent={score: FLAT_REASON for score in scores} if mask is None else {},
        )


def _figure(canvas: Canvas, mask: torch.Tensor | None, first_frames: dict[str, torch.Tensor]) -> Any:
    """Frame 0: the edge pixels, then per layer the error map D(p).

    Args:
        first_frames: per layer, frame 0 of ``minmax(S)`` (normalised over all frames), ``[H, W]``.
    """
    _, height, width = canvas.shape
    names = canvas.layer_names
    fig, axes = subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 2.4), squeeze=False)
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
