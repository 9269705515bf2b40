"""The ``partitions`` probe (SPEC 5.4, "what do INRs care about", after the XINC reference).

Four partitions of the ``P = T * H * W`` pixels with matched group counts K:

* ``instances``: one group per segment of ``canvas.masks`` plus the unlabelled remainder as one
  "other" group (if any pixel is unlabelled); K is their number.
* ``rgb`` / ``gabor``: k-means clusters of the pixels' RGB values / Gabor responses (24 filters).
* ``grid``: K contiguous near-equal cells (the same cells in every frame).

For neuron n with total ``T_n = sum_p |C_n(p)|`` and group g, the expected share is
``E = T_n area_g / P``, the actual ``A = sum_{p in g} |C_n(p)|`` and ``delta = |A - E| / E``.
A partition's sensitivity ``s`` is the median over neurons of ``std_g(delta)`` (sample standard
deviation); neurons with ``T_n = 0`` have no expected share and are left out. Per layer::

    color_bias          = s_rgb / s_grid
    edge_bias           = s_gabor / s_grid
    spatial_agnosticism = m / (m + s_grid),  m = max(s_rgb, s_gabor, s_instances)
    object_vs_color     = s_instances / s_rgb

and the four sensitivities ``s_instances``, ``s_rgb``, ``s_gabor``, ``s_grid``. Headline scores
are means over layers. A partition with fewer than two groups, or a layer whose neurons are all
zero, has no sensitivity: its scores are NaN.

A layer is read once, in frame chunks: the per-neuron totals ``T_n`` and group sums ``A`` of all
four partitions are accumulated in that pass, and the deltas are computed from them.

Reference options (SPEC 8): ``grid: strided`` (cells ``(y mod 4, x mod 8)``, 8.1),
``other_instance: reference`` (the "other" group is the union of the segments, 8.3),
``grid_delta: signed`` (grid deltas ``(A - E) / E``, 8.5) and ``gabor_bank: reference`` (6 filters,
uint8 responses, 8.2 / 8.8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import PROBES
from .base import ProbeResult
from .features import (
    GABOR_BANKS,
    REFERENCE_STRIDE,
    choice,
    collect_scores,
    contiguous_grid,
    gabor_clusters,
    group_sums,
    magnitude_chunks,
    pyplot,
    relabel,
    require_masks,
    rgb_clusters,
    safe_ratio,
    strided_grid,
)

PARTITIONS = ("instances", "rgb", "gabor", "grid")


@dataclass(frozen=True)
class Partition:
    """Groups of the ``P`` pixels.

    Attributes:
        labels: ``[P]`` int64 group of each pixel in ``0..K-1``, or -1 for a pixel in no group.
        num_labels: K.
        union: if True, one more group is the union of groups ``0..K-1`` (reference "other").
        signed: if True, deltas keep their sign (reference grid deltas).
    """

    labels: torch.Tensor
    num_labels: int
    union: bool = False
    signed: bool = False

    @property
    def num_groups(self) -> int:
        return self.num_labels + int(self.union)

    @property
    def index(self) -> torch.Tensor:
        """``[P]`` label of each pixel in ``0..K``, with K for a pixel in no group."""
        return torch.where(self.labels < 0, self.num_labels, self.labels)

    def groups(self, label_sums: torch.Tensor) -> torch.Tensor:
        """``[N, num_groups]`` group sums from the sums over each label of :attr:`index`, ``[N, K + 1]``."""
        sums = label_sums[:, : self.num_labels]
        return torch.cat([sums, sums.sum(dim=1, keepdim=True)], dim=1) if self.union else sums

    @property
    def areas(self) -> torch.Tensor:
        """``[num_groups]`` float64 pixel count of each group."""
        counts = torch.bincount(self.index, minlength=self.num_labels + 1).double()
        return self.groups(counts[None])[0]

    @classmethod
    def from_map(cls, labels: torch.Tensor, signed: bool = False) -> "Partition":
        """From an integer label map of any shape: one group per distinct label."""
        flat, values = relabel(labels.reshape(-1))
        return cls(flat, len(values), signed=signed)


def instance_partition(masks: torch.Tensor, other: str = "remainder") -> Partition:
    """Instances from ``masks[T, H, W]`` (0 = unlabelled).

    ``remainder``: each segment plus the unlabelled pixels as one "other" group (when there are
    any). ``reference``: each segment plus an "other" group that is the union of all segments;
    unlabelled pixels belong to no group.
    """
    labels, ids = relabel(masks)
    if other == "remainder":
        return Partition.from_map(labels)
    flat = labels.reshape(-1)
    if bool((ids == 0).any()):
        flat = flat - 1  # unlabelled (id 0, the smallest) becomes -1, segments 0..K-1
    return Partition(flat, int((ids != 0).sum()), union=True)


def layer_group_totals(
    canvas: Canvas, name: str, partitions: dict[str, Partition]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-neuron totals ``T_n`` ``[N]`` and each partition's group sums ``A[N, num_groups]`` (float64).

    One pass over the frame chunks of layer ``name`` serves every partition (the partitions'
    labels run over the canvas pixels in ``(t, y, x)`` order).
    """
    num_neurons, _, height, width = canvas.layer_shape(name)
    indices = {key: partition.index for key, partition in partitions.items()}
    label_sums = {
        key: torch.zeros(num_neurons, partition.num_labels + 1, dtype=torch.float64)
        for key, partition in partitions.items()
    }
    totals = torch.zeros(num_neurons, dtype=torch.float64)
    for start, mags in magnitude_chunks(canvas, name):
        pixels = slice(start * height * width, start * height * width + mags.shape[1])
        totals += mags.sum(dim=1, dtype=torch.float64)
        for key, index in indices.items():
            label_sums[key] += group_sums(mags, index[pixels], partitions[key].num_labels + 1)
    return totals, {key: partitions[key].groups(sums) for key, sums in label_sums.items()}


def deltas(totals: torch.Tensor, sums: torch.Tensor, partition: Partition) -> torch.Tensor:
    """``delta[N', K]`` of the neurons with nonzero total ``totals[N]`` (abs or signed).

    Args:
        totals: ``[N]`` per-neuron totals ``T_n``; sums: ``[N, num_groups]`` group sums ``A``.
    """
    alive = totals > 0
    expected = totals[alive, None] * partition.areas[None, :] / partition.labels.numel()
    relative = (sums[alive] - expected) / expected
    return relative if partition.signed else relative.abs()


def sensitivity_per_neuron(totals: torch.Tensor, sums: torch.Tensor, partition: Partition) -> torch.Tensor:
    """``std_g(delta)`` of every neuron with nonzero total: ``[N']`` (empty if K < 2)."""
    values = deltas(totals, sums, partition)
    if partition.num_groups < 2 or values.shape[0] == 0:
        return torch.empty(0, dtype=torch.float64)
    return values.std(dim=1)


def layer_partitions(
    canvas: Canvas, name: str, partitions: dict[str, Partition]
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Scores of layer ``name`` (read once in frame chunks), and each partition's per-neuron ``std_g(delta)``."""
    totals, sums = layer_group_totals(canvas, name, partitions)
    spreads = {key: sensitivity_per_neuron(totals, sums[key], partition) for key, partition in partitions.items()}
    s = {key: float(values.median()) if values.numel() else math.nan for key, values in spreads.items()}
    others = [s["rgb"], s["gabor"], s["instances"]]
    strongest = max(others) if all(math.isfinite(v) for v in others) else math.nan
    scores = {f"s_{key}": value for key, value in s.items()}
    scores.update(
        color_bias=safe_ratio(s["rgb"], s["grid"]),
        edge_bias=safe_ratio(s["gabor"], s["grid"]),
        spatial_agnosticism=safe_ratio(strongest, strongest + s["grid"]),
        object_vs_color=safe_ratio(s["instances"], s["rgb"]),
    )
    return scores, spreads


def build_partitions(canvas: Canvas, params: dict[str, Any]) -> tuple[dict[str, Partition], dict[str, torch.Tensor]]:
    """The four partitions of the canvas pixels, and their label maps ``[T, H, W]`` for figures."""
    masks = require_masks(canvas, "partitions")
    other = choice(params, "other_instance", ("remainder", "reference"))
    grid = choice(params, "grid", ("contiguous", "strided"))
    signed_grid = choice(params, "grid_delta", ("absolute", "signed")) == "signed"
    bank = choice(params, "gabor_bank", GABOR_BANKS)
    seed = int(params.get("seed", 0))
    instances = instance_partition(masks, other)
    groups = instances.num_groups
    labels = {
        "instances": relabel(masks)[0],
        "rgb": rgb_clusters(canvas.frames, groups, seed),
        "gabor": gabor_clusters(canvas.frames, groups, seed, bank),
        "grid": (
            contiguous_grid(canvas.shape, groups)
            if grid == "contiguous"
            else strided_grid(canvas.shape, _stride(params.get("grid_stride", REFERENCE_STRIDE)))
        ),
    }
    partitions = {
        "instances": instances,
        "rgb": Partition.from_map(labels["rgb"]),
        "gabor": Partition.from_map(labels["gabor"]),
        "grid": Partition.from_map(labels["grid"], signed=signed_grid),
    }
    return partitions, labels


@PROBES.register("partitions")
def partitions(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.4 for every layer; headline scores are means over layers.

    Params:
        grid: ``contiguous`` (default) or ``strided`` (reference lattice, ``grid_stride`` [4, 8]).
        other_instance: ``remainder`` (default) or ``reference``.
        grid_delta: ``absolute`` (default) or ``signed`` (reference).
        gabor_bank: ``full`` (default) or ``reference``.
        seed: k-means seed (default 0).
    """
    parts, labels = build_partitions(canvas, params)
    per_layer: dict[str, dict[str, float]] = {}
    spreads: dict[str, dict[str, torch.Tensor]] = {}
    for name in canvas.layer_names:
        per_layer[name], spreads[name] = layer_partitions(canvas, name, parts)
    scores = collect_scores(per_layer)
    scores["groups"] = float(parts["instances"].num_groups)
    figures = {"partition_sensitivity": _box_figure(spreads), "partition_maps": _maps_figure(labels)}
    return ProbeResult(scores=scores, figures=figures)


def _stride(value: Any) -> tuple[int, int]:
    try:
        sy, sx = (int(v) for v in value)
    except (TypeError, ValueError):
        sy = sx = 0
    if sy < 1 or sx < 1:
        raise XincError(f"grid_stride={value!r} must be two positive integers [rows, columns], e.g. [4, 8]")
    return sy, sx


def _box_figure(spreads: dict[str, dict[str, torch.Tensor]]) -> Any:
    """Per layer, box plots of the per-neuron ``std_g(delta)`` of each partition."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(spreads), figsize=(3.4 * len(spreads), 3.0), squeeze=False)
    for axis, (layer, values) in zip(axes[0], spreads.items()):
        axis.boxplot([values[name].numpy() for name in PARTITIONS], showfliers=False)
        axis.set_xticks(range(1, len(PARTITIONS) + 1), PARTITIONS, fontsize=8)
        axis.set_title(f"{layer}: std over groups of delta", fontsize=9)
    fig.tight_layout()
    return fig


def _maps_figure(labels: dict[str, torch.Tensor]) -> Any:
    """The four partitions of frame 0."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, 2.4))
    for axis, name in zip(axes, PARTITIONS):
        axis.imshow(labels[name][0].numpy(), cmap="tab20", interpolation="nearest")
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    return fig
