"""A canvas traced on demand, a window of frames at a time, and never written.

A canvas is a means, not the product: the paper NeRV's canvas of 30 frames at 128x256 is 47 GB as
float16, more than the disk of a machine that can score it. :func:`traced_canvas` returns a
:class:`~xinc_bench.canvas.canvas.Canvas` whose layers are traced when read: a read of frames
``a:b`` of any layer traces every layer of those frames at once (the tracer's frame window,
:class:`~xinc_bench.canvas.tracer.TraceJob`) and keeps the layers of that window not read yet, so
the block-by-block driver of the probes (:func:`~xinc_bench.probes.accumulator.accumulate`, which
reads every layer of a window once before the next window) traces the whole canvas once per pass.
Memory: at most one window of every layer, sized by the memory budget, freed layer by layer as it
is read; disk: nothing.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.signal import Signal
from ..errors import XincError
from ..inrs.base import render_output
from ..registry import TRACERS
from .canvas import Canvas, default_chunk_bytes
from .compute import refuse_non_finite, traced_layers


class TracedWindows:
    """Traces every layer of a window of frames when one of them is read, and keeps the layers not read yet.

    Each layer's block of the window is handed out once: the window keeps only the blocks not read
    yet, and a block lives on only as long as its readers hold it. A pass that reads every layer of
    a window (as :func:`~xinc_bench.probes.accumulator.accumulate` does) thus frees each layer as soon
    as the probes are done with it, and leaves nothing behind at its end: neither the probes'
    ``compute`` nor the next canvas's pass (a control's) shares the memory with a window no one
    reads any more. Reading a layer again traces its window again.

    Attributes:
        checks: the tracer's exactness checks, worst over the windows traced so far.
        seconds: time spent tracing; frames_traced: frames traced (a pass over T frames adds T).
        metadata: the canvas's metadata, whose ``checks`` and ``canvas_seconds`` follow the two above.
    """

    def __init__(self, model: nn.Module, tracer: str, shape: tuple[int, int, int], counts: dict[str, int],
                 dtype: np.dtype, chunk_size: int, metadata: dict[str, Any]) -> None:
        self.model = model
        self.metadata = metadata
        self.tracer = tracer
        self.shape = shape
        self.counts = counts
        self.dtype = np.dtype(dtype)
        self.chunk_size = chunk_size
        self.checks: dict[str, float] = {}
        self.seconds = 0.0
        self.frames_traced = 0
        self._window: tuple[int, int] | None = None
        self._blocks: dict[str, torch.Tensor] = {}

    def read(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of layer ``name`` ``[N, stop - start, H, W]``, from the kept window if it holds them
        (not read yet), else traced with every layer of those frames."""
        if self._window != (start, stop) or name not in self._blocks:
            self._blocks = {}  # free the previous window before tracing the next
            self._blocks = self._trace(start, stop)
            self._window = (start, stop)
        block = self._blocks.pop(name)  # kept by its readers only, so freed as soon as they are done
        if not self._blocks:
            self._window = None
        return block

    def _trace(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        _, height, width = self.shape
        arrays = {name: np.empty((count, stop - start, height, width), self.dtype) for name, count in self.counts.items()}
        recon = np.empty((stop - start, height, width, 3), np.float32)
        started = time.perf_counter()
        checks = TRACERS.get(self.tracer).trace(self.model, self.shape, arrays, recon, self.chunk_size,
                                                frames=(start, stop))
        self.seconds += time.perf_counter() - started
        self.frames_traced += stop - start
        refuse_non_finite(arrays)
        for key, value in checks.items():
            self.checks[key] = max(self.checks.get(key, value), value)
        self.metadata.update(checks=dict(self.checks), canvas_seconds=self.seconds)
        return {name: torch.from_numpy(array) for name, array in arrays.items()}


class TracedLayer:
    """One layer of a traced canvas (a :class:`~xinc_bench.canvas.canvas.LayerSource`); each read is a
    block of its own (:meth:`TracedWindows.read` hands each block out once)."""

    fresh_reads = True

    def __init__(self, windows: TracedWindows, name: str) -> None:
        self.windows = windows
        self.name = name
        num_frames, height, width = windows.shape
        self.shape = (windows.counts[name], num_frames, height, width)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of the layer (see :meth:`TracedWindows.read`)."""
        return self.windows.read(self.name, start, stop)


def window_bytes(counts: dict[str, int], shape: tuple[int, int, int]) -> int:
    """Bytes of one frame of every layer as float32: what a window holds per frame."""
    _, height, width = shape
    return 4 * sum(counts.values()) * height * width


def traced_canvas(
    model: nn.Module,
    signal: Signal,
    tracer: str,
    *,
    layers: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
    memory_budget: int | None = None,
    chunk_size: int = 16384,
    metadata: dict[str, Any] | None = None,
) -> Canvas:
    """The canvas of ``model`` on ``signal``'s grid, traced window by window when read (nothing written).

    Args:
        tracer: registered tracer name; layers: trace only these (default: all the tracer selects).
        dtype: the precision contributions are traced in (``torch.float16`` rounds them as a
            float16 canvas file would).
        memory_budget: bytes one window of every layer may take as float32 (default:
            :func:`~xinc_bench.canvas.canvas.default_chunk_bytes`); a window holds at least one frame.
        chunk_size: pixels (or frames, for frame tracers) the tracer processes at once.
        metadata: model, data and fidelity descriptions stored with the canvas. The canvas's
            ``checks`` (the tracer's exactness checks, worst over the windows) and ``canvas_seconds``
            (time spent tracing, over every pass) are updated as windows are traced.

    Raises:
        XincError: ``layers`` names a layer the tracer does not trace; the budget is not positive.
    """
    model.eval()
    shape = (signal.num_frames, signal.height, signal.width)
    counts = traced_layers(TRACERS.get(tracer).layers(model, shape), layers, tracer)
    budget = default_chunk_bytes() if memory_budget is None else int(memory_budget)
    if budget < 1:
        raise XincError(f"the memory budget must be a positive number of bytes, not {budget}")
    frames_per_window = max(1, budget // window_bytes(counts, shape))
    np_dtype = np.dtype(np.float16 if dtype == torch.float16 else np.float32)
    meta = {**(metadata or {}), "tracer": tracer, "dtype": str(np_dtype), "streamed": True}
    windows = TracedWindows(model, tracer, shape, counts, np_dtype, chunk_size, meta)
    _, height, width = shape
    # Canvas.frame_chunks sizes blocks per layer; the largest layer's budget gives the window for all.
    largest = 4 * max(counts.values()) * height * width
    return Canvas(
        layers={name: TracedLayer(windows, name) for name in counts},
        frames=signal.frames,
        recon=render_output(model, shape),
        masks=signal.masks,
        flow=signal.flow,
        metadata=meta,
        chunk_bytes=frames_per_window * largest,
    )
