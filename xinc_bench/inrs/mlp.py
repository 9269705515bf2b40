"""Coordinate MLP INRs: Fourier-feature networks (FFN) and their encodings and activations.

Every MLP INR here is ``encoding -> (Linear -> activation) * L -> Linear``. It exposes
:meth:`CoordinateMLP.trace`, which returns the inputs of each Linear layer: the source
activations of the MLP canvas rule (SPEC 4.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import register_inr


class FourierFeatures(nn.Module):
    """gamma(x) = [sin(2 pi B x), cos(2 pi B x)] with fixed ``B[mapping_size, in_dim] ~ N(0, scale^2)``."""

    def __init__(self, in_dim: int = 2, mapping_size: int = 104, scale: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("B", torch.randn(mapping_size, in_dim) * scale)

    @property
    def out_dim(self) -> int:
        return 2 * self.B.shape[0]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords[P, in_dim] -> features[P, 2 * mapping_size]`` (sines first)."""
        proj = 2.0 * math.pi * coords @ self.B.T
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


@dataclass
class MLPTrace:
    """One forward pass with the source activations of every canvas layer.

    Attributes:
        output: ``[P, 3]`` network output.
        inputs: per canvas layer, the ``[P, N]`` activations fed to its target Linear.
        targets: per canvas layer, the target ``nn.Linear`` (weight ``[K, N]``).
    """

    output: torch.Tensor
    inputs: list[torch.Tensor]
    targets: list[nn.Linear]


class CoordinateMLP(nn.Module):
    """``encoding -> (Linear -> activation) * (len(widths) - 1) -> Linear -> output``.

    Args:
        encoding: module mapping ``[P, D]`` coordinates to ``[P, widths[0]]`` features.
        widths: layer widths from the encoding output to the output, e.g. ``[208, 104, 104, 3]``.
        activation: the hidden activation module (shared; it is stateless).
    """

    signal_kind = "image"
    input_kind = "coords"
    tracer = "mlp"

    def __init__(self, encoding: nn.Module, widths: list[int], activation: nn.Module) -> None:
        super().__init__()
        self.encoding = encoding
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activation = activation

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.trace(coords).output

    def trace(self, coords: torch.Tensor) -> MLPTrace:
        """Forward pass keeping the input of every Linear layer (``layer1`` = encoding features)."""
        h = self.encoding(coords)
        inputs: list[torch.Tensor] = []
        for i, linear in enumerate(self.linears):
            inputs.append(h)
            h = linear(h)
            if i < len(self.linears) - 1:
                h = self.activation(h)
        return MLPTrace(output=h, inputs=inputs, targets=list(self.linears))


@register_inr("ffn-paper", family="ffn", signal_kind="image", input_kind="coords", tracer="mlp",
              description="XINC paper FFN: 104 Fourier features (sigma 10), 2x104 ReLU, 32,971 parameters")
def ffn_paper(mapping_size: int = 104, hidden_width: int = 104, scale: float = 10.0, hidden_layers: int = 2) -> CoordinateMLP:
    """The FFN of the XINC paper (SPEC 3): gamma(x) 208 -> 104 -> 104 -> 3 with ReLU."""
    encoding = FourierFeatures(in_dim=2, mapping_size=mapping_size, scale=scale)
    widths = [encoding.out_dim] + [hidden_width] * hidden_layers + [3]
    return CoordinateMLP(encoding, widths, nn.ReLU())
