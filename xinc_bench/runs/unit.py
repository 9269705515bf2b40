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

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..canvas import read_canvas
from ..canvas.compute import canvas_tensors, check_disk_space, traced_layers
from ..checkpoints import load_checkpoint
from ..data import Signal, load_signal
from ..errors import XincError
from ..inrs import create_inr, inr_info, resolve_inr
from ..probes.base import load_task
from ..registry import TRACERS
from .progress import Progress
from .record import SCHEMA_VERSION
from .rundir import RunDir
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

    Args:
        spec: the unit.
        run_dir: its run folder (created; a folder holding another unit's run is refused).
        progress: where stages are reported (default: nowhere).
        logger: a Lightning logger for the training curves (``False``: none).

    Raises:
        XincError: bad input (unknown model, data or task; a folder of another run, or one in use
            by another process; no CUDA for ``device: cuda``); or the fit, canvas or sanity stage
            failed. Tasks that fail are skipped, not raised.
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
        fresh_canvases = not (run.fitted and run.canvas.is_file() and run.init_canvas.is_file())
        signal = _decode(spec) if fresh_canvases else None
        models: tuple[tuple[nn.Module, dict[str, Any]], ...] | None = None
        if fresh_canvases:
            _check_layers_and_disk(spec, signal, run)
        else:
            _check_layers(spec.layers, read_canvas(run.canvas).layer_names)  # kept canvases of an earlier run
        if not run.fitted:
            with progress.stage(f"fit {spec.model} on {spec.sequence or spec.data}, {spec.steps} steps"):
                summary = fit_run(spec.model, spec.data, spec.size, out=run.path, frames=spec.frames, steps=spec.steps,
                                  lr=spec.lr, schedule=spec.schedule, batch_frames=spec.batch_frames, seed=spec.seed,
                                  progress_bar=progress.terminal, logger=logger, signal=signal,
                                  accelerator=accelerator, layout=spec.layout, sequence=spec.sequence)
            result.fitted = True
            models = ((summary.trained, summary.config), (summary.twin, summary.twin_config))
        if fresh_canvases:
            assert signal is not None
            if models is None:  # fitted by an earlier (killed) run: load both models once
                models = _load_models(spec, run, signal.height, signal.width)
            annotations = annotate_signal(signal, spec.masks, spec.flow, dict(spec.mask_options),
                                          dict(spec.flow_options))
            dtype = torch.float16 if spec.float16 else torch.float32
            for index, (folder, name) in enumerate(((run.path, "canvas"), (run.init, "canvas of the random-init twin"))):
                with progress.stage(name, total=signal.num_pixels, unit="px") as advance:
                    canvas_run(folder, spec.size, out=folder / run.canvas.name, frames=spec.frames, tracer=spec.tracer,
                               dtype=dtype, model=models[index], signal=signal,
                               annotations=annotations, trust_code=spec.trust_code, progress=advance,
                               layers=spec.layers)
                result.canvases.append(str((folder / run.canvas.name).relative_to(run.path)))
        _run_tasks(spec, run, tasks, result, progress, models)
        if spec.sanity and result.records_written + result.records_kept and (
                result.records_written or not run.sanity.is_file()):
            from .sanity import sanity_check

            with progress.stage("sanity check (cascading model randomisation)"):
                sanity_check(run.path, result.records_written + result.records_kept, trust_code=spec.trust_code,
                             trusted_spec=spec.model)
            result.sanity = True
        result.fidelity = dict(run.read_config().get("fidelity", {}))
    result.seconds = time.perf_counter() - started
    return result


def unit_tasks(spec: UnitSpec) -> tuple[str, ...]:
    """The unit's tasks: ``spec.tasks`` (a task that does not apply is skipped later, with its reason), or
    every task whose signal kinds include the model's."""
    from ..probes.base import available_tasks

    kind = inr_info(resolve_inr(spec.model)).signal_kind
    names = spec.tasks if spec.tasks is not None else tuple(available_tasks())
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


def _run_tasks(spec: UnitSpec, run: RunDir, tasks: tuple[str, ...], result: UnitResult, progress: Progress,
               models: tuple[tuple[nn.Module, dict[str, Any]], ...] | None) -> None:
    """Probe every task whose record is missing (all of them after new canvases); record the skipped ones."""
    fresh = bool(result.fitted or result.canvases)
    pending = [task for task in tasks if fresh or not _current_record(run.record(task), task)]
    result.records_kept = [task for task in tasks if task not in pending]
    skipped = {task: reason for task, reason in run.read_skipped().items() if task in tasks and task not in pending}
    if pending:
        canvas = read_canvas(run.canvas)
        runnable = []
        for task in pending:
            reason = unmet_needs(load_task(task), canvas)
            if reason:
                skipped[task] = reason
            else:
                runnable.append(task)
        needs_model = any("model" in load_task(task).needs for task in runnable)
        if needs_model and models is None:
            models = _load_models(spec, run, canvas.shape[1], canvas.shape[2])
        trained, twin = (None, None) if not needs_model or models is None else (models[0][0], models[1][0])
        if runnable:
            try:
                outcome = probe_tasks(run.canvas, runnable, outs={task: run.record(task) for task in runnable},
                                      control_canvas=run.init_canvas, null_draws=spec.null_draws, model=trained,
                                      twin=twin, layers=spec.layers, progress=progress)
            except XincError as exc:  # the canvas itself cannot be read: no task can run
                outcome = dict.fromkeys(runnable, exc)
            for task in runnable:
                if isinstance(outcome[task], XincError):
                    skipped[task] = str(outcome[task])
                    progress.line(f"warning: task {task} skipped: {outcome[task]}")
                else:
                    result.records_written.append(task)
    result.skipped = skipped
    run.write_skipped(skipped)


def _current_record(path: Path, task: str) -> bool:
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


def _check_layers_and_disk(spec: UnitSpec, signal: Signal | None, run: RunDir) -> None:
    """Before training: refuse ``--layers`` the tracer does not know, and canvases the disk cannot hold
    (the model's and the random-init control's; the shuffled control is made in memory)."""
    assert signal is not None
    name = resolve_inr(spec.model)
    shape = (signal.num_frames, signal.height, signal.width)
    model = create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width)
    tracer = spec.tracer or inr_info(name).tracer
    counts = traced_layers(TRACERS.get(tracer).layers(model, shape), spec.layers, tracer)
    np_dtype = np.dtype(np.float16 if spec.float16 else np.float32)
    check_disk_space(run.canvas, canvas_tensors(counts, shape, np_dtype),
                     what="the run's two canvases (the model's and its random-init control's)", copies=2)


def _check_layers(layers: tuple[str, ...] | None, known: list[str]) -> None:
    unknown = [name for name in layers or () if name not in known]
    if unknown:
        raise XincError(f"--layers names {', '.join(unknown)}, which the model's canvas lacks; its layers are "
                        f"{', '.join(known)}")
