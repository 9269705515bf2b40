"""The ``partitions`` probe (SPEC 5.4, "what do INRs care about", after the XINC reference).

Four partitions of the ``P = T * H * W`` pixels with matched group counts K:

* ``instances``: one group per segment of ``canvas.masks`` plus the unlabelled remainder as one
  "other" group (if any pixel is unlabelled); K is their number.
* ``rgb`` / ``gabor``: k-means clusters of the pixels' RGB values / Gabor responses (24 filters).
* ``grid``: K contiguous near-equal cells (the same cells in every frame).

For neuron n with total ``T_n = sum_p |C_n(p)|`` and group g, the expected share is
``E = T_n area_g / P``, the actual ``A = sum_{p in g} |C_n(p)|`` and ``delta = |A - E| / E``.
A partition's sensitivity ``s`` is the median over neurons of ``std_g(delta)`` (sample standard
deviation); neurons with ``T_n = 0`` have no expected share and are left out.

Every sensitivity is measured against its null, ``label_permutation``: the same partition with its
pixel labels permuted at random (group areas kept). Partitions have different chance levels
(smaller groups give larger deltas by chance), so factors are compared only in units of their
null means, ``r = s / null mean`` (1 = chance), as shares in [0, 1] (0.5 = equally far from
chance)::

    color_bias          = r_rgb / (r_rgb + r_grid)
    edge_bias           = r_gabor / (r_gabor + r_grid)
    spatial_agnosticism = m / (m + r_grid),  m = max(r_rgb, r_gabor, r_instances)
    object_vs_color     = r_instances / (r_instances + r_rgb)

A canvas with no structure (every sensitivity at chance) gives about 0.5 with a tight null; a
space-owned one gives spatial agnosticism near 0, a colour-owned one near 1. ``basis: raw`` gives
the SPEC 5.4 ratios of raw sensitivities instead (``s_rgb / s_grid``, ``m / (m + s_grid)``, ...).
Each null draw is scored the same way (its sensitivities over the leave-one-out null mean), so
every score, per layer and headline, has its own null. Headline scores are means over layers. A
partition with fewer than two groups, or a layer whose neurons are all zero, has no sensitivity:
its scores are NaN.

The probe is an accumulator (:class:`PartitionsProbe`) over one pass: each block of a layer adds
to the per-neuron totals ``T_n`` and group sums ``A`` of all four partitions, and of their ``D``
permuted copies (one matmul per block for all of them,
:func:`~xinc_bench.probes.numerics.stacked_group_sums`; the permuted maps are held as int16), and
the deltas are computed from them.

**Null neurons.** A draw's sums cost as much as the canvas's own (one matmul column block per
draw), so with ``D`` draws the null costs ``D`` times the score; for wide layers (the paper NeRV's
18,352 block-1 kernels) the draws are summed for a seeded sample of ``max_null_neurons`` neurons
of the layer (:func:`~xinc_bench.probes.nulls.neuron_sample`; every neuron of a narrower layer),
the observed score always for every neuron. A draw's sensitivity is a median over neurons: the
median of a uniform sample of ``m`` of them lies, with probability at least 95 %, between the
layer's ``50 - 98 / sqrt(m)`` and ``50 + 98 / sqrt(m)`` percentiles of the draw's per-neuron
spreads (distribution-free, from the binomial count of sampled neurons below a percentile):
within 47.8 and 52.2 for the task's 2,048.

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
from .accumulator import ProbeAccumulator, ProbeResult
from .image_features import GABOR_BANKS
from .inputs import choice, require_masks
from .nulls import compact_labels, generator, null_neuron_sample, own_and_null_group_sums, permuted_labels
from .numerics import block_magnitudes, block_neuron_totals
from .pixel_partitions import REFERENCE_STRIDE, contiguous_grid, gabor_clusters, relabel, rgb_clusters, strided_grid
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

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
        """``[..., num_groups]`` group sums from the sums over each label of :attr:`index`, ``[..., K + 1]``."""
        sums = label_sums[..., : self.num_labels]
        return torch.cat([sums, sums.sum(dim=-1, keepdim=True)], dim=-1) if self.union else sums

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


class GroupTotals:
    """Per-neuron totals ``T_n`` ``[N]``, each partition's group sums ``A[N, G]`` and their null draws, block by block.

    One read of a block serves every partition and every null draw (the partitions' labels run
    over the canvas pixels in ``(t, y, x)`` order). Sums only: the blocks may come in any order
    and any size. Memory: ``N (K + 1)`` float64 per partition and ``D`` times that (of the null
    neurons) for the draws.

    Args:
        num_neurons: N of the layer.
        partitions: the partitions scored.
        permuted: partition -> ``[D, P]`` permuted :attr:`Partition.index` maps (the null draws);
            None or empty for none.
        null_neurons: the sorted indices of the neurons the null draws are summed for
            (:func:`~xinc_bench.probes.nulls.neuron_sample`); None: every neuron.
    """

    def __init__(
        self,
        num_neurons: int,
        partitions: dict[str, Partition],
        permuted: dict[str, torch.Tensor] | None = None,
        null_neurons: torch.Tensor | None = None,
    ) -> None:
        self.partitions = partitions
        self.permuted = permuted or {}
        self.indices = {key: partition.index for key, partition in partitions.items()}
        self.null_neurons = None if null_neurons is None or len(null_neurons) == num_neurons else null_neurons
        self.totals = torch.zeros(num_neurons, dtype=torch.float64)
        self.label_sums = {
            key: torch.zeros(num_neurons, partition.num_labels + 1, dtype=torch.float64)
            for key, partition in partitions.items()
        }
        drawn = num_neurons if self.null_neurons is None else len(self.null_neurons)
        self.null_label_sums = {
            key: torch.zeros(labels.shape[0], drawn, partitions[key].num_labels + 1, dtype=torch.float64)
            for key, labels in self.permuted.items()
        }

    def add(self, start: int, chunk: torch.Tensor) -> None:
        """Add frames ``start .. start + t - 1`` of the layer, ``chunk`` ``[N, t, H, W]`` (not modified).

        ``|C|`` and ``T_n`` are the block's shared values; the group sums of every partition and
        every permuted copy come from one read of ``|C|``
        (:func:`~xinc_bench.probes.numerics.stacked_group_sums`), the permuted copies' from the
        rows of the null neurons only.
        """
        mags = block_magnitudes(chunk)
        first = start * chunk.shape[2] * chunk.shape[3]
        pixels = slice(first, first + mags.shape[1])
        self.totals += block_neuron_totals(chunk)
        own = [(self.indices[key][None, pixels], self.partitions[key].num_labels + 1) for key in self.indices]
        drawn = [(self.permuted[key][:, pixels], self.partitions[key].num_labels + 1) for key in self.permuted]
        own_sums, drawn_sums = own_and_null_group_sums(mags, own, drawn, self.null_neurons)
        for key, value in zip(self.indices, own_sums):
            self.label_sums[key] += value[0]
        for key, value in zip(self.permuted, drawn_sums):
            self.null_label_sums[key] += value

    def result(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """``(totals [N], sums, null_sums, null_totals [N''])`` (float64): ``sums[key]`` ``[N, G]``,
        ``null_sums[key]`` ``[D, N'', G]`` and ``null_totals`` of the null neurons."""
        sums = {key: self.partitions[key].groups(value) for key, value in self.label_sums.items()}
        null_sums = {key: self.partitions[key].groups(value) for key, value in self.null_label_sums.items()}
        null_totals = self.totals if self.null_neurons is None else self.totals[self.null_neurons]
        return self.totals, sums, null_sums, null_totals


def deltas(totals: torch.Tensor, sums: torch.Tensor, partition: Partition) -> torch.Tensor:
    """``delta[..., N', G]`` of the neurons with nonzero total ``totals[N]`` (abs or signed).

    Args:
        totals: ``[N]`` per-neuron totals ``T_n``; sums: ``[..., N, G]`` group sums ``A`` (leading
            dimensions, e.g. null draws, are kept).
    """
    alive = totals > 0
    expected = totals[alive, None] * partition.areas[None, :] / partition.labels.numel()
    relative = (sums[..., alive, :] - expected) / expected
    return relative if partition.signed else relative.abs()


def sensitivity_per_neuron(totals: torch.Tensor, sums: torch.Tensor, partition: Partition) -> torch.Tensor:
    """``std_g(delta)`` of every neuron with nonzero total: ``[..., N']`` (empty if G < 2)."""
    values = deltas(totals, sums, partition)
    if partition.num_groups < 2 or values.shape[-2] == 0:
        return torch.empty(*values.shape[:-2], 0, dtype=torch.float64)
    return values.std(dim=-1)


def _median_over_neurons(spread: torch.Tensor) -> torch.Tensor:
    """``[..., N']`` -> ``[...]`` medians (``torch.median``'s lower middle value); NaN when there is no neuron."""
    if spread.shape[-1] == 0:
        return torch.full(spread.shape[:-1], math.nan, dtype=torch.float64)
    return spread.median(dim=-1).values


def _share(part: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``part / (part + other)``, NaN where the sum is zero or not finite."""
    total = part + other
    valid = torch.isfinite(total) & (total > 0)
    return torch.where(valid, part / torch.where(valid, total, 1.0), math.nan)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    valid = torch.isfinite(numerator) & torch.isfinite(denominator) & (denominator != 0)
    return torch.where(valid, numerator / torch.where(valid, denominator, 1.0), math.nan)


def factor_scores(s: dict[str, torch.Tensor], basis: str) -> dict[str, torch.Tensor]:
    """The four factor comparisons from the sensitivities ``s[partition]`` (tensors of any one shape).

    ``basis="chance"``: ``s`` are sensitivities in units of their null means and each comparison
    is a share in [0, 1]: ``a / (a + b)`` (0.5 = the two factors are equally far from chance).
    ``basis="raw"``: the SPEC 5.4 ratios of raw sensitivities.
    """
    strongest = torch.stack([s["rgb"], s["gabor"], s["instances"]]).amax(dim=0)
    combine = _share if basis == "chance" else _ratio
    agnosticism = _share(strongest, s["grid"]) if basis == "chance" else _ratio(strongest, strongest + s["grid"])
    return {
        "color_bias": combine(s["rgb"], s["grid"]),
        "edge_bias": combine(s["gabor"], s["grid"]),
        "spatial_agnosticism": agnosticism,
        "object_vs_color": combine(s["instances"], s["rgb"]),
    }


def _over_chance(observed: torch.Tensor, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A sensitivity in units of its null mean (1 = chance): of the observed value, and of each draw (leave-one-out mean).

    Sensitivities of different partitions have different chance levels (smaller groups give
    larger deltas by chance alone), so they are compared only after this normalisation.
    """
    finite = torch.isfinite(draws)
    count = finite.sum().double()
    values = torch.where(finite, draws, 0.0)
    null_mean = values.sum() / count if count > 0 else torch.tensor(math.nan, dtype=torch.float64)
    others = count - finite.double()
    loo_mean = torch.where(others > 0, (values.sum() - values) / others.clamp(min=1), math.nan)
    return _ratio(observed, null_mean), _ratio(draws, loo_mean)


def partition_scores(
    totals: torch.Tensor,
    sums: dict[str, torch.Tensor],
    null_sums: dict[str, torch.Tensor],
    null_totals: torch.Tensor,
    partitions: dict[str, Partition],
    basis: str = "chance",
) -> tuple[dict[str, float], dict[str, torch.Tensor], list[dict[str, float]]]:
    """Scores of one layer from its :meth:`GroupTotals.result`, per-neuron ``std_g(delta)``, and the null draws' scores.

    Args:
        totals, sums, null_sums, null_totals: :meth:`GroupTotals.result` of the layer;
            ``null_sums`` (the label-permutation null) is needed for ``basis="chance"``, which
            measures each sensitivity in units of its null mean.
        basis: ``chance`` (default) or ``raw`` (see :func:`factor_scores`).

    Returns:
        ``(scores, spreads, draws)``: ``draws[d]`` holds every score of null draw ``d``.
    """
    spreads = {key: sensitivity_per_neuron(totals, sums[key], partition) for key, partition in partitions.items()}
    s = {key: _median_over_neurons(values) for key, values in spreads.items()}
    null_s = {
        key: _median_over_neurons(sensitivity_per_neuron(null_totals, value, partitions[key]))
        for key, value in null_sums.items()
    }
    if basis == "chance":
        none = torch.empty(0, dtype=torch.float64)  # without draws there is no chance level: NaN
        pairs = {key: _over_chance(s[key], null_s.get(key, none)) for key in partitions}
        observed = factor_scores({key: pair[0] for key, pair in pairs.items()}, basis)
        drawn = factor_scores({key: pair[1] for key, pair in pairs.items()}, basis) if null_s else {}
    else:
        observed = factor_scores(s, basis)
        drawn = factor_scores(null_s, basis) if null_s else {}
    scores = {f"s_{key}": float(value) for key, value in s.items()}
    scores.update({key: float(value) for key, value in observed.items()})
    num_draws = next(iter(null_s.values())).shape[0] if null_s else 0
    draws = [
        {**{f"s_{key}": float(value[d]) for key, value in null_s.items()}, **{k: float(v[d]) for k, v in drawn.items()}}
        for d in range(num_draws)
    ]
    return scores, spreads, draws


def layer_partitions(
    canvas: Canvas,
    name: str,
    partitions: dict[str, Partition],
    permuted: dict[str, torch.Tensor] | None = None,
    basis: str = "chance",
    null_neurons: torch.Tensor | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor], list[dict[str, float]]]:
    """:func:`partition_scores` of layer ``name`` read on its own in frame chunks (the whole-layer form).

    The probe (:class:`PartitionsProbe`) gets the same sums block by block; this form scores one
    layer of a canvas directly, e.g. with fixed partitions in tests.

    Args:
        permuted: partition -> ``[D, P]`` permuted label maps (the label-permutation null).
        basis: ``chance`` (default) or ``raw``.
        null_neurons: the neurons the draws are summed for (None: all; see :class:`GroupTotals`).
    """
    sums = GroupTotals(canvas.layer_shape(name)[0], partitions, permuted, null_neurons)
    for start, chunk in canvas.frame_chunks(name):
        sums.add(start, chunk)
    return partition_scores(*sums.result(), partitions, basis)


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
class PartitionsProbe(ProbeAccumulator):
    """SPEC 5.4 for every layer, each sensitivity against its label-permutation null; headlines are means over layers.

    One pass: the partitions (k-means of the frames, masks, grid) and their seeded permuted label
    maps are built from the canvas up front; each block adds to its layer's :class:`GroupTotals`
    (per-neuron totals and group sums, of the partitions and of every permuted copy), and the
    scores come from those sums at the end. Blocks of different layers interleave, so every
    layer's sums are held at once (the function form held one layer's at a time); they are small
    (``(D + 1) N (K + 1)`` float64 per partition), the permuted maps are shared by all layers.

    Params:
        grid: ``contiguous`` (default) or ``strided`` (reference lattice, ``grid_stride`` [4, 8]).
        other_instance: ``remainder`` (default) or ``reference``.
        grid_delta: ``absolute`` (default) or ``signed`` (reference).
        gabor_bank: ``full`` (default) or ``reference``.
        basis: ``chance`` (default: factor comparisons of sensitivities in units of their null
            means) or ``raw`` (the SPEC 5.4 ratios of raw sensitivities).
        seed: k-means seed (default 0).
        null_draws, null_seed: label-permutation draws (reported as the scores' null) and their seed.
        chance_draws: draws made for the null means when ``null_draws`` is 0 (default 10: the
            ``chance`` basis needs a null mean even when no null is reported, e.g. for controls).
        max_null_neurons: the draws of a wider layer are summed for a seeded sample of this many
            of its neurons (seed ``null_seed``; see the module docstring); None: every neuron.
    """

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        self.parts, self.labels = build_partitions(canvas, params)
        self.basis = choice(params, "basis", ("chance", "raw"))
        self.reported = int(params.get("null_draws", 0))
        num_draws = self.reported or (int(params.get("chance_draws", 10)) if self.basis == "chance" else 0)
        gen = generator(int(params.get("null_seed", 0)))
        permuted = {
            key: compact_labels(permuted_labels(part.index, num_draws, gen), part.num_labels + 1)
            for key, part in self.parts.items()
        } if num_draws else {}
        self.num_draws = num_draws
        self.sums = {}
        for name in canvas.layer_names:
            count = canvas.layer_shape(name)[0]
            self.sums[name] = GroupTotals(count, self.parts, permuted, null_neuron_sample(params, count))

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        self.sums[layer].add(start, chunk)

    def compute(self) -> ProbeResult:
        per_layer: dict[str, dict[str, float]] = {}
        spreads: dict[str, dict[str, torch.Tensor]] = {}
        draws: list[dict[str, dict[str, float]]] = [{} for _ in range(self.num_draws)]
        for name, sums in self.sums.items():
            per_layer[name], spreads[name], layer_draws = partition_scores(*sums.result(), self.parts, self.basis)
            for draw, values in zip(draws, layer_draws):
                draw[name] = values
        scores = collect_scores(per_layer)
        scores["groups"] = float(self.parts["instances"].num_groups)
        nulls = {"label_permutation": collect_null_draws(draws)} if self.reported else {}
        figures = {"partition_sensitivity": _box_figure(spreads), "partition_maps": _maps_figure(self.labels)}
        return ProbeResult(scores=scores, figures=figures, nulls=nulls)


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
    fig, axes = subplots(1, len(spreads), figsize=(3.4 * len(spreads), 3.0), squeeze=False)
    for axis, (layer, values) in zip(axes[0], spreads.items()):
        axis.boxplot([values[name].numpy() for name in PARTITIONS], showfliers=False)
        axis.set_xticks(range(1, len(PARTITIONS) + 1), PARTITIONS, fontsize=8)
        axis.set_title(f"{layer}: std over groups of delta", fontsize=9)
    fig.tight_layout()
    return fig


def _maps_figure(labels: dict[str, torch.Tensor]) -> Any:
    """The four partitions of frame 0."""
    fig, axes = subplots(1, 4, figsize=(14, 2.4))
    for axis, name in zip(axes, PARTITIONS):
        axis.imshow(labels[name][0].numpy(), cmap="tab20", interpolation="nearest")
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    return fig
