"""Coordinate MLP INRs: FFN, SIREN, WIRE, Gauss and FINER, with their encodings and activations.

Every MLP INR here is ``encoding -> (Linear -> activation) * L -> Linear``. It exposes
:meth:`CoordinateMLP.trace`, which returns the inputs of each Linear layer: the source
activations of the MLP canvas rule (SPEC 4.1). ``layer1`` is the input of the first Linear: the
encoding features (FFN's Fourier features), or the raw coordinates when the encoding is the
identity (SIREN, WIRE, Gauss, FINER), in which case it is left out of :attr:`canvas_layers`.

Each family follows its paper and public code for activation, initialisation and defaults;
``*-paper`` presets use the published sizes, ``*-33k`` presets keep the family's depth and
shrink the width to the XINC FFN's budget (32,971 trainable parameters). Each model class has
a ``default_lr`` (Adam, full batch) that fits a 128x256 image in a few hundred steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


class Sine(nn.Module):
    """SIREN activation ``sin(omega * z)`` (Sitzmann et al. 2020)."""

    def __init__(self, omega: float = 30.0) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * z)

    def extra_repr(self) -> str:
        return f"omega={self.omega}"


class FinerSine(nn.Module):
    """FINER activation ``sin(omega * (|z| + 1) * z)`` (Liu et al. 2024).

    As in the public FINER code, the scale ``|z| + 1`` is treated as a constant in the backward
    pass (no gradient through it).
    """

    def __init__(self, omega: float = 30.0) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * (z.detach().abs() + 1.0) * z)

    def extra_repr(self) -> str:
        return f"omega={self.omega}"


class Gaussian(nn.Module):
    """Gaussian activation ``exp(-(scale * z)^2)`` (Ramasinghe & Lucey 2022, WIRE code's form)."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((self.scale * z) ** 2))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ComplexGabor(nn.Module):
    """WIRE's complex Gabor wavelet ``exp(j omega z - |scale z|^2)`` (Saragadam et al. 2023).

    Takes real or complex ``z`` and returns complex64 activations of the same shape. With
    ``z = x + i y`` this is ``exp(-omega y - scale^2 (x^2 + y^2)) * exp(i omega x)``, computed in
    polar form because real exp/cos/sin are several times faster than complex exp on CPU.
    """

    def __init__(self, omega: float = 20.0, scale: float = 10.0) -> None:
        super().__init__()
        self.omega = omega
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = (z.real, z.imag) if z.is_complex() else (z, torch.zeros_like(z))
        magnitude = torch.exp(-self.omega * y - self.scale**2 * (x * x + y * y))
        return torch.polar(magnitude, self.omega * x)

    def extra_repr(self) -> str:
        return f"omega={self.omega}, scale={self.scale}"


class ComplexLinear(nn.Module):
    """``y = z W^T + b`` with complex ``W[K, N]`` and ``b[K]``, stored as real and imaginary parts.

    Storing two real tensors keeps checkpoints, optimisers and :func:`count_parameters` in real
    numbers (a complex weight counts as two parameters, as in the WIRE paper's budget). The
    initialisation is PyTorch's for a complex ``nn.Linear``: real and imaginary parts of weight
    and bias each ``U(-1/sqrt(N), 1/sqrt(N))``. ``linear_map = True`` lets the generic hook and
    ablation tracers (:mod:`xinc_bench.canvas.hooks`) treat its input units as neurons.
    """

    linear_map = True

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_real = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_imag = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_real = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_imag = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    @property
    def weight(self) -> torch.Tensor:
        """Complex ``[K, N]`` weight."""
        return torch.complex(self.weight_real, self.weight_imag)

    @property
    def bias(self) -> torch.Tensor:
        """Complex ``[K]`` bias."""
        return torch.complex(self.bias_real, self.bias_imag)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z[P, N]`` (real or complex) -> complex ``[P, K]``."""
        return F.linear(z.to(torch.complex64), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, complex"


@dataclass
class MLPTrace:
    """One forward pass with the source activations of every canvas layer.

    Attributes:
        output: ``[P, 3]`` real network output.
        inputs: per Linear layer, the ``[P, N]`` activations fed to it (complex for WIRE's
            hidden layers).
        targets: per Linear layer, the target module with ``weight[K, N]`` and ``bias[K]`` or
            None (``nn.Linear`` or :class:`ComplexLinear`).
    """

    output: torch.Tensor
    inputs: list[torch.Tensor]
    targets: list[nn.Module]


class CoordinateMLP(nn.Module):
    """``encoding -> (Linear -> activation) * (len(widths) - 2) -> Linear -> output``.

    Args:
        encoding: module mapping ``[P, D]`` coordinates to ``[P, widths[0]]`` features
            (``nn.Identity`` for networks on raw coordinates).
        widths: layer widths from the encoding output to the output, e.g. ``[208, 104, 104, 3]``.
        activation: the hidden activation module (shared; it is stateless).
    """

    signal_kind = "image"
    input_kind = "coords"
    tracer = "mlp"

    def __init__(self, encoding: nn.Module, widths: list[int], activation: nn.Module) -> None:
        super().__init__()
        self.encoding = encoding
        self.linears = nn.ModuleList(
            self._make_linear(i, a, b) for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.activation = activation

    def _make_linear(self, index: int, in_features: int, out_features: int) -> nn.Module:
        """The ``index``-th Linear layer; families override this for complex or bias-free layers."""
        return nn.Linear(in_features, out_features)

    @property
    def canvas_layers(self) -> list[str]:
        """Layers whose source activations are neurons, in network order.

        ``layer1`` is left out when the encoding is the identity: its "neurons" would be the raw
        coordinates (y, x), not units of the network.
        """
        first = 1 if isinstance(self.encoding, nn.Identity) else 0
        return [f"layer{i + 1}" for i in range(first, len(self.linears))]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords[P, D] -> rgb[P, 3]``."""
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


class FourierFeatureMLP(CoordinateMLP):
    """FFN (Tancik et al. 2020): Fourier features of ``in_dim`` coordinates, then a ReLU MLP.

    ``in_dim = 2`` maps ``[y, x]`` (images), ``in_dim = 3`` maps ``[t, y, x]`` (videos, see
    :func:`~xinc_bench.inrs.base.video_coordinates`).
    """

    default_lr = 9e-4

    def __init__(
        self,
        in_dim: int = 2,
        mapping_size: int = 104,
        scale: float = 10.0,
        hidden_width: int = 104,
        hidden_layers: int = 2,
    ) -> None:
        encoding = FourierFeatures(in_dim=in_dim, mapping_size=mapping_size, scale=scale)
        widths = [encoding.out_dim] + [hidden_width] * hidden_layers + [3]
        super().__init__(encoding, widths, nn.ReLU())
        self.signal_kind = "video" if in_dim == 3 else "image"


class SirenMLP(CoordinateMLP):
    """SIREN: ``sin(omega z)`` layers on raw coordinates with the SIREN initialisation.

    First layer weights ``U(-1/n, 1/n)``, later layers (the output layer included)
    ``U(-sqrt(6/n)/omega, sqrt(6/n)/omega)`` with ``n`` the fan-in; biases keep PyTorch's default.

    Args:
        hidden_width: units per hidden layer.
        hidden_layers: hidden-to-hidden layers after the first (SIREN's ``hidden_layers``).
        omega: ``omega_0`` of every sine layer.
    """

    default_lr = 1e-4

    def __init__(self, hidden_width: int = 256, hidden_layers: int = 3, omega: float = 30.0, in_dim: int = 2) -> None:
        super().__init__(nn.Identity(), _plain_widths(in_dim, hidden_width, hidden_layers), Sine(omega))
        _sine_init(self.linears, omega)


class FinerMLP(CoordinateMLP):
    """FINER: ``sin(omega (|z| + 1) z)`` layers with SIREN weights and a wide first-layer bias.

    Weights as :class:`SirenMLP`; the first layer's bias is ``U(-k, k)`` with
    ``k = first_bias_scale`` (FINER's frequency-set selection), the other biases keep PyTorch's
    default.
    """

    default_lr = 5e-4

    def __init__(
        self,
        hidden_width: int = 256,
        hidden_layers: int = 3,
        omega: float = 30.0,
        first_bias_scale: float = 1.0,
        in_dim: int = 2,
    ) -> None:
        super().__init__(nn.Identity(), _plain_widths(in_dim, hidden_width, hidden_layers), FinerSine(omega))
        _sine_init(self.linears, omega)
        with torch.no_grad():
            self.linears[0].bias.uniform_(-first_bias_scale, first_bias_scale)


class GaussMLP(CoordinateMLP):
    """Gaussian-activation MLP ``exp(-(scale z)^2)`` on raw coordinates, PyTorch default init."""

    default_lr = 1e-3

    def __init__(self, hidden_width: int = 256, hidden_layers: int = 2, scale: float = 10.0, in_dim: int = 2) -> None:
        super().__init__(nn.Identity(), _plain_widths(in_dim, hidden_width, hidden_layers), Gaussian(scale))


class WireMLP(CoordinateMLP):
    """WIRE: complex Gabor wavelet layers; real first Linear, complex later ones, real output.

    The output is the real part of the last (complex) Linear. Hidden activations are complex
    and the canvas of a complex layer follows the convention of :mod:`xinc_bench.canvas.mlp`
    (contributions are real parts of the complex contributions). WIRE's paper shrinks widths by
    sqrt(2) since a complex unit holds two real numbers (256 -> 181).

    WIRE's code decays the learning rate over training; at a constant 5e-3 the paper preset
    oscillates after a few hundred full-batch steps, hence ``default_schedule = "cosine"``.
    """

    default_lr = 5e-3
    default_schedule = "cosine"

    def __init__(
        self,
        hidden_width: int = 181,
        hidden_layers: int = 2,
        omega: float = 20.0,
        scale: float = 10.0,
        in_dim: int = 2,
    ) -> None:
        super().__init__(nn.Identity(), _plain_widths(in_dim, hidden_width, hidden_layers), ComplexGabor(omega, scale))

    def _make_linear(self, index: int, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features) if index == 0 else ComplexLinear(in_features, out_features)

    def trace(self, coords: torch.Tensor) -> MLPTrace:
        """Forward pass keeping every Linear's (complex beyond ``layer1``) input; output is real."""
        result = super().trace(coords)
        return MLPTrace(output=result.output.real, inputs=result.inputs, targets=result.targets)


def _plain_widths(in_dim: int, hidden_width: int, hidden_layers: int) -> list[int]:
    """Widths of a network on raw coordinates: first layer, ``hidden_layers`` hidden ones, RGB."""
    return [in_dim] + [hidden_width] * (hidden_layers + 1) + [3]


@torch.no_grad()
def _sine_init(linears: nn.ModuleList, omega: float) -> None:
    """SIREN weight initialisation (first layer ``1/n``, later ``sqrt(6/n)/omega``)."""
    first = linears[0]
    first.weight.uniform_(-1.0 / first.in_features, 1.0 / first.in_features)
    for linear in linears[1:]:
        bound = math.sqrt(6.0 / linear.in_features) / omega
        linear.weight.uniform_(-bound, bound)


@register_inr("ffn-paper", family="ffn", signal_kind="image", input_kind="coords", tracer="mlp",
              description="XINC paper FFN: 104 Fourier features (sigma 10), 2x104 ReLU, 32,971 parameters")
def ffn_paper(mapping_size: int = 104, hidden_width: int = 104, scale: float = 10.0, hidden_layers: int = 2) -> CoordinateMLP:
    """The FFN of the XINC paper (SPEC 3): gamma(x) 208 -> 104 -> 104 -> 3 with ReLU."""
    return FourierFeatureMLP(2, mapping_size, scale, hidden_width, hidden_layers)


@register_inr("ffn-video", family="ffn", signal_kind="video", input_kind="coords", tracer="mlp",
              description="FFN on (t, y, x): 128 Fourier features (sigma 10), 2x208 ReLU, 97,555 parameters")
def ffn_video(
    mapping_size: int = 128, hidden_width: int = 208, scale: float = 10.0, hidden_layers: int = 2
) -> CoordinateMLP:
    """MLP video INR: the FFN on ``[t, y, x]`` (about 100k parameters)."""
    return FourierFeatureMLP(3, mapping_size, scale, hidden_width, hidden_layers)


@register_inr("siren-paper", family="siren", signal_kind="image", input_kind="coords", tracer="mlp",
              description="SIREN paper image fit: 4x256 sine layers (omega 30), 198,915 parameters")
def siren_paper(hidden_width: int = 256, hidden_layers: int = 3, omega: float = 30.0) -> CoordinateMLP:
    """SIREN as in its paper's image fitting: 2 -> 256 x 4 sine layers -> 3."""
    return SirenMLP(hidden_width, hidden_layers, omega)


@register_inr("siren-33k", family="siren", signal_kind="image", input_kind="coords", tracer="mlp",
              description="SIREN at the FFN budget: 4x103 sine layers (omega 30), 32,757 parameters")
def siren_33k(hidden_width: int = 103, hidden_layers: int = 3, omega: float = 30.0) -> CoordinateMLP:
    """SIREN with the paper's depth and the XINC FFN's parameter budget."""
    return SirenMLP(hidden_width, hidden_layers, omega)


@register_inr("wire-paper", family="wire", signal_kind="image", input_kind="coords", tracer="mlp",
              description="WIRE paper: 3x181 complex Gabor layers (omega 20, s 10), 133,403 real parameters")
def wire_paper(
    hidden_width: int = 181, hidden_layers: int = 2, omega: float = 20.0, scale: float = 10.0
) -> CoordinateMLP:
    """WIRE as in its paper and code: 256 / sqrt(2) = 181 complex units, 2 hidden layers."""
    return WireMLP(hidden_width, hidden_layers, omega, scale)


@register_inr("wire-33k", family="wire", signal_kind="image", input_kind="coords", tracer="mlp",
              description="WIRE at the FFN budget: 3x89 complex Gabor layers, 32,847 real parameters")
def wire_33k(hidden_width: int = 89, hidden_layers: int = 2, omega: float = 20.0, scale: float = 10.0) -> CoordinateMLP:
    """WIRE with the paper's depth and the XINC FFN's budget (complex weights count twice)."""
    return WireMLP(hidden_width, hidden_layers, omega, scale)


@register_inr("gauss-paper", family="gauss", signal_kind="image", input_kind="coords", tracer="mlp",
              description="Gauss (WIRE code defaults): 3x256 exp(-(10z)^2) layers, 133,123 parameters")
def gauss_paper(hidden_width: int = 256, hidden_layers: int = 2, scale: float = 10.0) -> CoordinateMLP:
    """Gaussian-activation MLP with the WIRE code's defaults (width 256, 2 hidden layers, s 10)."""
    return GaussMLP(hidden_width, hidden_layers, scale)


@register_inr("gauss-33k", family="gauss", signal_kind="image", input_kind="coords", tracer="mlp",
              description="Gauss at the FFN budget: 3x127 exp(-(10z)^2) layers, 33,277 parameters")
def gauss_33k(hidden_width: int = 127, hidden_layers: int = 2, scale: float = 10.0) -> CoordinateMLP:
    """Gaussian-activation MLP with the XINC FFN's budget."""
    return GaussMLP(hidden_width, hidden_layers, scale)


@register_inr("finer-paper", family="finer", signal_kind="image", input_kind="coords", tracer="mlp",
              description="FINER paper image fit: 4x256 variable-periodic sine layers (omega 30), 198,915 parameters")
def finer_paper(
    hidden_width: int = 256, hidden_layers: int = 3, omega: float = 30.0, first_bias_scale: float = 1.0
) -> CoordinateMLP:
    """FINER as in its image fitting code: 2 -> 256 x 4 -> 3, omega 30, first bias U(-1, 1)."""
    return FinerMLP(hidden_width, hidden_layers, omega, first_bias_scale)


@register_inr("finer-33k", family="finer", signal_kind="image", input_kind="coords", tracer="mlp",
              description="FINER at the FFN budget: 4x103 variable-periodic sine layers, 32,757 parameters")
def finer_33k(
    hidden_width: int = 103, hidden_layers: int = 3, omega: float = 30.0, first_bias_scale: float = 1.0
) -> CoordinateMLP:
    """FINER with the paper's depth and the XINC FFN's budget."""
    return FinerMLP(hidden_width, hidden_layers, omega, first_bias_scale)
