"""The color probe on constructed canvases whose answers are known in advance."""

from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.probes.base import load_task
from xinc_bench.probes.color import layer_color
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.features import intensity

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
