"""Frame INRs of the NeRV family: NeRV (positional encoding of t) and HNeRV (encoded frames).

Both map frame indices to frames through the same convolutional decoder::

    embedding [B, E, h0, w0] -> 1x1 conv -> GELU -> unfold to [B, C0, H/S, W/S]
        -> GELU(PixelShuffle_r(Conv_k(x))) per block -> head Conv_k -> y [B, 3, H, W]
        -> output map (tanh: (tanh(y) + 1) / 2)

with ``S`` the product of the blocks' upscale factors (16 for the paper model).

Output activation (SPEC 8.6): ``forward`` returns ``(tanh(y) + 1) / 2``, the map the reference
trained with, so training and rendering see RGB in [0, 1]. :meth:`FrameDecoderINR.trace` also
returns the pre-activation head output ``y``, which is what the reference's NeRV analysis reads
and what the CNN canvas decomposes exactly (its head contributions sum to ``y``, not to the RGB
output). ``output_activation="identity"`` builds a model whose output is ``y`` itself.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import XincError
from .base import register_inr

OUTPUT_ACTIVATIONS = ("tanh", "identity")

#: The schedule of the released XINC NeRV log (Cityscapes-VPS 0005, 30 frames at 128x256):
#: 1,000 epochs of batches of 2 frames with Adam, MSE loss, lr 1e-3 on a cosine schedule that
#: first warms up linearly from 0.1 x lr over the first 10 % of training; it reaches 33.32 dB.
#: ``steps`` is ``epochs * ceil(num_frames / batch_frames)`` for the 30 frames; the released run took
#: 16 min 52 s on a GPU.
NERV_PAPER_SCHEDULE: dict[str, float | int | str] = {
    "num_frames": 30,
    "epochs": 1000,
    "batch_frames": 2,
    "steps": 15000,
    "lr": 1e-3,
    "schedule": "cosine",
    "warmup_fraction": 0.1,
    "warmup_start_factor": 0.1,
    "loss": "mse",
    "reference_psnr": 33.32,
}


@dataclass
class ConvTrace:
    """One forward pass of a frame decoder with the input of every canvas conv.

    Attributes:
        output: ``[B, 3, H, W]`` the model output (after the output map).
        head_output: ``[B, 3, H, W]`` the head conv's output ``y`` before the output map.
        inputs: per canvas conv in network order (blocks, then head), its input ``[B, C_in, h, w]``.
    """

    output: torch.Tensor
    head_output: torch.Tensor
    inputs: list[torch.Tensor]


def frame_encoding(t: torch.Tensor, num_frames: int, base: float = 1.25, levels: int = 80) -> torch.Tensor:
    """NeRV positional encoding ``[sin(b_i pi s), cos(b_i pi s)]`` of ``s = t / num_frames``.

    The frequencies ``b_i pi = base^i pi`` (``i < levels``) are the reference's float32 values, so
    checkpoints trained with the reference code reproduce; ``s``, the phases and sin/cos are
    float64, because the top phase (``1.25^79 pi ~ 1.4e8``) has no correct digits in float32.

    Args:
        t: ``[B]`` integer frame indices.
        num_frames: number of frames of the video (the normaliser of ``t``).

    Returns:
        ``[B, 2 * levels]`` float32, sines first.
    """
    frequencies = (base ** torch.arange(levels) * math.pi).to(device=t.device, dtype=torch.float64)
    phases = (t.to(torch.float64) / num_frames)[:, None] * frequencies
    return torch.cat([torch.sin(phases), torch.cos(phases)], dim=-1).float()


class PixelShuffleBlock(nn.Module):
    """``GELU(PixelShuffle_r(Conv_k(x)))``: ``[B, C_in, h, w] -> [B, C_out, r h, r w]``.

    The conv has ``C_out * r^2`` output channels; conv channel ``o`` feeds output channel
    ``o // r^2`` at sub-pixel offset ``(s // r, s % r)`` with ``s = o % r^2``.
    """

    def __init__(self, in_channels: int, out_channels: int, upscale: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * upscale**2, kernel_size, padding=kernel_size // 2)
        self.upscale = upscale
        self.shuffle = nn.PixelShuffle(upscale)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.shuffle(self.conv(x)))


class FrameDecoderINR(nn.Module, ABC):
    """Base of the NeRV family: a per-frame embedding decoded by pixel-shuffle conv blocks.

    Subclasses implement :meth:`embed` (``t[B] -> [B, embed_channels, h0, w0]``). The CNN canvas
    tracer (``cnn``) reads :attr:`blocks`, :attr:`head` and :meth:`trace`.

    Args:
        height, width: frame size; both must be divisible by the product of ``upscales``.
        embed_channels: channels ``E`` of the embedding.
        embed_grid: ``(h0, w0)`` of the embedding; the stem makes it ``(H/S, W/S)``.
        stem_width: channels ``C0`` of the stem output.
        widths: output channels of each block.
        upscales: pixel-shuffle factor ``r`` of each block.
        kernel_size: kernel size of the block convs and the head.
        output_activation: ``"tanh"`` (``(tanh(y) + 1) / 2``, as trained in the reference) or
            ``"identity"``.
    """

    signal_kind = "video"
    input_kind = "frame"
    family = "nerv"
    tracer = "cnn"

    def __init__(
        self,
        *,
        height: int,
        width: int,
        embed_channels: int,
        embed_grid: tuple[int, int],
        stem_width: int,
        widths: Sequence[int],
        upscales: Sequence[int],
        kernel_size: int,
        output_activation: str,
    ) -> None:
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise XincError(
                f"unknown output_activation {output_activation!r}; choose one of {', '.join(OUTPUT_ACTIVATIONS)}"
            )
        if len(widths) != len(upscales):
            raise XincError(f"give one upscale per block: {len(widths)} widths but {len(upscales)} upscales")
        stride = math.prod(upscales)
        grid = (height // stride, width // stride)
        if grid[0] * stride != height or grid[1] * stride != width:
            raise XincError(
                f"a {type(self).__name__} with total stride {stride} needs frames whose height and width are "
                f"multiples of {stride}; got {height}x{width}: resize the signal, e.g. --size 128x256"
            )
        self.height, self.width = height, width
        self.output_activation = output_activation
        self.unfold = (grid[0] // embed_grid[0], grid[1] // embed_grid[1])
        self.stem = nn.Conv2d(embed_channels, stem_width * self.unfold[0] * self.unfold[1], 1)
        channels = [stem_width, *widths]
        self.blocks = nn.ModuleList(
            PixelShuffleBlock(c_in, c_out, r, kernel_size)
            for c_in, c_out, r in zip(channels[:-1], channels[1:], upscales)
        )
        self.head = nn.Conv2d(channels[-1], 3, kernel_size, padding=kernel_size // 2)

    @abstractmethod
    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """``[B]`` frame indices -> ``[B, E, h0, w0]`` embeddings."""

    def stem_features(self, embedding: torch.Tensor) -> torch.Tensor:
        """``[B, E, h0, w0] -> [B, C0, h0 * uh, w0 * uw]``: 1x1 conv, GELU, unfold channels to space.

        Stem channel ``c * uh * uw + dy * uw + dx`` becomes pixel ``(y * uh + dy, x * uw + dx)`` of
        channel ``c`` (the reference's reshape; for NeRV ``h0 = w0 = 1`` and ``(uh, uw) = (H/S, W/S)``).
        """
        x = F.gelu(self.stem(embedding))
        b, _, h, w = x.shape
        uh, uw = self.unfold
        x = x.view(b, -1, uh, uw, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, -1, h * uh, w * uw)

    def trace(self, t: torch.Tensor) -> ConvTrace:
        """Forward pass keeping the input of every block conv and of the head."""
        x = self.stem_features(self.embed(t))
        inputs: list[torch.Tensor] = []
        for block in self.blocks:
            inputs.append(x)
            x = block(x)
        inputs.append(x)
        y = self.head(x)
        return ConvTrace(output=self.output_map(y), head_output=y, inputs=inputs)

    def output_map(self, y: torch.Tensor) -> torch.Tensor:
        """The map from the head output ``y`` to RGB (``(tanh(y) + 1) / 2`` or identity)."""
        if self.output_activation == "tanh":
            return torch.tanh(y) * 0.5 + 0.5
        return y

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t[B]`` frame indices -> ``[B, 3, H, W]`` frames."""
        return self.trace(t).output


class NeRV(FrameDecoderINR):
    """NeRV: frame index -> positional encoding -> conv decoder (Chen et al., NeurIPS 2021).

    Args:
        num_frames: frames of the video (``t`` is normalised by it).
        height, width: frame size (multiples of the total stride).
        encoding_base, encoding_levels: frequencies ``base^i pi``, ``i < levels`` (160-d for 80).
        stem_width, widths, upscales, kernel_size, output_activation: see :class:`FrameDecoderINR`.
    """

    default_lr = 1e-3

    def __init__(
        self,
        num_frames: int,
        height: int = 128,
        width: int = 256,
        *,
        encoding_base: float = 1.25,
        encoding_levels: int = 80,
        stem_width: int = 37,
        widths: Sequence[int] = (31, 26, 22),
        upscales: Sequence[int] = (4, 2, 2),
        kernel_size: int = 3,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__(
            height=height,
            width=width,
            embed_channels=2 * encoding_levels,
            embed_grid=(1, 1),
            stem_width=stem_width,
            widths=widths,
            upscales=upscales,
            kernel_size=kernel_size,
            output_activation=output_activation,
        )
        self.num_frames = num_frames
        self.encoding_base = encoding_base
        self.encoding_levels = encoding_levels

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, 2 * levels, 1, 1]`` positional encoding of ``t / num_frames``."""
        encoding = frame_encoding(t, self.num_frames, self.encoding_base, self.encoding_levels)
        return encoding[:, :, None, None]


class DownBlock(nn.Module):
    """``GELU(Conv_k(PixelUnshuffle_s(x)))``: ``[B, C_in, h, w] -> [B, C_out, h / s, w / s]``."""

    def __init__(self, in_channels: int, out_channels: int, downscale: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(downscale)
        self.conv = nn.Conv2d(in_channels * downscale**2, out_channels, kernel_size, padding=kernel_size // 2)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.conv(self.unshuffle(x)))


class HNeRV(FrameDecoderINR):
    """HNeRV: a conv encoder computes each frame's embedding from the frame itself (Chen et al., CVPR 2023).

    The encoder is part of the model and is trained with the decoder, so the model needs the
    frames it represents:

    * :meth:`set_frames` attaches the video (a non-persistent buffer, never saved); while frames
      are attached, ``forward(t)`` encodes ``frames[t]`` (training, rendering, canvases);
    * :meth:`cache_embeddings` stores every frame's embedding in the persistent ``embeddings``
      buffer and detaches the frames; afterwards ``forward(t)`` decodes ``embeddings[t]``, so a
      checkpoint saved then works without the video (the embeddings are part of the model size,
      ``embeddings.numel()`` values besides the parameters).

    Args:
        num_frames, height, width: the video's shape.
        encoder_widths: output channels of the encoder blocks; the last is the embedding width.
        downscales: pixel-unshuffle factor of each encoder block; their product must equal that
            of ``upscales`` so the embedding sits on the stem grid.
        stem_width, widths, upscales, kernel_size, output_activation: see :class:`FrameDecoderINR`.
    """

    default_lr = 1e-3
    needs_frames = True

    def __init__(
        self,
        num_frames: int,
        height: int = 128,
        width: int = 256,
        *,
        encoder_widths: Sequence[int] = (32, 32, 16),
        downscales: Sequence[int] = (4, 2, 2),
        stem_width: int = 37,
        widths: Sequence[int] = (31, 26, 22),
        upscales: Sequence[int] = (4, 2, 2),
        kernel_size: int = 3,
        output_activation: str = "tanh",
    ) -> None:
        if math.prod(downscales) != math.prod(upscales):
            raise XincError(
                f"HNeRV's encoder downscales {tuple(downscales)} and decoder upscales {tuple(upscales)} "
                "must have the same product so the embedding sits on the decoder's stem grid"
            )
        stride = math.prod(upscales)
        grid = (height // stride, width // stride)
        super().__init__(
            height=height,
            width=width,
            embed_channels=encoder_widths[-1],
            embed_grid=grid,
            stem_width=stem_width,
            widths=widths,
            upscales=upscales,
            kernel_size=kernel_size,
            output_activation=output_activation,
        )
        self.num_frames = num_frames
        channels = [3, *encoder_widths]
        self.encoder = nn.Sequential(
            *(DownBlock(c_in, c_out, s, kernel_size) for c_in, c_out, s in zip(channels[:-1], channels[1:], downscales))
        )
        self.register_buffer("frames", None, persistent=False)
        self.register_buffer("embeddings", torch.zeros(num_frames, encoder_widths[-1], *grid))
        self.register_buffer("embeddings_cached", torch.tensor(False))

    def set_frames(self, frames: torch.Tensor) -> None:
        """Attach the video ``frames[T, H, W, 3]`` (float in [0, 1]) that the encoder reads."""
        expected = (self.num_frames, self.height, self.width, 3)
        if tuple(frames.shape) != expected:
            raise XincError(
                f"HNeRV was built for frames of shape {expected} but got {tuple(frames.shape)}; "
                "build it with the signal's num_frames, height and width"
            )
        self.frames = frames.permute(0, 3, 1, 2).to(self.stem.weight).contiguous()

    @torch.no_grad()
    def cache_embeddings(self, batch_frames: int = 8) -> None:
        """Encode every attached frame into ``embeddings`` and detach the frames."""
        if self.frames is None:
            raise XincError("HNeRV.cache_embeddings needs the frames: call model.set_frames(signal.frames) first")
        for start in range(0, self.num_frames, batch_frames):
            self.embeddings[start : start + batch_frames] = self.encoder(self.frames[start : start + batch_frames])
        self.embeddings_cached.fill_(True)
        self.frames = None

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, E, H/S, W/S]``: the encoded frames (or their cached embeddings)."""
        if self.frames is not None:
            return self.encoder(self.frames[t])
        if bool(self.embeddings_cached):
            return self.embeddings[t]
        raise XincError(
            "HNeRV computes each frame's embedding from the frame: call model.set_frames(signal.frames) "
            "before training or rendering, or load a checkpoint saved after model.cache_embeddings()"
        )


@register_inr(
    "nerv-paper",
    family="nerv",
    signal_kind="video",
    input_kind="frame",
    tracer="cnn",
    description="XINC paper NeRV: 160-d encoding of t, 37x8x16 stem, blocks r=4/2/2 to 22 channels, 978,557 parameters",
)
def nerv_paper(num_frames: int, height: int = 128, width: int = 256, output_activation: str = "tanh") -> NeRV:
    """The NeRV of the XINC paper (SPEC 3): 978,557 parameters at 128x256.

    The stem is a 1x1 conv 160 -> 37 * (H/16) * (W/16) (the reference's form; 762,496 of the
    parameters at 128x256) unfolded to a ``37 x H/16 x W/16`` map, then blocks with ``r = 4, 2, 2``
    and widths 37 -> 31 -> 26 -> 22, and a 3x3 head 22 -> 3.
    """
    return NeRV(num_frames, height, width, output_activation=output_activation)


@register_inr(
    "hnerv-small",
    family="nerv",
    signal_kind="video",
    input_kind="frame",
    tracer="cnn",
    description="HNeRV with the paper NeRV's decoder; a 3-block conv encoder gives 16x(H/16)x(W/16) embeddings",
)
def hnerv_small(num_frames: int, height: int = 128, width: int = 256, output_activation: str = "tanh") -> HNeRV:
    """HNeRV whose decoder matches ``nerv-paper`` past the stem (same canvas layers and kernel counts).

    Encoder: three ``GELU(Conv3x3(PixelUnshuffle_s))`` blocks, ``s = 4, 2, 2``, widths 3 -> 32 -> 32 -> 16;
    the stem is a 1x1 conv 16 -> 37 on the ``H/16 x W/16`` embedding.
    """
    return HNeRV(num_frames, height, width, output_activation=output_activation)
