"""The MLP canvas of complex-valued WIRE networks.

Convention (xinc_bench.canvas.mlp): a neuron's contribution is its share of the real output,
``c_jk = Re(a_j W[k, j]) + Re(b[k]) / N``; earlier layers take the real part of the summed
complex contribution, then the ReLU rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xinc_bench.data.images  # noqa: F401  (registers the skimage sources)
from xinc_bench.canvas.compute import compute_canvas
from xinc_bench.canvas.mlp import rgb_contributions
from xinc_bench.data.signal import Signal
from xinc_bench.inrs.base import count_parameters, signal_coordinates
from xinc_bench.inrs.mlp import ComplexLinear, WireMLP
from xinc_bench.registry import DATA_SOURCES

HEIGHT, WIDTH = 16, 32


@pytest.fixture(scope="module")
def image() -> Signal:
    return DATA_SOURCES.get("astronaut")((HEIGHT, WIDTH))


@pytest.fixture(scope="module")
def trained_wire(image: Signal) -> WireMLP:
    torch.manual_seed(0)
    model = WireMLP(hidden_width=24, hidden_layers=2)
    coords = signal_coordinates(1, HEIGHT, WIDTH)
    target = image.frames.reshape(-1, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=model.default_lr)
    for _ in range(20):
        optimiser.zero_grad()
        torch.mean((model(coords) - target) ** 2).backward()
        optimiser.step()
    return model


def _complex_linear(weight: list[list[complex]], bias: list[complex]) -> ComplexLinear:
    w = torch.tensor(weight, dtype=torch.complex64)
    b = torch.tensor(bias, dtype=torch.complex64)
    linear = ComplexLinear(w.shape[1], w.shape[0])
    with torch.no_grad():
        linear.weight_real.copy_(w.real)
        linear.weight_imag.copy_(w.imag)
        linear.bias_real.copy_(b.real)
        linear.bias_imag.copy_(b.imag)
    return linear


def test_contributions_by_hand() -> None:
    # a = (j, 2), W = (j, 1), b = 1 + j: Re(j * j) + 1/2 = -0.5 and Re(2 * 1) + 1/2 = 2.5;
    # the output is Re(j * j + 2 + 1 + j) = 2.
    linear = _complex_linear([[1j, 1.0]], [1 + 1j])
    inputs = torch.tensor([[1j, 2.0]], dtype=torch.complex64)
    contributions = rgb_contributions(inputs, linear)
    assert contributions.dtype == torch.float32
    torch.testing.assert_close(contributions[:, 0, 0], torch.tensor([-0.5, 2.5]))
    assert linear(inputs).real.item() == pytest.approx(contributions.sum().item())


def test_complex_weights_count_twice() -> None:
    assert count_parameters(ComplexLinear(4, 3)) == 2 * (4 * 3 + 3)


def test_output_is_the_real_part_of_the_last_linear(trained_wire: WireMLP) -> None:
    coords = signal_coordinates(1, HEIGHT, WIDTH)
    with torch.no_grad():
        result = trained_wire.trace(coords)
        complex_output = trained_wire.linears[-1](result.inputs[-1])
    assert not result.output.is_complex()
    assert all(inputs.is_complex() for inputs in result.inputs[1:])
    torch.testing.assert_close(result.output, complex_output.real)


def test_wire_contributions_sum_to_the_output(trained_wire: WireMLP, image: Signal) -> None:
    canvas = compute_canvas(trained_wire, image, "mlp")
    assert canvas.metadata["checks"]["output_sum_max_rel_error"] < 1e-5
    torch.testing.assert_close(canvas.layer("layer4").sum(dim=0), canvas.recon.sum(dim=-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("tracer", ["mlp", "mlp-signed"])
def test_wire_canvas_follows_the_convention(trained_wire: WireMLP, image: Signal, tracer: str) -> None:
    canvas = compute_canvas(trained_wire, image, tracer)
    coords = signal_coordinates(1, HEIGHT, WIDTH)
    with torch.no_grad():
        result = trained_wire.trace(coords)
    last = len(result.targets) - 1
    assert canvas.layer_names == ["layer2", "layer3", "layer4"]
    for index in (1, 2, 3):
        a = result.inputs[index].numpy().astype(np.complex128)  # [P, N]
        target = result.targets[index]
        weight = target.weight.detach().numpy().astype(np.complex128)  # [K, N]
        bias = target.bias.detach().numpy().astype(np.complex128)  # [K]
        expected = (a * weight.sum(axis=0) + bias.sum() / a.shape[1]).real.T  # [N, P]
        if index != last and tracer == "mlp":
            expected = np.maximum(expected, 0.0)
        actual = canvas.layer(f"layer{index + 1}").reshape(a.shape[1], -1).numpy()
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("generic", "dedicated"), [("linear", "mlp"), ("linear-signed", "mlp-signed")])
def test_generic_hook_tracer_equals_the_dedicated_wire_canvas(trained_wire: WireMLP, image: Signal, generic: str,
                                                              dedicated: str) -> None:
    hooks = compute_canvas(trained_wire, image, generic)
    mlp = compute_canvas(trained_wire, image, dedicated)
    assert hooks.layer_names == ["linears.0", "linears.1", "linears.2", "linears.3"]  # linears.0: the coordinates
    for k in (2, 3, 4):
        torch.testing.assert_close(hooks.layer(f"linears.{k - 1}"), mlp.layer(f"layer{k}"), rtol=0, atol=1e-5)


def test_wire_ablation_of_the_last_layer_is_the_linear_canvas_without_its_bias_share(
    trained_wire: WireMLP, image: Signal
) -> None:
    # Zeroing neuron j of the last (complex) layer removes exactly Re(a_j sum_k W[k, j]) from the
    # real output summed over RGB; the linear canvas adds the bias share Re(sum_k b[k]) / N to it.
    ablation = compute_canvas(trained_wire, image, "ablation")
    linear = compute_canvas(trained_wire, image, "linear")
    last = trained_wire.linears[-1]
    bias_share = float(last.bias.detach().real.sum()) / last.in_features
    torch.testing.assert_close(ablation.layer("linears.3"), linear.layer("linears.3") - bias_share, rtol=0, atol=1e-5)
