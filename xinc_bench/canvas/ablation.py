"""The ablation tracer: exact counterfactual contributions for any INR (SPEC 4.3).

The contribution of neuron ``n`` to pixel ``p`` is ``sum_rgb [out(p) - out(p with n zeroed)]``
(signed). Neurons are the input units of the model's ``nn.Linear`` / ``nn.Conv2d`` modules,
as for the ``linear`` tracer (:mod:`xinc_bench.canvas.hooks`), and layers carry the same
names. Zeroing neuron ``n`` of layer ``l`` means zeroing input unit ``n`` of module ``l``
only: another use of the same tensor (a skip connection) keeps it, so the counterfactual
measures what flows through ``l``, the quantity the linear decomposition estimates.

Neurons are ablated ``k`` at a time, and every copy runs the model's own forward, so nothing is
assumed about the network after the layer: skip and residual connections, gates computed from
the coordinates beside the layer (multiplicative filter networks such as MFN and BACON, FiLM),
reshapes by the batch size are all ablated exactly. Two ways, both exact:

* ``torch.func.vmap`` over ``k`` masks (:func:`vmapped_outputs`): a forward pre-hook multiplies
  the layer's input by the mask, a batched tensor, so what does not depend on the mask (the
  layers before, the gates beside) is computed once and only what the mask reaches is computed
  per copy; vmap's broadcasting pairs every copy with the unmasked tensors as the model's own
  forward would.
* the inputs repeated (:func:`repeated_outputs`): a chunk of ``R`` coordinates (or frame indices)
  becomes a batch of ``k * R`` and the pre-hook masks copy ``i``; everything is computed ``k``
  times. Used for a layer whose forward fails under vmap (an in-place write of a masked value
  into a tensor computed before the layer, data-dependent control flow on masked values, an
  operation vmap cannot batch); the checks list those layers under ``repeated_layers``.

Either way, batch rows must be independent: on the first chunk of the traced frames (all, or the
job's window) the tracer runs an unmasked copy beside a fully zeroed one, which must reproduce
the plain output. Only the window's items are ablated. Memory is bounded by a byte
budget: a probe forward measures what the model's modules emit per item (pixel or frame), and
``k * R`` is chosen so that one forward of the repeated inputs stays within the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import XincError
from ..registry import TRACERS
from .hooks import PROBE_BATCH, PixelGrid, TracedLayer, run_forward, survey_model
from .tracer import TraceJob, Tracer

#: relative output difference above which an unmasked copy counts as disagreeing with the plain forward
REPLICA_TOLERANCE = 1e-2
#: bytes the module outputs of one ablation forward may take, all copies together
BUDGET_BYTES = 1 << 28


def keep_masks(neurons: torch.Tensor, num_neurons: int) -> torch.Tensor:
    """``[k, N]`` masks of ones, row ``i`` with a zero at ``neurons[i]`` (``neurons``: ``[k]``)."""
    keep = torch.ones(len(neurons), num_neurons)
    keep[torch.arange(len(neurons)), neurons] = 0.0
    return keep


def vmapped_outputs(
    model: nn.Module, grid: PixelGrid, layer: TracedLayer, inputs: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Model outputs with ``layer``'s input multiplied by each row of ``keep``: vmap over the rows.

    Args:
        model: the INR.
        grid: its pixel grid.
        layer: a traced layer with ``per_sample`` input.
        inputs: model input for ``R`` items (``[R, D]`` coordinates or ``[R]`` frame indices).
        keep: ``[k, N]`` multipliers of the layer's ``N`` input units, one row per copy.

    Returns:
        ``[k, R, item_pixels, 3]`` float32 outputs, copy by copy.

    Raises:
        Exception: whatever the model raises under vmap, or ``ValueError`` for a wrong output
            shape; the tracer then uses :func:`repeated_outputs`, which explains the failure.
    """
    copies, rows = keep.shape[0], inputs.shape[0]

    def forward(mask: torch.Tensor) -> torch.Tensor:
        def apply_mask(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0]
            mask_shape = [1] * x.ndim
            mask_shape[layer.neuron_dim % x.ndim] = layer.num_neurons
            return (x * mask.to(x.dtype).reshape(mask_shape), *args[1:])

        handle = layer.module.register_forward_pre_hook(apply_mask)
        try:
            return model(inputs)
        finally:
            handle.remove()

    output = torch.func.vmap(forward)(keep.to(grid.device))
    expected = (copies, *grid.expected_output(rows))
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
        raise ValueError(f"vmap over the masks of {layer.name!r} returned no {list(expected)} tensor")
    flat = output.reshape(copies * rows, *expected[2:])
    return grid.rgb(flat, copies * rows, model).reshape(copies, rows, grid.item_pixels, 3)


def repeated_outputs(
    model: nn.Module, grid: PixelGrid, layer: TracedLayer, inputs: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """What :func:`vmapped_outputs` returns, from one forward on ``k`` copies of the inputs.

    Raises:
        XincError: the model fails on a batch of ``k * R`` inputs, moves the batch away from
            the first dimension of the layer's input, or returns the wrong shape.
    """
    copies, rows = keep.shape[0], inputs.shape[0]
    what = "coordinates" if grid.kind == "coords" else "frame indices"

    def mask_copies(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        if x.shape[0] != copies * rows:
            raise XincError(
                f"on {copies} copies of {rows} {what}, the input of {layer.name!r} in {type(model).__name__} has "
                f"{x.shape[0]} rows instead of {copies * rows}; the ablation tracer needs every layer's input "
                "to keep the model's batch first, one row per input item"
            )
        mask_shape = [copies] + [1] * x.ndim
        mask_shape[1 + layer.neuron_dim % x.ndim] = layer.num_neurons
        masked = x.reshape(copies, rows, *x.shape[1:]) * keep.to(x).reshape(mask_shape)
        return (masked.reshape(x.shape), *args[1:])

    handle = layer.module.register_forward_pre_hook(mask_copies)
    try:
        output = model(inputs.repeat(copies, *[1] * (inputs.ndim - 1)))
    except XincError:
        raise
    except Exception as exc:
        raise XincError(
            f"the ablation tracer runs {type(model).__name__} on {copies} copies of {rows} {what} (a batch of "
            f"{copies * rows}, a neuron of {layer.name!r} zeroed in each copy) and it failed ({type(exc).__name__}: "
            f"{exc}); its forward must accept any batch size and treat batch rows independently"
        ) from exc
    finally:
        handle.remove()
    expected = grid.expected_output(copies * rows)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
        got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise XincError(
            f"on {copies} copies of {rows} {what}, {type(model).__name__} returned {got} instead of "
            f"{list(expected)}; its forward must accept any batch size and keep it first"
        )
    return grid.rgb(output, copies * rows, model).reshape(copies, rows, grid.item_pixels, 3)


@torch.no_grad()
def bytes_per_item(model: nn.Module, grid: PixelGrid) -> int:
    """Bytes that the outputs of the model's leaf modules and its own output take per item in one forward.

    An estimate of what a forward holds, measured on a probe batch (16 pixels or 2 frames);
    operations between modules are not seen, which the sum over every module makes up for.
    """
    rows = min(PROBE_BATCH[grid.kind], grid.num_items)
    total = 0

    def count(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.nelement() * output.element_size()

    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [module.register_forward_hook(count) for module in leaves]
    try:
        output = run_forward(model, grid.inputs(0, rows))
    finally:
        for handle in handles:
            handle.remove()
    total += output.nelement() * output.element_size()
    return max(1, math.ceil(total / rows))


class AblationTracer(Tracer):
    """Contribution = output minus output with the neuron zeroed, summed over RGB (exact).

    Args:
        neuron_batch: neurons ablated per forward pass at most (copies of a chunk of inputs).
        budget_bytes: bytes the module outputs of one forward may take, all copies together.

    Checks: ``replica_max_rel_error`` (an unmasked copy against the plain output, on the first
    chunk; ~1e-7), ``repeated_layers`` (layers ablated on repeated inputs because their forward
    fails under vmap; exact too, slower) and ``untraced_modules`` (modules with parameters that
    are not Linear / Conv2d, whose input units have no canvas).
    """

    def __init__(self, neuron_batch: int = 16, budget_bytes: int = BUDGET_BYTES) -> None:
        self.neuron_batch = neuron_batch
        self.budget_bytes = budget_bytes

    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        counts = {layer.name: layer.num_neurons for layer in survey_model(model, shape).layers if layer.per_sample}
        if not counts:
            raise XincError(
                f"no Linear / Conv2d module of {type(model).__name__} has the batch as its input's first "
                "dimension, so no neuron can be ablated per pixel or frame"
            )
        return counts

    def chunking(self, model: nn.Module, grid: PixelGrid, chunk_size: int) -> tuple[int, int]:
        """``(items, copies)``: input items per chunk and neurons ablated per forward.

        One forward runs ``items * copies`` items: ``chunk_size`` output pixels or
        :attr:`neuron_batch` items, whichever is more, cut down to :attr:`budget_bytes` of module
        outputs, yet at least one item and one copy.
        """
        wanted = max(self.neuron_batch, chunk_size // grid.item_pixels)
        rows = max(1, min(wanted, self.budget_bytes // bytes_per_item(model, grid)))
        items = max(1, rows // self.neuron_batch)
        return items, max(1, min(self.neuron_batch, rows // items))

    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill the window's canvas; a forward holds ``chunk_size`` output pixels (a frame per copy at least).

        Only the window's pixels (or frames) are ablated; the replica check runs on its first chunk.
        """
        grid = PixelGrid.of(model, job.shape, job.window)
        survey = survey_model(model, job.shape)
        layers = [layer for layer in survey.layers if layer.per_sample and layer.name in job.canvas]
        views = {name: grid.canvas_view(array) for name, array in job.canvas.items()}
        recon_rows = grid.recon_view(job.recon)
        items, copies = self.chunking(model, grid, job.chunk_size)
        replica_error = 0.0
        repeated: list[str] = []
        for start, stop in grid.chunks(items):
            inputs = grid.inputs(start, stop)
            base = grid.rgb(run_forward(model, inputs), stop - start, model)
            recon_rows[start:stop] = base.numpy()
            for layer in layers:
                if start == 0:
                    replica_error = max(replica_error, _replica_error(model, grid, layer, inputs, base))
                for first in range(0, layer.num_neurons, copies):
                    keep = keep_masks(torch.arange(first, min(first + copies, layer.num_neurons)), layer.num_neurons)
                    ablated = _ablated_outputs(model, grid, layer, inputs, keep, repeated)
                    views[layer.name][first : first + len(keep), start:stop] = (base - ablated).sum(dim=-1).numpy()
            job.advance((stop - start) * grid.item_pixels)
        return {"replica_max_rel_error": replica_error, "repeated_layers": repeated, "untraced_modules": survey.untraced}


def _ablated_outputs(
    model: nn.Module, grid: PixelGrid, layer: TracedLayer, inputs: torch.Tensor, keep: torch.Tensor,
    repeated: list[str],
) -> torch.Tensor:
    """:func:`vmapped_outputs`, or :func:`repeated_outputs` for the layers in ``repeated`` and those
    whose forward fails under vmap (appended to ``repeated``)."""
    if layer.name not in repeated:
        try:
            return vmapped_outputs(model, grid, layer, inputs, keep)
        except Exception:  # any failure under vmap: the repeated forward is exact too, and explains its own errors
            repeated.append(layer.name)
    return repeated_outputs(model, grid, layer, inputs, keep)


def _replica_error(
    model: nn.Module, grid: PixelGrid, layer: TracedLayer, inputs: torch.Tensor, base: torch.Tensor
) -> float:
    """Relative error of an unmasked copy, run beside a fully zeroed one, against the plain output.

    Zeroing every neuron of the second copy changes any statistic taken over the batch, so an
    output that depends on other rows shows up as a difference; such models are refused.
    """
    keep = torch.stack([torch.ones(layer.num_neurons), torch.zeros(layer.num_neurons)])
    unmasked = repeated_outputs(model, grid, layer, inputs, keep)[0]
    error = float((unmasked - base).abs().max() / base.abs().max().clamp(min=1e-12))
    if error > REPLICA_TOLERANCE:
        raise XincError(
            f"running two copies of its inputs changes {type(model).__name__}'s output (relative error "
            f"{error:.2g}, {layer.name!r} zeroed in the second): rows of a batch influence each other (batch "
            "statistics in train mode?), so ablation cannot be batched; put the model in eval mode or remove "
            "the coupling"
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
        recon[start:stop] = repeated_outputs(model, grid, traced, grid.inputs(start, stop), keep)[0]
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
    description="exact: output minus output with the neuron zeroed, summed over RGB (any module graph)",
)
