"""Multi-resolution hash grid encoding + small ReLU MLP (Instant-NGP, Mueller et al. 2022).

Pure PyTorch, vectorised over points, levels and cell corners. Level ``l`` has
``N_l = floor(N_min * b^l)`` cells per axis, so ``(N_l + 1)^D`` vertices; coarse levels whose
vertices fit in ``T`` table entries are indexed densely (one entry per vertex), finer levels are
hashed with ``xor_i (v_i * pi_i) mod T`` (tiny-cuda-nn's primes). Each level's ``F`` features are
the D-linear interpolation of its cell's ``2^D`` corner entries; the levels are concatenated
into ``L * F`` features, which are the neurons of the first canvas layer (``layer1``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import register_inr
from .mlp import CoordinateMLP

#: tiny-cuda-nn's spatial hash primes (first coordinate unscaled for cache coherence)
HASH_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)


class HashGridEncoding(nn.Module):
    """Coordinates ``[P, D]`` in [-1, 1] -> features ``[P, levels * features_per_level]``.

    Coordinates are mapped to [0, 1] and clamped there. Table entries start at
    ``U(-1e-4, 1e-4)``, as in Instant-NGP.

    Args:
        in_dim: coordinate dimension D (2 for images).
        levels: number of resolution levels L.
        features_per_level: features F stored per table entry.
        log2_table_size: log2 of the most entries T a level may hold.
        base_resolution: cells per axis of the coarsest level, N_min.
        per_level_scale: growth factor b between levels.
    """

    def __init__(
        self,
        in_dim: int = 2,
        levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 15,
        base_resolution: int = 16,
        per_level_scale: float = 1.5,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.levels = levels
        self.features_per_level = features_per_level
        table_size = 2**log2_table_size
        resolutions = [math.floor(base_resolution * per_level_scale**level) for level in range(levels)]
        vertices = [(n + 1) ** in_dim for n in resolutions]
        sizes = [min(v, table_size) for v in vertices]
        offsets = [sum(sizes[:level]) for level in range(levels)]
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets), persistent=False)
        self.register_buffer("dense", torch.tensor([v <= table_size for v in vertices]), persistent=False)
        strides = [[(n + 1) ** axis for axis in range(in_dim)] for n in resolutions]
        self.register_buffer("strides", torch.tensor(strides), persistent=False)
        self.register_buffer("primes", torch.tensor(HASH_PRIMES[:in_dim]), persistent=False)
        corners = torch.cartesian_prod(*[torch.tensor([0, 1])] * in_dim).reshape(-1, in_dim)
        self.register_buffer("corners", corners, persistent=False)
        self.table = nn.Parameter(torch.empty(sum(sizes), features_per_level).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.levels * self.features_per_level

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords[P, D] -> features[P, L * F]`` (level-major: level 0's F features first)."""
        unit = ((coords + 1.0) / 2.0).clamp(0.0, 1.0)
        scaled = unit[:, None, :] * self.resolutions[None, :, None]  # [P, L, D]
        cell = scaled.floor()
        fraction = scaled - cell
        vertex = cell.long()[:, :, None, :] + self.corners  # [P, L, 2^D, D]
        weight = torch.where(self.corners.bool(), fraction[:, :, None, :], 1.0 - fraction[:, :, None, :]).prod(-1)
        entries = F.embedding(self._entry_index(vertex), self.table)  # [P, L, 2^D, F]
        features = (weight[..., None] * entries).sum(dim=2)  # [P, L, F]
        return features.reshape(coords.shape[0], self.out_dim)

    def _entry_index(self, vertex: torch.Tensor) -> torch.Tensor:
        """Row of the table for each vertex ``[P, L, 2^D, D]`` -> ``[P, L, 2^D]``."""
        dense = (vertex * self.strides[:, None, :]).sum(-1)
        scrambled = (vertex * self.primes) & 0xFFFFFFFF
        hashed = scrambled[..., 0]
        for axis in range(1, self.in_dim):
            hashed = hashed ^ scrambled[..., axis]
        local = torch.where(self.dense[:, None], dense, hashed) % self.sizes[:, None]
        return local + self.offsets[:, None]


class HashGridMLP(CoordinateMLP):
    """Instant-NGP image model: :class:`HashGridEncoding` then a bias-free ReLU MLP.

    As in tiny-cuda-nn, the MLP has no biases and Xavier-uniform weights; the output is linear.
    ``default_lr`` is tiny-cuda-nn's image sample's 1e-2 (it also uses Adam betas (0.9, 0.99)).
    """

    default_lr = 1e-2

    def __init__(
        self,
        levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 15,
        base_resolution: int = 16,
        per_level_scale: float = 1.5,
        hidden_width: int = 64,
        hidden_layers: int = 2,
        in_dim: int = 2,
    ) -> None:
        encoding = HashGridEncoding(
            in_dim, levels, features_per_level, log2_table_size, base_resolution, per_level_scale
        )
        widths = [encoding.out_dim] + [hidden_width] * hidden_layers + [3]
        super().__init__(encoding, widths, nn.ReLU())
        with torch.no_grad():
            for linear in self.linears:
                nn.init.xavier_uniform_(linear.weight)

    def _make_linear(self, index: int, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features, bias=False)


@register_inr("hashgrid-paper", family="hashgrid", signal_kind="image", input_kind="coords", tracer="mlp",
              description="Instant-NGP image config: 16 levels x 2 features, T=2^15, N_min 16, b 1.5, "
                          "2x64 ReLU MLP, 715,528 parameters")
def hashgrid_paper(
    levels: int = 16,
    features_per_level: int = 2,
    log2_table_size: int = 15,
    base_resolution: int = 16,
    per_level_scale: float = 1.5,
    hidden_width: int = 64,
) -> CoordinateMLP:
    """Hash grid with tiny-cuda-nn's image-fitting sample configuration."""
    return HashGridMLP(levels, features_per_level, log2_table_size, base_resolution, per_level_scale, hidden_width)


@register_inr("hashgrid-33k", family="hashgrid", signal_kind="image", input_kind="coords", tracer="mlp",
              description="Hash grid at the FFN budget: 8 levels x 2 features (16 to 273 cells), T=2^11, "
                          "2x80 ReLU MLP, 32,966 parameters")
def hashgrid_33k(
    levels: int = 8,
    features_per_level: int = 2,
    log2_table_size: int = 11,
    base_resolution: int = 16,
    per_level_scale: float = 1.5,
    hidden_width: int = 80,
) -> CoordinateMLP:
    """Hash grid with the XINC FFN's budget; its finest level matches a 256-pixel side."""
    return HashGridMLP(levels, features_per_level, log2_table_size, base_resolution, per_level_scale, hidden_width)
