"""Gated and residual INRs: the mfn-33k preset through the runner, and the ablation tracer on them.

The layers after an ablated one may combine its output with tensors computed beside it (a sine
filter of the coordinates in a multiplicative filter network, the skip of a residual block);
the ablation tracer must still give each neuron's exact counterfactual, which the tests compute
by hand, one neuron at a time, with forwards written out explicitly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

import xinc_bench.canvas.ablation  # noqa: F401  (registers the tracer)
from xinc_bench.canvas import Canvas, read_canvas
from xinc_bench.canvas.compute import compute_canvas
from xinc_bench.checkpoints import load_checkpoint
from xinc_bench.data.signal import Signal
from xinc_bench.inrs import count_parameters, create_inr, inr_info
from xinc_bench.inrs.base import image_coordinates
from xinc_bench.inrs.mfn import FourierMFN
from xinc_bench.probes.base import load_task
from xinc_bench.runs import RunDir, UnitSpec, run_unit

SIZE = (16, 32)
STEPS = 30
FFN_PARAMETERS = 32_971

#: an explicit forward of a model with input unit ``neuron`` of layer ``layer`` zeroed: ``[P, D] -> [P, 3]``
Ablated = Callable[[torch.Tensor, str, int], torch.Tensor]


def brute_force_canvas(model: nn.Module, forward: Ablated, layers: dict[str, list[int]], shape: tuple) -> dict:
    """``layer -> [k, T, H, W]`` maps ``sum_rgb [out - out with the neuron zeroed]``, one forward per neuron."""
    coords = image_coordinates(*shape[1:])
    with torch.no_grad():
        base = model(coords)
        return {
            layer: torch.stack([(base - forward(coords, layer, n)).sum(dim=-1).reshape(shape) for n in neurons])
            for layer, neurons in layers.items()
        }


def zeroed(x: torch.Tensor, name: str, layer: str, neuron: int) -> torch.Tensor:
    """``x`` with column ``neuron`` zeroed when ``name`` is the ablated layer (a copy), else ``x``."""
    if name != layer:
        return x
    x = x.clone()
    x[:, neuron] = 0.0
    return x


def mfn_ablated(model: FourierMFN) -> Ablated:
    """z_1 = g_1(x), z_{i+1} = (W_i z_i + b_i) * g_{i+1}(x), out = W z + b, written out with one unit zeroed."""

    def forward(coords: torch.Tensor, layer: str, neuron: int) -> torch.Tensor:
        z = model.filters[0](coords)
        for i, linear in enumerate(model.linears[:-1]):
            z = linear(zeroed(z, f"linears.{i}", layer, neuron)) * model.filters[i + 1](coords)
        last = len(model.linears) - 1
        return model.linears[last](zeroed(z, f"linears.{last}", layer, neuron))

    return forward


@pytest.fixture(scope="module")
def mfn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Canvas, dict]:
    """mfn-33k fitted for a few steps by the runner, with the faithfulness task: run folder, canvas, result."""
    run = RunDir(tmp_path_factory.mktemp("mfn") / "run")
    spec = UnitSpec(model="mfn-33k", data="astronaut", size=SIZE, steps=STEPS, tasks=("faithfulness",), null_draws=5,
                    save_canvas=True)  # the tests read the canvas
    result = run_unit(spec, run.path)
    return run.path, read_canvas(run.canvas), result


def test_mfn_33k_is_registered_at_the_ffn_budget() -> None:
    info = inr_info("mfn-33k")
    assert (info.family, info.signal_kind, info.input_kind, info.tracer) == ("mfn", "image", "coords", "mlp")
    model = create_inr("mfn-33k", height=SIZE[0], width=SIZE[1])
    assert count_parameters(model) == 33_051
    assert abs(count_parameters(model) - FFN_PARAMETERS) <= 0.01 * FFN_PARAMETERS
    assert len(model.filters) == 4 and len(model.linears) == 4


def test_mfn_33k_fits_and_its_canvas_is_exact(mfn_run: tuple) -> None:
    _, canvas, result = mfn_run
    assert result.fidelity["psnr"] > 20.0  # 28 dB here; the image's mean colour scores 11.5 dB
    assert canvas.metadata["tracer"] == "mlp"
    assert canvas.layer_names == ["layer1", "layer2", "layer3", "layer4"]
    assert all(canvas.layer_shape(name)[0] == 102 for name in canvas.layer_names)
    assert canvas.metadata["checks"]["output_sum_max_rel_error"] < 1e-5
    torch.testing.assert_close(canvas.layer("layer4").sum(dim=0), canvas.recon.sum(dim=-1), rtol=0, atol=1e-5)


def test_mfn_hook_tracer_gives_the_mlp_canvas_under_module_names(mfn_run: tuple) -> None:
    run_dir, canvas, _ = mfn_run
    model, _ = load_checkpoint(run_dir, *SIZE)
    linear = compute_canvas(model.eval(), Signal(frames=canvas.frames, name="astronaut"), "linear")
    assert linear.layer_names == ["linears.0", "linears.1", "linears.2", "linears.3"]
    checks = linear.metadata["checks"]
    assert checks["output_sum_max_rel_error"] < 1e-5 and checks["layer_sum_max_rel_error"] < 1e-5
    assert checks["untraced_modules"] == ["filters.0", "filters.1", "filters.2", "filters.3"]
    for index, name in enumerate(linear.layer_names):
        torch.testing.assert_close(linear.layer(name), canvas.layer(f"layer{index + 1}"), rtol=0, atol=1e-5)


def test_mfn_ablation_canvas_is_the_brute_force_ablation(mfn_run: tuple) -> None:
    run_dir, canvas, _ = mfn_run
    model, _ = load_checkpoint(run_dir, *SIZE)
    model.eval()
    shape = (1, *SIZE)
    ablation = compute_canvas(model, Signal(frames=canvas.frames, name="astronaut"), "ablation", chunk_size=2048)
    assert ablation.layer_names == ["linears.0", "linears.1", "linears.2", "linears.3"]
    checks = ablation.metadata["checks"]
    assert checks["replica_max_rel_error"] < 1e-5 and checks["repeated_layers"] == []
    assert checks["untraced_modules"] == ["filters.0", "filters.1", "filters.2", "filters.3"]
    neurons = [0, 37, 101]
    expected = brute_force_canvas(model, mfn_ablated(model), dict.fromkeys(ablation.layer_names, neurons), shape)
    for name, maps in expected.items():
        scale = float(maps.abs().max())
        assert float((ablation.layer(name)[neurons] - maps).abs().max()) <= 1e-5 * max(scale, 1.0)


def test_faithfulness_task_runs_on_mfn(mfn_run: tuple) -> None:
    run_dir, canvas, result = mfn_run
    assert result.records_written == ["faithfulness"] and result.skipped == {}
    scores = json.loads(RunDir(run_dir).record("faithfulness").read_text())["scores"]
    assert all(math.isfinite(scores[f"{name}/ablation_correlation"]) for name in canvas.layer_names)
    # the output layer's canvas is its ablation plus the bias share: a shift, so a signed correlation of 1
    assert scores["layer4/signed_correlation"] == pytest.approx(1.0, abs=1e-5)
    model, _ = load_checkpoint(run_dir, *SIZE)
    direct = load_task("faithfulness").run(canvas, null_draws=0, model=model.eval())
    assert direct.scores["layer4/signed_correlation"] == pytest.approx(scores["layer4/signed_correlation"], abs=1e-6)


class ResidualINR(nn.Module):
    """``h_1 = sin(3 W_0 x + b_0)``, ``h_{i+1} = h_i + sin(W_i h_i + b_i)``, ``out = W h + b``.

    ``in_place`` adds the residual with ``h += ...``: a masked value written into a tensor
    computed before the ablated layer, which vmap cannot batch, so the tracer re-runs the
    forward on repeated inputs for those layers.
    """

    def __init__(self, width: int = 6, blocks: int = 2, in_place: bool = False) -> None:
        super().__init__()
        self.in_place = in_place
        self.first = nn.Linear(2, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.last = nn.Linear(width, 3)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = torch.sin(3.0 * self.first(coords))
        for block in self.blocks:
            if self.in_place:
                h += torch.sin(block(h))
            else:
                h = h + torch.sin(block(h))
        return self.last(h)


def residual_ablated(model: ResidualINR) -> Ablated:
    def forward(coords: torch.Tensor, layer: str, neuron: int) -> torch.Tensor:
        h = torch.sin(3.0 * model.first(zeroed(coords, "first", layer, neuron)))
        for i, block in enumerate(model.blocks):
            h = h + torch.sin(block(zeroed(h, f"blocks.{i}", layer, neuron)))
        return model.last(zeroed(h, "last", layer, neuron))

    return forward


@pytest.mark.parametrize(("in_place", "repeated"), [(False, []), (True, ["blocks.0", "blocks.1"])])
def test_residual_inr_ablation_is_the_brute_force_ablation(in_place: bool, repeated: list[str]) -> None:
    torch.manual_seed(3)
    model = ResidualINR(in_place=in_place).eval()
    shape = (1, 8, 16)
    frames = torch.rand(*shape, 3, generator=torch.Generator().manual_seed(1))
    # 40 pixels per chunk: chunk seams inside the image, and a last chunk shorter than the others
    canvas = compute_canvas(model, Signal(frames=frames, name="noise"), "ablation", chunk_size=40 * 16)
    assert canvas.layer_names == ["first", "blocks.0", "blocks.1", "last"]
    assert canvas.metadata["checks"]["repeated_layers"] == repeated
    assert canvas.metadata["checks"]["replica_max_rel_error"] < 1e-5
    layers = {name: list(range(canvas.layer_shape(name)[0])) for name in canvas.layer_names}
    expected = brute_force_canvas(model, residual_ablated(model), layers, shape)
    for name, maps in expected.items():
        assert float((canvas.layer(name) - maps).abs().max()) <= 1e-5
