"""The ``objects`` probe (SPEC 5.5): do neurons care about objects?

Instances are the segments of ``canvas.masks`` (id 0, unlabelled, is not an instance). For each
layer, neuron n's profile over the K instances is its area-normalised contribution
``a_ni = sum_{p in i} |C_n(p)| / area_i``, normalised over instances: ``P_ni = a_ni / sum_i a_ni``.
Neurons with no contribution to any instance have no profile and are left out.

* ``semantic_consistency``: the cosine similarity of two instances' neuron-profile columns
  ``P[:, i]`` and ``P[:, j]``, averaged over pairs of instances of the same category, minus the
  average over pairs of different categories. Needs categories (``params["categories"]`` or
  ``canvas.metadata["categories"]``, segment id -> category id) and at least one pair of each
  kind; otherwise NaN.
* ``object_selectivity``: the fraction of neurons whose profile puts more than half its mass on
  one instance.

A canvas spread evenly over space gives ``P_ni = 1/K``: consistency 0 and selectivity 0. A layer
is read once, in frame chunks, for its per-neuron sums over the instances.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import PROBES
from .base import ProbeResult
from .features import collect_scores, layer_group_sums, pyplot, relabel, require_masks


def instance_labels(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat instance index per pixel (-1 = unlabelled) and the segment ids ``[K]``."""
    labels, ids = relabel(masks)
    flat = labels.reshape(-1)
    if bool((ids == 0).any()):
        return flat - 1, ids[1:]
    return flat, ids


def profiles(canvas: Canvas, name: str, labels: torch.Tensor, num_instances: int) -> torch.Tensor:
    """Neuron profiles ``P[N', K]`` (rows sum to 1) of the neurons of layer ``name`` that touch any instance.

    Args:
        labels: ``[P]`` instance index of each canvas pixel (-1 = unlabelled), as :func:`instance_labels`.
        num_instances: K.
    """
    index = torch.where(labels < 0, num_instances, labels)
    sums = layer_group_sums(canvas, name, index.reshape(canvas.shape), num_instances + 1)[:, :num_instances]
    areas = torch.bincount(index, minlength=num_instances + 1)[:num_instances].double()
    normalised = sums / areas
    totals = normalised.sum(dim=1, keepdim=True)
    alive = totals[:, 0] > 0
    return normalised[alive] / totals[alive]


def semantic_consistency(profile: torch.Tensor, categories: torch.Tensor | None) -> float:
    """Mean same-category minus mean different-category cosine similarity of instance columns."""
    if categories is None or profile.shape[0] == 0:
        return math.nan
    columns = torch.nn.functional.normalize(profile.T, dim=1)
    similarity = columns @ columns.T
    same = categories[:, None] == categories[None, :]
    off_diagonal = ~torch.eye(len(categories), dtype=torch.bool)
    within, across = similarity[same & off_diagonal], similarity[~same]
    if within.numel() == 0 or across.numel() == 0:
        return math.nan
    return float(within.mean() - across.mean())


def category_ids(ids: torch.Tensor, categories: Mapping[Any, Any] | None) -> torch.Tensor | None:
    """The category of each segment id, from a map with int or string keys (JSON)."""
    if categories is None:
        return None
    table = {int(key): int(value) for key, value in categories.items()}
    missing = [int(i) for i in ids if int(i) not in table]
    if missing:
        raise XincError(
            f"the categories map has no entry for segment ids {missing[:10]}; give a category for "
            "every segment of the masks (or use masks from the same source as the categories)"
        )
    return torch.tensor([table[int(i)] for i in ids])


def layer_objects(
    canvas: Canvas, name: str, labels: torch.Tensor, categories: torch.Tensor | None, num_instances: int
) -> tuple[dict[str, float], torch.Tensor]:
    """Object scores of layer ``name`` (read once in frame chunks) and its profiles.

    Args:
        labels: ``[P]`` instance index of each canvas pixel (-1 = unlabelled).
        categories: ``[K]`` category of each instance, or None.
        num_instances: K.
    """
    profile = profiles(canvas, name, labels, num_instances)
    selectivity = float((profile.amax(dim=1) > 0.5).double().mean()) if profile.shape[0] else math.nan
    return {
        "semantic_consistency": semantic_consistency(profile, categories),
        "object_selectivity": selectivity,
    }, profile


@PROBES.register("objects")
def objects(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.5 for every layer; headline scores are means over layers.

    Params:
        categories: segment id -> category id; default ``canvas.metadata["categories"]``.
    """
    labels, ids = instance_labels(require_masks(canvas, "objects"))
    categories = category_ids(ids, params.get("categories", canvas.metadata.get("categories")))
    per_layer: dict[str, dict[str, float]] = {}
    layer_profiles: dict[str, torch.Tensor] = {}
    for name in canvas.layer_names:
        per_layer[name], layer_profiles[name] = layer_objects(canvas, name, labels, categories, len(ids))
    scores = collect_scores(per_layer)
    scores["instances"] = float(len(ids))
    return ProbeResult(scores=scores, figures={"neuron_profiles": _figure(layer_profiles, ids, categories)})


def _figure(layer_profiles: dict[str, torch.Tensor], ids: torch.Tensor, categories: torch.Tensor | None) -> Any:
    """Per layer: profiles (neurons sorted by their top instance) and instance similarities."""
    plt = pyplot()
    order = torch.argsort(categories, stable=True) if categories is not None else torch.arange(len(ids))
    fig, axes = plt.subplots(2, len(layer_profiles), figsize=(3.6 * len(layer_profiles), 6.0), squeeze=False)
    for column, (name, profile) in enumerate(layer_profiles.items()):
        if profile.numel() == 0:
            axes[0][column].set_title(f"{name}: no neuron touches an instance", fontsize=9)
            continue
        ordered = profile[:, order]
        rows = torch.argsort(ordered.argmax(dim=1), stable=True)
        axes[0][column].imshow(ordered[rows].numpy(), aspect="auto", cmap="magma", interpolation="nearest")
        axes[0][column].set_title(f"{name}: neuron profiles", fontsize=9)
        axes[0][column].set_xlabel("instance (by category)", fontsize=8)
        columns = torch.nn.functional.normalize(ordered.T, dim=1)
        axes[1][column].imshow((columns @ columns.T).numpy(), cmap="viridis", vmin=0, vmax=1)
        axes[1][column].set_title("instance cosine similarity", fontsize=9)
    fig.tight_layout()
    return fig
