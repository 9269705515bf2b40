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
from xinc_bench.probes.features import intensity, sobel_magnitude

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
