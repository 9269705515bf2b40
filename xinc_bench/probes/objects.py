"""The ``objects`` probe (SPEC 5.5): do neurons care about objects?

Instances are the segments of ``canvas.masks`` (id 0, unlabelled, is not an instance). For each
layer, neuron n's profile over the K instances is its area-normalised contribution
``a_ni = sum_{p in i} |C_n(p)| / area_i``, normalised over instances: ``P_ni = a_ni / sum_i a_ni``.
Neurons with no contribution to any instance have no profile and are left out.

* ``object_selectivity``: how far a typical neuron singles out instances, the median over
  neurons of ``1 - H(P_n) / log K`` (``H`` the Shannon entropy of the profile). In [0, 1]: 0 when
  a neuron spreads evenly over the instances (area-normalised), 1 when it acts on one instance
  only. It replaces version 1's fraction of neurons with more than half their profile on one
  instance, a threshold that with tens of instances almost no neuron crosses (0 for half the
  zoo); the entropy moves continuously with how concentrated the profiles are. Needs K >= 2.
* ``semantic_consistency``: the cosine similarity of two instances' neuron-profile columns
  ``P[:, i]`` and ``P[:, j]``, averaged over pairs of instances of the same category, minus the
  average over pairs of different categories; in [-1, 1]. Needs categories
  (``params["categories"]``, or ``canvas.metadata["categories"]`` when the masks are the signal's
  ground truth: dataset annotations or a synthetic scene) and at least one pair of each kind.

Null model ``label_permutation``: the instance labels (unlabelled pixels included) are permuted
over the pixels of each frame, so every instance keeps its area in every frame while its link
to the canvas is destroyed. The same ``D`` permutations serve every layer; each frame block of a
layer is read once (the probe is an accumulator, :class:`ObjectsProbe`) for the per-neuron sums
over the instances of the canvas and of all ``D`` permuted label maps together
(:func:`~xinc_bench.probes.nulls.own_and_null_group_sums`). The ``D`` permuted maps are held as int32
``[D, T * H * W]``.

**Null neurons.** A draw's sums cost as much as the canvas's own, so for wide layers (the paper
NeRV's 18,352 block-1 kernels) the draws are summed for a seeded sample of ``max_null_neurons``
neurons of the layer (:func:`~xinc_bench.probes.nulls.neuron_sample`, as the partitions probe
does; every neuron of a narrower layer, every MLP of the zoo), the observed scores always for
every neuron. A draw's ``object_selectivity`` is a median over neurons: the median of a uniform
sample of ``m`` of them lies, with probability at least 95 %, between the layer's ``50 - 98 /
sqrt(m)`` and ``50 + 98 / sqrt(m)`` percentiles of the draw's per-neuron concentrations
(distribution-free; 47.8 to 52.2 for the task's 2,048). A draw's ``semantic_consistency`` is a
cosine over the sampled neurons' profile columns and has no such bound (on a constructed canvas of
400 neurons, its null's mean and sd from samples of 50 to 200 neurons stayed within 6 % of the
whole layer's; ``tests/test_probe_objects.py``).

A canvas spread evenly over space gives ``P_ni = 1/K``: consistency 0 and selectivity 0.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import PROBES
from .accumulator import ProbeAccumulator, ProbeResult
from .inputs import require_masks
from .nulls import generator, null_neuron_sample, own_and_null_group_sums, permuted_labels
from .numerics import block_magnitudes
from .pixel_partitions import relabel
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

METRICS = ("object_selectivity", "semantic_consistency")
NULL_MODEL = "label_permutation"
NO_CATEGORIES = "needs instance categories (dataset ground truth or a synthetic scene)"


def instance_labels(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat instance index per pixel (-1 = unlabelled) and the segment ids ``[K]``."""
    labels, ids = relabel(masks)
    flat = labels.reshape(-1)
    if bool((ids == 0).any()):
        return flat - 1, ids[1:]
    return flat, ids


def label_draws(labels: torch.Tensor, frame_pixels: int, draws: int, seed: int) -> torch.Tensor:
    """``[1 + draws, P]`` int32: row 0 the instance labels, then ``draws`` label-permutation nulls.

    Each null row permutes ``labels[P]`` (-1 = unlabelled, kept as a label) within each frame of
    ``frame_pixels`` pixels, so every instance keeps its area in every frame. Seeded by ``seed``
    alone: the same draws for every layer and whatever the chunk size.
    """
    frames = labels.reshape(-1, frame_pixels).to(torch.int32)
    out = torch.empty(1 + draws, *frames.shape, dtype=torch.int32)
    out[0] = frames
    if draws:
        gen = generator(seed)
        for t in range(frames.shape[0]):
            out[1:, t] = permuted_labels(frames[t], draws, gen)
    return out.reshape(1 + draws, -1)


class InstanceSums:
    """Per-neuron sums of ``|C|`` over the instances of each label map, for one layer, block by block.

    Args:
        labels: ``[1 + D, P]`` instance index of each canvas pixel (-1 = unlabelled) in the canvas's
            label map (row 0) and ``D`` permuted ones, as :func:`label_draws` (every row with the
            same instance areas); shared, not copied.
        num_instances: K (at least 1).
        num_neurons: N of the layer.
        null_neurons: the sorted indices of the neurons the ``D`` permuted maps are summed for
            (:func:`~xinc_bench.probes.nulls.neuron_sample`); None: every neuron.

    Attributes:
        sums: ``[N, K + 1]`` float64 of the canvas's map; group K holds the unlabelled pixels.
        null_sums: ``[D, N'', K + 1]`` float64 of the permuted maps, for the ``N''`` null neurons.
    """

    def __init__(
        self, labels: torch.Tensor, num_instances: int, num_neurons: int, null_neurons: torch.Tensor | None = None
    ) -> None:
        self.labels = labels
        self.num_instances = num_instances
        self.null_neurons = None if null_neurons is None or len(null_neurons) == num_neurons else null_neurons
        drawn = num_neurons if self.null_neurons is None else len(self.null_neurons)
        self.sums = torch.zeros(num_neurons, num_instances + 1, dtype=torch.float64)
        self.null_sums = torch.zeros(labels.shape[0] - 1, drawn, num_instances + 1, dtype=torch.float64)

    def update(self, start: int, chunk: torch.Tensor) -> None:
        """Add frames ``start .. start + t - 1`` of the layer, ``chunk`` float32 ``[N, t, H, W]`` (read only).

        Every label map's sums come from one read of the block's shared ``|C|`` when every neuron is
        drawn; with a sample, the canvas's from ``|C|`` and the permuted maps' from the sample's rows.
        """
        frame_pixels = chunk.shape[2] * chunk.shape[3]
        pixels = slice(start * frame_pixels, (start + chunk.shape[1]) * frame_pixels)
        index = _group_index(self.labels[:, pixels], self.num_instances)
        groups = self.num_instances + 1
        drawn = [(index[1:], groups)] if len(index) > 1 else []
        own_sums, drawn_sums = own_and_null_group_sums(block_magnitudes(chunk), [(index[:1], groups)], drawn,
                                                       self.null_neurons)
        self.sums += own_sums[0][0]
        for sums in drawn_sums:
            self.null_sums += sums

    def profiles(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Area-normalised neuron profiles once every frame was added: the canvas's ``[N, K]`` and the
        permuted maps' ``[D, N'', K]``.

        Rows of neurons with no contribution to any instance are zero (no profile); the others sum to 1.
        """
        num_instances = self.num_instances
        groups = _group_index(self.labels[0], num_instances)
        areas = torch.bincount(groups, minlength=num_instances + 1)[:num_instances].double()
        return _normalised(self.sums, areas), _normalised(self.null_sums, areas)


def _normalised(sums: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
    """Profiles ``[..., K]`` from instance sums ``[..., K + 1]`` (the last group, unlabelled, dropped)."""
    normalised = sums[..., : len(areas)] / areas
    totals = normalised.sum(dim=-1, keepdim=True)
    return torch.where(totals > 0, normalised / torch.where(totals > 0, totals, 1.0), 0.0)


def _read_layer(canvas: Canvas, name: str, labels: torch.Tensor, num_instances: int) -> InstanceSums:
    """:class:`InstanceSums` of layer ``name`` over label maps ``labels`` (``[P]`` or ``[R, P]``), read in chunks."""
    sums = InstanceSums(labels.reshape(-1, labels.shape[-1]), num_instances, canvas.layer_shape(name)[0])
    for start, chunk in canvas.frame_chunks(name):
        sums.update(start, chunk)
    return sums


def _group_index(labels: torch.Tensor, num_instances: int) -> torch.Tensor:
    """Instance labels (-1 = unlabelled) as int64 groups ``0..K``, the unlabelled pixels group K."""
    labels = labels.long()
    return torch.where(labels < 0, num_instances, labels)


def profiles(canvas: Canvas, name: str, labels: torch.Tensor, num_instances: int) -> torch.Tensor:
    """Neuron profiles ``P[N', K]`` (rows sum to 1) of the neurons of layer ``name`` that touch any instance.

    Reads the layer in frame chunks (the probe itself, :class:`ObjectsProbe`, never reads a layer).

    Args:
        labels: ``[P]`` instance index of each canvas pixel (-1 = unlabelled), as :func:`instance_labels`.
        num_instances: K.
    """
    profile = _read_layer(canvas, name, labels, num_instances).profiles()[0]
    return profile[profile.sum(dim=1) > 0]


def selectivity(profile: torch.Tensor) -> torch.Tensor:
    """Median over neurons of ``1 - H(P_n) / log K`` for profiles ``[R, N, K]``: ``[R]``.

    Neurons without a profile (zero rows) are left out; NaN where no neuron has one or K < 2.
    """
    num_instances = profile.shape[-1]
    if num_instances < 2:
        return torch.full(profile.shape[:1], math.nan, dtype=torch.float64)
    alive = profile.sum(dim=-1) > 0
    entropy = -torch.special.xlogy(profile, profile).sum(dim=-1) / math.log(num_instances)
    concentration = (1.0 - entropy).clamp(0.0, 1.0)
    return torch.where(alive, concentration, math.nan).nanmedian(dim=1).values


def category_pairs(categories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[K, K]`` masks of the instance pairs ``(i != j)`` of the same category and of different ones."""
    same = categories[:, None] == categories[None, :]
    return same & ~torch.eye(len(categories), dtype=torch.bool), ~same


def semantic_consistency(profile: torch.Tensor, categories: torch.Tensor | None) -> torch.Tensor:
    """Mean same-category minus mean different-category cosine similarity of instance columns: ``[R]``.

    Args:
        profile: ``[R, N, K]`` profiles (zero rows for neurons without one).
        categories: ``[K]`` category of each instance; None gives NaN.

    NaN without categories, without a same-category or a different-category pair, or when no
    neuron has a profile.
    """
    nan = torch.full(profile.shape[:1], math.nan, dtype=torch.float64)
    if categories is None:
        return nan
    within, across = category_pairs(categories)
    if not bool(within.any()) or not bool(across.any()):
        return nan
    columns = torch.nn.functional.normalize(profile.transpose(1, 2), dim=2)  # [R, K, N]
    similarity = columns @ columns.transpose(1, 2)
    value = similarity[:, within].mean(dim=1) - similarity[:, across].mean(dim=1)
    return torch.where(profile.sum(dim=(1, 2)) > 0, value, nan)


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


def object_scores(
    profiles: tuple[torch.Tensor, torch.Tensor] | None, categories: torch.Tensor | None, draws: int
) -> tuple[dict[str, float], list[dict[str, float]], torch.Tensor]:
    """Object scores of one layer from its profiles, the scores of its null draws, and its profiles.

    Args:
        profiles: :meth:`InstanceSums.profiles`: the canvas's ``[N, K]`` and the ``D`` null label
            maps' ``[D, N'', K]``; or None when there is no instance (K = 0).
        categories: ``[K]`` category of each instance, or None.
        draws: D.

    Returns:
        ``(scores, draws, profile)``: the canvas's scores (NaN where undefined), the scores of each
        of the ``D`` null draws, and the canvas's profiles ``[N', K]`` of the neurons that have one.
    """
    if profiles is None:
        undefined = dict.fromkeys(METRICS, math.nan)
        return undefined, [undefined] * draws, torch.zeros(0, 0, dtype=torch.float64)
    own, drawn = profiles

    def scores(profile: torch.Tensor) -> list[dict[str, float]]:
        values = {
            "object_selectivity": selectivity(profile),
            "semantic_consistency": semantic_consistency(profile, categories),
        }
        return [{metric: float(value[row]) for metric, value in values.items()} for row in range(profile.shape[0])]

    return scores(own[None])[0], scores(drawn), own[own.sum(dim=1) > 0]


def layer_objects(
    canvas: Canvas, name: str, labels: torch.Tensor, categories: torch.Tensor | None, num_instances: int
) -> tuple[dict[str, float], list[dict[str, float]], torch.Tensor]:
    """Object scores of layer ``name`` (read once in frame chunks), its null draws and its profiles.

    The one-layer functional form of :class:`ObjectsProbe` (the probe itself never reads a layer).

    Args:
        labels: ``[P]`` instance index of each canvas pixel (-1 = unlabelled), or ``[1 + D, P]``
            with ``D`` null label maps after it (:func:`label_draws`).
        categories: ``[K]`` category of each instance, or None.
        num_instances: K.

    Returns:
        :func:`object_scores`.
    """
    draws = labels.reshape(-1, labels.shape[-1]).shape[0] - 1
    profile = _read_layer(canvas, name, labels, num_instances).profiles() if num_instances else None
    return object_scores(profile, categories, draws)


def absent_reasons(
    num_instances: int, categories: torch.Tensor | None, no_categories: str = NO_CATEGORIES
) -> dict[str, str]:
    """Metric -> why it cannot be computed with these instances and categories (none when both can).

    Args:
        no_categories: the reason given when ``categories`` is None.
    """
    reasons: dict[str, str] = {}
    if num_instances < 2:
        reasons["object_selectivity"] = f"needs at least two instances in the masks (found {num_instances})"
    if categories is None:
        reasons["semantic_consistency"] = no_categories
    elif not all(bool(pairs.any()) for pairs in category_pairs(categories)):
        reasons["semantic_consistency"] = (
            "needs two instances of one category and an instance of another (categories of the "
            f"{num_instances} instances: {sorted(set(categories.tolist()))})"
        )
    return reasons


def canvas_categories(canvas: Canvas, params: Mapping[str, Any]) -> tuple[Mapping[Any, Any] | None, str]:
    """The categories map for this canvas's masks (or None) and the reason to give when there is none.

    ``params["categories"]`` wins; ``canvas.metadata["categories"]`` (the signal's) applies only
    when the masks are the signal's ground truth (``metadata["annotations"]["masks"]`` is ``gt``
    or not recorded): they name ground-truth segments, not those of a computed mask source.
    """
    if params.get("categories") is not None:
        return params["categories"], NO_CATEGORIES
    source = (canvas.metadata.get("annotations") or {}).get("masks", "gt")
    if source != "gt" and canvas.metadata.get("categories") is not None:
        return None, f"{NO_CATEGORIES}; the signal's categories name its ground-truth segments, not {source} masks"
    return canvas.metadata.get("categories"), NO_CATEGORIES


@PROBES.register("objects")
class ObjectsProbe(ProbeAccumulator):
    """SPEC 5.5 for every layer with ``label_permutation`` null draws; headline scores are means over layers.

    One pass: the label maps (the canvas's and the ``D`` permuted ones, int32 ``[1 + D, P]``) are
    drawn when the probe is built; each block of a layer adds its per-neuron instance sums for
    all of them to the layer's :class:`InstanceSums` (``[N, K + 1]`` float64 and ``[D, N'', K + 1]`` for
    the draws, of the ``N''`` null neurons), from which
    :meth:`compute` gives the profiles, scores and null draws.

    Params:
        categories: segment id -> category id; default ``canvas.metadata["categories"]`` when the
            masks are ground truth.
        null_draws: D label permutations (0: none); null_seed: their seed.
        max_null_neurons: the draws of a wider layer are summed for a seeded sample of this many
            of its neurons (seed ``null_seed``; see the module docstring); None: every neuron.
    """

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        labels, self.ids = instance_labels(require_masks(canvas, "objects"))
        mapping, self.no_categories = canvas_categories(canvas, params)
        self.categories = category_ids(self.ids, mapping)
        self.draws = int(params.get("null_draws", 0))
        num_instances = len(self.ids)
        seed = int(params.get("null_seed", 0))
        rows = label_draws(labels, math.prod(canvas.shape[1:]), self.draws, seed)
        self.sums = {}
        for name in canvas.layer_names if num_instances else ():
            count = canvas.layer_shape(name)[0]
            self.sums[name] = InstanceSums(rows, num_instances, count, null_neuron_sample(params, count))

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        if layer in self.sums:
            self.sums[layer].update(start, chunk)

    def compute(self) -> ProbeResult:
        names, draws, ids, categories = self.canvas.layer_names, self.draws, self.ids, self.categories
        per_layer: dict[str, dict[str, float]] = {}
        layer_draws: dict[str, list[dict[str, float]]] = {}
        layer_profiles: dict[str, torch.Tensor] = {}
        for name in names:
            profile = self.sums[name].profiles() if name in self.sums else None
            per_layer[name], layer_draws[name], layer_profiles[name] = object_scores(profile, categories, draws)
        scores = collect_scores(per_layer)
        null = collect_null_draws([{name: layer_draws[name][d] for name in names} for d in range(draws)])
        reasons = absent_reasons(len(ids), categories, self.no_categories)
        absent: dict[str, str] = {}
        for score in list(scores):
            reason = reasons.get(score.rsplit("/", 1)[-1])
            if reason is not None:
                absent[score] = reason
                scores.pop(score)
                null.pop(score, None)
        scores["instances"] = float(len(ids))
        return ProbeResult(
            scores=scores,
            figures={"neuron_profiles": _figure(layer_profiles, ids, categories)},
            nulls={NULL_MODEL: null} if draws else {},
            absent=absent,
        )


def _figure(layer_profiles: dict[str, torch.Tensor], ids: torch.Tensor, categories: torch.Tensor | None) -> Any:
    """Per layer: profiles (neurons sorted by their top instance) and instance similarities."""
    order = torch.argsort(categories, stable=True) if categories is not None else torch.arange(len(ids))
    fig, axes = subplots(2, len(layer_profiles), figsize=(3.6 * len(layer_profiles), 6.0), squeeze=False)
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
