"""``run_unit``: the one orchestration of a unit, from its :class:`UnitSpec` to its records.

Stages, each skipped when its output is already in the run folder (so a rerun after ``kill -9``
finishes the work without redoing what was finished):

1. **fit**: decode the signal (once), train the model and its random-init twin;
2. **canvases**: annotate the signal (masks, flow), trace the model's and the twin's canvases;
3. **probes**: every task of the unit on the canvas, beside its nulls and both controls (the
   spatial shuffle and the twin). A task whose needs the canvas does not meet, or that fails on
   this model, is *skipped*: its reason goes to ``records/skipped.json`` and the other tasks go on;
   a rerun tries it again;
4. **sanity** (``spec.sanity``): the model-randomisation check of the records.

The run folder is locked while the unit runs (:meth:`RunDir.open`), and opening it removes the
temporary files of a killed run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..canvas import Canvas, read_canvas, write_canvas
from ..canvas.compute import traced_layers
from ..checkpoints import load_checkpoint
from ..data import Signal, load_signal
from ..errors import XincError
from ..inrs import create_inr, inr_info, resolve_inr
from ..probes.base import load_task
from ..registry import TRACERS
from .progress import Progress
from .record import SCHEMA_VERSION
from .budget import UnitPlan, plan_unit
from .rundir import CANVAS_NAME, RunDir
from .spec import UnitSpec
from .stages import annotate_signal, canvas_run, fit_run, probe_tasks, unmet_needs


@dataclass
class UnitResult:
    """What running one unit did.

    Attributes:
        spec: the unit.
        run_dir: its run folder.
        fitted: whether the model was trained now (``False``: its checkpoint was already there).
        canvases: canvas files computed now (paths relative to ``run_dir``).
        records_written: tasks whose records were written now.
        records_kept: tasks whose records were already there and were kept.
        skipped: task -> why it could not run on this unit (also in ``records/skipped.json``).
        sanity: whether the sanity check was run now.
        seconds: wall time spent on the unit now.
        fidelity: PSNR (dB) and SSIM of the trained model.
    """

    spec: UnitSpec
    run_dir: Path
    fitted: bool = False
    canvases: list[str] = field(default_factory=list)
    records_written: list[str] = field(default_factory=list)
    records_kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    sanity: bool = False
    seconds: float = 0.0
    fidelity: dict[str, float] = field(default_factory=dict)

    @property
    def untouched(self) -> bool:
        """True when the unit was already complete and nothing was run now."""
        return not (self.fitted or self.canvases or self.records_written or self.sanity)

    def records(self) -> list[Path]:
        """The record files of the unit's tasks (written now or kept)."""
        run = RunDir(self.run_dir)
        return [run.record(task) for task in self.records_written + self.records_kept]


def run_unit(spec: UnitSpec, run_dir: Path, *, progress: Progress | None = None, logger: Any = False) -> UnitResult:
    """Run (or finish) one unit in ``run_dir``, doing only the stages whose outputs are missing.

    Before any work the unit's memory and disk are stated (one line) and checked (:func:`~xinc_bench.runs.budget.plan_unit`).

    Args:
        spec: the unit.
        run_dir: its run folder (created; a folder holding another unit's run is refused).
        progress: where stages are reported (default: nowhere).
        logger: a Lightning logger for the training curves (``False``: none).

    Raises:
        XincError: bad input (unknown model, data or task; a folder of another run, or one in use
            by another process; no CUDA for ``device: cuda``; a memory budget or a disk too small);
            or the fit, canvas or sanity stage failed. Tasks that fail are skipped, not raised.
    """
    progress = progress or Progress(quiet=True)
    started = time.perf_counter()
    run = RunDir(run_dir)
    accelerator = resolve_device(spec.device)
    tasks = unit_tasks(spec)
    with run.open():
        result = UnitResult(spec, run.path)
        if run.fitted:
            check_same_settings(spec, run)
        fresh = _fresh(spec, run)
        signal, annotations = (_decode(spec), None) if fresh else _stored_signal(run)
        plan = _plan(spec, signal, run, tasks)
        progress.line(plan.statement())
        models: tuple[tuple[nn.Module, dict[str, Any]], ...] | None = None
        if not run.fitted:
            with progress.stage(f"fit {spec.model} on {spec.sequence or spec.data}, {spec.steps} steps"):
                summary = fit_run(spec.model, spec.data, spec.size, out=run.path, frames=spec.frames, steps=spec.steps,
                                  lr=spec.lr, schedule=spec.schedule, batch_frames=spec.batch_frames, seed=spec.seed,
                                  progress_bar=progress.terminal, logger=logger, signal=signal,
                                  accelerator=accelerator, layout=spec.layout, sequence=spec.sequence)
            result.fitted = True
            models = ((summary.trained, summary.config), (summary.twin, summary.twin_config))
        if fresh:
            with progress.stage("annotate the signal (masks" + (", flow)" if signal.num_frames > 1 else ")")):
                annotations = annotate_signal(signal, spec.masks, spec.flow, dict(spec.mask_options),
                                              dict(spec.flow_options))
        pending = _pending(run, tasks, fresh)
        result.records_kept = [task for task in tasks if task not in pending]
        if pending or not run.preview.is_file():
            models = models or _load_models(spec, run, signal.height, signal.width)
            canvases = _canvases(spec, run, signal, annotations, models, plan, progress, result)
            if fresh:
                write_canvas(dataclasses.replace(canvases[0], layers={}), run.signal)
                result.canvases.append(run.signal.name)
            _run_tasks(spec, run, pending, canvases, models, result, progress)
        else:
            result.skipped = {task: reason for task, reason in run.read_skipped().items() if task in tasks}
        if _needs_sanity(spec, run, result.records_written, result.records_kept):
            from .sanity import sanity_check

            with progress.stage("sanity check (cascading model randomisation)"):
                sanity_check(run.path, result.records_written + result.records_kept, trust_code=spec.trust_code,
                             trusted_spec=spec.model, memory_budget=plan.window_bytes)
            result.sanity = True
        result.fidelity = dict(run.read_config().get("fidelity", {}))
    result.seconds = time.perf_counter() - started
    return result


def finished_unit(spec: UnitSpec, run_dir: Path) -> UnitResult | None:
    """The result :func:`run_unit` would give now without doing anything, read from the run folder alone
    (no lock, no model loaded); ``None`` when it has work to do, or an error to raise (a folder of
    another run). An executor's driver uses it to keep a finished unit without dispatching it."""
    run = RunDir(run_dir)
    if not run.fitted:
        return None
    try:
        check_same_settings(spec, run)
        tasks = unit_tasks(spec)
    except XincError:
        return None
    if _fresh(spec, run) or _pending(run, tasks, False) or not run.preview.is_file() or _needs_sanity(spec, run, [], tasks):
        return None
    return UnitResult(spec, run.path, records_kept=list(tasks),
                      skipped={task: reason for task, reason in run.read_skipped().items() if task in tasks},
                      fidelity=dict(run.read_config().get("fidelity", {})))


def _fresh(spec: UnitSpec, run: RunDir) -> bool:
    """Whether the unit starts over from its signal (nothing trained yet, or canvases asked for and missing)."""
    return not (run.fitted and run.signal.is_file() and (run.saved_canvases or not spec.save_canvas))


def _pending(run: RunDir, tasks: tuple[str, ...], fresh: bool) -> list[str]:
    """The tasks still to probe: all of them on a fresh unit, else those without a current record."""
    return [task for task in tasks if fresh or not current_record(run.record(task), task)]


def _needs_sanity(spec: UnitSpec, run: RunDir, written: list[str], kept: list[str] | tuple[str, ...]) -> bool:
    """Whether the sanity check runs: asked for, with records, and either new records or none checked yet."""
    return bool(spec.sanity and (written or kept) and (written or not run.sanity.is_file()))


def unit_tasks(spec: UnitSpec) -> tuple[str, ...]:
    """The unit's tasks: ``spec.tasks`` (a task that does not apply is skipped later, with its reason), or
    every task (variants aside) whose signal kinds include the model's."""
    from ..probes.base import default_tasks

    kind = inr_info(resolve_inr(spec.model)).signal_kind
    names = spec.tasks if spec.tasks is not None else tuple(default_tasks())
    loaded = {name: load_task(name) for name in names}  # an unknown task is refused here, before any work
    return tuple(name for name in names if spec.tasks is not None or kind in loaded[name].signal_kinds)


def resolve_device(device: str) -> str:
    """Lightning's accelerator for ``device`` (``auto``: CUDA when available).

    Raises:
        XincError: ``cuda`` without a CUDA device.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise XincError("--device cuda, but this machine has no CUDA device (torch.cuda.is_available() is False); "
                        "use --device cpu or auto")
    return device


def check_same_settings(spec: UnitSpec, run: RunDir) -> None:
    """A kept checkpoint must come from the unit's own settings, or resuming would mix runs.

    Raises:
        XincError: ``run`` holds a model trained with other settings.
    """
    config = run.read_config()
    signal, training = config.get("signal", {}), config.get("training", {})
    stored = (config.get("model"), signal.get("data"), signal.get("height"), signal.get("width"),
              signal.get("frames"), training.get("steps"), training.get("seed"))
    wanted = (spec.model, spec.data, spec.size[0], spec.size[1],
              None if spec.frames is None else str(spec.frames), spec.steps, spec.seed)
    same_lr = spec.lr is None or math.isclose(float(training.get("lr", math.nan)), spec.lr, rel_tol=1e-9)
    same_schedule = spec.schedule is None or training.get("schedule") == spec.schedule
    same_batch = training.get("batch_frames", 1) == (spec.batch_frames or 1)
    same_sequence = (signal.get("layout"), signal.get("sequence")) == (spec.layout, spec.sequence)
    if stored != wanted or not (same_lr and same_schedule and same_batch and same_sequence):
        raise XincError(
            f"{run.path} holds a run with other settings (model, data, size, frames, steps, seed = {stored}, "
            f"lr {training.get('lr')}, schedule {training.get('schedule')}, batch_frames "
            f"{training.get('batch_frames', 1)}) than the unit's {wanted}, lr {spec.lr}, schedule {spec.schedule}, "
            f"batch_frames {spec.batch_frames or 1}; give a fresh --out or delete {run.path}"
        )


def _decode(spec: UnitSpec) -> Signal:
    """The unit's signal, decoded once for every stage."""
    return load_signal(spec.data, spec.size, spec.frames, layout=spec.layout, sequence=spec.sequence)


def _canvases(spec: UnitSpec, run: RunDir, signal: Signal, annotations: dict[str, str],
              models: tuple[tuple[nn.Module, dict[str, Any]], ...], plan: UnitPlan, progress: Progress,
              result: UnitResult) -> tuple[Canvas, Canvas]:
    """The model's and the twin's canvases: traced window by window as the probes read them (nothing
    written), or, with ``--save-canvas``, the canvas files (traced and written now unless already there).

    ``signal`` is annotated (its masks and flow filled in); ``annotations`` names their sources."""
    dtype = torch.float16 if spec.float16 else torch.float32
    canvases = []
    for folder, model, name in ((run.path, models[0], "canvas"), (run.init, models[1], "canvas of the random-init twin")):
        common = dict(frames=spec.frames, tracer=spec.tracer, dtype=dtype, model=model, signal=signal,
                      annotations=annotations, trust_code=spec.trust_code, layers=spec.layers)
        if not spec.save_canvas:
            frames = f"{plan.frames_per_window} frame{'s' if plan.frames_per_window > 1 else ''}"
            with progress.stage(f"{name} set up (streamed: traced as the probes read it, {frames} at a time)"):
                canvas = canvas_run(folder, spec.size, out=None, memory_budget=plan.window_bytes, **common)
        else:
            out = folder / CANVAS_NAME
            if not out.is_file() or result.fitted or not run.signal.is_file():
                with progress.stage(name, total=signal.num_pixels, unit="px") as advance:
                    canvas_run(folder, spec.size, out=out, progress=advance, **common)
                result.canvases.append(str(out.relative_to(run.path)))
            canvas = dataclasses.replace(read_canvas(out), chunk_bytes=plan.block_bytes)
        canvases.append(canvas)
    _check_layers(spec.layers, canvases[0].layer_names)
    return canvases[0], canvases[1]


def _run_tasks(spec: UnitSpec, run: RunDir, pending: list[str], canvases: tuple[Canvas, Canvas],
               models: tuple[tuple[nn.Module, dict[str, Any]], ...], result: UnitResult, progress: Progress) -> None:
    """Probe the pending tasks (and write the canvas preview) in one pass over each canvas; record the skipped ones."""
    canvas, twin_canvas = canvases
    skipped = {task: reason for task, reason in run.read_skipped().items()
               if task in result.records_kept}
    runnable = []
    for task in pending:
        reason = unmet_needs(load_task(task), canvas)
        if reason:
            skipped[task] = reason
        else:
            runnable.append(task)
    try:
        outcome = probe_tasks(canvas, runnable, outs={task: run.record(task) for task in runnable},
                              control_canvas=twin_canvas, null_draws=spec.null_draws, model=models[0][0],
                              twin=models[1][0], layers=spec.layers, progress=progress,
                              preview=None if run.preview.is_file() and not result.canvases else run.preview)
    except XincError as exc:  # the canvas itself cannot be read: no task can run
        if not runnable:
            raise
        outcome = dict.fromkeys(runnable, exc)
    for task in runnable:
        if isinstance(outcome[task], XincError):
            skipped[task] = str(outcome[task])
            progress.line(f"warning: task {task} skipped: {outcome[task]}")
        else:
            result.records_written.append(task)
    result.skipped = skipped
    run.write_skipped(skipped)


def current_record(path: Path, task: str) -> bool:
    """Whether ``path`` is a record of the task's current version and schema (an older one is redone)."""
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
        return (record.get("schema_version") == SCHEMA_VERSION
                and int(record["task"]["version"]) == load_task(task).version)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _load_models(spec: UnitSpec, run: RunDir, height: int, width: int) -> tuple[tuple[nn.Module, dict[str, Any]], ...]:
    """The trained model and its random-init twin from the run folder (the spec's own --model is trusted code)."""
    trust = {"trust_code": spec.trust_code, "trusted_spec": spec.model}
    return load_checkpoint(run.path, height, width, **trust), load_checkpoint(run.init, height, width, **trust)


def _plan(spec: UnitSpec, signal: Signal, run: RunDir, tasks: tuple[str, ...]) -> UnitPlan:
    """The unit's memory and disk plan (:func:`~xinc_bench.runs.budget.plan_unit`), the samples of its
    ``tasks`` included; before training it also refuses ``--layers`` the tracer does not know."""
    name = resolve_inr(spec.model)
    shape = (signal.num_frames, signal.height, signal.width)
    model = create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width)
    tracer = spec.tracer or inr_info(name).tracer
    counts = traced_layers(TRACERS.get(tracer).layers(model, shape), spec.layers, tracer)
    checkpoint_bytes = 4 * sum(p.numel() for p in model.parameters())  # float32 weights
    signal_bytes = signal.num_pixels * 4 * 8 + 2 * checkpoint_bytes  # frames, recon, masks, flow; two checkpoints
    held = sum(load_task(task).held_bytes(counts, shape) for task in tasks)  # one canvas's accumulators at a time
    return plan_unit(counts, shape, np.dtype(np.float16 if spec.float16 else np.float32), budget=spec.memory_budget,
                     save_canvas=spec.save_canvas and not run.saved_canvases, out=run.path, signal_bytes=signal_bytes,
                     held_bytes=held)


def _stored_signal(run: RunDir) -> tuple[Signal, dict[str, str]]:
    """The annotated signal of an earlier run of the unit (its signal file) and the sources of its annotations,
    as the unit decoded them (so the canvases' metadata is the same as in a run that was not interrupted)."""
    stored = read_canvas(run.signal)
    data = stored.metadata.get("data") or {}
    categories = stored.metadata.get("categories")
    signal = Signal(stored.frames, name=str(data.get("name", "signal")), masks=stored.masks, flow=stored.flow,
                    categories=None if categories is None else {int(k): v for k, v in categories.items()},
                    source=data.get("source", {}))
    return signal, dict(stored.metadata.get("annotations", {}))


def _check_layers(layers: tuple[str, ...] | None, known: list[str]) -> None:
    unknown = [name for name in layers or () if name not in known]
    if unknown:
        raise XincError(f"--layers names {', '.join(unknown)}, which the model's canvas lacks; its layers are "
                        f"{', '.join(known)}")
