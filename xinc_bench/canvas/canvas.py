"""The in-memory implicit neural canvas: per-layer contribution maps plus the signal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch


@dataclass
class Canvas:
    """Contributions ``C[N, T, H, W]`` of every neuron of every traced layer to every pixel.

    Attributes:
        layers: layer name -> ``[N, T, H, W]`` tensor, or a zero-argument callable that loads it
            (lazy file-backed canvases); insertion order is network order.
        frames: ``[T, H, W, 3]`` float32 in [0, 1], the signal the model represents.
        recon: optional ``[T, H, W, 3]`` reconstruction.
        masks: optional ``[T, H, W]`` int32 segment ids (0 = unlabelled).
        flow: optional ``[T, H, W, 2]`` motion from t-1 to t.
        metadata: model, tracer, data and fidelity descriptions (JSON-serialisable).
    """

    layers: Mapping[str, torch.Tensor | Callable[[], torch.Tensor]]
    frames: torch.Tensor
    recon: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_names(self) -> list[str]:
        """Traced layers in network order."""
        return list(self.layers)

    def layer(self, name: str) -> torch.Tensor:
        """The ``[N, T, H, W]`` canvas of one layer, as float32."""
        value = self.layers[name]
        tensor = value() if callable(value) else value
        return tensor.float()

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of the signal."""
        t, h, w, _ = self.frames.shape
        return int(t), int(h), int(w)
