"""The color probe on constructed canvases whose answers are known in advance."""

from __future__ import annotations

import dataclasses
import math
import warnings

import matplotlib.pyplot as plt
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.probes import color as color_probe
from xinc_bench.probes.accumulator import run_accumulator, window_frames
from xinc_bench.probes.base import load_task
from xinc_bench.probes.color import layer_color
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.image_features import intensity
from xinc_bench.probes.nulls import frame_permutations, generator
from xinc_bench.probes.numerics import finite_median, pearson, pearson_rows, spearman
from xinc_bench.probes.stats import score_evidence
from accumulating import assert_same_result, feed_blocks, unreadable

N, H, W = 16, 32, 64


def _grey_gradient() -> torch.Tensor:
    """A grey image, brighter to the right and down: every channel equals I(p) / 3."""
    ramp = (torch.arange(W)[None, :] + 2 * torch.arange(H)[:, None]).float()
    ramp = ramp / ramp.max()
    return ramp[None, :, :, None].expand(1, H, W, 3).contiguous()


def _run(layer: torch.Tensor, frames: torch.Tensor) -> dict[str, float]:
    canvas = Canvas(layers={"layer": layer}, frames=frames)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("color").run(canvas)
    assert set(result.figures) == {"contribution_vs_intensity"}
    plt.close("all")
    return result.scores


def _weights() -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(0))[:, None, None, None] + 0.5


def test_contribution_following_intensity_correlates_perfectly() -> None:
    frames = _grey_gradient()
    layer = _weights() * intensity(frames)[None]
    scores = _run(layer, frames)
    assert scores["intensity_pearson"] == pytest.approx(1.0, abs=1e-6)
    assert scores["intensity_spearman"] == pytest.approx(1.0, abs=1e-6)
    assert scores["neuron_channel_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert scores["layer/neuron_red_correlation"] == pytest.approx(1.0, abs=1e-6)


def test_sign_of_contribution_is_ignored_and_inverse_anticorrelates() -> None:
    frames = _grey_gradient()
    light = intensity(frames)[None]
    negated = _run(-_weights() * light, frames)
    assert negated["intensity_pearson"] == pytest.approx(1.0, abs=1e-6)  # probes read |C|
    inverse = _run(_weights() * (3.0 - light), frames)
    assert inverse["intensity_pearson"] == pytest.approx(-1.0, abs=1e-6)
    assert inverse["intensity_spearman"] == pytest.approx(-1.0, abs=1e-6)


def test_one_channel_neurons_follow_their_channel() -> None:
    frames = torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(1))
    layer = frames[..., 0].expand(N, 1, H, W) * _weights()  # every neuron follows red only
    scores = layer_color(Canvas(layers={"layer": layer}, frames=frames), "layer")
    assert scores["neuron_red_correlation"] == pytest.approx(1.0, abs=1e-6)
    assert abs(scores["neuron_green_correlation"]) < 0.1
    assert abs(scores["neuron_blue_correlation"]) < 0.1


def test_shuffled_control_lands_near_chance() -> None:
    frames = _grey_gradient()
    canvas = Canvas(layers={"layer": _weights() * intensity(frames)[None]}, frames=frames)
    control = load_task("color").run(shuffle_canvas(canvas, seed=3)).scores
    plt.close("all")
    task = load_task("color")
    for metric in task.metrics:
        assert abs(control[metric] - task.metrics[metric].chance) < 0.1, metric


def test_layers_average_into_headline() -> None:
    frames = _grey_gradient()
    light = intensity(frames)[None]
    canvas = Canvas(layers={"a": _weights() * light, "b": _weights() * (3.0 - light)}, frames=frames)
    scores = load_task("color").run(canvas).scores
    plt.close("all")
    assert scores["a/intensity_pearson"] == pytest.approx(1.0, abs=1e-6)
    assert scores["b/intensity_pearson"] == pytest.approx(-1.0, abs=1e-6)
    assert scores["intensity_pearson"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "layer, frames",
    [
        (torch.zeros(N, 1, H, W), torch.rand(1, H, W, 3)),  # all-zero canvas
        (torch.rand(N, 1, H, W), torch.full((1, H, W, 3), 0.5)),  # flat image
        (torch.rand(1, 2, H, W), torch.rand(2, H, W, 3)),  # single neuron, video
    ],
)
def test_degenerate_inputs_give_nan_without_warnings(layer: torch.Tensor, frames: torch.Tensor) -> None:
    scores = _run(layer, frames)
    assert all(isinstance(v, float) for v in scores.values())
    if float(layer.abs().sum()) == 0 or float(frames.std()) == 0:
        assert math.isnan(scores["intensity_pearson"])


def test_task_declares_every_headline_metric() -> None:
    task = load_task("color")
    frames = _grey_gradient()
    scores = _run(_weights() * intensity(frames)[None], frames)
    assert set(task.metrics) <= set(scores)
    assert task.signal_kinds == ("image", "video")


def _evidence(canvas: Canvas, draws: int = 20) -> tuple[dict[str, float], dict[str, dict]]:
    """Scores and their pixel-permutation null summaries, as a record stores them."""
    task = load_task("color")
    result = task.run(canvas, null_draws=draws)
    plt.close("all")
    values, nulls, _ = score_evidence(result.scores, result.nulls, result.absent,
                                      {name: m.null for name, m in task.metrics.items()})
    return values, nulls


def test_contribution_following_intensity_lies_far_above_its_null() -> None:
    frames = _grey_gradient()
    _, nulls = _evidence(Canvas(layers={"layer": _weights() * intensity(frames)[None]}, frames=frames))
    for metric in ("intensity_pearson", "intensity_spearman", "neuron_channel_correlation"):
        assert nulls[metric]["model"] == "pixel_permutation"
        assert nulls[metric]["effect_size"] > 5, metric
        assert nulls[metric]["p_value"] == pytest.approx(1 / 21), metric  # the floor 1 / (D + 1)
        assert abs(nulls[metric]["mean"]) < 0.1, metric


def test_maps_unrelated_to_intensity_sit_at_their_null() -> None:
    generator = torch.Generator().manual_seed(5)
    frames = torch.rand(1, H, W, 3, generator=generator)
    _, nulls = _evidence(Canvas(layers={"layer": torch.rand(N, 1, H, W, generator=generator)}, frames=frames))
    for metric in ("intensity_pearson", "intensity_spearman", "neuron_channel_correlation"):
        assert abs(nulls[metric]["effect_size"]) < 3, metric


def _video() -> Canvas:
    generator = torch.Generator().manual_seed(7)
    frames = torch.rand(3, 8, 12, 3, generator=generator)
    light = intensity(frames)[None]
    layers = {
        "a": light * torch.rand(5, 1, 1, 1, generator=generator) + 0.3 * torch.rand(5, 3, 8, 12, generator=generator),
        "b": torch.randn(4, 3, 8, 12, generator=generator) + 2.0,
    }
    return Canvas(layers=layers, frames=frames)


def test_null_draws_match_correlations_of_the_permuted_signal() -> None:
    """Each draw is the score of the signal with its pixels permuted within frames, computed directly."""
    canvas = _video()
    canvas.chunk_bytes = 1  # one frame per chunk: the cross moments are merged over chunks
    draws = 4
    nulls = load_task("color").run(canvas, null_draws=draws).nulls["pixel_permutation"]
    plt.close("all")
    order = frame_permutations(canvas.shape, draws, generator(0))
    assert torch.equal(order // (8 * 12), torch.arange(3).repeat_interleave(8 * 12).expand(draws, -1))  # within frames
    light = intensity(canvas.frames).reshape(-1)
    rgb = canvas.frames.reshape(-1, 3)
    for name in canvas.layer_names:
        mags = canvas.layer(name).reshape(canvas.layer_shape(name)[0], -1).abs()
        total = mags.sum(dim=0, dtype=torch.float64)
        for d in range(draws):
            assert nulls[f"{name}/intensity_pearson"][d] == pytest.approx(pearson(total, light[order[d]]), abs=1e-12)
            assert nulls[f"{name}/intensity_spearman"][d] == pytest.approx(spearman(total, light[order[d]]), abs=1e-12)
            per_channel = torch.stack([pearson_rows(mags, rgb[order[d], c]) for c in range(3)], dim=1)
            expected = finite_median(per_channel.reshape(-1))
            assert nulls[f"{name}/neuron_channel_correlation"][d] == pytest.approx(expected, abs=1e-9)
    for d in range(draws):  # the headline draw is the mean of the layers' draws
        layer_mean = (nulls["a/intensity_pearson"][d] + nulls["b/intensity_pearson"][d]) / 2
        assert nulls["intensity_pearson"][d] == pytest.approx(layer_mean)


def test_null_draws_are_seeded_chunk_independent_and_optional() -> None:
    canvas = Canvas(layers={"a": _video().layers["a"]}, frames=_video().frames)
    task = load_task("color")
    whole = task.run(canvas, null_draws=5)
    again = task.run(canvas, null_draws=5).nulls
    other_seed = task.run(canvas, null_draws=5, null_seed=1).nulls
    none = task.run(canvas, null_draws=0)
    canvas.chunk_bytes = 1  # one frame per chunk
    chunked = task.run(canvas, null_draws=5).nulls["pixel_permutation"]
    plt.close("all")
    draws = whole.nulls["pixel_permutation"]
    assert again == whole.nulls and len(draws["neuron_channel_correlation"]) == 5
    assert other_seed["pixel_permutation"]["intensity_pearson"] != draws["intensity_pearson"]
    assert none.nulls == {} and none.scores == whole.scores
    assert chunked.keys() == draws.keys()
    for name, values in draws.items():
        assert chunked[name] == pytest.approx(values, rel=1e-9, abs=1e-12), name


def test_null_draws_do_not_depend_on_the_pixel_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    canvas = _video()
    order = frame_permutations(canvas.shape, 5, generator(0))
    _, whole = color_probe.layer_color_and_nulls(canvas, "a", order)
    monkeypatch.setattr(color_probe, "_BLOCK_ELEMENTS", 3 * 5 * 7)  # permuted channels in blocks of 7 pixels
    _, blocked = color_probe.layer_color_and_nulls(canvas, "a", order)
    for expected, got in zip(whole, blocked):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_flat_image_scores_are_absent_with_the_reason() -> None:
    canvas = Canvas(layers={"layer": torch.rand(N, 1, H, W)}, frames=torch.full((1, H, W, 3), 0.5))
    result = load_task("color").run(canvas, null_draws=3)
    plt.close("all")
    for score in ("intensity_pearson", "layer/intensity_spearman", "neuron_channel_correlation"):
        assert "constant" in result.absent[score] and math.isnan(result.scores[score])


def test_accumulator_gives_the_same_results_whatever_the_blocks_and_reads_no_layer() -> None:
    canvas = _video()  # 3 frames, two layers
    task = load_task("color")
    results, windows = [], []
    for chunk_bytes in (canvas.chunk_bytes, 5 * 8 * 12 * 4 * 2, 1):  # whole layers, 2 frames, 1 frame per block
        blocks = dataclasses.replace(canvas, chunk_bytes=chunk_bytes)
        results.append(run_accumulator(task.accumulator(blocks, null_draws=4), blocks))
        windows.append(window_frames(blocks))
    plt.close("all")
    assert windows[0] >= 3 and windows[1:] == [2, 1]
    whole = results[0]
    for other in results[1:]:
        assert_same_result(other, whole)

    fed = feed_blocks(task.accumulator(unreadable(canvas), null_draws=4), canvas, frames=1)
    expected = task.run(canvas, null_draws=4)
    plt.close("all")
    assert_same_result(fed, expected)
    assert fed.figures.keys() == expected.figures.keys()
