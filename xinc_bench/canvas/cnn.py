"""The CNN canvas of the NeRV family (SPEC 4.2, after the XINC reference implementation).

A neuron is one 2-D kernel ``(i, o)`` of a conv: input channel ``i``, conv output channel ``o``,
stored at canvas index ``n = i * C_conv + o`` (the reference's ``[C_in, C_out]`` order).
Its per-kernel map at the conv's input resolution is ``m_io = W[o, i] * x_i + b[o] / C_in``, so
the maps of one conv sum over ``i`` to the conv output exactly.

* Head (the last conv, no activation): ``C_io = m_io``; summed over ``i`` it equals the
  pre-activation output ``y_o`` (the model's ``tanh`` output map is not part of the canvas; see
  :mod:`xinc_bench.inrs.nerv`).
* Block ``GELU(PixelShuffle_r(Conv(x)))``: ``m_io`` is placed on its pixel-shuffle sub-lattice at
  output resolution (conv channel ``o`` lands at offset ``(s // r, s % r)``, ``s = o % r^2``, zero
  elsewhere), passed through GELU per kernel, then carried to the frame resolution: for each
  downstream block a ``k x k`` box filter (its conv's receptive field), nearest upsampling by its
  stride and GELU; finally a box filter for the head's receptive field.

Beyond the head these rules are the reference's approximations, not exact decompositions; the
ablation tracer is the exact alternative. Exactness checks (returned by :meth:`CNNTracer.fill`):
the head maps sum to ``y`` (relative error), and GELU of a block's summed pre-GELU maps equals
the next conv's input (absolute error).

Work is streamed: the frames of the traced window (all frames, or the job's ``frames``; frame
indices stay absolute) in chunks of ``max(1, chunk_size // (H W))``; within a frame chunk,
kernels in groups holding at most ``max_chunk_values`` canvas values; each group is computed with
one grouped convolution and written straight into the canvas arrays, so no layer is ever held
whole in memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import XincError
from ..inrs.base import render_output
from ..registry import TRACERS
from .tracer import TraceJob, Tracer, select_canvas_layers


_TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}


@dataclass(frozen=True)
class CanvasConv:
    """One traced conv of a frame decoder and how its kernels' maps reach the output.

    Attributes:
        name: canvas layer name (``block1`` ... ``blockL``, ``head``).
        conv: the conv; its ``in_channels * out_channels`` kernels are the layer's neurons.
        upscale: pixel-shuffle factor ``r`` after the conv (1 for the head).
        activation: whether GELU follows (blocks) or not (head).
        carry: ``(box size, upscale)`` of every downstream block, in network order.
        head_box: box size standing for the head's receptive field (0 for the head itself).
    """

    name: str
    conv: nn.Conv2d
    upscale: int
    activation: bool
    carry: tuple[tuple[int, int], ...]
    head_box: int

    @property
    def num_kernels(self) -> int:
        """Neurons of the layer: ``C_in * C_conv``."""
        return self.conv.in_channels * self.conv.out_channels


def canvas_convs(model: nn.Module) -> list[CanvasConv]:
    """The traced convs of a NeRV-family model (``blocks`` then ``head``), in network order.

    Raises:
        XincError: the model lacks ``blocks``/``head``/``trace`` or has convs the rule cannot trace.
    """
    _require_frame_decoder(model)
    blocks = list(model.blocks)
    head_size = model.head.kernel_size[0]
    layers = []
    for index, block in enumerate(blocks):
        downstream = tuple((b.conv.kernel_size[0], b.upscale) for b in blocks[index + 1 :])
        layers.append(CanvasConv(f"block{index + 1}", block.conv, block.upscale, True, downstream, head_size))
    layers.append(CanvasConv("head", model.head, 1, False, (), 0))
    return layers


def _require_frame_decoder(model: nn.Module) -> None:
    blocks = getattr(model, "blocks", None)
    head = getattr(model, "head", None)
    well_formed = (
        callable(getattr(model, "trace", None))
        and isinstance(head, nn.Conv2d)
        and blocks is not None
        and all(
            isinstance(getattr(b, "conv", None), nn.Conv2d) and isinstance(getattr(b, "upscale", None), int)
            for b in blocks
        )
    )
    if not well_formed:
        raise XincError(
            f"the cnn tracer needs a NeRV-family model: `blocks` (each with a `conv` and an int `upscale`), "
            f"a conv `head` and trace(t) ({type(model).__name__} lacks them); use --tracer ablation for other models"
        )
    for conv in [block.conv for block in blocks] + [head]:
        size = conv.kernel_size[0]
        if (
            conv.kernel_size != (size, size)
            or size % 2 == 0
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.padding != (size // 2, size // 2)
            or conv.padding_mode != "zeros"
        ):
            raise XincError(
                f"the cnn tracer handles stride-1, 'same'-padded, odd square convs; {type(model).__name__} has "
                f"{conv}; use --tracer ablation for this model"
            )


def kernel_maps(x: torch.Tensor, conv: nn.Conv2d, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Per-kernel maps ``m_io = W[o, i] * x_i + b[o] / C_in`` of kernels ``(inputs[k], outputs[k])``.

    Args:
        x: ``[B, C_in, h, w]`` the conv's input.
        inputs, outputs: ``[K]`` input and output channel of each kernel.

    Returns:
        ``[B, K, h, w]`` (one grouped conv, one group per kernel).
    """
    weight = conv.weight[outputs, inputs].unsqueeze(1)
    bias = conv.bias[outputs] / conv.in_channels if conv.bias is not None else None
    return F.conv2d(x[:, inputs], weight, bias, padding=conv.padding, groups=len(outputs))


def place_on_sublattice(maps: torch.Tensor, offsets: torch.Tensor, upscale: int) -> torch.Tensor:
    """Put each kernel's map on its pixel-shuffle sub-lattice, zero elsewhere.

    Args:
        maps: ``[B, K, h, w]`` maps at the conv's resolution.
        offsets: ``[K]`` sub-pixel index ``s = o % r^2`` of each kernel (row ``s // r``, column ``s % r``).

    Returns:
        ``[B, K, r h, r w]``.
    """
    b, k, h, w = maps.shape
    one_hot = F.one_hot(offsets, upscale * upscale).to(maps.dtype).view(1, k, 1, upscale, 1, upscale)
    placed = maps[:, :, :, None, :, None] * one_hot
    return placed.reshape(b, k, h * upscale, w * upscale)


def box_filter(maps: torch.Tensor, size: int) -> torch.Tensor:
    """``size x size`` mean filter of each ``[B, K, h, w]`` map (zero padding, same size, odd ``size``).

    Equals ``avg_pool2d(maps, size, 1, size // 2, count_include_pad=True)``; separable sums of
    shifted slices run several times faster on CPU for the many-channel maps of a canvas.
    """
    if size == 1:
        return maps
    half = size // 2
    height, width = maps.shape[-2:]
    padded = F.pad(maps, (half, half, half, half))
    rows = padded[..., :height, :] + padded[..., 1 : height + 1, :]
    for shift in range(2, size):
        rows += padded[..., shift : shift + height, :]
    out = rows[..., :width] + rows[..., 1 : width + 1]
    for shift in range(2, size):
        out += rows[..., shift : shift + width]
    return out.div_(size * size)


def kernel_contributions(layer: CanvasConv, maps: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """``[B, K, h, w]`` per-kernel maps -> ``[B, K, H, W]`` contributions at the frame resolution."""
    if layer.activation:
        # GELU(0) = 0, so GELU before the placement equals GELU after it, on r^2 fewer values.
        maps = F.gelu(maps)
    if layer.upscale > 1:
        maps = place_on_sublattice(maps, outputs % layer.upscale**2, layer.upscale)
    for size, upscale in layer.carry:
        # GELU commutes with nearest upsampling; applying it first touches r^2 fewer values.
        maps = F.interpolate(F.gelu(box_filter(maps, size)), scale_factor=upscale, mode="nearest")
    if layer.head_box:
        maps = box_filter(maps, layer.head_box)
    return maps


class CNNTracer(Tracer):
    """SPEC 4.2 for NeRV-family models (``blocks``, ``head``, ``trace(t) -> ConvTrace``).

    Args:
        max_chunk_values: canvas values (kernels x frames x pixels) computed at once; peak memory
            is a few times this in float32. The default 2^22 (16 MB per temporary) is small enough
            for the allocator to reuse freed memory rather than map fresh pages for every chunk,
            which made chunks of 2^25 values three times slower on CPU.
    """

    def __init__(self, max_chunk_values: int = 2**22) -> None:
        self.max_chunk_values = max_chunk_values

    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        counts = {layer.name: layer.num_kernels for layer in canvas_convs(model)}
        return select_canvas_layers(model, counts, "cnn")

    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill ``canvas[layer]`` (``[N, F, H, W]``, ``n = i * C_conv + o``) and ``recon`` (``[F, H, W, 3]``).

        Traces frames ``a .. b - 1`` of ``job.window`` (``F = b - a``). ``chunk_size`` counts
        pixels: ``max(1, chunk_size // (H W))`` frames are traced at once.

        Returns:
            ``head_sum_max_rel_error`` and ``<block>_gelu_sum_max_abs_error`` for the traced layers,
            over the window's frames.
        """
        _, height, width = job.shape
        first_frame, stop_frame = job.window
        frames_per_chunk = max(1, job.chunk_size // (height * width))
        layers = canvas_convs(model)
        device = model.head.weight.device
        checks: dict[str, float] = {}
        with _float32_convolutions():
            for start in range(first_frame, stop_frame, frames_per_chunk):
                t = torch.arange(start, min(start + frames_per_chunk, stop_frame), device=device)
                row = start - first_frame  # the chunk's first frame in the window's arrays
                result = model.trace(t)
                job.recon[row : row + len(t)] = result.output.permute(0, 2, 3, 1).cpu().numpy()
                targets = result.inputs[1:] + [result.head_output]
                for layer, x, target in zip(layers, result.inputs, targets):
                    if layer.name not in job.canvas:
                        continue
                    summed = self._fill_layer(layer, x, job.canvas[layer.name], row)
                    name, error = _layer_error(layer, summed, target)
                    checks[name] = max(checks.get(name, 0.0), error)
                job.advance(len(t) * height * width)
        return checks

    def _fill_layer(self, layer: CanvasConv, x: torch.Tensor, out: np.ndarray, start: int) -> torch.Tensor:
        """Write one layer's contributions for the frames of ``x`` into ``out[:, start:start + B]``.

        Returns:
            ``[B, C_conv, h, w]`` the per-kernel pre-activation maps summed over input channels.
        """
        batch, _, h, w = x.shape
        conv_channels = layer.conv.out_channels
        frame_values = batch * out.shape[-2] * out.shape[-1]
        kernels_per_chunk = max(1, self.max_chunk_values // frame_values)
        dtype = _TORCH_DTYPES[out.dtype]
        summed = x.new_zeros(batch, conv_channels, h, w)
        for first in range(0, layer.num_kernels, kernels_per_chunk):
            kernels = torch.arange(first, min(first + kernels_per_chunk, layer.num_kernels), device=x.device)
            inputs, outputs = kernels // conv_channels, kernels % conv_channels
            maps = kernel_maps(x, layer.conv, inputs, outputs)
            summed.index_add_(1, outputs, maps)
            contributions = kernel_contributions(layer, maps, outputs)
            values = contributions.transpose(0, 1).to(dtype).cpu().numpy()
            out[first : first + len(kernels), start : start + batch] = values
        return summed


@torch.no_grad()
def kernel_ablated_output(
    model: nn.Module, layer: str, kernels: torch.Tensor, shape: tuple[int, int, int]
) -> torch.Tensor:
    """The model's output ``[T, H, W, 3]`` with a set of kernels of canvas layer ``layer`` zeroed together.

    Zeroing kernel ``n = i * C_conv + o`` removes exactly what its canvas map ``m_io`` stands for:
    the weight ``W[o, i]`` and its bias share ``b[o] / C_in``. This is the ablation ground truth of
    a kernel neuron (SPEC 4.3), used by the faithfulness probe on ``cnn`` canvases.
    """
    convs = {conv.name: conv for conv in canvas_convs(model)}
    if layer not in convs:
        raise XincError(f"{type(model).__name__} has no canvas layer {layer!r}; its layers are {', '.join(convs)}")
    conv = convs[layer].conv
    kernels = torch.as_tensor(kernels, dtype=torch.long).reshape(-1)
    if kernels.numel() and (kernels.min() < 0 or kernels.max() >= convs[layer].num_kernels):
        raise XincError(f"kernel indices out of range for layer {layer!r}, which has {convs[layer].num_kernels} kernels")
    inputs, outputs = kernels // conv.out_channels, kernels % conv.out_channels
    weight = conv.weight.detach().clone()
    bias = None if conv.bias is None else conv.bias.detach().clone()
    try:
        conv.weight[outputs, inputs] = 0.0
        if bias is not None:
            conv.bias.index_add_(0, outputs, -bias[outputs] / conv.in_channels)
        return render_output(model, shape)
    finally:
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)


@contextmanager
def _float32_convolutions() -> Iterator[None]:
    """Run cuDNN convolutions in full float32 (CUDA's default TF32 keeps 10 mantissa bits).

    The exactness checks compare the model's own convs with their per-kernel decomposition;
    with TF32 on a GPU they differ by ~1e-4 although the canvas agrees with the CPU's to 1e-6.
    """
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def _layer_error(layer: CanvasConv, summed: torch.Tensor, target: torch.Tensor) -> tuple[str, float]:
    """The exactness check of one layer: its summed maps against what the network computed."""
    if not layer.activation:
        scale = target.abs().max().clamp(min=1e-12)
        return f"{layer.name}_sum_max_rel_error", float((summed - target).abs().max() / scale)
    rebuilt = F.gelu(F.pixel_shuffle(summed, layer.upscale))
    return f"{layer.name}_gelu_sum_max_abs_error", float((rebuilt - target).abs().max())


TRACERS.add(
    "cnn",
    CNNTracer(),
    description="SPEC 4.2 NeRV-family kernel canvas (exact head, reference rule for blocks)",
)
