"""The MLP canvas tracer (SPEC 4.1): maps written block by block into the canvas, and its exactness check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xinc_bench.canvas.mlp as mlp
from xinc_bench.inrs.base import create_inr, signal_coordinates
from xinc_bench.inrs.mlp import FourierFeatureMLP
from xinc_bench.registry import TRACERS

SHAPE = (1, 48, 96)  # 4,608 pixels: more than one block of mlp.TRANSPOSE_PIXELS


def trace(tracer: str, model: torch.nn.Module, chunk_size: int) -> tuple[dict[str, np.ndarray], dict]:
    counts = TRACERS.get(tracer).layers(model, SHAPE)
    arrays = {name: np.full((count, *SHAPE), np.nan, np.float32) for name, count in counts.items()}
    checks = TRACERS.get(tracer).trace(model, SHAPE, arrays, np.empty((*SHAPE, 3), np.float32), chunk_size)
    return arrays, checks


@pytest.mark.parametrize("tracer", ["mlp", "mlp-signed"])
@pytest.mark.parametrize("chunk_size", [16384, 1000])
def test_maps_are_the_formula_over_blocks_and_chunk_seams(tracer: str, chunk_size: int) -> None:
    assert SHAPE[1] * SHAPE[2] > mlp.TRANSPOSE_PIXELS
    torch.manual_seed(0)
    model = create_inr("ffn-paper", height=SHAPE[1], width=SHAPE[2]).eval()
    arrays, checks = trace(tracer, model, chunk_size)
    with torch.no_grad():
        result = model.trace(signal_coordinates(*SHAPE))
    last = len(result.targets) - 1
    for index, (inputs, target) in enumerate(zip(result.inputs, result.targets)):
        expected = inputs * target.weight.sum(dim=0) + target.bias.sum() / inputs.shape[1]
        if index != last and tracer == "mlp":
            expected = expected.clamp(min=0.0)
        ours = torch.from_numpy(arrays[f"layer{index + 1}"]).reshape(inputs.shape[1], -1)
        torch.testing.assert_close(ours, expected.T, atol=1e-6, rtol=1e-6)
    assert checks["output_sum_max_rel_error"] < 1e-5


class DriftingFFN(FourierFeatureMLP):
    """An FFN whose trace hands the last layer activations 1 % off those that made its output."""

    def trace(self, coords: torch.Tensor):
        result = super().trace(coords)
        result.inputs[-1] = result.inputs[-1] * 1.01
        return result


def test_the_exactness_check_catches_activations_that_do_not_make_the_output() -> None:
    torch.manual_seed(0)
    _, honest = trace("mlp", FourierFeatureMLP(mapping_size=16, hidden_width=12).eval(), 1000)
    torch.manual_seed(0)
    _, drifting = trace("mlp", DriftingFFN(mapping_size=16, hidden_width=12).eval(), 1000)
    assert honest["output_sum_max_rel_error"] < 1e-5
    assert drifting["output_sum_max_rel_error"] > 1e-3
