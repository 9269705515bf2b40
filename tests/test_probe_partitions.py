"""The partitions probe on constructed canvases whose answers are known in advance.

The canvases are 16 neurons over 1 x 32 x 64 pixels with four groups per partition. Masks and
colours are scattered over the image with exactly equal group areas, so a neuron that owns one
group of four has deltas (3, 1, 1, 1) on that partition (sample std exactly 1) and nearly
none on the others.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.errors import XincError
from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate, window_frames
from xinc_bench.probes.base import load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.image_features import gabor_kernels, gabor_responses
from xinc_bench.probes.nulls import neuron_sample
from xinc_bench.probes.partitions import (
    GroupTotals,
    Partition,
    instance_partition,
    layer_partitions,
    sensitivity_per_neuron,
)
from xinc_bench.probes.pixel_partitions import contiguous_grid
from xinc_bench.probes.stats import score_evidence
from accumulating import assert_same_result, unreadable

N, H, W, K = 16, 32, 64, 4
PALETTE = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9], [0.9, 0.9, 0.2]])


def _scatter(seed: int) -> torch.Tensor:
    """Labels 0..K-1 scattered over the pixels, each on exactly H * W / K pixels: ``[1, H, W]``."""
    order = torch.randperm(H * W, generator=torch.Generator().manual_seed(seed))
    return (order % K).reshape(1, H, W)


def _weights() -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(0))[:, None, None, None] + 0.5


def _owners(labels: torch.Tensor) -> torch.Tensor:
    """Neuron n is active (with its own scale) exactly on the pixels of group n mod K."""
    groups = torch.arange(N) % K
    return (labels[None] == groups[:, None, None, None]).float() * _weights()


def _canvas(layer: torch.Tensor, colours: torch.Tensor, masks: torch.Tensor) -> Canvas:
    return Canvas(layers={"layer": layer}, frames=PALETTE[colours], masks=(masks + 1).int())


def _run(canvas: Canvas, **params: object) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("partitions").run(canvas, **params)
    assert set(result.figures) == {"partition_sensitivity", "partition_maps"}
    plt.close("all")
    return result.scores


def test_neurons_owning_contiguous_blocks_are_spatial() -> None:
    grid = contiguous_grid((1, H, W), K)
    scores = _run(_canvas(_owners(grid), _scatter(1), _scatter(2)))
    assert scores["groups"] == K
    assert scores["s_grid"] == pytest.approx(1.0, abs=1e-9)  # std of (3, 1, 1, 1)
    assert scores["spatial_agnosticism"] < 0.2
    assert scores["color_bias"] < 0.2 and scores["edge_bias"] < 0.5


def test_neurons_following_colour_clusters_are_colour_biased() -> None:
    colours = _scatter(1)
    scores = _run(_canvas(_owners(colours), colours, _scatter(2)))
    assert scores["s_rgb"] == pytest.approx(1.0, abs=1e-9)  # k-means recovers the 4 colours exactly
    assert scores["color_bias"] > 0.9  # share of the excess sensitivities: colour against space
    assert scores["spatial_agnosticism"] > 0.9
    assert scores["object_vs_color"] < 0.1


def test_neurons_following_instances_prefer_objects_to_colour() -> None:
    masks = _scatter(2)
    scores = _run(_canvas(_owners(masks), _scatter(1), masks))
    assert scores["s_instances"] == pytest.approx(1.0, abs=1e-9)
    assert scores["object_vs_color"] > 0.9


def test_strided_reference_grid_calls_blocks_space_agnostic() -> None:
    """SPEC 8.1: contiguous 16-pixel-wide blocks cover every (y mod 4, x mod 8) cell equally."""
    canvas = _canvas(_owners(contiguous_grid((1, H, W), K)), _scatter(1), _scatter(2))
    scores = _run(canvas, grid="strided")
    assert scores["s_grid"] == pytest.approx(0.0, abs=1e-9)
    assert scores["spatial_agnosticism"] == pytest.approx(1.0)


def test_signed_grid_deltas_follow_the_reference() -> None:
    canvas = _canvas(_owners(contiguous_grid((1, H, W), K)), _scatter(1), _scatter(2))
    assert _run(canvas, grid_delta="signed")["s_grid"] == pytest.approx(2.0, abs=1e-9)  # std of (3, -1, -1, -1)


def test_other_instance_is_remainder_by_default_and_union_for_reference() -> None:
    masks = torch.zeros(1, H, W, dtype=torch.int64)
    masks[0, :8] = 5
    masks[0, 8:12] = 9
    remainder = instance_partition(masks).areas.tolist()
    reference = instance_partition(masks, "reference").areas.tolist()
    assert remainder == [20 * W, 8 * W, 4 * W]  # unlabelled, segment 5, segment 9
    assert reference == [8 * W, 4 * W, 12 * W]  # segment 5, segment 9, their union


def test_reference_gabor_bank_has_six_filters_and_uint8_responses() -> None:
    assert len(gabor_kernels("full")) == 24 and len(gabor_kernels("reference")) == 6
    frames = PALETTE[_scatter(1)]
    reference = gabor_responses(frames, "reference")
    assert reference.shape == (1, H, W, 6)
    assert reference.min() >= 0 and reference.max() <= 255 and np.array_equal(reference, reference.round())
    assert gabor_responses(frames, "full").min() < 0  # float responses keep their sign (SPEC 8.8)


def test_raw_basis_keeps_the_spec_ratios() -> None:
    colours = _scatter(1)
    scores = _run(_canvas(_owners(colours), colours, _scatter(2)), basis="raw")
    assert scores["color_bias"] == pytest.approx(scores["s_rgb"] / scores["s_grid"])
    strongest = max(scores["s_rgb"], scores["s_gabor"], scores["s_instances"])
    assert scores["spatial_agnosticism"] == pytest.approx(strongest / (strongest + scores["s_grid"]))


def _evidence(canvas: Canvas, draws: int = 20, **params: object) -> tuple[dict[str, float], dict[str, dict]]:
    """Scores and their label-permutation null summaries, as a record stores them."""
    task = load_task("partitions")
    result = task.run(canvas, null_draws=draws, **params)
    plt.close("all")
    values, nulls, _ = score_evidence(result.scores, result.nulls, result.absent,
                                      {name: m.null for name, m in task.metrics.items()})
    return values, nulls


def test_space_owned_canvas_rises_above_its_null_only_on_the_grid() -> None:
    values, nulls = _evidence(_canvas(_owners(contiguous_grid((1, H, W), K)), _scatter(1), _scatter(2)))
    assert nulls["s_grid"]["effect_size"] > 20 and nulls["s_grid"]["p_value"] == pytest.approx(1 / 21)
    for factor in ("s_rgb", "s_instances"):  # scattered over the pixels: unrelated to the blocks
        assert abs(nulls[factor]["effect_size"]) < 3, factor
    # Gabor responses are smooth, so texture clusters are partly spatial: above chance, far below the grid
    assert nulls["s_gabor"]["effect_size"] < nulls["s_grid"]["effect_size"] / 4
    assert values["spatial_agnosticism"] < 0.1
    assert nulls["spatial_agnosticism"]["effect_size"] < -3  # moves away from its null, downwards
    assert nulls["layer/spatial_agnosticism"]["mean"] == pytest.approx(nulls["spatial_agnosticism"]["mean"])


def test_colour_owned_canvas_moves_agnosticism_up_from_its_null() -> None:
    colours = _scatter(1)
    values, nulls = _evidence(_canvas(_owners(colours), colours, _scatter(2)))
    assert nulls["s_rgb"]["effect_size"] > 20 and abs(nulls["s_grid"]["effect_size"]) < 3
    assert values["spatial_agnosticism"] > 0.9 and nulls["spatial_agnosticism"]["effect_size"] > 1


def test_shuffled_control_sits_at_its_null() -> None:
    """The spatial shuffle keeps each neuron's values: no factor rises above the label-permutation null."""
    canvas = _canvas(_owners(contiguous_grid((1, H, W), K)), _scatter(1), _scatter(2))
    _, nulls = _evidence(shuffle_canvas(canvas, seed=0))
    for factor in ("s_grid", "s_rgb", "s_gabor", "s_instances"):
        assert abs(nulls[factor]["effect_size"]) < 3, factor


def test_null_draws_are_seeded_chunk_independent_and_optional() -> None:
    canvas = _canvas(_owners(contiguous_grid((1, H, W), K)) + 0.01, _scatter(1), _scatter(2))
    task = load_task("partitions")
    first = task.run(canvas, null_draws=5).nulls["label_permutation"]
    again = task.run(canvas, null_draws=5).nulls["label_permutation"]
    video = Canvas(layers={"layer": canvas.layers["layer"].repeat(1, 3, 1, 1)}, frames=canvas.frames.repeat(3, 1, 1, 1),
                   masks=canvas.masks.repeat(3, 1, 1))
    whole = task.run(video, null_draws=5).nulls["label_permutation"]
    video.chunk_bytes = 1  # one frame per chunk
    chunked = task.run(video, null_draws=5).nulls["label_permutation"]
    plt.close("all")
    assert first == again and len(first["s_grid"]) == 5
    assert chunked.keys() == whole.keys()
    for name in whole:
        assert chunked[name] == pytest.approx(whole[name], rel=1e-9, nan_ok=True), name
    assert task.run(canvas, null_draws=0).nulls == {}
    plt.close("all")


def test_missing_masks_is_a_clear_error() -> None:
    canvas = Canvas(layers={"layer": torch.rand(N, 1, H, W)}, frames=torch.rand(1, H, W, 3))
    with pytest.raises(XincError, match="mask"):
        load_task("partitions").run(canvas)


def test_bad_option_is_a_clear_error() -> None:
    with pytest.raises(XincError, match="grid"):
        load_task("partitions").run(_canvas(torch.rand(N, 1, H, W), _scatter(1), _scatter(2)), grid="diagonal")


def test_degenerate_inputs_are_nan_without_warnings() -> None:
    zero = _run(_canvas(torch.zeros(N, 1, H, W), _scatter(1), _scatter(2)))
    assert math.isnan(zero["color_bias"]) and math.isnan(zero["spatial_agnosticism"])
    flat = _canvas(torch.rand(1, 1, H, W), torch.zeros(1, H, W, dtype=torch.int64), _scatter(2))
    assert math.isnan(_run(flat)["color_bias"])  # a flat image has one colour cluster
    one_segment = _canvas(torch.rand(N, 1, H, W), _scatter(1), torch.zeros(1, H, W, dtype=torch.int64))
    assert math.isnan(_run(one_segment)["spatial_agnosticism"])


def test_layer_scores_are_per_neuron_medians() -> None:
    grid = contiguous_grid((1, H, W), K)
    partitions = {name: Partition.from_map(grid) for name in ("instances", "rgb", "gabor", "grid")}
    scores, spreads, draws = layer_partitions(_canvas(_owners(grid), _scatter(1), _scatter(2)), "layer", partitions,
                                              basis="raw")
    assert spreads["grid"].shape == (N,) and draws == []
    assert scores["s_grid"] == pytest.approx(float(spreads["grid"].median()))
    assert scores["color_bias"] == pytest.approx(1.0) and scores["spatial_agnosticism"] == pytest.approx(0.5)


def test_accumulator_scores_do_not_depend_on_blocks_and_never_read_layers() -> None:
    """A 3-frame, 2-layer canvas: blocks of every size give the same scores and null draws, from ``update`` alone."""
    image = _canvas(_owners(contiguous_grid((1, H, W), K)) + 0.01, _scatter(1), _scatter(2))
    noise = torch.rand(5, 3, H, W, generator=torch.Generator().manual_seed(4))
    layers = {"layer": image.layers["layer"].repeat(1, 3, 1, 1), "noise": noise}
    canvas = Canvas(layers=layers, frames=image.frames.repeat(3, 1, 1, 1), masks=image.masks.repeat(3, 1, 1))
    task = load_task("partitions")
    results = []
    for frames, chunk_bytes in ((3, canvas.chunk_bytes), (2, N * H * W * 4 * 2), (1, 1)):
        blocks = dataclasses.replace(canvas, chunk_bytes=chunk_bytes)
        assert min(window_frames(blocks), 3) == frames
        results.append(accumulate(blocks, [AccumulatorGroup([task.accumulator(blocks, null_draws=5)])])[0][0].result)
    for result in results[1:]:
        assert_same_result(result, results[0])
    acc = task.accumulator(unreadable(canvas), null_draws=5)
    for pass_index in range(acc.passes):
        for start in (2, 0, 1):  # any frame order: the probe only sums
            for name in layers:
                acc.update(name, start, canvas.layer_frames(name, start, start + 1), pass_index)
        acc.end_pass(pass_index)
    assert_same_result(acc.compute(), task.run(canvas, null_draws=5))
    plt.close("all")


def _noisy_owners(count: int) -> Canvas:
    """``count`` neurons owning grid cells, each with its own noise: per-neuron spreads that differ."""
    grid = contiguous_grid((1, H, W), K)
    groups = torch.arange(count) % K
    gen = torch.Generator().manual_seed(4)
    layer = (grid[None] == groups[:, None, None, None]).float() + torch.rand(count, 1, H, W, generator=gen) * 2
    return _canvas(layer, _scatter(1), _scatter(2))


def test_null_neurons_at_least_the_layer_change_nothing() -> None:
    canvas, task = _noisy_owners(N), load_task("partitions")
    exact = task.run(canvas, null_draws=5, max_null_neurons=None)
    capped = task.run(canvas, null_draws=5, max_null_neurons=N)
    plt.close("all")
    assert capped.scores == exact.scores and capped.nulls == exact.nulls


def test_null_drawn_for_a_sample_of_neurons_keeps_the_sensitivities_and_estimates_the_null() -> None:
    # 400 neurons, the draws summed for 100: the observed sensitivities are untouched and the
    # factor shares (in units of the null means) barely move
    canvas, task = _noisy_owners(400), load_task("partitions")
    exact = task.run(canvas, null_draws=5, max_null_neurons=None)
    sampled = task.run(canvas, null_draws=5, max_null_neurons=100)
    again = task.run(canvas, null_draws=5, max_null_neurons=100)
    plt.close("all")
    sensitivities = [name for name in exact.scores if name.rsplit("/", 1)[-1].startswith("s_")]
    assert [sampled.scores[name] for name in sensitivities] == [exact.scores[name] for name in sensitivities]
    assert sampled.scores == pytest.approx(exact.scores, abs=0.01)
    assert sampled.nulls == again.nulls  # seeded
    assert sampled.nulls != exact.nulls


def test_a_sampled_null_median_lies_near_the_middle_of_the_whole_layer() -> None:
    # the stated bound: the median of m sampled neurons' spreads lies within the layer's
    # 50 -/+ 98 / sqrt(m) percentiles (here m = 100: 40th to 60th) with probability above 95 %
    canvas = _noisy_owners(400)
    grid = Partition.from_map(contiguous_grid((1, H, W), K))
    permuted = {"grid": torch.stack([grid.index[torch.randperm(H * W, generator=torch.Generator().manual_seed(d))]
                                     for d in range(5)])}
    whole = GroupTotals(400, {"grid": grid}, permuted)
    sample = neuron_sample(400, 100, seed=0)
    part = GroupTotals(400, {"grid": grid}, permuted, sample)
    for totals in (whole, part):
        totals.add(0, canvas.layers["layer"])
    totals, _, null_sums, _ = whole.result()
    spreads = sensitivity_per_neuron(totals, null_sums["grid"], grid)  # [D, 400]
    _, _, sampled_sums, sampled_totals = part.result()
    medians = sensitivity_per_neuron(sampled_totals, sampled_sums["grid"], grid).median(dim=-1).values
    assert torch.equal(sampled_sums["grid"], null_sums["grid"][:, sample])
    percentiles = (spreads < medians[:, None]).double().mean(dim=-1)
    assert bool(((percentiles > 0.40) & (percentiles < 0.60)).all()), percentiles
