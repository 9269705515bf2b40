"""The ``motion`` probe (SPEC 5.6, video): do changes in the canvas follow motion?

For each layer and frame ``t >= 1``, ``dS_t(p) = sum_n | |C^t_n(p)| - |C^{t-1}_n(p)| |`` and
``F_t(p) = ||flow_t(p)||`` (the flow from t-1 to t). Frames with motion are those where some
pixel moves by more than ``motion_threshold`` pixels; their pixels are pooled.

* ``flow_spearman``: Spearman correlation of dS with F over the pooled pixels.
* ``flow_top_bottom_ratio``: mean dS on the top ``top_fraction`` (10%) of pooled pixels by F over
  the mean dS on the bottom ``bottom_fraction`` (50%).
* ``moving_static_cov_ratio``: instances are the segments of ``canvas.masks``; an instance moves
  when its mean F (over its pixels in frames ``t >= 1``) exceeds ``motion_threshold``. Per neuron
  and instance, the coefficient of variation (population std / mean) over the frames containing
  the instance (at least two) of the neuron's mean ``|C|`` on the instance; per neuron, its mean
  over moving instances divided by its mean over static instances; median over neurons.

Undefined values (no frame with motion, constant dS or F, no moving or no static instance, an
all-zero layer) are NaN; a canvas-wide cause (no motion, no moving or no static instance) also
puts the scores into ``ProbeResult.absent`` with its reason. A canvas whose changes ignore motion
scores 0, 1 and 1.

Nulls, drawn on what the observed scores already computed (no further pass over the canvas):

* ``pixel_permutation`` (``flow_spearman``, ``flow_top_bottom_ratio``): the flow speed of each
  frame with motion permuted over that frame's pixels, the same permutation for every layer, and
  the scores recomputed on each layer's pooled dS. A draw gathers the speed ranks and the
  fast/slow masks at the permutation (ties in the masks are broken by the pixels' positions before
  the permutation, so each draw selects exactly as many pixels as the observed score).
* ``label_permutation`` (``moving_static_cov_ratio``): the moving/static flags permuted over the
  instances, the same for every layer, and the ratio recomputed on the per-neuron per-instance
  coefficients of variation.

Pixels are independent under the pixel permutation while dS and F are smooth in space, so that
null's spread is narrower than the spread of a canvas unrelated to motion yet smooth; the shuffled
and random-init controls beside every record are the references for that.

The probe is an accumulator (:class:`MotionProbe`) over one pass: each block gives every frame
once (dS carries a block's last frame into the next block of the layer), and the per-instance
means come from per-neuron sums over each (frame, instance) group.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .accumulator import ProbeAccumulator, ProbeResult
from .inputs import require_flow, require_masks, require_video
from .nulls import generator, permutations
from .numerics import block_magnitudes, finite_median, safe_ratio, spearman, stacked_group_sums, top_fraction_mask
from .pixel_partitions import relabel
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

#: why the flow scores are absent when no frame moves
NO_MOTION_REASON = "no frame has motion above motion_threshold (or the flow speed is constant over them)"
#: why the CoV ratio is absent without both kinds of instance
NO_CONTRAST_REASON = "the masks need both a moving and a static instance (by mean flow speed vs motion_threshold)"
FLOW_METRICS = ("flow_spearman", "flow_top_bottom_ratio")
#: float64 entries of one block of neuron rows in :func:`_change`
_ROW_BLOCK = 1 << 22
#: values of a frame tried in float16 before the whole frame is (see :func:`_carried`)
_CARRY_PROBE = 1 << 12


class ContributionChange:
    """``dS[T - 1, H, W]`` of one layer (frame t - 1 -> t at index t - 1), in float64, block by block.

    Each layer's blocks come in frame order (the accumulator contract), each frame once; ``|C|``
    of the last frame of a block (``[N, H * W]``, float16 when that is exact) is carried into the next. The
    differences are taken in float64 (exact for float32 inputs) and summed in float64, which
    keeps the ranks of nearly equal changes stable (the Spearman score must not depend on the
    canvas's scale); neurons are taken a block of rows at a time, so the float64 temporaries stay
    at ``_ROW_BLOCK`` entries.

    Args:
        shape: the canvas's ``(T, H, W)``.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        num_frames, height, width = shape
        self.change = torch.zeros(max(num_frames - 1, 0), height, width, dtype=torch.float64)
        self.previous: torch.Tensor | None = None
        self.next_frame = 0

    def add(self, start: int, chunk: torch.Tensor) -> None:
        """Add frames ``start .. start + t - 1``, ``chunk`` ``[N, t, H, W]`` (not modified), the next ones in order."""
        if start != self.next_frame:
            raise RuntimeError(f"motion: frame {start} given where frame {self.next_frame} was due (out of order)")
        num_neurons, frames = chunk.shape[:2]
        mags = block_magnitudes(chunk).reshape(num_neurons, frames, -1)
        previous = self.previous
        for t in range(frames):
            current = mags[:, t]
            if previous is not None:
                self.change[start + t - 1] = _change(current, previous).reshape(self.change.shape[1:])
            previous = current
        self.previous = _carried(mags[:, -1], whole=frames == 1)
        self.next_frame = start + frames


def _carried(frame: torch.Tensor, whole: bool) -> torch.Tensor:
    """A frame ``|C|[N, H * W]`` kept for the next block: float16 where that holds every value
    exactly (a float16 canvas, e.g. traced with ``--float16``), else float32: the frame itself when
    it is the ``whole`` of the block's shared ``|C|`` (a one-frame block: holding it keeps nothing
    else alive, and no reader modifies it), else a copy (a view would keep the block's other frames).

    The first :data:`_CARRY_PROBE` values are tried first: on a float32 canvas they almost always
    show that float16 will not do, which spares the three passes over the frame of the full check.
    """
    head = frame.reshape(-1)[:_CARRY_PROBE]
    if torch.equal(head.half().float(), head):
        half = frame.half()
        if torch.equal(half.float(), frame):
            return half
    return frame if whole else frame.clone()


def _change(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``sum_n | |C^t_n| - |C^{t-1}_n| |`` of two frames ``[N, H * W]`` (float32): ``[H * W]`` float64."""
    num_neurons, pixels = current.shape
    total = np.zeros(pixels)
    step = max(1, _ROW_BLOCK // max(1, pixels))
    for first in range(0, num_neurons, step):
        rows = slice(first, first + step)
        difference = np.subtract(current[rows].numpy(), previous[rows].numpy(), dtype=np.float64)
        total += np.add.reduce(np.abs(difference, out=difference), axis=0)
    return torch.from_numpy(total)


def contribution_change(canvas: Canvas, name: str) -> torch.Tensor:
    """:class:`ContributionChange` of layer ``name`` read on its own in frame chunks (the whole-layer form)."""
    change = ContributionChange(canvas.shape)
    for start, chunk in canvas.frame_chunks(name):
        change.add(start, chunk)
    return change.change


def flow_magnitude(flow: torch.Tensor) -> torch.Tensor:
    """``F[T, H, W]``: the length of each flow vector ``flow[T, H, W, 2]``."""
    return torch.linalg.vector_norm(flow.float(), dim=-1)


def change_vs_flow(change: torch.Tensor, speed: torch.Tensor, top: float, bottom: float) -> dict[str, float]:
    """Spearman and top/bottom ratio of pooled dS ``[P']`` against pooled F ``[P']``."""
    if change.numel() == 0 or float(speed.max() - speed.min()) <= 0:
        return {"flow_spearman": math.nan, "flow_top_bottom_ratio": math.nan}
    fast = top_fraction_mask(speed, top)
    slow = top_fraction_mask(speed, bottom, largest=False)
    change = change.double()
    return {
        "flow_spearman": spearman(change, speed),
        "flow_top_bottom_ratio": safe_ratio(float(change[fast].mean()), float(change[slow].mean())),
    }


def moving_instances(masks: torch.Tensor, speed: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance index per pixel ``[T, H, W]`` (-1 = unlabelled) and whether each instance moves ``[K]``.

    An instance's speed is its mean F over its pixels in frames ``t >= 1``; one that appears only
    in frame 0 counts as static.
    """
    labels, ids = relabel(masks)
    if bool((ids == 0).any()):
        labels = labels - 1
        ids = ids[1:]
    count = len(ids)
    later = labels[1:].reshape(-1)
    index = torch.where(later < 0, count, later)
    total = torch.zeros(count + 1, dtype=torch.float64).index_add_(0, index, speed[1:].reshape(-1).double())
    area = torch.bincount(index, minlength=count + 1).double()
    mean_speed = torch.where(area > 0, total / area.clamp(min=1), 0.0)[:count]
    return labels, mean_speed > threshold


class InstanceSums:
    """Per-neuron sums of ``|C|`` over each (frame, instance) group of one layer, block by block.

    ``[N, T (K + 1)]`` float64 (the last group of each frame holds its unlabelled pixels); each
    block adds to the groups of its own frames, so blocks may come in any order and size.

    Args:
        num_neurons: N; labels: instance index ``[T, H, W]`` (-1 = unlabelled); count: K.
    """

    def __init__(self, num_neurons: int, labels: torch.Tensor, count: int) -> None:
        num_frames = labels.shape[0]
        self.count = count
        frame_offset = torch.arange(num_frames)[:, None, None] * (count + 1)
        self.index = (torch.where(labels < 0, count, labels) + frame_offset).reshape(num_frames, -1)
        self.sums = torch.zeros(num_neurons, num_frames * (count + 1), dtype=torch.float64)

    def add(self, start: int, chunk: torch.Tensor) -> None:
        """Add frames ``start .. start + t - 1``, ``chunk`` ``[N, t, H, W]`` (not modified)."""
        stop = start + chunk.shape[1]
        first, last = start * (self.count + 1), stop * (self.count + 1)
        local = self.index[start:stop].reshape(1, -1) - first
        self.sums[:, first:last] += stacked_group_sums(block_magnitudes(chunk), [(local, last - first)])[0][0]

    def cov(self) -> torch.Tensor:
        """Coefficient of variation over time of each neuron's mean ``|C|`` on each instance: ``[N, K]``.

        NaN where the instance is in fewer than two frames or the neuron's mean on it is zero.
        """
        num_frames, count = self.index.shape[0], self.count
        sums = self.sums.reshape(self.sums.shape[0], num_frames, count + 1)
        areas = torch.bincount(self.index.reshape(-1), minlength=num_frames * (count + 1))
        areas = areas.reshape(num_frames, count + 1).double()
        sums, areas = sums[..., :count], areas[:, :count]
        present = areas > 0
        frames_present = present.sum(dim=0)
        means = sums / areas.clamp(min=1)
        average = (means * present).sum(dim=1) / frames_present.clamp(min=1)
        variance = (((means - average[:, None]) ** 2) * present).sum(dim=1) / frames_present.clamp(min=1)
        valid = (frames_present >= 2)[None, :] & (average > 0)
        return torch.where(valid, variance.sqrt() / torch.where(valid, average, 1.0), math.nan)


def instance_cov(canvas: Canvas, name: str, labels: torch.Tensor, count: int) -> torch.Tensor:
    """:meth:`InstanceSums.cov` of layer ``name`` read on its own in frame chunks (the whole-layer form).

    Args:
        labels: instance index ``[T, H, W]`` (-1 = unlabelled); count: K.
    """
    sums = InstanceSums(canvas.layer_shape(name)[0], labels, count)
    for start, chunk in canvas.frame_chunks(name):
        sums.add(start, chunk)
    return sums.cov()


def cov_ratio(cov: torch.Tensor, moving: torch.Tensor) -> float:
    """Median over neurons of mean CoV on moving / mean CoV on static instances."""
    moving_cov = _nan_mean(cov[:, moving])
    static_cov = _nan_mean(cov[:, ~moving])
    valid = torch.isfinite(moving_cov) & torch.isfinite(static_cov) & (static_cov > 0)
    ratio = torch.where(valid, moving_cov / torch.where(valid, static_cov, 1.0), math.nan)
    return finite_median(ratio)


def flow_null_draws(
    changes: dict[str, torch.Tensor], speed: torch.Tensor, top: float, bottom: float, draws: int, gen: torch.Generator
) -> list[dict[str, dict[str, float]]]:
    """The flow scores of every layer under ``draws`` pixel-permutation draws of the flow speed.

    Each draw permutes the speed of every frame over that frame's pixels (one permutation for all
    layers) and recomputes :func:`change_vs_flow` on the kept dS: the Spearman correlation as the
    dot product of standardised ranks (the ranks of a permuted speed are the permuted ranks) and
    the top/bottom ratio with the permuted fast and slow masks. One draw at a time, so the extra
    memory is one permutation of the pooled pixels.

    Args:
        changes: layer -> pooled dS ``[T' H W]`` of the frames with motion (float64).
        speed: F ``[T', H, W]`` of the same frames.
        top, bottom: the flow quantiles compared; draws: D; gen: the draws' generator.

    Returns:
        ``D`` dicts ``{layer: {"flow_spearman": ..., "flow_top_bottom_ratio": ...}}``; none when
        the observed scores are undefined (no frame with motion, constant speed).
    """
    if draws == 0 or speed.numel() == 0 or float(speed.max() - speed.min()) <= 0:
        return []
    flat = speed.reshape(-1)
    fast = top_fraction_mask(flat, top)
    slow = top_fraction_mask(flat, bottom, largest=False)
    speed_ranks = _standardised_ranks(flat)
    change_ranks = {name: _standardised_ranks(change) for name, change in changes.items()}
    frames, pixels = speed.shape[0], speed[0].numel()
    offsets = (torch.arange(frames) * pixels)[:, None]
    out = []
    for _ in range(draws):
        order = (permutations(pixels, frames, gen) + offsets).reshape(-1)
        shuffled_ranks, shuffled_fast, shuffled_slow = speed_ranks[order], fast[order], slow[order]
        out.append(
            {
                name: {
                    "flow_spearman": float((change_ranks[name] @ shuffled_ranks).clamp(-1.0, 1.0)),
                    "flow_top_bottom_ratio": safe_ratio(
                        float(change[shuffled_fast].mean()), float(change[shuffled_slow].mean())
                    ),
                }
                for name, change in changes.items()
            }
        )
    return out


def cov_null_draws(
    covs: dict[str, torch.Tensor], moving: torch.Tensor, draws: int, gen: torch.Generator
) -> list[dict[str, dict[str, float]]]:
    """``moving_static_cov_ratio`` of every layer with the moving flags ``[K]`` permuted over the instances.

    One permutation per draw for all layers, applied to the per-neuron per-instance CoV ``[N, K]``
    of each layer (:func:`instance_cov`). None when every instance moves or none does.
    """
    if draws == 0 or bool(moving.all()) or not bool(moving.any()):
        return []
    flags = moving[permutations(moving.numel(), draws, gen)]  # [D, K]
    return [{name: {"moving_static_cov_ratio": cov_ratio(cov, row)} for name, cov in covs.items()} for row in flags]


def motion_scores(
    change: torch.Tensor,
    cov: torch.Tensor,
    speed: torch.Tensor,
    active: torch.Tensor,
    moving: torch.Tensor,
    params: dict[str, float],
) -> dict[str, float]:
    """Motion scores of one layer from its ``dS[T - 1, H, W]`` and its CoV ``[N, K]``.

    Args:
        speed: flow magnitude ``[T, H, W]``; active: ``[T - 1]`` whether frame t >= 1 has motion;
        moving: ``[K]`` whether each instance moves; params: top_fraction, bottom_fraction.
    """
    scores = change_vs_flow(
        change[active].reshape(-1), speed[1:][active].reshape(-1), params["top_fraction"], params["bottom_fraction"]
    )
    scores["moving_static_cov_ratio"] = cov_ratio(cov, moving)
    return scores


def layer_motion(
    canvas: Canvas,
    name: str,
    speed: torch.Tensor,
    active: torch.Tensor,
    labels: torch.Tensor,
    moving: torch.Tensor,
    params: dict[str, float],
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Motion scores of layer ``name`` read on its own in frame chunks, its ``dS[T - 1, H, W]`` and its CoV ``[N, K]``.

    The whole-layer form of what :class:`MotionProbe` gets block by block.

    Args:
        speed: flow magnitude ``[T, H, W]``; active: ``[T - 1]`` whether frame t >= 1 has motion;
        labels: instance index ``[T, H, W]`` (-1 = unlabelled); moving: ``[K]`` whether each
        instance moves; params: top_fraction, bottom_fraction.
    """
    change = ContributionChange(canvas.shape)
    sums = InstanceSums(canvas.layer_shape(name)[0], labels, len(moving))
    for start, chunk in canvas.frame_chunks(name):
        change.add(start, chunk)
        sums.add(start, chunk)
    cov = sums.cov()
    return motion_scores(change.change, cov, speed, active, moving, params), change.change, cov


@PROBES.register("motion")
class MotionProbe(ProbeAccumulator):
    """SPEC 5.6 for every layer; headline scores are means over layers.

    One pass: each block adds to its layer's dS map (:class:`ContributionChange`, ``[T - 1, H, W]``
    float64, carrying ``|C|`` of the block's last frame, ``[N, H, W]`` float32 or, when exact,
    float16, to the next block)
    and to its per-neuron (frame, instance) sums (:class:`InstanceSums`); scores, nulls and the
    figure come from those at the end. Blocks of different layers interleave, so every layer's dS
    map and carried frame are held at once (the function form held one layer's at a time).

    Params:
        motion_threshold: pixels per frame above which a frame or an instance moves (0.5).
        top_fraction / bottom_fraction: flow quantiles compared (0.1 / 0.5).
        null_draws, null_seed: draws of each null (0: none) and their seed.
    """

    @classmethod
    def held_bytes(cls, counts: dict[str, int], shape: tuple[int, int, int], params: dict[str, Any]) -> int:
        """The carried last frame of every layer, as float32 (half that for a float16 canvas)."""
        num_frames, height, width = shape
        return 4 * sum(counts.values()) * height * width if num_frames > 1 else 0

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        require_video(canvas, "motion")
        self.speed = flow_magnitude(require_flow(canvas, "motion"))
        self.settings = {
            "motion_threshold": float(params.get("motion_threshold", 0.5)),
            "top_fraction": float(params.get("top_fraction", 0.1)),
            "bottom_fraction": float(params.get("bottom_fraction", 0.5)),
        }
        self.labels, self.moving = moving_instances(
            require_masks(canvas, "motion"), self.speed, self.settings["motion_threshold"]
        )
        self.active = self.speed[1:].flatten(1).amax(dim=1) > self.settings["motion_threshold"]
        self.changes = {name: ContributionChange(canvas.shape) for name in canvas.layer_names}
        count = len(self.moving)
        self.sums = {name: InstanceSums(canvas.layer_shape(name)[0], self.labels, count) for name in canvas.layer_names}

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        self.changes[layer].add(start, chunk)
        self.sums[layer].add(start, chunk)

    def compute(self) -> ProbeResult:
        speed, active, moving, settings = self.speed, self.active, self.moving, self.settings
        draws, seed = int(self.params.get("null_draws", 0)), int(self.params.get("null_seed", 0))
        shown = _figure_frame(speed)
        per_layer: dict[str, dict[str, float]] = {}
        shown_changes: dict[str, torch.Tensor] = {}
        pooled: dict[str, torch.Tensor] = {}
        covs: dict[str, torch.Tensor] = {}
        for name in self.canvas.layer_names:
            change, cov = self.changes[name].change, self.sums[name].cov()
            per_layer[name] = motion_scores(change, cov, speed, active, moving, settings)
            shown_changes[name] = change[shown - 1]
            if draws:
                pooled[name], covs[name] = change[active].reshape(-1), cov
        scores = collect_scores(per_layer)
        nulls: dict[str, dict[str, list[float]]] = {}
        if draws:
            top, bottom = settings["top_fraction"], settings["bottom_fraction"]
            pixel_draws = flow_null_draws(pooled, speed[1:][active], top, bottom, draws, generator(seed, 0))
            label_draws = cov_null_draws(covs, moving, draws, generator(seed, 1))
            nulls = {
                model: collect_null_draws(found)
                for model, found in (("pixel_permutation", pixel_draws), ("label_permutation", label_draws))
                if found
            }
        absent = _absent_reasons(scores, speed[1:][active], moving)
        scores.update(moving_instances=float(moving.sum()), static_instances=float((~moving).sum()))
        return ProbeResult(
            scores=scores, figures={"change_vs_flow": _figure(shown_changes, speed, shown)}, nulls=nulls, absent=absent
        )


def _standardised_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks of flat ``values``, centred and scaled to unit norm (NaN when ``values`` is constant)."""
    values = values.reshape(-1)
    if values.numel() == 0 or bool(values.max() <= values.min()):
        return torch.full((values.numel(),), math.nan, dtype=torch.float64)
    ranks = torch.from_numpy(rankdata(values.double().numpy()))
    ranks -= ranks.mean()
    return ranks / torch.linalg.vector_norm(ranks)


def _absent_reasons(scores: dict[str, float], speed: torch.Tensor, moving: torch.Tensor) -> dict[str, str]:
    """Canvas-wide reasons for the scores that are undefined on every layer of this canvas."""
    reasons: dict[str, str] = {}
    no_motion = speed.numel() == 0 or float(speed.max() - speed.min()) <= 0
    no_contrast = bool(moving.all()) or not bool(moving.any())
    for name in scores:
        metric = name.rsplit("/", 1)[-1]
        if (metric in FLOW_METRICS and no_motion) or (metric == "moving_static_cov_ratio" and no_contrast):
            reasons[name] = NO_MOTION_REASON if metric in FLOW_METRICS else NO_CONTRAST_REASON
    return reasons


def _nan_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of the finite entries, NaN for rows without any: ``[N]``."""
    finite = torch.isfinite(values)
    count = finite.sum(dim=1)
    total = torch.where(finite, values, 0.0).sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), math.nan)


def _figure_frame(speed: torch.Tensor) -> int:
    """The frame ``t >= 1`` with the most motion (the largest mean flow speed)."""
    return int(speed[1:].flatten(1).mean(dim=1).argmax()) + 1


def _figure(changes: dict[str, torch.Tensor], speed: torch.Tensor, t: int) -> Any:
    """Frame ``t``: flow magnitude, then dS_t ``[H, W]`` of each layer."""
    fig, axes = subplots(1, len(changes) + 1, figsize=(3.6 * (len(changes) + 1), 2.4), squeeze=False)
    shown = axes[0][0].imshow(speed[t].numpy(), cmap="viridis")
    axes[0][0].set_title(f"|flow| at frame {t}", fontsize=9)
    fig.colorbar(shown, ax=axes[0][0], fraction=0.03)
    for axis, (name, change) in zip(axes[0][1:], changes.items()):
        shown = axis.imshow(change.numpy(), cmap="magma")
        axis.set_title(f"{name}: dS_t", fontsize=9)
        fig.colorbar(shown, ax=axis, fraction=0.03)
    for axis in axes[0]:
        axis.axis("off")
    fig.tight_layout()
    return fig
