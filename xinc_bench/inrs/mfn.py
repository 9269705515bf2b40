"""Multiplicative filter networks (Fathony et al. 2021, "Multiplicative Filter Networks", ICLR).

A Fourier MFN multiplies each layer's linear output by a sinusoidal filter of the coordinates
instead of passing it through an activation::

    z_1     = g_1(x)
    z_{i+1} = (W_i z_i + b_i) * g_{i+1}(x)        i = 1 .. L
    out     = W_out z_{L+1} + b_out
    g_i(x)  = sin(Omega_i x + phi_i)

so the network is a linear combination of sinusoids of the coordinates, with frequencies the sums
of one row of each ``Omega_i``. The initialisation follows the authors' code (FourierNet): filter
frequencies PyTorch's Linear init ``U(-1/sqrt(D), 1/sqrt(D))`` times ``input_scale / sqrt(L + 1)``,
phases ``U(-pi, pi)``, hidden weights ``U(-sqrt(weight_scale / n), sqrt(weight_scale / n))``.
Their image fit uses ``input_scale = 256`` for a 256-pixel side on coordinates in [-1, 1], which
is the span of the longer side here (:func:`~xinc_bench.inrs.base.image_coordinates`).

Canvas neurons are the MFN's hidden units: ``z_i`` is the input of ``linears[i - 1]`` (the last
of ``linears`` is the output layer), canvas layer ``layer{i}`` of the ``mlp`` tracer, as in the
MLP zoo (:meth:`FourierMFN.trace`). The output layer produces the output, so the tracer's
exactness check (the last layer's maps sum to the output) holds to float precision. A hidden
layer's map is its unit's share of ``W_i z_i + b_i`` before the filter multiplies it (SPEC 4.1
with the ReLU rule); the ``ablation`` tracer gives the exact counterfactual through the filters,
which the ``faithfulness`` task compares it with. The filters hold their own frequency and
phase parameters instead of an ``nn.Linear``, so the hook tracers (``linear``, ``ablation``)
trace the same layers under their module names (``linears.{i - 1}``) and do not take the raw
coordinates the filters read for neurons; the filters appear under ``untraced_modules``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import register_inr
from .mlp import MLPTrace


class FourierFilter(nn.Module):
    """``g(x) = sin(x Omega^T + phi)`` with trainable frequencies ``Omega[K, D]`` and phases ``phi[K]``.

    Args:
        in_dim: coordinate dimension ``D``.
        out_features: filter outputs ``K``.
        frequency_scale: the multiplier of PyTorch's Linear initialisation of ``Omega`` (``gamma``
            in the authors' code).
    """

    def __init__(self, in_dim: int, out_features: int, frequency_scale: float) -> None:
        super().__init__()
        bound = frequency_scale / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(out_features, in_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-math.pi, math.pi))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords[P, D] -> [P, K]``."""
        return torch.sin(F.linear(coords, self.weight, self.bias))

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class FourierMFN(nn.Module):
    """Fourier multiplicative filter network (FourierNet): ``L`` hidden layers gated by sine filters.

    Args:
        hidden_width: units ``n`` of every hidden layer (and of every filter).
        hidden_layers: ``L``, the multiplicative layers after the first filter (``L + 1`` filters).
        input_scale: frequency scale of the filters, shared over the ``L + 1`` filters.
        weight_scale: variance scale of the hidden weights.
        in_dim: 2 for images (``[y, x]``), 3 for videos (``[t, y, x]``).

    ``default_lr`` is the authors' image-fit learning rate (Adam, constant).
    """

    input_kind = "coords"
    tracer = "mlp"
    default_lr = 1e-2

    def __init__(
        self,
        hidden_width: int = 256,
        hidden_layers: int = 3,
        input_scale: float = 256.0,
        weight_scale: float = 1.0,
        in_dim: int = 2,
    ) -> None:
        super().__init__()
        self.signal_kind = "video" if in_dim == 3 else "image"
        frequency_scale = input_scale / math.sqrt(hidden_layers + 1)
        self.filters = nn.ModuleList(FourierFilter(in_dim, hidden_width, frequency_scale) for _ in range(hidden_layers + 1))
        self.linears = nn.ModuleList(nn.Linear(hidden_width, hidden_width) for _ in range(hidden_layers))
        self.linears.append(nn.Linear(hidden_width, 3))
        bound = math.sqrt(weight_scale / hidden_width)
        with torch.no_grad():
            for linear in self.linears[:-1]:
                linear.weight.uniform_(-bound, bound)

    @property
    def canvas_layers(self) -> list[str]:
        """Every layer: the input of each Linear is a vector of hidden units ``z_i``."""
        return [f"layer{i + 1}" for i in range(len(self.linears))]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords[P, D] -> rgb[P, 3]``."""
        return self.trace(coords).output

    def trace(self, coords: torch.Tensor) -> MLPTrace:
        """Forward pass keeping the input ``z_i`` ``[P, n]`` of every Linear (``layer{i}``)."""
        z = self.filters[0](coords)
        inputs: list[torch.Tensor] = []
        for gate, linear in zip(self.filters[1:], self.linears[:-1]):
            inputs.append(z)
            z = linear(z) * gate(coords)
        inputs.append(z)
        return MLPTrace(output=self.linears[-1](z), inputs=inputs, targets=list(self.linears))


@register_inr("mfn-33k", family="mfn", signal_kind="image", input_kind="coords", tracer="mlp",
              description="Fourier MFN at the FFN budget: 4 sine filters x 102, 3 multiplicative layers, 33,051 parameters")
def mfn_33k(hidden_width: int = 102, hidden_layers: int = 3, input_scale: float = 256.0) -> FourierMFN:
    """FourierNet with the authors' image-fit depth (3 multiplicative layers) at the XINC FFN's budget."""
    return FourierMFN(hidden_width, hidden_layers, input_scale)
