"""The objects probe on constructed canvases whose answers are known in advance.

Four instances (the quadrants of a 32 x 64 image, unequal areas on purpose: the top row is
shorter) in two categories: segments 1 and 2 are category 7, segments 3 and 4 category 8.
Effect sizes are measured against the task's label-permutation null through
:func:`~xinc_bench.probes.stats.score_evidence`, as a record stores them.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings

import matplotlib.pyplot as plt
import pytest
import torch

from xinc_bench.annotate.masks import felzenszwalb_masks
from xinc_bench.canvas import Canvas
from xinc_bench.data.synthetic import make_scene
from xinc_bench.errors import XincError
from xinc_bench.probes.accumulator import run_accumulator, window_frames
from xinc_bench.probes.base import ProbeResult, load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.nulls import neuron_sample
from xinc_bench.probes.objects import NO_CATEGORIES, InstanceSums, instance_labels, label_draws, profiles, selectivity
from xinc_bench.probes.stats import score_evidence
from accumulating import assert_same_result, feed_blocks, unreadable

N, H, W = 16, 32, 64
CATEGORIES = {"1": 7, "2": 7, "3": 8, "4": 8}
TASK = load_task("objects")


def _masks() -> torch.Tensor:
    masks = torch.zeros(1, H, W, dtype=torch.int32)
    masks[0, :10, :32], masks[0, :10, 32:], masks[0, 10:, :32], masks[0, 10:, 32:] = 1, 2, 3, 4
    return masks


def _weights() -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(0))[:, None, None, None] + 0.5


def _on(segments_per_neuron: list[list[int]]) -> torch.Tensor:
    """Neuron n active with value 1 on the pixels of its segments (times its weight)."""
    masks = _masks()[0]
    layer = torch.stack([torch.isin(masks, torch.tensor(s)).float()[None] for s in segments_per_neuron])
    return layer * _weights()


def _canvas(layer: torch.Tensor, masks: torch.Tensor | None = None, metadata: dict | None = None) -> Canvas:
    return Canvas(
        layers={"layer": layer},
        frames=torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(5)),
        masks=_masks() if masks is None else masks,
        metadata={"categories": CATEGORIES} if metadata is None else metadata,
    )


def _result(canvas: Canvas, **params: object) -> ProbeResult:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = TASK.run(canvas, **params)
    assert set(result.figures) == {"neuron_profiles"}
    plt.close("all")
    return result


def _run(layer: torch.Tensor, masks: torch.Tensor | None = None, **params: object) -> dict[str, float]:
    return _result(_canvas(layer, masks), **params).scores


def _effects(result: ProbeResult) -> dict[str, float | None]:
    """Effect size of every score against the task's null, as a record stores it."""
    null_of = {metric: spec.null for metric, spec in TASK.metrics.items()}
    _, nulls, _ = score_evidence(result.scores, result.nulls, result.absent, null_of)
    return {name: summary["effect_size"] for name, summary in nulls.items()}


def test_task_declares_headline_nulls_and_ranges() -> None:
    assert TASK.version == 3 and TASK.headline == "object_selectivity"
    assert TASK.nulls.draws == 20
    assert {m.null for m in TASK.metrics.values()} == {"label_permutation"}
    assert TASK.metrics["object_selectivity"].range == (0.0, 1.0)
    assert TASK.metrics["semantic_consistency"].range == (-1.0, 1.0)


def test_neuron_groups_owning_one_instance_each_are_selective_beyond_the_null() -> None:
    result = _result(_canvas(_on([[1], [2], [3], [4]] * 4)))
    assert result.scores["object_selectivity"] == pytest.approx(1.0)  # every profile is one-hot
    assert result.scores["semantic_consistency"] == pytest.approx(0.0)  # all instance columns orthogonal
    effects = _effects(result)
    assert effects["object_selectivity"] > 5 and effects["layer/object_selectivity"] > 5
    assert abs(effects["semantic_consistency"]) < 3  # selective, but not by category


def test_neurons_shared_within_categories_are_semantically_consistent_beyond_the_null() -> None:
    result = _result(_canvas(_on([[1, 2]] * 8 + [[3, 4]] * 8)))
    assert result.scores["semantic_consistency"] == pytest.approx(1.0)  # same category: cos 1, across: 0
    assert result.scores["object_selectivity"] == pytest.approx(0.5)  # half on each of 2 of 4: 1 - log 2 / log 4
    assert result.scores["instances"] == 4
    effects = _effects(result)
    assert effects["semantic_consistency"] > 5 and effects["object_selectivity"] > 5


def test_random_canvas_is_indistinguishable_from_its_null() -> None:
    layer = torch.rand(N, 1, H, W, generator=torch.Generator().manual_seed(1))
    effects = _effects(_result(_canvas(layer)))
    for metric in ("object_selectivity", "semantic_consistency"):
        assert effects[metric] is not None and abs(effects[metric]) < 3, metric


def test_uniform_canvas_matches_the_declared_chance_and_its_null() -> None:
    result = _result(_canvas(torch.ones(N, 1, H, W)))
    for metric, spec in TASK.metrics.items():
        assert result.scores[metric] == pytest.approx(spec.chance, abs=1e-9), metric
        assert result.nulls["label_permutation"][metric] == pytest.approx([spec.chance] * 20, abs=1e-9), metric


def test_profiles_are_area_normalised() -> None:
    labels, ids = instance_labels(_masks())
    canvas = Canvas(layers={"layer": torch.ones(3, 1, H, W)}, frames=torch.rand(1, H, W, 3))
    profile = profiles(canvas, "layer", labels, len(ids))
    assert torch.allclose(profile, torch.full((3, 4), 0.25, dtype=torch.float64))  # despite unequal areas


def test_unlabelled_pixels_are_not_an_instance() -> None:
    masks = _masks()
    masks[0, :, 60:] = 0
    layer = torch.zeros(N, 1, H, W)
    layer[:, :, :, 60:] = 1.0  # contributes only to unlabelled pixels
    scores = _run(layer, masks)
    assert math.isnan(scores["object_selectivity"])  # no neuron touches an instance


def test_shuffled_control_loses_selectivity() -> None:
    canvas = _canvas(_on([[1], [2], [3], [4]] * 4))
    control = _result(shuffle_canvas(canvas, seed=0), null_draws=0).scores
    assert control["object_selectivity"] < 0.05


def test_categories_param_overrides_metadata_and_missing_ids_are_errors() -> None:
    layer = _on([[1, 2]] * 8 + [[3, 4]] * 8)
    regrouped = _run(layer, categories={1: 7, 2: 8, 3: 7, 4: 8})
    assert regrouped["semantic_consistency"] == pytest.approx(-0.5)  # within: 0, 0; across: 1, 1, 0, 0
    with pytest.raises(XincError, match="segment ids"):
        _run(layer, categories={1: 7})


def test_without_categories_consistency_is_absent_with_its_reason() -> None:
    result = _result(_canvas(_on([[1]] * N), metadata={}))
    for name in ("semantic_consistency", "layer/semantic_consistency"):
        assert result.absent[name] == NO_CATEGORIES
        assert name not in result.scores and name not in result.nulls["label_permutation"]
    assert result.scores["object_selectivity"] == 1.0


def test_categories_without_a_pair_of_each_kind_are_absent_with_their_reason() -> None:
    result = _result(_canvas(_on([[1]] * N), metadata={"categories": {"1": 0, "2": 1, "3": 2, "4": 3}}))
    assert "two instances of one category" in result.absent["semantic_consistency"]
    assert "semantic_consistency" not in result.scores


def test_synthetic_scene_categories_define_semantic_consistency() -> None:
    """Categories travel as canvas_run writes them (string keys); neurons per category are consistent."""
    signal = make_scene("moving", (16, 32), num_frames=3, seed=0)
    by_category = torch.stack([
        torch.tensor([signal.categories[int(i)] == c for i in signal.masks.reshape(-1)]).float() for c in (1, 2, 3)
    ]).reshape(3, *signal.masks.shape)
    layer = by_category.repeat_interleave(2, dim=0) + 0.01  # two neurons per category, faint elsewhere
    metadata = {"categories": {str(k): v for k, v in signal.categories.items()}, "annotations": {"masks": "gt"}}
    canvas = Canvas(layers={"layer": layer}, frames=signal.frames, masks=signal.masks, metadata=metadata)
    result = _result(canvas)
    assert result.scores["semantic_consistency"] > 0.5 and _effects(result)["semantic_consistency"] > 5
    assert not result.absent


def test_computed_masks_do_not_borrow_the_signals_categories() -> None:
    signal = make_scene("static", (16, 32), num_frames=1, seed=0)
    categories = {str(k): v for k, v in signal.categories.items()}
    metadata = {"categories": categories, "annotations": {"masks": "felzenszwalb"}}
    masks = felzenszwalb_masks(signal.frames, min_size=20)
    canvas = Canvas(layers={"layer": torch.rand(4, 1, 16, 32)}, frames=signal.frames, masks=masks, metadata=metadata)
    result = _result(canvas, null_draws=0)
    assert result.absent["semantic_consistency"].startswith(NO_CATEGORIES)
    assert "felzenszwalb" in result.absent["semantic_consistency"]
    assert math.isfinite(result.scores["object_selectivity"])


def test_missing_masks_is_a_clear_error() -> None:
    canvas = Canvas(layers={"layer": torch.rand(N, 1, H, W)}, frames=torch.rand(1, H, W, 3))
    with pytest.raises(XincError, match="mask"):
        TASK.run(canvas)


def test_degenerate_inputs_are_defined() -> None:
    zero = _run(torch.zeros(N, 1, H, W))
    assert math.isnan(zero["semantic_consistency"]) and math.isnan(zero["object_selectivity"])
    empty = _result(_canvas(torch.rand(1, 1, H, W), masks=torch.zeros(1, H, W, dtype=torch.int32), metadata={}))
    assert empty.scores == {"instances": 0.0}
    assert "at least two instances" in empty.absent["object_selectivity"]
    one = _result(_canvas(torch.rand(2, 1, H, W), masks=torch.ones(1, H, W, dtype=torch.int32), metadata={}))
    assert "found 1" in one.absent["layer/object_selectivity"]


def test_null_draws_are_reproducible_and_absent_without_draws() -> None:
    canvas = _canvas(torch.rand(N, 1, H, W, generator=torch.Generator().manual_seed(2)))
    first, again = _result(canvas).nulls, _result(canvas).nulls
    assert first == again and len(first["label_permutation"]["object_selectivity"]) == 20
    assert _result(canvas, null_seed=1).nulls != first
    none = _result(canvas, null_draws=0)
    assert none.nulls == {} and math.isfinite(none.scores["object_selectivity"])


def _sparse_owners(count: int) -> Canvas:
    """``count`` neurons, each on one quadrant with its own noise: per-neuron concentrations that differ."""
    masks = _masks()[0]
    owners = torch.stack([(masks == 1 + n % 4).float()[None] for n in range(count)])
    generator = torch.Generator().manual_seed(6)
    return _canvas(owners + torch.rand(count, 1, H, W, generator=generator) * 0.5)


def test_null_neurons_at_least_the_layer_change_nothing() -> None:
    canvas = _sparse_owners(N)
    exact = _result(canvas, null_draws=5, max_null_neurons=None)
    capped = _result(canvas, null_draws=5, max_null_neurons=N)
    assert capped.scores == exact.scores and capped.nulls == exact.nulls


def test_null_drawn_for_a_sample_of_neurons_keeps_the_scores_and_estimates_the_null() -> None:
    # 400 neurons, the draws summed for 100: the observed scores are untouched, the null is seeded
    # and its median-over-neurons draws stay near the whole layer's
    canvas = _sparse_owners(400)
    exact = _result(canvas, null_draws=5, max_null_neurons=None)
    sampled = _result(canvas, null_draws=5, max_null_neurons=100)
    again = _result(canvas, null_draws=5, max_null_neurons=100)
    assert sampled.scores == exact.scores
    assert sampled.nulls == again.nulls and sampled.nulls != exact.nulls
    assert _effects(sampled)["object_selectivity"] > 5
    # semantic consistency's draws (a cosine over the sampled neurons) keep the whole layer's spread
    whole = _result(canvas, null_draws=20, max_null_neurons=None).nulls["label_permutation"]["semantic_consistency"]
    for m in (50, 100, 200):
        draws = _result(canvas, null_draws=20, max_null_neurons=m).nulls["label_permutation"]["semantic_consistency"]
        assert statistics.stdev(draws) == pytest.approx(statistics.stdev(whole), rel=0.1), m
        assert abs(statistics.mean(draws) - statistics.mean(whole)) < 0.1 * statistics.stdev(whole), m


@pytest.mark.parametrize("task", ["objects", "partitions"])
@pytest.mark.parametrize("limit", [0, -3, "2048", 2.5, True])
def test_a_null_neuron_limit_that_is_not_a_positive_integer_is_refused(task: str, limit: object) -> None:
    with pytest.raises(XincError, match="max_null_neurons=.* is not a positive integer; give a neuron count"):
        load_task(task).run(_sparse_owners(N), null_draws=2, max_null_neurons=limit)


def test_a_sampled_null_median_lies_near_the_middle_of_the_whole_layer() -> None:
    # the stated bound: the median of m sampled neurons' concentrations lies within the layer's
    # 50 -/+ 98 / sqrt(m) percentiles (here m = 100: 40th to 60th) with probability above 95 %
    canvas = _sparse_owners(400)
    labels, ids = instance_labels(_masks())
    rows = label_draws(labels, H * W, 5, seed=0)
    whole = InstanceSums(rows, len(ids), 400)
    sampled = InstanceSums(rows, len(ids), 400, neuron_sample(400, 100, seed=0))
    for sums in (whole, sampled):
        sums.update(0, canvas.layer("layer"))
    assert torch.equal(sampled.profiles()[0], whole.profiles()[0])  # the canvas's own: every neuron
    drawn = whole.profiles()[1]
    concentration = 1 + torch.special.xlogy(drawn, drawn).sum(dim=-1) / math.log(len(ids))  # [D, 400]
    low, high = torch.quantile(concentration, torch.tensor([0.4, 0.6], dtype=torch.float64), dim=1)
    medians = selectivity(sampled.profiles()[1])
    assert bool(((medians >= low) & (medians <= high)).all()), (medians, low, high)
    assert not torch.equal(medians, selectivity(drawn))  # a sample, not the layer


def _video_canvas() -> Canvas:
    """Four frames, two layers, random masks with four instances in two categories."""
    generator = torch.Generator().manual_seed(4)
    masks = torch.randint(0, 5, (4, 8, 12), generator=generator, dtype=torch.int32)
    return Canvas(
        layers={"a": torch.randn(5, 4, 8, 12, generator=generator), "b": torch.rand(7, 4, 8, 12, generator=generator)},
        frames=torch.rand(4, 8, 12, 3, generator=generator),
        masks=masks,
        metadata={"categories": {"1": 0, "2": 0, "3": 1, "4": 1}},
    )


def test_scores_and_null_draws_do_not_depend_on_the_chunk_size() -> None:
    canvas = _video_canvas()
    frame_by_frame = dataclasses.replace(canvas, chunk_bytes=1)
    assert frame_by_frame.frames_per_chunk("b") == 1
    whole, chunked = _result(canvas), _result(frame_by_frame)
    assert chunked.scores == pytest.approx(whole.scores, rel=1e-9, abs=1e-12)
    for name, draws in whole.nulls["label_permutation"].items():
        assert chunked.nulls["label_permutation"][name] == pytest.approx(draws, rel=1e-9, abs=1e-12), name


def _assert_same_results(got: ProbeResult, expected: ProbeResult) -> None:
    assert_same_result(got, expected)
    assert got.figures.keys() == expected.figures.keys() and set(got.nulls) == {"label_permutation"}


def test_accumulator_gives_the_same_results_whatever_the_blocks_and_reads_no_layer() -> None:
    canvas = _video_canvas()
    results, windows = [], []
    for chunk_bytes in (canvas.chunk_bytes, 7 * 8 * 12 * 4 * 3, 1):  # whole layers, 3 frames, 1 frame per block
        blocks = dataclasses.replace(canvas, chunk_bytes=chunk_bytes)
        results.append(run_accumulator(TASK.accumulator(blocks, null_draws=6), blocks))
        windows.append(window_frames(blocks))
    plt.close("all")
    assert windows[0] >= 4 and windows[1:] == [3, 1]
    for other in results[1:]:
        _assert_same_results(other, results[0])

    fed = feed_blocks(TASK.accumulator(unreadable(canvas), null_draws=6), canvas, frames=1)
    expected = TASK.run(canvas, null_draws=6)
    plt.close("all")
    _assert_same_results(fed, expected)
