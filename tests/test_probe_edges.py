"""The edges probe on constructed canvases whose answers are known in advance."""

from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import pytest
import torch
from scipy import ndimage

from xinc_bench.canvas import Canvas
from xinc_bench.probes.base import load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.edges import edge_mask, layer_edges
from xinc_bench.probes.image_features import intensity, sobel_magnitude
from xinc_bench.probes.nulls import frame_permutations, generator
from xinc_bench.probes.stats import score_evidence

N, H, W = 16, 32, 64


def _square() -> torch.Tensor:
    """A bright square on a dark, gently shaded background: the edges are the square's border."""
    shade = 0.1 + 0.2 * torch.arange(W).float() / W
    frames = shade[None, None, :, None].expand(1, H, W, 3).clone()
    frames[:, 8:24, 16:48] = 0.9
    return frames


def _weights() -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(0))[:, None, None, None] + 0.5


def _run(layer: torch.Tensor, frames: torch.Tensor) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("edges").run(Canvas(layers={"layer": layer}, frames=frames))
    assert set(result.figures) == {"edges"}
    plt.close("all")
    return result.scores


def test_edge_mask_selects_the_exact_fraction_on_the_border() -> None:
    mask = edge_mask(_square(), 0.1)
    assert int(mask.sum()) == math.ceil(0.1 * H * W)
    gradient = sobel_magnitude(_square()).reshape(-1)
    assert float(gradient[mask].min()) >= float(gradient[~mask].max())


def test_contribution_on_edges_gives_a_large_ratio() -> None:
    frames = _square()
    layer = _weights() * sobel_magnitude(frames)[None]
    scores = _run(layer, frames)
    gradient = sobel_magnitude(frames).reshape(-1).double()
    mask = edge_mask(frames, 0.1)
    expected = float(gradient[mask].mean() / gradient[~mask].mean())
    assert scores["edge_contribution_ratio"] == pytest.approx(expected, rel=1e-5)
    assert scores["edge_contribution_ratio"] > 10


def test_uniform_contribution_has_ratio_one() -> None:
    scores = _run(torch.ones(N, 1, H, W), _square())
    assert scores["edge_contribution_ratio"] == pytest.approx(1.0)


def test_smoothed_intensity_errs_on_edges() -> None:
    frames = _square()
    blurred = torch.from_numpy(ndimage.gaussian_filter(intensity(frames).numpy(), sigma=(0, 2, 2)))
    scores = _run(_weights() * blurred[None], frames)
    assert scores["edge_error_ratio"] > 5  # a blurred copy of I departs from I only near edges


def test_shuffled_control_lands_near_chance() -> None:
    frames = _square()
    canvas = Canvas(layers={"layer": _weights() * sobel_magnitude(frames)[None]}, frames=frames)
    control = load_task("edges").run(shuffle_canvas(canvas, seed=1)).scores
    plt.close("all")
    assert control["edge_contribution_ratio"] == pytest.approx(1.0, abs=0.25)


def test_flat_signal_and_zero_canvas_are_nan_without_warnings() -> None:
    flat = _run(torch.rand(N, 1, H, W), torch.full((1, H, W, 3), 0.3))
    assert math.isnan(flat["edge_error_ratio"]) and math.isnan(flat["edge_contribution_ratio"])
    zero = _run(torch.zeros(N, 1, H, W), _square())
    assert math.isnan(zero["edge_contribution_ratio"])
    every_pixel = torch.ones(H * W, dtype=torch.bool)
    every_pixel_an_edge = layer_edges(torch.rand(1, H, W, dtype=torch.float64), _square(), every_pixel)
    assert math.isnan(every_pixel_an_edge["edge_error_ratio"])


def test_task_declares_every_headline_metric() -> None:
    scores = _run(torch.rand(1, 2, H, W), torch.rand(2, H, W, 3))  # one neuron, two frames
    assert set(load_task("edges").metrics) <= set(scores)


def _evidence(canvas: Canvas, draws: int = 20) -> tuple[dict[str, float], dict[str, dict]]:
    """Scores and their pixel-permutation null summaries, as a record stores them."""
    task = load_task("edges")
    result = task.run(canvas, null_draws=draws)
    plt.close("all")
    values, nulls, _ = score_evidence(result.scores, result.nulls, result.absent,
                                      {name: m.null for name, m in task.metrics.items()})
    return values, nulls


def test_mass_on_edges_lies_far_above_its_null() -> None:
    frames = _square()
    _, nulls = _evidence(Canvas(layers={"layer": _weights() * sobel_magnitude(frames)[None]}, frames=frames))
    summary = nulls["edge_contribution_ratio"]
    assert summary["model"] == "pixel_permutation"
    assert summary["effect_size"] > 5 and summary["p_value"] == pytest.approx(1 / 21)  # the floor 1 / (D + 1)
    assert summary["mean"] == pytest.approx(1.0, abs=0.3)  # a random pixel set of the edges' size


def test_maps_unrelated_to_edges_sit_at_their_null() -> None:
    generator = torch.Generator().manual_seed(4)
    _, nulls = _evidence(Canvas(layers={"layer": torch.rand(N, 1, H, W, generator=generator)}, frames=_square()))
    for metric in ("edge_contribution_ratio", "edge_error_ratio"):
        assert abs(nulls[metric]["effect_size"]) < 3, metric


def test_constant_contribution_is_its_own_null() -> None:
    """A structureless S: every draw gives the observed error ratio (no effect), though the image has edges."""
    values, nulls = _evidence(Canvas(layers={"layer": torch.full((N, 1, H, W), 0.3)}, frames=_square()))
    assert values["edge_error_ratio"] > 1.5  # minmax(S) = 0, so D = minmax(I), larger on the square's border
    assert nulls["edge_error_ratio"]["mean"] == pytest.approx(values["edge_error_ratio"], rel=1e-9)


def _video() -> Canvas:
    generator = torch.Generator().manual_seed(6)
    frames = _square().repeat(3, 1, 1, 1)
    frames[1] = torch.roll(frames[1], 3, dims=1)  # the square moves: each frame has its own edges
    frames[2] = torch.rand(H, W, 3, generator=generator)
    layer = _weights() * sobel_magnitude(frames)[None] + torch.rand(N, 3, H, W, generator=generator)
    return Canvas(layers={"layer": layer}, frames=frames)


def test_null_draws_are_the_scores_of_the_permuted_signal() -> None:
    """Each draw is the score of the frames with their pixels permuted within frames, computed directly."""
    canvas = _video()
    draws = 4
    nulls = load_task("edges").run(canvas, null_draws=draws).nulls["pixel_permutation"]
    plt.close("all")
    mask = edge_mask(canvas.frames, 0.1)
    order = frame_permutations(canvas.shape, draws, generator(0))
    total = canvas.layer("layer").abs().sum(dim=0, dtype=torch.float64)
    per_frame = mask.reshape(3, -1).sum(dim=1)
    for d in range(draws):
        permuted = mask[order[d]]
        assert torch.equal(permuted.reshape(3, -1).sum(dim=1), per_frame)  # each frame keeps its edge count
        frames = canvas.frames.reshape(-1, 3)[order[d]].reshape(canvas.frames.shape)  # I moves with the mask
        expected = layer_edges(total, frames, permuted)
        for metric, value in expected.items():
            assert nulls[f"layer/{metric}"][d] == pytest.approx(value, rel=1e-9), metric
            assert nulls[metric][d] == nulls[f"layer/{metric}"][d]


def test_null_draws_are_seeded_chunk_independent_and_optional() -> None:
    canvas = _video()
    task = load_task("edges")
    whole = task.run(canvas, null_draws=5)
    again = task.run(canvas, null_draws=5).nulls
    other_seed = task.run(canvas, null_draws=5, null_seed=1).nulls
    none = task.run(canvas, null_draws=0)
    canvas.chunk_bytes = 1  # one frame per chunk
    chunked = task.run(canvas, null_draws=5).nulls["pixel_permutation"]
    plt.close("all")
    draws = whole.nulls["pixel_permutation"]
    assert again == whole.nulls and len(draws["edge_contribution_ratio"]) == 5
    assert other_seed["pixel_permutation"]["edge_contribution_ratio"] != draws["edge_contribution_ratio"]
    assert none.nulls == {} and none.scores == whole.scores
    assert chunked.keys() == draws.keys()
    for name, values in draws.items():
        assert chunked[name] == pytest.approx(values, rel=1e-9), name


def test_flat_signal_scores_are_absent_with_the_reason() -> None:
    flat = torch.full((1, H, W, 3), 0.3)
    result = load_task("edges").run(Canvas(layers={"layer": torch.rand(N, 1, H, W)}, frames=flat))
    plt.close("all")
    assert set(result.absent) == set(result.scores)
    assert all("no edge pixels" in reason for reason in result.absent.values())
