"""The generic linear-decomposition tracer for any ``nn.Module`` INR (SPEC 4.3).

Forward hooks on the model's ``nn.Linear`` and ``nn.Conv2d`` modules (and on modules that declare
``linear_map = True``, see :func:`is_traced`) see each layer's input while the model runs; no
tracing code is needed from the INR's author. Every traced module
is a canvas layer (named by its qualified name in ``named_modules()``) whose neurons are its
input units: the input features of a Linear, the input channels of a Conv2d.

The SPEC 4.1 rule is applied to each traced module ``l`` with its own weights:

* Linear (weight ``W[K, N]``, bias ``b[K]``): ``sum_k c_jk(p) = a_j(p) sum_k W[k, j] + sum_k b[k] / N``.
  A complex linear map (WIRE) contributes the real part of that, its share of the real output
  the network emits (the convention of :mod:`xinc_bench.canvas.mlp`).
* Conv2d (weight ``W[O, I, kh, kw]``): input channel ``i``'s conv map summed over output
  channels, ``sum_o (W[o, i] * z_i)(p) + sum_o b[o] / I``. By linearity this is one depthwise
  convolution of ``z_i`` with the kernel ``sum_o W[o, i]`` (same stride, padding, dilation and
  groups), computed at the layer's output resolution.

The last traced module (the one producing the output) keeps the signed sum; earlier modules
take its ReLU (tracer ``linear``, the reference rule) or keep it signed (``linear-signed``).
Maps of modules working at a lower resolution than the output are carried to it by nearest
upsampling: exact for the layer itself, an approximation of where its contribution lands in
the output beyond the last layer (as the NeRV rules of SPEC 4.2 are).

A trace of a window of frames (:attr:`~xinc_bench.canvas.tracer.TraceJob.frames`) runs the model
on that window's coordinates or frame indices only (:class:`PixelGrid`).

Contributions are computed inside each module's forward hook, from the exact tensors the
module consumed and produced, so in-place operations that run later in the forward (an
``nn.ReLU(inplace=True)`` overwriting a layer's output, say) cannot change them. The unsafe
cases are refused by :func:`survey_model` before any tracing: a traced module called more than
once per forward (a reused Linear, or a reused block holding one), a module that modifies its
own input in place, and a forward whose output has the wrong shape. The linear tracer also
refuses a model running other modules with parameters after its last traced module (a hash
table, say), since that layer then does not produce the output.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import XincError
from ..inrs.base import signal_coordinates
from ..registry import TRACERS
from .tracer import TraceJob, Tracer

TRACED_TYPES = (nn.Linear, nn.Conv2d)


def is_traced(module: nn.Module) -> bool:
    """Whether the hook tracers treat ``module`` as a layer whose input units are neurons.

    ``nn.Linear`` and ``nn.Conv2d`` are; so is any module that declares ``linear_map = True``: a
    linear map over its input's last dimension with ``in_features``, ``weight[K, N]`` and
    ``bias[K]`` attributes, real or complex (WIRE's :class:`~xinc_bench.inrs.mlp.ComplexLinear`).
    """
    return isinstance(module, TRACED_TYPES) or bool(getattr(module, "linear_map", False))

#: batch of the safety probe: pixels for coordinate INRs, frames for frame INRs
PROBE_BATCH = {"coords": 16, "frame": 2}


@dataclass
class PixelGrid:
    """How a model's inputs and outputs map onto the ``(T, H, W)`` pixel grid.

    Coordinate INRs (``kind = "coords"``) take ``[R, D]`` coordinates and return ``[R, 3]``:
    an item is a pixel. Frame INRs (``kind = "frame"``) take ``[R]`` frame indices and return
    ``[R, 3, H, W]``: an item is a frame of ``H * W`` pixels.

    The grid covers the window ``frames = (a, b)`` of the signal's ``T`` frames (all of them by
    default): items are the window's pixels or frames, numbered from 0, while the model's inputs
    keep the frames' absolute time (index ``a + i``, coordinates spaced over ``T`` frames).
    """

    kind: str
    shape: tuple[int, int, int]
    frames: tuple[int, int]
    device: torch.device
    coords: torch.Tensor | None = None

    @classmethod
    def of(
        cls, model: nn.Module, shape: tuple[int, int, int], frames: tuple[int, int] | None = None
    ) -> "PixelGrid":
        """The grid of ``model`` on a ``(T, H, W)`` signal, over frames ``[a, b)`` (None: all ``T``)."""
        kind = getattr(model, "input_kind", "coords")
        if kind not in PROBE_BATCH:
            raise XincError(
                f"{type(model).__name__}.input_kind is {kind!r}; set it to 'coords' (forward(coords[P, D]) "
                "-> [P, 3]) or 'frame' (forward(t[B]) -> [B, 3, H, W])"
            )
        tensor = next(iter(model.parameters()), None)
        if tensor is None:
            tensor = next(iter(model.buffers()), None)
        device = tensor.device if tensor is not None else torch.device("cpu")
        window = frames if frames is not None else (0, int(shape[0]))
        coords = signal_coordinates(*shape, frames=window) if kind == "coords" else None
        return cls(kind, (int(shape[0]), int(shape[1]), int(shape[2])), window, device, coords)

    @property
    def num_items(self) -> int:
        """Pixels ``F * H * W`` (coordinate INRs) or frames ``F`` (frame INRs) of the window's ``F`` frames."""
        first, stop = self.frames
        _, height, width = self.shape
        return (stop - first) * height * width if self.kind == "coords" else stop - first

    @property
    def item_pixels(self) -> int:
        """Output pixels per item: 1 or ``H * W``."""
        return 1 if self.kind == "coords" else self.shape[1] * self.shape[2]

    def chunks(self, items: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` item ranges of at most ``items`` (at least one) items."""
        step = max(1, items)
        for start in range(0, self.num_items, step):
            yield start, min(start + step, self.num_items)

    def inputs(self, start: int, stop: int) -> torch.Tensor:
        """Model input for items ``start:stop`` of the window: ``[R, D]`` coordinates or ``[R]`` frame indices."""
        if self.coords is None:
            first = self.frames[0]
            return torch.arange(first + start, first + stop, device=self.device)
        return self.coords[start:stop].to(self.device)

    def expected_output(self, rows: int) -> tuple[int, ...]:
        """The output shape the INR contract requires for ``rows`` items."""
        _, height, width = self.shape
        return (rows, 3) if self.kind == "coords" else (rows, 3, height, width)

    def rgb(self, output: torch.Tensor, rows: int, model: nn.Module) -> torch.Tensor:
        """Check the output shape and lay it out as ``[R, item_pixels, 3]`` float32 on the CPU."""
        expected = self.expected_output(rows)
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise XincError(
                f"{type(model).__name__}.forward returned {got} for {rows} "
                f"{'coordinates' if self.kind == 'coords' else 'frame indices'}; the INR contract needs "
                f"{list(expected)} for a {self.shape[0]}x{self.shape[1]}x{self.shape[2]} signal: build the model "
                "for the signal's size, fix its forward, or set input_kind ('coords' or 'frame') on the class"
            )
        if self.kind == "frame":
            output = output.permute(0, 2, 3, 1)
        return output.reshape(rows, self.item_pixels, 3).float().cpu()

    def canvas_view(self, array: np.ndarray) -> np.ndarray:
        """``[N, F, H, W]`` canvas array of the window viewed as ``[N, num_items, item_pixels]`` (no copy)."""
        return array.reshape(array.shape[0], self.num_items, self.item_pixels)

    def recon_view(self, recon: np.ndarray) -> np.ndarray:
        """``[F, H, W, 3]`` reconstruction of the window viewed as ``[num_items, item_pixels, 3]`` (no copy)."""
        return recon.reshape(self.num_items, self.item_pixels, 3)


@dataclass(frozen=True)
class TracedLayer:
    """A Linear or Conv2d module seen once in the model's forward.

    Attributes:
        name: qualified module name (``named_modules()``).
        module: the module.
        num_neurons: its input units (Linear input features, Conv2d input channels).
        neuron_dim: the input dimension holding the neurons (-1 for Linear, 1 for Conv2d).
        spatial: its real-valued input rows are output pixels (``[R, N]`` for coordinate INRs)
            or maps (``[R, C, h, w]`` Conv2d, ``[R, h, w, N]`` Linear for frame INRs), so the
            linear rule can place its contributions on the pixel grid.
        per_sample: its input's first dimension is the model's batch, so ablation can replicate it.
    """

    name: str
    module: nn.Module
    num_neurons: int
    neuron_dim: int
    spatial: bool
    per_sample: bool


@dataclass(frozen=True)
class ModelSurvey:
    """What one probe forward pass saw of a model.

    Attributes:
        layers: the traced modules in call order.
        untraced: leaf modules holding parameters that are not traced (a hash table, an
            embedding, ...), in call order: their input units are not canvas neurons.
        after_last: those of ``untraced`` that run after the last traced module, which then
            does not produce the output.
    """

    layers: list[TracedLayer]
    untraced: list[str]
    after_last: list[str]


@torch.no_grad()
def survey_model(model: nn.Module, shape: tuple[int, int, int]) -> ModelSurvey:
    """Find the traced modules of ``model`` with a safety probe forward pass.

    Runs the model on a small batch (16 pixels or 2 frames) with hooks on every Linear and
    Conv2d module, counting calls and watching each input's version counter, and on every
    other leaf module that holds parameters, noting when it runs.

    Raises:
        XincError: the forward fails or returns the wrong shape; a traced module runs more
            than once per forward; a traced module modifies its input in place; no Linear or
            Conv2d module runs at all.
    """
    grid = PixelGrid.of(model, shape)
    rows = min(PROBE_BATCH[grid.kind], grid.num_items)
    seen: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    versions: dict[str, int] = {}
    finished: dict[str, int] = {}  # module name -> position of its last completed call
    step = itertools.count()

    def before(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            calls[name] = calls.get(name, 0) + 1
            seen.setdefault(name, (module, args[0]))
            versions[name] = args[0]._version

        return hook

    def after(name: str, traced: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            finished[name] = next(step)
            if traced and args[0]._version != versions[name]:
                raise XincError(
                    f"module {name!r} ({type(module).__name__}) modifies its input in place during its "
                    "forward, so the activation it consumed cannot be read; make that operation "
                    "out of place (no `x.mul_`, `inplace=True`, ... on the module's input)"
                )

        return hook

    handles = []
    untraced_names = set()
    for name, module in model.named_modules():
        if is_traced(module):
            handles.append(module.register_forward_pre_hook(before(name)))
            handles.append(module.register_forward_hook(after(name, traced=True)))
        elif not list(module.children()) and list(module.parameters(recurse=False)):
            untraced_names.add(name)
            handles.append(module.register_forward_hook(after(name, traced=False)))
    try:
        output = run_forward(model, grid.inputs(0, rows))
    finally:
        for handle in handles:
            handle.remove()
    grid.rgb(output, rows, model)
    reused = {name: count for name, count in calls.items() if count > 1}
    if reused:
        listing = ", ".join(f"{name!r} ({count} calls)" for name, count in reused.items())
        raise XincError(
            f"the hook tracers need each nn.Linear / nn.Conv2d module called once per forward, but "
            f"{type(model).__name__} calls {listing}; give every use its own module instance"
        )
    if not seen:
        raise XincError(
            f"{type(model).__name__} runs no nn.Linear or nn.Conv2d module in its forward, so the "
            "hook tracers have no layer to trace; write a tracer for it (see xinc_bench.canvas.tracer)"
        )
    layers = [_describe_layer(name, module, inputs, grid.kind, rows) for name, (module, inputs) in seen.items()]
    untraced = sorted((n for n in finished if n in untraced_names), key=finished.__getitem__)
    last_traced = max(finished[name] for name in seen)
    return ModelSurvey(layers, untraced, [n for n in untraced if finished[n] > last_traced])


def run_forward(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model(inputs)``; a failure other than a tracer's own error becomes a clear XincError."""
    try:
        return model(inputs)
    except XincError:
        raise
    except Exception as exc:
        kind = "frame indices" if inputs.dtype == torch.long else "coordinates"
        raise XincError(
            f"{type(model).__name__} failed on a batch of {kind} {list(inputs.shape)} "
            f"({type(exc).__name__}: {exc}); check its input_kind ('coords' or 'frame') and forward"
        ) from exc


def _describe_layer(name: str, module: nn.Module, inputs: torch.Tensor, kind: str, rows: int) -> TracedLayer:
    is_linear = not isinstance(module, nn.Conv2d)
    num_neurons = module.in_features if is_linear else module.in_channels
    batched = inputs.ndim >= 2 and inputs.shape[0] == rows
    if kind == "coords":
        spatial = is_linear and inputs.ndim == 2 and batched
    else:
        spatial = inputs.ndim == 4 and batched
    return TracedLayer(name, module, num_neurons, -1 if is_linear else 1, spatial, batched)


def linear_contributions(layer: TracedLayer, inputs: torch.Tensor) -> torch.Tensor:
    """Per-neuron maps before any ReLU, at the layer's output resolution.

    Args:
        layer: a spatial traced layer.
        inputs: its input, ``[R, N]`` (Linear, coordinate INR), ``[R, h, w, N]`` (Linear on
            maps) or ``[R, C, h, w]`` (Conv2d).

    Returns:
        ``[R, N]`` or ``[R, N, h', w']``: contribution of each neuron summed over output units.
    """
    module = layer.module
    bias_share = module.bias.sum() / layer.num_neurons if module.bias is not None else 0.0
    if not isinstance(module, nn.Conv2d):
        contribution = inputs * module.weight.sum(dim=0) + bias_share
        contribution = contribution.real if contribution.is_complex() else contribution
        return contribution.permute(0, 3, 1, 2) if contribution.ndim == 4 else contribution
    return _summed_kernel_conv(module, inputs) + bias_share


def _summed_kernel_conv(conv: nn.Conv2d, inputs: torch.Tensor) -> torch.Tensor:
    """``[R, C, h, w] -> [R, C, h', w']``: each input channel convolved with its kernels summed over outputs."""
    out_channels, in_per_group, kh, kw = conv.weight.shape
    groups = conv.groups
    summed = conv.weight.reshape(groups, out_channels // groups, in_per_group, kh, kw).sum(dim=1)
    depthwise = summed.reshape(groups * in_per_group, 1, kh, kw)
    padding = conv.padding
    if conv.padding_mode != "zeros":
        inputs = F.pad(inputs, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    return F.conv2d(inputs, depthwise, None, conv.stride, padding, conv.dilation, groups=conv.in_channels)


def output_unit_sum(layer: TracedLayer, output: torch.Tensor) -> torch.Tensor:
    """A traced module's output summed over its output units (real part): ``[R]`` or ``[R, h', w']``."""
    total = output.sum(dim=1) if isinstance(layer.module, nn.Conv2d) else output.sum(dim=-1)
    return total.real if total.is_complex() else total


def to_grid(maps: torch.Tensor, grid: PixelGrid) -> torch.Tensor:
    """``[R, N]`` or ``[R, N, h, w]`` maps -> ``[N, R, item_pixels]``, nearest-upsampled to ``H x W``."""
    if grid.kind == "coords":
        return maps.T.unsqueeze(-1)
    _, height, width = grid.shape
    if tuple(maps.shape[-2:]) != (height, width):
        maps = F.interpolate(maps, size=(height, width), mode="nearest")
    return maps.transpose(0, 1).reshape(maps.shape[1], maps.shape[0], height * width)


def _relative_error(estimate: torch.Tensor, target: torch.Tensor) -> float:
    scale = target.abs().max().clamp(min=1e-12)
    return float((estimate - target).abs().max() / scale)


class LinearTracer(Tracer):
    """SPEC 4.1 on every Linear / Conv2d module of any INR, from forward hooks.

    Args:
        signed: if True, earlier layers are not passed through ReLU (``linear-signed``).

    Layers whose input has no pixel layout (a Linear on a per-frame vector in a frame INR,
    a Conv2d inside a coordinate INR) are not canvas layers; ``trace`` lists
    them under ``skipped_layers`` in its checks, and other modules with parameters under
    ``untraced_modules``. The ablation tracer covers the skipped layers.

    Checks: ``layer_sum_max_rel_error`` (each layer's maps before ReLU sum to its output summed
    over units; always ~1e-7) and ``output_sum_max_rel_error`` (the last layer's maps sum to the
    output summed over RGB; ~1e-7 when that layer produces the output directly, large when an
    output activation follows, e.g. NeRV's tanh).
    """

    def __init__(self, signed: bool = False) -> None:
        self.signed = signed

    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        counts = {layer.name: layer.num_neurons for layer in self._survey(model, shape).layers if layer.spatial}
        if not counts:
            raise XincError(
                f"no Linear / Conv2d module of {type(model).__name__} sees per-pixel inputs "
                "([P, N] for coordinate INRs, [B, C, h, w] or [B, h, w, N] for frame INRs); "
                "use --tracer ablation"
            )
        return counts

    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill the window's canvas chunk by chunk; ``chunk_size`` counts output pixels (at least one frame).

        Only the window's pixels (or frames) are run through the model; the checks cover them.
        """
        grid = PixelGrid.of(model, job.shape, job.window)
        survey = self._survey(model, job.shape)
        all_layers = survey.layers
        last = all_layers[-1].name
        layers = [layer for layer in all_layers if layer.spatial and layer.name in job.canvas]
        views = {name: grid.canvas_view(array) for name, array in job.canvas.items()}
        recon_rows = grid.recon_view(job.recon)
        layer_error = output_error = 0.0
        upsampled: set[str] = set()
        for start, stop in grid.chunks(job.chunk_size // grid.item_pixels):
            maps, sums, output = self._capture(model, layers, grid.inputs(start, stop))
            rgb = grid.rgb(output, stop - start, model)
            recon_rows[start:stop] = rgb.numpy()
            job.advance((stop - start) * grid.item_pixels)
            for layer in layers:
                contribution = maps[layer.name]
                layer_error = max(layer_error, _relative_error(contribution.sum(dim=1), sums[layer.name]))
                if contribution.ndim == 4 and tuple(contribution.shape[-2:]) != grid.shape[1:]:
                    upsampled.add(layer.name)
                if layer.name != last and not self.signed:
                    contribution = contribution.clamp(min=0.0)
                placed = to_grid(contribution, grid).float().cpu()
                if layer.name == last:
                    output_error = max(output_error, _relative_error(placed.sum(dim=0), rgb.sum(dim=-1)))
                views[layer.name][:, start:stop] = placed.numpy()
        return {
            "layer_sum_max_rel_error": layer_error,
            "output_sum_max_rel_error": output_error,
            "upsampled_layers": [layer.name for layer in layers if layer.name in upsampled],
            "skipped_layers": [layer.name for layer in all_layers if layer not in layers],
            "untraced_modules": survey.untraced,
        }

    @staticmethod
    def _survey(model: nn.Module, shape: tuple[int, int, int]) -> ModelSurvey:
        """The model survey, refusing models whose last Linear / Conv2d does not produce the output."""
        survey = survey_model(model, shape)
        if survey.after_last:
            raise XincError(
                f"{type(model).__name__} runs modules with parameters that are not nn.Linear / nn.Conv2d "
                f"({', '.join(survey.after_last)}) after its last traced layer {survey.layers[-1].name!r}, so "
                "the linear tracer cannot tell which layer produces the output; use --tracer ablation "
                "or a tracer written for this model"
            )
        return survey

    @staticmethod
    def _capture(
        model: nn.Module, layers: list[TracedLayer], inputs: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """One forward: per layer, its pre-ReLU maps and its output summed over units."""
        maps: dict[str, torch.Tensor] = {}
        sums: dict[str, torch.Tensor] = {}

        def hook_for(layer: TracedLayer) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
                if layer.name in maps:
                    raise XincError(
                        f"module {layer.name!r} ran twice in one forward; the linear tracer cannot trace it"
                    )
                maps[layer.name] = linear_contributions(layer, args[0])
                sums[layer.name] = output_unit_sum(layer, output)

            return hook

        handles = [layer.module.register_forward_hook(hook_for(layer)) for layer in layers]
        try:
            output = run_forward(model, inputs)
        finally:
            for handle in handles:
                handle.remove()
        return maps, sums, output


TRACERS.add(
    "linear",
    LinearTracer(signed=False),
    description="SPEC 4.1 rule on any model's Linear/Conv2d layers via forward hooks (ReLU on earlier layers)",
)
TRACERS.add(
    "linear-signed",
    LinearTracer(signed=True),
    description="the linear tracer without the ReLU on earlier layers",
)
