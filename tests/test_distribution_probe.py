"""The distribution probe on constructed canvases whose answers are known in advance."""

from __future__ import annotations

import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.probes.base import load_task
from xinc_bench.probes.distribution import (
    contribution_threshold,
    gini,
    layer_distribution,
    layer_thresholds,
    streamed_thresholds,
)

N, H, W = 8, 16, 32


def _run(layer: torch.Tensor) -> dict[str, float]:
    canvas = Canvas(layers={"layer": layer}, frames=torch.zeros(layer.shape[1], H, W, 3))
    return load_task("distribution").run(canvas).scores


def test_single_neuron_holds_every_pixel() -> None:
    layer = torch.zeros(N, 1, H, W)
    layer[3] = torch.rand(1, H, W) + 0.5
    scores = _run(layer)
    assert scores["top_neuron_dominance"] == 1.0
    assert scores["gini"] == pytest.approx((N - 1) / N)
    assert scores["neurons_per_pixel_a0.1"] == pytest.approx(1 / N)
    assert scores["pixels_per_neuron"] == 0.0  # 7 of 8 neurons own no pixel
    assert scores["layer/zero_maps"] == N - 1


def test_uniform_canvas_is_fully_distributed() -> None:
    scores = _run(torch.ones(N, 1, H, W))
    assert scores["gini"] == pytest.approx(0.0, abs=1e-6)
    assert scores["top_neuron_dominance"] == 0.0
    assert scores["pixels_per_neuron"] == 0.0  # shares equal 1/N exactly, never above it


def test_each_neuron_owns_one_block() -> None:
    layer = torch.zeros(N, 1, H, W)
    for n in range(N):
        layer[n, 0, :, n * (W // N) : (n + 1) * (W // N)] = 1.0
    scores = _run(layer)
    assert scores["top_neuron_dominance"] == 1.0
    assert scores["pixels_per_neuron"] == pytest.approx(1 / N)
    assert scores["neurons_per_pixel_a0.5"] == 0.0  # the threshold equals every owner's value: none exceed it


def test_all_zero_canvas_is_defined() -> None:
    scores = _run(torch.zeros(N, 2, H, W))
    assert all(value == value for value in scores.values())  # no NaN
    assert scores["gini"] == 0.0 and scores["layer/zero_maps"] == N


def test_threshold_holds_the_requested_mass() -> None:
    values = torch.tensor([5.0, 3.0, 1.0, 1.0]).numpy()
    assert contribution_threshold(values, 0.5) == 5.0  # 5 of 10 reaches half
    assert contribution_threshold(values, 0.1) == 1.0  # 9 of 10 needs 5+3+1


def test_gini_matches_definition() -> None:
    shares = torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    assert float(gini(shares)) == pytest.approx(0.75)


def _canvas(layer: torch.Tensor, chunk_bytes: int = 1 << 30) -> Canvas:
    return Canvas(layers={"layer": layer}, frames=torch.zeros(layer.shape[1], H, W, 3), chunk_bytes=chunk_bytes)


def test_neuron_order_and_scale_invariance() -> None:
    torch.manual_seed(0)
    layer = torch.rand(N, 1, H, W) ** 4
    base = layer_distribution(_canvas(layer), "layer", [0.1, 0.5])
    permuted = layer_distribution(_canvas(layer[torch.randperm(N)] * 7.5), "layer", [0.1, 0.5])
    for key, value in base.items():
        assert permuted[key] == pytest.approx(value, rel=1e-5, abs=1e-6)


def _threshold_layers() -> dict[str, torch.Tensor]:
    """Random layers ``[N, 6, H, W]`` with ties, zeros, adjacent floats and a heavy tail."""
    generator = torch.Generator().manual_seed(5)
    shape = (N, 6, H, W)
    kept = torch.rand(shape, generator=generator) > 0.2
    ulp = 2.0**-23  # neighbouring float32 values just above 1 differ in their last bit only
    return {
        "ties": torch.randint(0, 5, shape, generator=generator) * 0.25,
        "adjacent floats": 1.0 + torch.randint(0, 4, shape, generator=generator) * ulp,
        "sparse": torch.randn(shape, generator=generator) * (torch.rand(shape, generator=generator) > 0.7),
        "heavy tail": (4 * torch.randn(shape, generator=generator)).exp() * kept,
        "subnormal": torch.rand(shape, generator=generator) * 1e-39,
        "one giant": torch.rand(shape, generator=generator).index_put_((torch.tensor(0),) * 4, torch.tensor(1e30)),
    }


@pytest.mark.parametrize("kind", list(_threshold_layers()))
def test_streamed_threshold_is_the_sorted_one(kind: str) -> None:
    layer = _threshold_layers()[kind]
    alphas = [0.05, 0.1, 0.3, 0.5, 0.9, 0.999, 1.0]  # not 0: the entry reaching the whole total is set by rounding
    expected = {a: contribution_threshold(layer.abs().numpy(), a) for a in alphas}
    streamed = _canvas(layer, chunk_bytes=1)  # one frame per chunk
    assert streamed.frames_per_chunk("layer") < layer.shape[1]
    assert streamed_thresholds(streamed, "layer", alphas) == expected
    assert layer_thresholds(streamed, "layer", alphas) == expected
    assert layer_thresholds(_canvas(layer), "layer", alphas) == expected  # one chunk: sorted


def test_streamed_threshold_of_an_all_zero_layer_is_zero() -> None:
    layer = torch.zeros(N, 3, H, W)
    assert streamed_thresholds(_canvas(layer, chunk_bytes=1), "layer", [0.1, 0.5]) == {0.1: 0.0, 0.5: 0.0}
