"""Probes as accumulators: ``update(chunk)`` on each block of the canvas, ``compute()`` at the end.

A canvas can be far larger than memory and costly to make, so it is read (or, later, traced) once,
in blocks, and every block is handed to every probe and control while it is in memory (the
torchmetrics shape). A probe is a :class:`ProbeAccumulator` registered in
:data:`~xinc_bench.registry.PROBES`:

* it is built from the canvas and the task's parameters, and may read everything of the canvas
  *except its layers* (frames, masks, flow, reconstruction, metadata, layer names and shapes);
* :meth:`~ProbeAccumulator.update` receives float32 blocks ``[N, t, H, W]`` holding frames
  ``start .. start + t - 1`` of one layer. Within a pass every layer's frames arrive once, in
  frame order; blocks of different layers interleave (all layers of frames 0..t-1, then of the
  next frames). A block is shared by every accumulator of the pass: never modify it in place;
* a probe that needs a global view declares ``passes = 2`` (or more) and gets every block again
  in each pass, :meth:`~ProbeAccumulator.end_pass` being called after each. ``passes`` is read
  before the first pass as the most the accumulator may need; it may lower it in ``end_pass``
  when it finds it has what it needs (a pass no accumulator needs is not made);
* :meth:`~ProbeAccumulator.compute` returns the :class:`~xinc_bench.probes.base.ProbeResult`.

:func:`accumulate` drives groups of accumulators over one canvas, reading it once per pass for
all. A control canvas (the spatial shuffle of :func:`~xinc_bench.probes.controls.shuffle_canvas`,
the random-init twin's) is driven in passes of its own, so that one canvas's probe state is held
at a time (:func:`~xinc_bench.runs.stages.probe_tasks`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from dataclasses import field
from typing import Any, Callable, Sequence

import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..heap import reused_heap

@dataclass
class ProbeResult:
    """What a probe returns.

    Attributes:
        scores: metric name -> value. Headline metrics use the names declared in the task YAML;
            per-layer values are ``"<layer>/<metric>"``.
        figures: artefact name -> matplotlib Figure, saved as ``<name>.png`` beside the record.
        nulls: null model -> score name -> the score on each null draw (see :mod:`~xinc_bench.probes.nulls`).
        absent: score name -> why the probe could not compute it on this canvas (then absent from ``scores``).
    """

    scores: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)
    nulls: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)


class Accumulator(ABC):
    """Anything fed the blocks of a canvas by :func:`accumulate`: ``update`` per block, ``end_pass``
    per pass, ``compute`` at the end (a probe, or a summary of the canvas such as the run's preview)."""

    #: passes over the canvas the accumulator needs (a two-pass scheme says 2); it may be lowered in
    #: :meth:`end_pass`, never raised once the first pass began
    passes: int = 1

    @abstractmethod
    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        """Take frames ``start .. start + t - 1`` of ``layer``, ``chunk`` float32 ``[N, t, H, W]`` (read only)."""

    def end_pass(self, pass_index: int) -> None:
        """Called once every block of pass ``pass_index`` was given (default: nothing to do)."""

    @abstractmethod
    def compute(self) -> Any:
        """What the accumulator found, once every pass has ended."""


class ProbeAccumulator(Accumulator):
    """A probe that scores a canvas from its blocks (see the module docstring for the contract).

    Args:
        canvas: the canvas being probed; its layers are not read (they come through :meth:`update`).
        params: the task's parameters (``null_draws``, ``null_seed`` and the probe's own).
    """

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        self.canvas = canvas
        self.params = params

    @classmethod
    def held_bytes(cls, counts: dict[str, int], shape: tuple[int, int, int], params: dict[str, Any]) -> int:
        """Bytes the probe holds beyond one block, on a canvas of layers ``counts`` (name -> neurons)
        and ``(T, H, W)`` frames: what a unit's memory plan adds for it
        (:func:`~xinc_bench.runs.budget.plan_unit`). The default, 0, is for state per neuron, pixel or
        group, which the plan's reserve covers; a probe holding samples of the canvas or maps from
        the model says how much."""
        return 0

    def for_control(self, canvas: Canvas) -> ProbeAccumulator:
        """The same probe, without null draws, on a control of this canvas made from the same model
        (the spatial shuffle). A probe that computes something from the model alone (faithfulness's
        ablation ground truth) shares it instead of computing it again."""
        return type(self)(canvas, {**self.params, "null_draws": 0})

    @abstractmethod
    def compute(self) -> ProbeResult:
        """The scores, null draws, absent scores and figures, once every pass has ended."""


@dataclass
class AccumulatorGroup:
    """Accumulators fed the canvas together; :func:`accumulate` reports what became of each, per group."""

    accumulators: Sequence[Accumulator]


@dataclass
class Accumulated:
    """What became of one accumulator: its result (a probe's :class:`ProbeResult`), or the error that
    stopped it; and its own time.

    ``seconds`` counts the accumulator's ``update``, ``end_pass`` and ``compute`` calls, not the
    shared reads of the canvas.
    """

    result: Any = None
    error: XincError | None = None
    seconds: float = 0.0


def window_frames(canvas: Canvas) -> int:
    """Frames per block: as many as fit the canvas's chunk budget for its largest layer (at least 1)."""
    return min((canvas.frames_per_chunk(name) for name in canvas.layer_names), default=1)


def num_passes(groups: Sequence[AccumulatorGroup]) -> int:
    """Passes over the canvas that ``groups`` need (the most any of their accumulators declares)."""
    return max((acc.passes for group in groups for acc in group.accumulators), default=0)


def accumulate(
    canvas: Canvas,
    groups: Sequence[AccumulatorGroup],
    *,
    isolate_errors: bool = False,
    advance: Callable[[int], None] | None = None,
) -> list[list[Accumulated]]:
    """Drive every group's accumulators over ``canvas``; what became of each, per group, in order.

    Each pass reads each block of the canvas once (:meth:`Canvas.layer_frames`, which refuses NaN
    and inf) and gives it to every accumulator that still needs the pass. Memory: one block of one
    layer at a time; large temporaries are reused from the C heap, whose free memory is returned
    after each block (:func:`~xinc_bench.heap.reused_heap`).

    Args:
        isolate_errors: an accumulator raising :class:`~xinc_bench.errors.XincError` stops alone
            (its :attr:`Accumulated.error`) and the others carry on; otherwise the error propagates.
            Errors reading the canvas always propagate: they concern every accumulator.
        advance: called with the frames of each block once every layer of it was given (progress;
            they add up to ``passes * T``, :func:`num_passes`, a pass no accumulator needs any more
            counting as made).
    """
    runs = [[Accumulated() for _ in group.accumulators] for group in groups]

    def call(run: Accumulated, method: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args)
        except XincError as exc:
            if not isolate_errors:
                raise
            run.error = exc
        finally:
            run.seconds += time.perf_counter() - started

    num_frames = canvas.shape[0]
    step = window_frames(canvas)
    with reused_heap() as release:  # large temporaries reused, not mapped and zeroed afresh
        for pass_index in range(num_passes(groups)):
            active = []
            for group, group_runs in zip(groups, runs):
                members = [(acc, run) for acc, run in zip(group.accumulators, group_runs)
                           if acc.passes > pass_index and run.error is None]
                if members:
                    active.append(members)
            if not active:  # no accumulator needs this pass (they lowered their passes or stopped)
                if advance is not None:
                    advance(num_frames)
                continue
            for start in range(0, num_frames, step):
                stop = min(num_frames, start + step)
                for name in canvas.layer_names:
                    block = canvas.layer_frames(name, start, stop)
                    for members in active:
                        for acc, run in members:
                            if run.error is None:
                                call(run, acc.update, name, start, block, pass_index)
                    block = None  # freed before the next read, which may trace a new window
                    release()
                if advance is not None:
                    advance(stop - start)
            for members in active:
                for acc, run in members:
                    if run.error is None:
                        call(run, acc.end_pass, pass_index)
        for group, group_runs in zip(groups, runs):
            for acc, run in zip(group.accumulators, group_runs):
                if run.error is None:
                    run.result = call(run, acc.compute)
    return runs


def run_accumulator(accumulator: ProbeAccumulator, canvas: Canvas) -> ProbeResult:
    """One accumulator driven over ``canvas`` alone (the functional form of a probe)."""
    result = accumulate(canvas, [AccumulatorGroup([accumulator])])[0][0].result
    assert result is not None
    return result
