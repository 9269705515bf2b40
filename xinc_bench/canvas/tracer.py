"""The tracer interface: how a canvas is computed for a model.

A tracer declares its layers and their neuron counts first (:meth:`Tracer.layers`), so the
canvas file can be laid out before any contribution is computed, then fills the per-layer
arrays chunk by chunk (:meth:`Tracer.fill`, called by :meth:`Tracer.trace` without autograd).
Arrays are numpy views: in memory or memory maps into the canvas file, which keeps peak memory
at one chunk plus the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import XincError


@dataclass(frozen=True)
class TraceJob:
    """What one trace fills, and in what chunks.

    Attributes:
        shape: the signal's ``(T, H, W)``.
        canvas: layer name -> ``[N, T, H, W]`` array for the layers asked for (a subset of
            :meth:`Tracer.layers`).
        recon: ``[T, H, W, 3]`` array for the model's output.
        chunk_size: how much is traced at once; each tracer says in what unit (pixels, frames).
        advance: called with the number of output pixels of each chunk once it is traced (progress;
            they add up to ``T * H * W``).
    """

    shape: tuple[int, int, int]
    canvas: dict[str, np.ndarray]
    recon: np.ndarray
    chunk_size: int
    advance: Callable[[int], None] = field(default=lambda pixels: None)


class Tracer(ABC):
    """Computes the contribution of each neuron of each traced layer to each output pixel.

    A tracer implements :meth:`layers` and :meth:`fill`; callers use :meth:`trace`.
    """

    #: registry name, set by the ``TRACERS.register`` decorator users
    name: str = ""

    @abstractmethod
    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        """Traced layer names (network order) -> number of neurons, for a ``(T, H, W)`` signal."""

    def trace(
        self,
        model: nn.Module,
        shape: tuple[int, int, int],
        canvas: dict[str, np.ndarray],
        recon: np.ndarray,
        chunk_size: int,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Fill ``canvas[layer]`` (``[N, T, H, W]``) and ``recon`` (``[T, H, W, 3]``) without autograd.

        ``progress`` is called with the output pixels of each traced chunk (see :class:`TraceJob`).

        Returns:
            The exactness checks that ran, e.g. ``{"output_sum_max_rel_error": 3e-7}``.
        """
        with torch.no_grad():
            job = TraceJob(shape, canvas, recon, chunk_size)
            return self.fill(model, job if progress is None else replace(job, advance=progress))

    @abstractmethod
    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill ``job.canvas`` and ``job.recon`` (autograd is off); return the exactness checks."""


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
