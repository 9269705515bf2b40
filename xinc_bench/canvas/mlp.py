"""The MLP canvas (SPEC 4.1, after the XINC reference implementation).

For target Linear ``l`` with weight ``W[K, N]``, bias ``b[K]`` and source activations ``a_j(p)``,
neuron ``j`` contributes ``c_jk(p) = a_j(p) W[k, j] + b[k] / N`` to target unit ``k``. Its map is

* the signed sum over RGB for the last layer: ``C_j(p) = a_j(p) sum_k W[k, j] + sum_k b[k] / N``;
* ``ReLU(sum_k c_jk(p))`` for earlier layers (variant ``xinc``, the reference rule that defines
  the golden values), or the same sum without the ReLU (variant ``signed``, see SPEC 8.7).

Both are a per-neuron affine map of the activations, so the canvas costs one forward pass plus
an element-wise product; pixels are processed in chunks written straight into the output. A
window of frames (:attr:`~xinc_bench.canvas.tracer.TraceJob.frames`) traces the coordinates of
those frames only.

Complex networks (WIRE). Hidden activations ``a_j`` and the weights ``W``, ``b`` of every Linear
after the first are complex, and the network emits the real part of its last Linear. A
contribution is the part of the *real* output the neuron accounts for:

    c_jk(p) = Re(a_j(p) W[k, j]) + Re(b[k]) / N

For the last layer this sums over ``j`` to ``Re(sum_j a_j W[k, j] + b[k])``, the output, so the
exactness check holds unchanged. Earlier layers take the real part of the summed complex
contribution, ``Re(sum_k a_j W[k, j] + b[k] / N)``, then the ReLU rule (or none, ``signed``).
Real networks are the special case with zero imaginary parts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import XincError
from ..inrs.base import signal_coordinates
from ..registry import TRACERS
from .tracer import TraceJob, Tracer, select_canvas_layers


def _require_trace(model: nn.Module) -> None:
    if not callable(getattr(model, "trace", None)) or not hasattr(model, "linears"):
        raise XincError(
            f"the MLP tracer needs a model with `linears` and a trace(coords) method "
            f"({type(model).__name__} lacks them); "
            "use --tracer linear or --tracer ablation for other models"
        )


def rgb_contributions(inputs: torch.Tensor, target: nn.Module) -> torch.Tensor:
    """Per-output real contributions ``c[N, K, P]`` of the ``[P, N]`` source activations to ``target``.

    ``target`` has ``weight[K, N]`` and ``bias[K]`` (or None), real or complex (module docstring).
    """
    weight, bias = target.weight, target.bias
    num_neurons = weight.shape[1]
    share = bias / num_neurons if bias is not None else torch.zeros_like(weight[:, 0])
    return _real(torch.einsum("pn,kn->nkp", inputs.to(weight.dtype), weight) + share[None, :, None])


def _real(values: torch.Tensor) -> torch.Tensor:
    """The real part of complex contributions; real ones unchanged."""
    return values.real if values.is_complex() else values


class MLPTracer(Tracer):
    """SPEC 4.1 for models exposing ``trace(coords) -> MLPTrace`` (the MLP zoo).

    Args:
        signed: if True, earlier layers are not passed through ReLU (the ``mlp-signed`` tracer).
    """

    def __init__(self, signed: bool = False) -> None:
        self.signed = signed

    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        _require_trace(model)
        counts = {f"layer{i + 1}": linear.in_features for i, linear in enumerate(model.linears)}
        return select_canvas_layers(model, counts, "mlp")

    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill the window's canvas ``chunk_size`` pixels at a time; checks ``output_sum_max_rel_error``.

        Only the coordinates of the window's frames are built and traced.
        """
        coords = signal_coordinates(*job.shape, frames=job.window)
        rows = {name: torch.from_numpy(array.reshape(array.shape[0], -1)) for name, array in job.canvas.items()}
        recon = torch.from_numpy(job.recon.reshape(-1, 3))
        worst_error = 0.0
        for start in range(0, coords.shape[0], job.chunk_size):
            stop = min(start + job.chunk_size, coords.shape[0])
            result = model.trace(coords[start:stop])
            recon[start:stop] = result.output
            job.advance(stop - start)
            last = len(result.targets) - 1
            for index, (inputs, target) in enumerate(zip(result.inputs, result.targets)):
                if index == last:
                    worst_error = max(worst_error, self._last_layer_error(inputs, target, result.output))
                name = f"layer{index + 1}"
                if name in rows:
                    write_contributions(inputs, target, rows[name][:, start:stop], relu=index != last and not self.signed)
        return {"output_sum_max_rel_error": worst_error}

    @staticmethod
    def _last_layer_error(inputs: torch.Tensor, target: nn.Module, output: torch.Tensor) -> float:
        """Relative max error of the last layer's maps summed over neurons against the output summed over RGB.

        ``sum_j C_j(p) = Re(a(p) . sum_k W[k] + sum_k b[k])`` (the exactness check, as the generic
        tracers report it); one matrix-vector product, where the model sums each RGB row first.
        """
        weight_sum = target.weight.sum(dim=0)
        totals = inputs.to(weight_sum.dtype) @ weight_sum
        if target.bias is not None:
            totals = totals + target.bias.sum()
        rgb = output.sum(dim=-1)
        scale = rgb.abs().max().clamp(min=1e-12)
        return float((_real(totals) - rgb).abs().max() / scale)


#: pixels whose contributions are transposed into the canvas at once: ``[pixels, N]`` stays in
#: cache, and a transposed copy of more pixels runs at half the speed
TRANSPOSE_PIXELS = 2048


def write_contributions(inputs: torch.Tensor, target: nn.Module, out: torch.Tensor, relu: bool) -> None:
    """Write the maps ``out[N, P]`` of the ``[P, N]`` source activations of ``target`` (module docstring).

    ``C_j(p) = Re(a_j(p) sum_k W[k, j] + sum_k b[k] / N)``, passed through ReLU if ``relu``. The
    maps are computed ``TRANSPOSE_PIXELS`` pixels at a time as ``[pixels, N]`` (one fused
    multiply-add for real networks) and copied transposed into ``out``, a view of the canvas.
    """
    weight_sum = target.weight.sum(dim=0)
    num_neurons = inputs.shape[1]
    bias_share = target.bias.sum() / num_neurons if target.bias is not None else weight_sum.new_zeros(())
    real = not (inputs.is_complex() or weight_sum.is_complex())
    scratch = inputs.new_empty(min(TRANSPOSE_PIXELS, inputs.shape[0]), num_neurons) if real else None
    for first in range(0, inputs.shape[0], TRANSPOSE_PIXELS):
        block = inputs[first : first + TRANSPOSE_PIXELS]
        if scratch is not None:
            values = torch.addcmul(bias_share, block, weight_sum, out=scratch[: len(block)])
        else:
            values = _real(block.to(weight_sum.dtype) * weight_sum + bias_share)
        if relu:
            values.clamp_(min=0.0)
        out[:, first : first + len(block)].copy_(values.T)


TRACERS.add("mlp", MLPTracer(signed=False), description="SPEC 4.1 reference rule (ReLU on earlier layers)")
TRACERS.add("mlp-signed", MLPTracer(signed=True), description="SPEC 4.1 without the ReLU on earlier layers")
