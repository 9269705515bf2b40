"""Benchmark suites (SPEC 6-7): a YAML matrix of models x data x seeds x tasks, run resumably.

A suite file (``configs/suites/<name>.yaml``)::

    name: quick
    description: what the suite is for and what it costs
    seeds: [0]                   # every (model, data) pair is trained once per seed
    sanity_seeds: [0]            # optional: units of these seeds also run the sanity check
                                 # (model randomisation, records/sanity.json; default none)
    tasks: all                   # or a list of task names; a unit runs those that apply to its signal
    groups:                      # each group is its own models x data matrix
      - size: 128x256            # HEIGHTxWIDTH of the signal
        frames: "0:30"           # optional frame range (videos)
        tasks: [distribution]    # optional: the group's own task list instead of the suite's
        float16: false           # optional: store the group's canvases as float16 (half the disk)
        steps: 300               # the group's default training steps ...
        lr: null                 # ... learning rate (null: the model's own default) ...
        schedule: null           # ... lr schedule: constant, cosine, warmup-cosine (null: the model's)
        batch_frames: null       # ... and frames per step of frame INRs (null: 1)
        data: [astronaut, camera]  # an image INR may take a video source with a one-frame range
        models:                  # name -> overrides (steps, lr, schedule, batch_frames, tracer);
                                 # a plain list means none
          ffn-paper: {}
          siren-33k: {steps: 500, lr: 1.0e-4}

The matrix expands into *units* (one model, one data source, one seed, in the order models x
data x seeds within each group, groups in file order). Unit ``k`` runs in ``out/<unit id>/`` with
the run-directory layout of ``xinc-bench run`` (``model.safetensors``, ``canvas.safetensors``,
``init/``, ``records/<task>.json``, and ``records/sanity.json`` for the ``sanity_seeds``). Every step writes atomically, so a run that is interrupted
resumes where it stopped: a finished fit, canvas or record is never redone, and a half-done one
never counts as finished.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data import FrameRange, parse_frames, parse_size
from ..errors import XincError
from ..resources import bundled_dir
from ..training.module import SCHEDULES

#: where the committed suites live (the checkout's ``configs/suites/``, or its installed copy)
SUITES_DIR = bundled_dir("configs/suites", "suites")

#: the files a finished ``fit_run`` leaves in a run directory
_FIT_OUTPUTS = ("model.safetensors", "model.json", "init/model.safetensors", "init/model.json", "recon.png")

_GROUP_KEYS = {"size", "frames", "steps", "lr", "schedule", "batch_frames", "tracer", "data", "models", "tasks",
               "float16"}
_MODEL_KEYS = {"steps", "lr", "schedule", "batch_frames", "tracer"}
_SUITE_KEYS = {"name", "description", "seeds", "sanity_seeds", "tasks", "groups"}


@dataclass(frozen=True)
class SuiteUnit:
    """One cell of a suite's matrix: a model trained on one signal with one seed.

    Attributes:
        model: registered INR name (or ``path/to/file.py:Class``).
        data: data source name or image file.
        seed: training seed.
        size: ``(H, W)`` of the signal.
        frames: frame range for videos (``None``: the source's default).
        steps: optimiser steps.
        lr: learning rate (``None``: the model's default).
        tracer: tracer name (``None``: the model's).
        tasks: the tasks this unit runs (names or task YAML paths), filtered to its signal kind.
        float16: store the canvases as float16.
        schedule: learning-rate schedule (``None``: the model's default).
        batch_frames: frames per step of a frame INR (``None``: 1).
        sanity: also run the sanity check (:func:`xinc_bench.sanity.sanity_check`) on the records.
    """

    model: str
    data: str
    seed: int
    size: tuple[int, int]
    frames: FrameRange | None
    steps: int
    lr: float | None
    tracer: str | None
    tasks: tuple[str, ...]
    float16: bool = False
    schedule: str | None = None
    batch_frames: int | None = None
    sanity: bool = False

    @property
    def unit_id(self) -> str:
        """Directory name of the unit: ``<model>__<data>__<H>x<W>[__f<start>-<stop>]__seed<seed>``."""
        data = Path(self.data).stem if _is_path(self.data) else self.data
        parts = [self.model, data, f"{self.size[0]}x{self.size[1]}"]
        if self.frames is not None:
            stop = "" if self.frames.stop is None else self.frames.stop
            step = "" if self.frames.step == 1 else f"-{self.frames.step}"
            parts.append(f"f{self.frames.start}-{stop}{step}")
        parts.append(f"seed{self.seed}")
        return "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part) for part in parts)

    def describe(self) -> dict[str, Any]:
        """The unit's settings as JSON-serialisable values."""
        return {
            "unit": self.unit_id,
            "model": self.model,
            "data": self.data,
            "seed": self.seed,
            "size": f"{self.size[0]}x{self.size[1]}",
            "frames": None if self.frames is None else str(self.frames),
            "steps": self.steps,
            "lr": self.lr,
            "schedule": self.schedule,
            "batch_frames": self.batch_frames,
            "tracer": self.tracer,
            "tasks": list(self.tasks),
            "float16": self.float16,
            "sanity": self.sanity,
        }


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, description, source file and expanded units."""

    name: str
    description: str
    path: Path
    units: tuple[SuiteUnit, ...]


@dataclass
class UnitResult:
    """What running one unit did.

    Attributes:
        unit: the unit.
        run_dir: its run directory.
        fitted: whether it was trained now (``False``: its checkpoint was already there).
        canvases: canvas files computed now (paths relative to ``run_dir``).
        records_written: tasks whose records were written now.
        records_kept: tasks whose records were already there and were kept.
        seconds: wall time spent on the unit now.
        sanity: whether the sanity check was run now.
        failed: step (``fit``, ``canvas``, ``sanity``) or task -> the :class:`XincError` message that stopped it;
            nothing of a failed step is written, so the next run of the suite retries it.
    """

    unit: SuiteUnit
    run_dir: Path
    fitted: bool
    canvases: list[str]
    records_written: list[str]
    records_kept: list[str]
    seconds: float
    sanity: bool = False
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """True when the unit was already complete and nothing was run."""
        return not (self.fitted or self.canvases or self.records_written or self.sanity or self.failed)


@dataclass
class SuiteSummary:
    """Outcome of :func:`run_suite`: one :class:`UnitResult` per unit of the shard, in order."""

    suite: Suite
    out: Path
    shard: tuple[int, int] | None
    units: list[UnitResult] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, dict[str, str]]:
        """Unit id -> failed step or task -> message, for the units with failures."""
        return {result.unit.unit_id: result.failed for result in self.units if result.failed}

    @property
    def records(self) -> list[Path]:
        """Every record file of the shard's units (written now or kept)."""
        return [
            result.run_dir / "records" / f"{_task_stem(task)}.json"
            for result in self.units
            for task in result.records_written + result.records_kept
        ]

    def table(self) -> str:
        """One line per unit: what was run now and what was kept."""
        lines = [f"suite {self.suite.name}: {len(self.units)} units -> {self.out}"]
        for result in self.units:
            state = "kept (complete)" if result.skipped else (
                f"{'fit, ' if result.fitted else ''}{len(result.canvases)} canvases, "
                f"{len(result.records_written)} records new, {len(result.records_kept)} kept"
                + (f", {len(result.failed)} failed" if result.failed else "")
            )
            lines.append(f"  {result.unit.unit_id:<52} {state:<44} {result.seconds:7.1f} s")
        return "\n".join(lines)


def suite_path(name_or_path: str | Path) -> Path:
    """The YAML file of a suite given by name (``configs/suites/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise XincError(f"suite file {path} does not exist; give a suite name "
                            f"({', '.join(available_suites())}) or a YAML path")
        return path
    path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(available_suites()) or "(none)"
        raise XincError(f"unknown suite {str(name_or_path)!r}. Known suites: {known}")
    return path


def available_suites() -> list[str]:
    """Names of the suites in ``configs/suites/``."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite file and expand its matrix into units.

    Raises:
        XincError: unreadable file, unknown keys, models, data sources or tasks, a model paired
            with data of the wrong kind (image INR on a video), or two units with the same id.
    """
    path = suite_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise XincError(f"cannot read suite file {path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("groups"), list) or not raw["groups"]:
        raise XincError(f"suite file {path} needs a non-empty 'groups' list (see xinc_bench/results/suite.py)")
    _reject_unknown(raw, _SUITE_KEYS, f"suite file {path}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise XincError(f"suite file {path}: 'seeds' must be a non-empty list of integers, e.g. [0, 1]")
    sanity_seeds = raw.get("sanity_seeds", [])
    if not isinstance(sanity_seeds, list) or not set(sanity_seeds) <= set(seeds):
        raise XincError(f"suite file {path}: 'sanity_seeds' must be a list of seeds from 'seeds' ({seeds}), "
                        f"got {sanity_seeds!r}")
    tasks = _suite_tasks(raw.get("tasks", "all"), f"suite file {path}")
    units = [
        replace(unit, sanity=unit.seed in sanity_seeds)
        for index, group in enumerate(raw["groups"])
        for unit in _expand_group(group, seeds, tasks, f"suite file {path}, group {index + 1}")
    ]
    ids = [unit.unit_id for unit in units]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise XincError(f"suite file {path} lists the same unit twice: {', '.join(duplicates)}; remove the repeat")
    return Suite(name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")).strip(),
                 path=path, units=tuple(units))


def shard_units(units: tuple[SuiteUnit, ...] | list[SuiteUnit], shard: tuple[int, int] | None) -> list[SuiteUnit]:
    """The units of shard ``(i, n)`` (1-based ``i``): those whose index ``k`` has ``k % n == i - 1``."""
    if shard is None:
        return list(units)
    index, count = shard
    if count < 1 or not 1 <= index <= count:
        raise XincError(f"invalid shard {index}/{count}: give i/n with 1 <= i <= n, e.g. 1/2")
    return [unit for k, unit in enumerate(units) if k % count == index - 1]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (1-based shard ``i`` of ``n``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise XincError(f"invalid shard {text!r}: give i/n with 1 <= i <= n, e.g. 1/2 and 2/2 for two machines")
    return int(match.group(1)), int(match.group(2))


def run_unit(unit: SuiteUnit, run_dir: Path, *, progress_bar: bool = False) -> UnitResult:
    """Run one unit in ``run_dir``, doing only the steps whose outputs are missing.

    Steps: fit (skipped when the checkpoint, its random-init twin and ``recon.png`` are all there),
    the canvas and the twin's canvas, one record per task, then (``unit.sanity``) the sanity check
    of the unit's records, redone whenever a record was rewritten. Retraining (when the checkpoint
    was incomplete) recomputes everything downstream of it. A step or task that raises
    :class:`XincError` (a probe that needs what this model or signal lacks, say) is reported in
    ``failed`` and the rest goes on; other exceptions propagate.

    Raises:
        XincError: ``run_dir`` holds a checkpoint trained with other settings.
    """
    import torch

    from ..pipeline import CANVAS_NAME, INIT_DIR, RECORDS_DIR, canvas_run, fit_run, probe_run, shuffled_control

    started = time.perf_counter()
    run_dir = Path(run_dir)
    result = UnitResult(unit, run_dir, fitted=not all((run_dir / name).is_file() for name in _FIT_OUTPUTS),
                        canvases=[], records_written=[], records_kept=[], seconds=0.0)
    if not result.fitted:
        _check_same_settings(unit, run_dir)
    stage = "fit"
    try:
        if result.fitted:
            fit_run(unit.model, unit.data, unit.size, out=run_dir, frames=unit.frames, steps=unit.steps, lr=unit.lr,
                    schedule=unit.schedule, batch_frames=unit.batch_frames, seed=unit.seed,
                    progress_bar=progress_bar)
        stage = "canvas"
        for model_dir in (run_dir, run_dir / INIT_DIR):
            if result.fitted or not (model_dir / CANVAS_NAME).is_file():
                canvas_run(model_dir, unit.size, out=model_dir / CANVAS_NAME, frames=unit.frames, tracer=unit.tracer,
                           dtype=torch.float16 if unit.float16 else torch.float32)
                result.canvases.append(str((model_dir / CANVAS_NAME).relative_to(run_dir)))
    except XincError as exc:
        result.failed[stage] = str(exc)
        result.seconds = time.perf_counter() - started
        return result
    pending = []
    for task in unit.tasks:
        record = run_dir / RECORDS_DIR / f"{_task_stem(task)}.json"
        if record.is_file() and not (result.fitted or result.canvases):
            result.records_kept.append(task)
        else:
            pending.append((task, record))
    if pending:
        with shuffled_control(run_dir / CANVAS_NAME) as shuffled:
            for task, record in pending:
                try:
                    probe_run(run_dir / CANVAS_NAME, task, out=record, control_canvas=run_dir / INIT_DIR / CANVAS_NAME,
                              shuffled_canvas=shuffled)
                except XincError as exc:
                    result.failed[task] = str(exc)
                    continue
                result.records_written.append(task)
    if unit.sanity:
        _run_sanity(result)
    result.seconds = time.perf_counter() - started
    return result


def _run_sanity(result: UnitResult) -> None:
    """The sanity check of a unit's records, unless its ``records/sanity.json`` is already current."""
    from ..pipeline import RECORDS_DIR
    from ..sanity import SANITY_NAME, sanity_check

    tasks = [task for task in result.unit.tasks if task not in result.failed]
    if not tasks or ((result.run_dir / RECORDS_DIR / SANITY_NAME).is_file() and not result.records_written):
        return
    try:
        sanity_check(result.run_dir, tasks)
    except XincError as exc:
        result.failed["sanity"] = str(exc)
        return
    result.sanity = True


def run_suite(
    suite: str | Path | Suite,
    out: Path,
    shard: tuple[int, int] | None = None,
    progress_bar: bool = False,
    *,
    wandb: str = "disabled",
    wandb_project: str = "xinc-bench",
    on_unit: Callable[[UnitResult], None] | None = None,
) -> SuiteSummary:
    """Run every unit of a suite (or of one shard of it) into ``out/<unit id>/``, resumably.

    Args:
        suite: a suite name (``configs/suites/<name>.yaml``), a YAML path, or a loaded :class:`Suite`.
        out: results folder; ``out/suite.json`` lists the suite's units.
        shard: ``(i, n)``, 1-based: run only the units with index ``k % n == i - 1`` (split a suite
            across machines; the shards together cover every unit exactly once).
        progress_bar: show Lightning's training progress bar.
        wandb: ``"disabled"`` (default), ``"offline"`` or ``"online"``: log every unit that wrote new
            records to Weights & Biases (see :mod:`xinc_bench.results.wandb_logging`), runs grouped
            under the suite's name, saved under ``out``.
        wandb_project: W&B project name.
        on_unit: called with each unit's result as soon as the unit finishes.
    """
    from .wandb_logging import check_mode, log_run

    check_mode(wandb)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    units = shard_units(suite.units, shard)
    out = Path(out)
    for unit in units:  # refuse a folder of other runs before writing anything into it
        if all((out / unit.unit_id / name).is_file() for name in _FIT_OUTPUTS):
            _check_same_settings(unit, out / unit.unit_id)
    _write_manifest(out / "suite.json", {"name": suite.name, "description": suite.description,
                                         "source": str(suite.path), "units": [u.describe() for u in suite.units]})
    summary = SuiteSummary(suite, out, shard)
    for unit in units:
        result = run_unit(unit, out / unit.unit_id, progress_bar=progress_bar)
        if wandb != "disabled" and result.records_written:
            log_run(result.run_dir, wandb, project=wandb_project, name=unit.unit_id, group=suite.name, save_dir=out)
        summary.units.append(result)
        if on_unit is not None:
            on_unit(result)
    return summary


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``xinc-bench suite``: SUITE, --out, --shard, --wandb, --wandb-project, --no-progress."""
    parser.add_argument("suite", help=f"suite name ({', '.join(available_suites())}) or a suite YAML file")
    parser.add_argument("--out", type=Path, required=True, help="results folder (one run directory per unit)")
    parser.add_argument("--shard", default=None,
                        help="run shard i of n only, 1-based, e.g. 1/2 and 2/2 on two machines")
    parser.add_argument("--wandb", choices=["disabled", "offline", "online"], default="disabled",
                        help="Weights & Biases logging of each unit (default disabled)")
    parser.add_argument("--wandb-project", default="xinc-bench", help="W&B project (default xinc-bench)")
    parser.add_argument("--no-progress", action="store_true", help="hide the training progress bar")


def suite_main(args: argparse.Namespace) -> int:
    """``xinc-bench suite``: run (or resume) a suite; prints one line per unit and every failure.

    Returns 0 when every step and task of the shard succeeded, 1 when some failed (rerun to retry).

    Raises:
        XincError: bad suite file, shard or settings (the CLI turns it into exit code 2).
    """
    shard = parse_shard(args.shard) if args.shard else None
    suite = load_suite(args.suite)
    units = shard_units(suite.units, shard)
    print(f"suite {suite.name}: {len(units)} of {len(suite.units)} units -> {args.out}", flush=True)

    def report(result: UnitResult) -> None:
        state = "complete, kept" if result.skipped else (
            f"{len(result.records_written)} records written" + (", sanity checked" if result.sanity else ""))
        print(f"  {result.unit.unit_id}: {state} ({result.seconds:.1f} s)", flush=True)
        for step, message in result.failed.items():
            print(f"    FAILED {step}: {message}", flush=True)

    summary = run_suite(suite, args.out, shard, progress_bar=not args.no_progress, wandb=args.wandb,
                        wandb_project=args.wandb_project, on_unit=report)
    if summary.failed:
        print(f"{sum(map(len, summary.failed.values()))} steps failed in {len(summary.failed)} units; "
              "fix the cause and run the same command again to retry them (finished work is kept)")
        return 1
    return 0


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``out/suite.json`` unless it already says the same (a resumed suite rewrites nothing)."""
    from ..files import write_json_atomic

    if path.is_file():
        try:
            if json.loads(path.read_text()) == manifest:
                return
        except json.JSONDecodeError:
            pass
    write_json_atomic(path, manifest)


def _expand_group(group: Any, seeds: list[int], tasks: tuple[str, ...] | None, where: str) -> list[SuiteUnit]:
    if not isinstance(group, dict):
        raise XincError(f"{where} must be a mapping with size, data and models")
    _reject_unknown(group, _GROUP_KEYS, where)
    for key in ("size", "data", "models"):
        if key not in group:
            raise XincError(f"{where} lacks {key!r}; every group needs size, data and models")
    size = parse_size(str(group["size"]))
    frames = parse_frames(str(group["frames"])) if group.get("frames") is not None else None
    tasks = _suite_tasks(group["tasks"], where) if "tasks" in group else tasks
    if not isinstance(group.get("float16", False), bool):
        raise XincError(f"{where}: float16 must be true or false")
    data = group["data"] if isinstance(group["data"], list) else [group["data"]]
    models = _group_models(group, where)
    units = []
    for model, settings in models.items():
        kind = _model_kind(model, where)
        for source in data:
            _check_data(str(source), kind, model, where, frames)
            unit_tasks = _unit_tasks(tasks, kind)
            units += [
                SuiteUnit(model=model, data=str(source), seed=seed, size=size, frames=frames,
                          steps=settings["steps"], lr=settings["lr"], tracer=settings["tracer"], tasks=unit_tasks,
                          float16=group.get("float16", False), schedule=settings["schedule"],
                          batch_frames=settings["batch_frames"])
                for seed in seeds
            ]
    return units


def _group_models(group: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Model name -> resolved {steps, lr, schedule, batch_frames, tracer} (per-model overrides over the group's)."""
    raw = group["models"]
    entries = {name: {} for name in raw} if isinstance(raw, list) else raw
    if not isinstance(entries, dict) or not entries:
        raise XincError(f"{where}: 'models' must be a non-empty list of names or a mapping name -> {{steps, lr}}")
    models = {}
    for name, overrides in entries.items():
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise XincError(f"{where}: settings of model {name!r} must be a mapping of {sorted(_MODEL_KEYS)}")
        _reject_unknown(overrides, _MODEL_KEYS, f"{where}, model {name!r}")
        steps = overrides.get("steps", group.get("steps", 1000))
        lr = overrides.get("lr", group.get("lr"))
        if not isinstance(steps, int) or steps <= 0:
            raise XincError(f"{where}, model {name!r}: steps must be a positive integer, got {steps!r}")
        if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0):
            raise XincError(f"{where}, model {name!r}: lr must be a positive number or null, got {lr!r}")
        schedule = overrides.get("schedule", group.get("schedule"))
        batch_frames = overrides.get("batch_frames", group.get("batch_frames"))
        if schedule is not None and schedule not in SCHEDULES:
            raise XincError(f"{where}, model {name!r}: schedule must be one of {', '.join(SCHEDULES)} or null, "
                            f"got {schedule!r}")
        if batch_frames is not None and (not isinstance(batch_frames, int) or batch_frames <= 0):
            raise XincError(f"{where}, model {name!r}: batch_frames must be a positive integer or null, "
                            f"got {batch_frames!r}")
        models[str(name)] = {"steps": steps, "lr": None if lr is None else float(lr), "schedule": schedule,
                             "batch_frames": batch_frames, "tracer": overrides.get("tracer", group.get("tracer"))}
    return models


def _model_kind(model: str, where: str) -> str:
    from ..inrs import inr_info, resolve_inr

    try:
        return inr_info(resolve_inr(model)).signal_kind
    except XincError as exc:
        raise XincError(f"{where}: {exc}") from None


def _check_data(source: str, kind: str, model: str, where: str, frames: FrameRange | None) -> None:
    from ..registry import DATA_SOURCES

    if source in DATA_SOURCES:
        data_kind = DATA_SOURCES.entry(source).metadata.get("kind")
    elif _is_path(source):
        if not Path(source).exists():
            raise XincError(f"{where}: data file {source} does not exist; check the path")
        data_kind = "image"
    else:
        raise XincError(f"{where}: unknown data source {source!r}; see `xinc-bench list data`")
    one_frame = frames is not None and frames.stop is not None and len(range(frames.start, frames.stop, frames.step)) == 1
    if data_kind is not None and data_kind != kind and not (kind == "image" and one_frame):
        raise XincError(f"{where}: {model} is a {kind} INR but {source} is a {data_kind}; "
                        f"move it to a group of {kind} data (an image INR takes one frame of a video: frames: \"0:1\")")


def _suite_tasks(raw: Any, where: str) -> tuple[str, ...] | None:
    """``None`` for ``all``, else the validated task names."""
    from ..probes.base import load_task

    if raw == "all":
        return None
    if not isinstance(raw, list) or not raw:
        raise XincError(f"{where}: 'tasks' must be 'all' or a non-empty list of task names")
    for name in raw:
        try:
            load_task(str(name))
        except XincError as exc:
            raise XincError(f"{where}: {exc}") from None
    return tuple(str(name) for name in raw)


def _unit_tasks(tasks: tuple[str, ...] | None, kind: str) -> tuple[str, ...]:
    from ..probes.base import available_tasks, load_task

    names = tasks if tasks is not None else tuple(available_tasks())
    return tuple(name for name in names if kind in load_task(name).signal_kinds)


def _check_same_settings(unit: SuiteUnit, run_dir: Path) -> None:
    """A kept checkpoint must come from the unit's own settings, or resuming would mix runs."""
    config = json.loads((run_dir / "model.json").read_text())
    signal, training = config.get("signal", {}), config.get("training", {})
    stored = (config.get("model"), signal.get("data"), signal.get("height"), signal.get("width"),
              signal.get("frames"), training.get("steps"), training.get("seed"))
    wanted = (unit.model, unit.data, unit.size[0], unit.size[1],
              None if unit.frames is None else str(unit.frames), unit.steps, unit.seed)
    same_lr = unit.lr is None or math.isclose(float(training.get("lr", math.nan)), unit.lr, rel_tol=1e-9)
    same_schedule = unit.schedule is None or training.get("schedule") == unit.schedule
    same_batch = training.get("batch_frames", 1) == (unit.batch_frames or 1)
    if stored != wanted or not (same_lr and same_schedule and same_batch):
        raise XincError(
            f"{run_dir} holds a run with other settings (model, data, size, frames, steps, seed = {stored}, "
            f"lr {training.get('lr')}, schedule {training.get('schedule')}, batch_frames "
            f"{training.get('batch_frames', 1)}) than the suite's {wanted}, lr {unit.lr}, schedule {unit.schedule}, "
            f"batch_frames {unit.batch_frames or 1}; give a fresh --out or delete {run_dir}"
        )


def _task_stem(task: str) -> str:
    """The record file stem of a task given by name or by YAML path."""
    return Path(task).stem if Path(task).suffix in (".yaml", ".yml") else task


def _reject_unknown(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise XincError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def _is_path(spec: str) -> bool:
    return any(sep in spec for sep in "/\\") or bool(Path(spec).suffix)
