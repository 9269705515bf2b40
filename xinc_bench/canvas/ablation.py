"""The ablation tracer: exact counterfactual contributions for any INR (SPEC 4.3).

The contribution of neuron ``n`` to pixel ``p`` is ``sum_rgb [out(p) - out(p with n zeroed)]``
(signed). Neurons are the input units of the model's ``nn.Linear`` / ``nn.Conv2d`` modules,
as for the ``linear`` tracer (:mod:`xinc_bench.canvas.hooks`), and layers carry the same
names. Zeroing neuron ``n`` of layer ``l`` means zeroing input unit ``n`` of module ``l``
only: another use of the same tensor (a skip connection) keeps it, so the counterfactual
measures what flows through ``l``, the quantity the linear decomposition estimates.

Neurons are ablated in batches: a forward pre-hook on the layer replaces its input
``x[R, ...]`` by ``k`` stacked copies ``[k * R, ...]``, copy ``i`` with neuron ``n_i`` zeroed,
and the rest of the network runs once on the stacked batch. This needs the network after
the layer to treat batch rows independently; the tracer checks it before tracing by running
an unmasked copy beside a fully zeroed one: it must reproduce the plain output. A model that combines the layer's
output with a tensor computed before it (a skip connection, for more than one row) cannot
run on the stacked batch and raises a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import XincError
from ..registry import TRACERS
from .hooks import PixelGrid, TracedLayer, run_forward, survey_model
from .tracer import TraceJob, Tracer

#: relative output difference above which stacked copies count as disagreeing with the plain forward
REPLICA_TOLERANCE = 1e-2


def keep_masks(neurons: torch.Tensor, num_neurons: int) -> torch.Tensor:
    """``[k, N]`` masks of ones, row ``i`` with a zero at ``neurons[i]`` (``neurons``: ``[k]``)."""
    keep = torch.ones(len(neurons), num_neurons)
    keep[torch.arange(len(neurons)), neurons] = 0.0
    return keep


def ablated_outputs(
    model: nn.Module, grid: PixelGrid, layer: TracedLayer, inputs: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Model outputs with ``layer``'s input multiplied by each row of ``keep``, in one forward.

    Args:
        model: the INR.
        grid: its pixel grid.
        layer: a traced layer with ``per_sample`` input.
        inputs: model input for ``R`` items (``[R, D]`` coordinates or ``[R]`` frame indices).
        keep: ``[k, N]`` multipliers of the layer's ``N`` input units, one row per copy.

    Returns:
        ``[k, R, item_pixels, 3]`` float32 outputs, copy by copy.
    """
    copies, rows = keep.shape[0], inputs.shape[0]

    def stack_copies(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        mask_shape = [copies] + [1] * x.ndim
        mask_shape[1 + layer.neuron_dim % x.ndim] = layer.num_neurons
        stacked = x.unsqueeze(0) * keep.to(x).reshape(mask_shape)
        return (stacked.reshape(copies * x.shape[0], *x.shape[1:]), *args[1:])

    handle = layer.module.register_forward_pre_hook(stack_copies)
    try:
        output = model(inputs)
    except Exception as exc:
        raise XincError(
            f"the ablation tracer stacks {copies} copies of the input of {layer.name!r} along the batch, and "
            f"{type(model).__name__} failed on them ({type(exc).__name__}: {exc}); its forward probably "
            "combines that layer's output with a tensor computed before it (a skip connection) or fixes "
            "the batch size; make the layers after it treat batch rows independently"
        ) from exc
    finally:
        handle.remove()
    expected = grid.expected_output(copies * rows)
    if tuple(output.shape) != expected:
        raise XincError(
            f"with {copies} stacked copies of the input of {layer.name!r}, {type(model).__name__} returned "
            f"{list(output.shape)} instead of {list(expected)}; the layers after it must keep the batch "
            "dimension first and rows independent"
        )
    return grid.rgb(output, copies * rows, model).reshape(copies, rows, grid.item_pixels, 3)


class AblationTracer(Tracer):
    """Contribution = output minus output with the neuron zeroed, summed over RGB (exact).

    Args:
        neuron_batch: neurons ablated per forward pass (stacked copies of a pixel chunk).

    Checks: ``replica_max_rel_error`` (an unmasked stacked copy against the plain output, on
    the first chunk; ~1e-7) and ``untraced_modules`` (modules with parameters that are not
    Linear / Conv2d, whose input units have no canvas).
    """

    def __init__(self, neuron_batch: int = 16) -> None:
        self.neuron_batch = neuron_batch

    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        counts = {layer.name: layer.num_neurons for layer in survey_model(model, shape).layers if layer.per_sample}
        if not counts:
            raise XincError(
                f"no Linear / Conv2d module of {type(model).__name__} has the batch as its input's first "
                "dimension, so no neuron can be ablated per pixel or frame"
            )
        return counts

    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill the canvas; a forward holds at most ``chunk_size`` output pixels (at least one frame per copy)."""
        grid = PixelGrid.of(model, job.shape)
        survey = survey_model(model, job.shape)
        layers = [layer for layer in survey.layers if layer.per_sample and layer.name in job.canvas]
        views = {name: grid.canvas_view(array) for name, array in job.canvas.items()}
        recon_rows = grid.recon_view(job.recon)
        items = job.chunk_size // (self.neuron_batch * grid.item_pixels)
        replica_error = 0.0
        for start, stop in grid.chunks(items):
            inputs = grid.inputs(start, stop)
            base = grid.rgb(run_forward(model, inputs), stop - start, model)
            recon_rows[start:stop] = base.numpy()
            for layer in layers:
                if start == 0:
                    replica_error = max(replica_error, _replica_error(model, grid, layer, inputs, base))
                for first in range(0, layer.num_neurons, self.neuron_batch):
                    last = min(first + self.neuron_batch, layer.num_neurons)
                    keep = keep_masks(torch.arange(first, last), layer.num_neurons)
                    ablated = ablated_outputs(model, grid, layer, inputs, keep)
                    views[layer.name][first:last, start:stop] = (base - ablated).sum(dim=-1).numpy()
            job.advance((stop - start) * grid.item_pixels)
        return {"replica_max_rel_error": replica_error, "untraced_modules": survey.untraced}


def _replica_error(
    model: nn.Module, grid: PixelGrid, layer: TracedLayer, inputs: torch.Tensor, base: torch.Tensor
) -> float:
    """Relative error of an unmasked copy, stacked with a fully zeroed one, against the plain output.

    Zeroing every neuron of the second copy changes any statistic taken over the batch, so an
    output that depends on other rows shows up as a difference; such models are refused.
    """
    keep = torch.stack([torch.ones(layer.num_neurons), torch.zeros(layer.num_neurons)])
    unmasked = ablated_outputs(model, grid, layer, inputs, keep)[0]
    error = float((unmasked - base).abs().max() / base.abs().max().clamp(min=1e-12))
    if error > REPLICA_TOLERANCE:
        raise XincError(
            f"stacking copies of the input of {layer.name!r} changes {type(model).__name__}'s output "
            f"(relative error {error:.2g}): rows of a batch influence each other (batch statistics in "
            "train mode?), so ablation cannot be batched; put the model in eval mode or remove the coupling"
        )
    return error


@torch.no_grad()
def ablate_output(
    model: nn.Module,
    layer: str,
    neuron_indices: Sequence[int] | torch.Tensor,
    shape: tuple[int, int, int],
    chunk_size: int = 16384,
) -> torch.Tensor:
    """The model's reconstruction with a set of neurons of one layer zeroed together.

    Args:
        model: the INR (in eval mode).
        layer: a layer name of the ``linear`` / ``ablation`` canvases (qualified module name).
        neuron_indices: input units of that layer to zero.
        shape: ``(T, H, W)`` of the signal.
        chunk_size: output pixels per forward pass (at least one frame).

    Returns:
        ``[T, H, W, 3]`` float32 reconstruction.
    """
    grid = PixelGrid.of(model, shape)
    traced = _ablatable_layer(model, shape, layer)
    neurons = torch.as_tensor(neuron_indices, dtype=torch.long).reshape(-1)
    if neurons.numel() and (neurons.min() < 0 or neurons.max() >= traced.num_neurons):
        raise XincError(
            f"neuron indices {neurons.tolist()} are out of range for layer {layer!r}, which has "
            f"{traced.num_neurons} neurons (0..{traced.num_neurons - 1})"
        )
    keep = torch.ones(1, traced.num_neurons)
    keep[0, neurons] = 0.0
    recon = torch.empty(grid.num_items, grid.item_pixels, 3)
    for start, stop in grid.chunks(chunk_size // grid.item_pixels):
        recon[start:stop] = ablated_outputs(model, grid, traced, grid.inputs(start, stop), keep)[0]
    return recon.reshape(*grid.shape, 3)


def _ablatable_layer(model: nn.Module, shape: tuple[int, int, int], name: str) -> TracedLayer:
    layers = {layer.name: layer for layer in survey_model(model, shape).layers if layer.per_sample}
    if name not in layers:
        raise XincError(
            f"{type(model).__name__} has no ablatable layer {name!r}; its layers are: {', '.join(layers) or '(none)'}"
        )
    return layers[name]


TRACERS.add(
    "ablation",
    AblationTracer(),
    description="exact: output minus output with the neuron zeroed, summed over RGB (batched over neurons)",
)
