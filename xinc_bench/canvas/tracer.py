"""The tracer interface: how a canvas is computed for a model.

A tracer declares its layers and their neuron counts first (:meth:`Tracer.layers`), so the
canvas file can be laid out before any contribution is computed, then fills the per-layer
arrays chunk by chunk (:meth:`Tracer.trace`). Arrays are numpy views: in memory or memory
maps into the canvas file, which keeps peak memory at one chunk plus the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from torch import nn

from ..errors import XincError


class Tracer(ABC):
    """Computes the contribution of each neuron of each traced layer to each output pixel."""

    #: registry name, set by the ``TRACERS.register`` decorator users
    name: str = ""

    @abstractmethod
    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        """Traced layer names (network order) -> number of neurons, for a ``(T, H, W)`` signal."""

    @abstractmethod
    def trace(
        self,
        model: nn.Module,
        shape: tuple[int, int, int],
        canvas: dict[str, np.ndarray],
        recon: np.ndarray,
        chunk_size: int,
    ) -> dict[str, Any]:
        """Fill ``canvas[layer]`` (``[N, T, H, W]``) and ``recon`` (``[T, H, W, 3]``).

        Returns:
            The exactness checks that ran, e.g. ``{"output_sum_max_rel_error": 3e-7}``.
        """


def select_canvas_layers(model: nn.Module, counts: dict[str, int], tracer: str) -> dict[str, int]:
    """The layers of ``counts`` the model asks for in ``canvas_layers`` (default: all of them).

    Raises:
        XincError: ``canvas_layers`` names a layer the tracer does not trace.
    """
    selected = getattr(model, "canvas_layers", None) or list(counts)
    unknown = [name for name in selected if name not in counts]
    if unknown:
        raise XincError(
            f"{type(model).__name__}.canvas_layers names {unknown}, which the {tracer} tracer does not trace; "
            f"choose among {', '.join(counts)}"
        )
    return {name: counts[name] for name in selected}
