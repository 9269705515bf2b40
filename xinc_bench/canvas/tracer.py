"""The tracer interface: how a canvas is computed for a model.

A tracer declares its layers and their neuron counts first (:meth:`Tracer.layers`), so the
canvas file can be laid out before any contribution is computed, then fills the per-layer
arrays chunk by chunk (:meth:`Tracer.fill`, called by :meth:`Tracer.trace` without autograd).
Arrays are numpy views: in memory or memory maps into the canvas file, which keeps peak memory
at one chunk plus the model.

A trace can cover a window of frames ``[a, b)`` of the signal (:attr:`TraceJob.frames`), so a
caller can compute a canvas frame chunk by frame chunk and hand each chunk on while it is in
memory: the arrays then hold the window's ``b - a`` frames only, and only those frames are
computed. The job's ``shape`` stays the whole signal's ``(T, H, W)``, since models see frames
by their absolute time (a frame INR's index ``t``, a video MLP's ``t`` spaced over ``T``
frames); tracing ``[0, T)`` in windows and concatenating them along frames gives the whole trace.
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
        shape: the whole signal's ``(T, H, W)``, whatever the window.
        canvas: layer name -> ``[N, F, H, W]`` array for the layers asked for (a subset of
            :meth:`Tracer.layers`), ``F = b - a`` the window's frames.
        recon: ``[F, H, W, 3]`` array for the model's output on the window.
        chunk_size: how much is traced at once; each tracer says in what unit (pixels, frames).
        advance: called with the number of output pixels of each chunk once it is traced (progress;
            they add up to ``F * H * W``).
        frames: the window ``(a, b)`` of frames traced, ``0 <= a < b <= T``; None for all ``T``.

    Raises:
        XincError: the window is not within the signal's frames, or an array does not have the
            window's shape.
    """

    shape: tuple[int, int, int]
    canvas: dict[str, np.ndarray]
    recon: np.ndarray
    chunk_size: int
    advance: Callable[[int], None] = field(default=lambda pixels: None)
    frames: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        num_frames, height, width = self.shape
        first, stop = self.window
        if not 0 <= first < stop <= num_frames:
            raise XincError(
                f"frame window [{first}, {stop}) is not within the signal's {num_frames} "
                f"frame{'s' if num_frames != 1 else ''}; a window [a, b) needs 0 <= a < b <= {num_frames}"
            )
        count = stop - first
        wrong = [f"recon {tuple(self.recon.shape)}"] if tuple(self.recon.shape) != (count, height, width, 3) else []
        wrong += [
            f"{name} {tuple(array.shape)}"
            for name, array in self.canvas.items()
            if tuple(array.shape[1:]) != (count, height, width)
        ]
        if wrong:
            raise XincError(
                f"a trace of {count} frames of {height}x{width} pixels writes [N, {count}, {height}, {width}] canvas "
                f"arrays and a [{count}, {height}, {width}, 3] recon; got {', '.join(wrong)}"
            )

    @property
    def window(self) -> tuple[int, int]:
        """The traced frames ``(a, b)``: :attr:`frames`, or ``(0, T)``."""
        return self.frames if self.frames is not None else (0, self.shape[0])


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
        *,
        frames: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Fill ``canvas[layer]`` (``[N, F, H, W]``) and ``recon`` (``[F, H, W, 3]``) without autograd.

        ``shape`` is the whole signal's ``(T, H, W)``; ``frames = (a, b)`` traces frames
        ``a .. b - 1`` only (``F = b - a``; None: all ``T``). ``progress`` is called with the output
        pixels of each traced chunk (see :class:`TraceJob`).

        Returns:
            The exactness checks that ran over the traced pixels, e.g. ``{"output_sum_max_rel_error": 3e-7}``.

        Raises:
            XincError: the window is not ``0 <= a < b <= T`` or an array lacks its shape.
        """
        with torch.no_grad():
            job = TraceJob(shape, canvas, recon, chunk_size, frames=frames)
            return self.fill(model, job if progress is None else replace(job, advance=progress))

    @abstractmethod
    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill ``job.canvas`` and ``job.recon`` for the frames of ``job.window`` only (autograd is off).

        Returns:
            The exactness checks, computed over the window's pixels.
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
