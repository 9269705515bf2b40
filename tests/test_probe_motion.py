"""The motion probe on constructed video canvases whose answers are known in advance.

A 4-frame 32 x 64 video with three instances: a fast one (segment 1, 4 px per frame, 12.5% of
the pixels), a slow mover (segment 2, 1 px per frame) and a background drifting by 0.25 px per
frame (segment 3, below the 0.5 px threshold: static). All values are exact in float32.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import matplotlib.pyplot as plt
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.errors import XincError
from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate, window_frames
from xinc_bench.probes.base import load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.motion import (
    NO_CONTRAST_REASON,
    NO_MOTION_REASON,
    change_vs_flow,
    contribution_change,
    cov_ratio,
    flow_null_draws,
    instance_cov,
    moving_instances,
)
from xinc_bench.probes.nulls import generator, permutations
from xinc_bench.probes.stats import NullSummary, summarise_null
from accumulating import assert_same_result, unreadable

N, T, H, W = 16, 4, 32, 64


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """masks ``[T, H, W]`` and flow ``[T, H, W, 2]`` (frame 0 zero)."""
    masks = torch.full((T, H, W), 3, dtype=torch.int32)
    masks[:, 8:24, 8:24] = 1
    masks[:, 8:24, 40:56] = 2
    speed = torch.tensor([0.0, 4.0, 1.0, 0.25])[masks.long()]
    speed[0] = 0.0
    flow = torch.stack([speed, torch.zeros_like(speed)], dim=-1)
    return masks, flow


def _integer_weights() -> torch.Tensor:
    return torch.randint(1, 4, (N,), generator=torch.Generator().manual_seed(0)).float()[:, None, None, None]


def _following_motion() -> torch.Tensor:
    """``C^t_n = B_n + w_n * sum_{s <= t} |flow_s|``: so ``dS_t = (sum_n w_n) |flow_t|`` exactly."""
    _, flow = _scene()
    travelled = flow[..., 0].cumsum(dim=0)
    base = torch.randint(1, 5, (N, 1, H, W), generator=torch.Generator().manual_seed(1)).float()
    return base + _integer_weights() * travelled[None]


def _canvas(layer: torch.Tensor) -> Canvas:
    masks, flow = _scene()
    return Canvas(layers={"layer": layer}, frames=torch.rand(T, H, W, 3), masks=masks, flow=flow)


def _run(canvas: Canvas, **params: object) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("motion").run(canvas, **params)
    assert set(result.figures) == {"change_vs_flow"}
    plt.close("all")
    return result.scores


def test_change_exactly_on_motion_scores_the_maximum() -> None:
    scores = _run(_canvas(_following_motion()))
    assert scores["flow_spearman"] == pytest.approx(1.0)
    assert scores["flow_top_bottom_ratio"] == pytest.approx(4.0 / 0.25)  # top 10% all fast, bottom 50% background
    assert scores["moving_instances"] == 2 and scores["static_instances"] == 1


def test_change_is_the_summed_absolute_difference() -> None:
    change = contribution_change(_canvas(_following_motion()), "layer")
    _, flow = _scene()
    assert torch.equal(change, float(_integer_weights().sum()) * flow[1:, ..., 0])


def test_change_and_cov_read_frame_by_frame_are_those_of_the_whole_layer() -> None:
    masks, flow = _scene()
    layer = torch.randn(N, T, H, W, generator=torch.Generator().manual_seed(5))
    labels, _ = moving_instances(masks, torch.linalg.vector_norm(flow, dim=-1), 0.5)
    whole, chunked = _canvas(layer), _canvas(layer)
    chunked.chunk_bytes = 1  # one frame per chunk, two with the overlap
    assert torch.equal(contribution_change(whole, "layer"), contribution_change(chunked, "layer"))
    assert torch.equal(instance_cov(whole, "layer", labels, 3), instance_cov(chunked, "layer", labels, 3))


def test_moving_instances_vary_more_over_time() -> None:
    scores = _run(_canvas(_following_motion()))
    assert scores["moving_static_cov_ratio"] > 1


def test_cov_matches_a_direct_computation() -> None:
    masks, flow = _scene()
    layer = _following_motion()
    labels, moving = moving_instances(masks, torch.linalg.vector_norm(flow, dim=-1), 0.5)
    assert moving.tolist() == [True, True, False]
    cov = instance_cov(_canvas(layer), "layer", labels, 3)
    for n in (0, 7):
        for k, segment in enumerate((1, 2, 3)):
            means = torch.stack([layer[n, t][masks[t] == segment].double().mean() for t in range(T)])
            expected = means.std(unbiased=False) / means.mean()
            assert float(cov[n, k]) == pytest.approx(float(expected), rel=1e-6)


def test_shuffled_control_lands_near_chance() -> None:
    control = _run(shuffle_canvas(_canvas(_following_motion()), seed=0))
    task = load_task("motion")
    assert abs(control["flow_spearman"] - task.metrics["flow_spearman"].chance) < 0.1
    assert abs(control["flow_top_bottom_ratio"] - task.metrics["flow_top_bottom_ratio"].chance) < 0.15


def test_static_canvas_has_no_change_and_nan_scores() -> None:
    still = torch.rand(N, 1, H, W).expand(N, T, H, W).contiguous()
    scores = _run(_canvas(still))
    assert math.isnan(scores["flow_spearman"])  # dS is zero everywhere: constant
    assert math.isnan(scores["moving_static_cov_ratio"])  # CoV 0 on static instances


def test_no_motion_anywhere_is_nan() -> None:
    canvas = _canvas(_following_motion())
    canvas.flow = torch.zeros(T, H, W, 2)
    scores = _run(canvas)
    assert math.isnan(scores["flow_spearman"]) and math.isnan(scores["flow_top_bottom_ratio"])


def test_zero_canvas_and_single_neuron_are_defined() -> None:
    assert math.isnan(_run(_canvas(torch.zeros(N, T, H, W)))["flow_spearman"])
    single = _run(_canvas(_following_motion()[:1]))
    assert single["flow_spearman"] == pytest.approx(1.0)


def test_missing_inputs_are_clear_errors() -> None:
    masks, flow = _scene()
    layer = _following_motion()
    with pytest.raises(XincError, match="flow"):
        load_task("motion").run(Canvas(layers={"l": layer}, frames=torch.rand(T, H, W, 3), masks=masks))
    with pytest.raises(XincError, match="mask"):
        load_task("motion").run(Canvas(layers={"l": layer}, frames=torch.rand(T, H, W, 3), flow=flow))
    with pytest.raises(XincError, match="video"):
        image = Canvas(layers={"l": layer[:, :1]}, frames=torch.rand(1, H, W, 3), masks=masks[:1], flow=flow[:1])
        load_task("motion").run(image)
    assert load_task("motion").signal_kinds == ("video",)


def _result(canvas: Canvas, **params: object):
    result = load_task("motion").run(canvas, **params)
    plt.close("all")
    return result


def _evidence(canvas: Canvas, metric: str = "flow_spearman", model: str = "pixel_permutation") -> NullSummary:
    result = _result(canvas)
    return summarise_null(result.scores[metric], result.nulls[model][metric], model)


def test_change_following_the_flow_lies_far_above_its_null() -> None:
    evidence = _evidence(_canvas(_following_motion()))
    assert evidence.draws == 20 and evidence.effect_size > 5
    assert abs(evidence.mean) < 0.05  # a permuted speed is unrelated to dS
    assert evidence.p_value == pytest.approx(1 / 21)  # no draw comes near 1
    ratio = _evidence(_canvas(_following_motion()), "flow_top_bottom_ratio")
    assert ratio.effect_size > 5 and ratio.mean == pytest.approx(1.0, abs=0.2)


def test_change_unrelated_to_the_flow_lies_within_its_null() -> None:
    noise = torch.rand(N, T, H, W, generator=torch.Generator().manual_seed(7))
    for metric in ("flow_spearman", "flow_top_bottom_ratio"):
        evidence = _evidence(_canvas(noise), metric)
        assert evidence.draws == 20 and abs(evidence.effect_size) < 3, metric


def test_flow_draws_are_the_scores_of_the_speed_permuted_within_frames() -> None:
    generator_ = torch.Generator().manual_seed(3)
    speed = torch.rand(3, H, W, generator=generator_)  # no ties: the masks' tie-break cannot matter
    change = (speed + torch.rand(3, H, W, generator=generator_)).double().reshape(-1)
    draws = flow_null_draws({"layer": change}, speed, 0.1, 0.5, 4, generator(0))
    replay = generator(0)
    for draw in draws:
        order = (permutations(H * W, 3, replay) + (torch.arange(3) * H * W)[:, None]).reshape(-1)
        expected = change_vs_flow(change, speed.reshape(-1)[order], 0.1, 0.5)
        for metric, value in expected.items():
            assert draw["layer"][metric] == pytest.approx(value, rel=1e-12, abs=1e-12), metric
    assert len({draw["layer"]["flow_spearman"] for draw in draws}) == 4


def test_cov_draws_permute_the_moving_flags_over_the_instances() -> None:
    masks, flow = _scene()
    layer = _following_motion()
    labels, moving = moving_instances(masks, torch.linalg.vector_norm(flow, dim=-1), 0.5)
    cov = instance_cov(_canvas(layer), "layer", labels, 3)
    flags = ([True, True, False], [True, False, True], [False, True, True])  # the 3 ways to pick 2 movers of 3
    arrangements = [cov_ratio(cov, torch.tensor(row)) for row in flags]
    draws = _result(_canvas(layer)).nulls["label_permutation"]["layer/moving_static_cov_ratio"]
    assert len(draws) == 20
    assert all(any(draw == pytest.approx(value) for value in arrangements) for draw in draws)
    assert len(set(draws)) > 1


def test_null_draws_are_reproducible_and_chunk_free() -> None:
    layer = torch.randn(N, T, H, W, generator=torch.Generator().manual_seed(5))
    nulls = _result(_canvas(layer)).nulls
    assert set(nulls) == {"pixel_permutation", "label_permutation"}
    flow_scores = {"flow_spearman", "flow_top_bottom_ratio", "layer/flow_spearman", "layer/flow_top_bottom_ratio"}
    assert set(nulls["pixel_permutation"]) == flow_scores
    assert set(nulls["label_permutation"]) == {"moving_static_cov_ratio", "layer/moving_static_cov_ratio"}
    assert _result(_canvas(layer)).nulls == nulls
    chunked = _canvas(layer)
    chunked.chunk_bytes = 1  # one frame per chunk
    assert _result(chunked).nulls == nulls


def test_null_draws_follow_the_seed_and_are_absent_without_draws() -> None:
    canvas = _canvas(_following_motion())
    nulls = _result(canvas).nulls
    assert _result(canvas, null_seed=1).nulls != nulls
    assert _result(canvas, null_draws=0).nulls == {}


def test_undefined_scores_are_absent_with_their_reason() -> None:
    canvas = _canvas(_following_motion())
    canvas.flow = torch.zeros(T, H, W, 2)  # nothing moves: no frame with motion, no moving instance
    result = _result(canvas)
    assert result.absent["flow_spearman"] == NO_MOTION_REASON
    assert result.absent["layer/flow_top_bottom_ratio"] == NO_MOTION_REASON
    assert result.absent["moving_static_cov_ratio"] == NO_CONTRAST_REASON
    assert result.nulls == {}
    assert _result(_canvas(_following_motion())).absent == {}


def test_accumulator_scores_do_not_depend_on_blocks_and_never_read_layers() -> None:
    """A 4-frame, 2-layer video: blocks of 4, 3, 2 or 1 frames give the same scores and null draws, from ``update``."""
    noise = torch.rand(5, T, H, W, generator=torch.Generator().manual_seed(7))
    canvas = dataclasses.replace(_canvas(_following_motion()), layers={"layer": _following_motion(), "noise": noise})
    task = load_task("motion")
    results = []
    for frames in (T, 3, 2, 1):
        blocks = dataclasses.replace(canvas, chunk_bytes=N * H * W * 4 * frames)
        assert min(window_frames(blocks), T) == frames
        results.append(accumulate(blocks, [AccumulatorGroup([task.accumulator(blocks, null_draws=5)])])[0][0].result)
    assert set(results[0].nulls) == {"pixel_permutation", "label_permutation"}
    for result in results[1:]:
        assert_same_result(result, results[0])
    acc = task.accumulator(unreadable(canvas), null_draws=5)
    for pass_index in range(acc.passes):
        for start, stop in ((0, 1), (1, 3), (3, T)):  # each layer's frames in order, the layers interleaved
            for name in canvas.layer_names:
                acc.update(name, start, canvas.layer_frames(name, start, stop), pass_index)
        acc.end_pass(pass_index)
    assert_same_result(acc.compute(), task.run(canvas, null_draws=5))
    plt.close("all")


def test_carried_frame_is_float16_only_where_that_is_exact() -> None:
    """The frame carried to the next block takes half the memory on a float16 canvas, and the
    scores do not change."""
    from xinc_bench.probes.motion import ContributionChange

    layer = _following_motion() / 7  # not all exact in float16
    halved = layer.half().float()
    changes = []
    for values in (layer, halved):
        change = ContributionChange((T, H, W))
        change.add(0, values[:, :2])
        assert change.previous.dtype == (torch.float16 if values is halved else torch.float32)
        change.add(2, values[:, 2:])
        changes.append(change.change)
        assert torch.equal(change.change, contribution_change(_canvas(values), "layer"))
    assert not torch.equal(changes[0], changes[1])


def test_carried_frame_stays_float32_when_only_its_first_values_fit_float16() -> None:
    """A frame whose first values are exact in float16 (zeros) but whose later ones are not is carried whole, in float32."""
    from xinc_bench.probes.motion import _CARRY_PROBE, ContributionChange

    frames = torch.zeros(2 * _CARRY_PROBE, 3, 1, 1)
    frames[-1] = 1 / 3  # the last neuron is not exact in float16
    change = ContributionChange((3, 1, 1))
    change.add(0, frames[:, :2])
    assert change.previous.dtype == torch.float32
    assert torch.equal(change.previous, frames[:, 1].reshape(-1, 1))


def test_a_one_frame_block_is_carried_without_a_copy() -> None:
    """A block of one frame is the whole of its shared ``|C|``: it is carried as is (no second copy of
    the frame alive beside it), a frame of a longer block is copied (a view would keep the block's
    other frames alive), and the changes are the same whichever way the frames came."""
    from xinc_bench.probes.motion import ContributionChange
    from xinc_bench.probes.numerics import block_magnitudes

    layer = _following_motion() / 7
    expected = contribution_change(_canvas(layer), "layer")
    one_frame = ContributionChange((T, H, W))
    for t in range(T):
        block = layer[:, t : t + 1].clone()
        one_frame.add(t, block)
        assert one_frame.previous.data_ptr() == block_magnitudes(block).data_ptr()
    assert torch.equal(one_frame.change, expected)
    longer = ContributionChange((T, H, W))
    block = layer[:, :2].clone()
    longer.add(0, block)
    assert longer.previous.untyped_storage().nbytes() == longer.previous.numel() * 4
    longer.add(2, layer[:, 2:].clone())
    assert torch.equal(longer.change, expected)
