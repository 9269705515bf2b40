"""Benchmark suites (SPEC 6-7): a YAML matrix of models x data x seeds x tasks, run resumably.

A suite file (``configs/suites/<name>.yaml``)::

    name: quick
    description: what the suite is for and what it costs
    seeds: [0]                   # every (model, data) pair is trained once per seed
    sanity_seeds: [0]            # optional: units of these seeds also run the sanity check
                                 # (model randomisation, records/sanity.json; default none)
    tasks: all                   # (every task but the variants) or a list of task names; a unit runs those
                                 # that apply to its signal
    groups:                      # each group is its own models x data matrix
      - size: 128x256            # HEIGHTxWIDTH of the signal
        frames: "0:30"           # optional frame range (videos)
        tasks: [distribution]    # optional: the group's own task list instead of the suite's
        float16: false           # optional: store the group's canvases as float16 (half the disk)
        masks: null              # optional: mask source (null: ground truth if the data has it, else felzenszwalb)
        flow: null               # optional: flow source of videos (null: ground truth if known, else dis)
        device: cpu              # optional: where the group's units train (cpu, cuda or auto; a Ray
                                 # executor asks the cluster for a GPU for cuda)
        null_draws: null         # optional: null draws per score (null: each task's own count)
        steps: 300               # the group's default training steps ...
        lr: null                 # ... learning rate (null: the model's own default) ...
        schedule: null           # ... lr schedule: constant, cosine, warmup-cosine (null: the model's)
        batch_frames: null       # ... and frames per step of frame INRs (null: 1)
        data: [astronaut, camera]  # an image INR may take a video source with a one-frame range
        models:                  # name -> overrides (steps, lr, schedule, batch_frames, tracer);
                                 # a plain list means none
          ffn-paper: {}
          siren-33k: {steps: 500, lr: 1.0e-4}

The matrix expands into :class:`~xinc_bench.runs.spec.UnitSpec` units (one model, one data
source, one seed, in the order models x data x seeds within each group, groups in file order),
which an executor (:mod:`xinc_bench.runs.executors`) hands to
:func:`~xinc_bench.runs.unit.run_unit`: unit ``k`` runs in ``out/<unit id>/``, a run folder like
``xinc-bench run``'s (:class:`~xinc_bench.runs.rundir.RunDir`). Every stage writes atomically, so
a suite that is interrupted resumes where it stopped: a finished fit, canvas or record is never
redone, and a half-done one never counts as finished.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data import FrameRange, parse_frames, parse_size
from ..errors import XincError
from ..registry import EXECUTORS
from ..resources import bundled_dir
from ..training.module import SCHEDULES
from .executors import Executor, UnitOutcome
from .rundir import RunDir
from .spec import DEVICES, UnitSpec
from .unit import check_same_settings, finished_unit

#: where the committed suites live (the checkout's ``configs/suites/``, or its installed copy)
SUITES_DIR = bundled_dir("configs/suites", "suites")

_GROUP_KEYS = {"size", "frames", "steps", "lr", "schedule", "batch_frames", "tracer", "data", "models", "tasks",
               "float16", "masks", "flow", "device", "null_draws"}
_MODEL_KEYS = {"steps", "lr", "schedule", "batch_frames", "tracer"}
_SUITE_KEYS = {"name", "description", "seeds", "sanity_seeds", "tasks", "groups"}


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, description, source file and expanded units."""

    name: str
    description: str
    path: Path
    units: tuple[UnitSpec, ...]


@dataclass
class SuiteSummary:
    """Outcome of :func:`run_suite`: one :class:`UnitOutcome` per unit of the shard, in order."""

    suite: Suite
    out: Path
    shard: tuple[int, int] | None
    units: list[UnitOutcome] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        """Unit id -> the message that stopped it, for the units that failed (a rerun retries them)."""
        return {outcome.spec.unit_id: outcome.error for outcome in self.units if outcome.error is not None}

    @property
    def records(self) -> list[Path]:
        """Every record file of the shard's units (written now or kept)."""
        return [path for outcome in self.units if outcome.result is not None for path in outcome.result.records()]


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


def shard_units(units: tuple[UnitSpec, ...] | list[UnitSpec], shard: tuple[int, int] | None) -> list[UnitSpec]:
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


def run_suite(
    suite: str | Path | Suite,
    out: Path,
    shard: tuple[int, int] | None = None,
    *,
    executor: str | Executor = "local",
    masks: str | None = None,
    flow: str | None = None,
    device: str | None = None,
    memory_budget: int | None = None,
    quiet: bool = True,
    on_unit: Callable[[UnitOutcome], None] | None = None,
) -> SuiteSummary:
    """Run every unit of a suite (or of one shard of it) into ``out/<unit id>/``, resumably.

    Args:
        suite: a suite name (``configs/suites/<name>.yaml``), a YAML path, or a loaded :class:`Suite`.
        out: results folder; ``out/suite.json`` lists the suite's units.
        shard: ``(i, n)``, 1-based: run only the units with index ``k % n == i - 1`` (split a suite
            across machines; the shards together cover every unit exactly once).
        executor: a registered executor's name (:data:`~xinc_bench.registry.EXECUTORS`: ``local``,
            ``processes``, ``ray``), made with its defaults, or an executor made with its options
            (``EXECUTORS.get("processes")(jobs=4)``).
        masks, flow: mask and flow sources for every unit (default: each group's, else the data's own).
        device: where every unit trains, ``cpu``, ``cuda`` or ``auto`` (default: each group's, else ``cpu``).
        memory_budget: bytes each unit may use (default: :func:`~xinc_bench.runs.budget.default_memory_budget`).
        quiet: print no stage lines (library use); the CLI prints them. An executor passed ready-made keeps its own.
        on_unit: called with each unit's outcome as soon as the unit finishes (the CLI logs it to
            Weights & Biases there, with ``--wandb``).
    """
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    units = [replace(unit, masks=masks or unit.masks, flow=flow or unit.flow, device=device or unit.device,
                     memory_budget=memory_budget)
             for unit in shard_units(suite.units, shard)]
    out = Path(out)
    for unit in units:  # refuse a folder of other runs before writing anything into it
        run = RunDir(out / unit.unit_id)
        if run.fitted:
            check_same_settings(unit, run)
    _write_manifest(out / "suite.json", {"name": suite.name, "description": suite.description,
                                         "source": str(suite.path), "units": [u.describe() for u in suite.units]})
    summary = SuiteSummary(suite, out, shard)

    def finished(outcome: UnitOutcome) -> None:
        summary.units.append(outcome)
        if on_unit is not None:
            on_unit(outcome)

    jobs = []
    for unit in units:  # a finished unit is kept here, without a worker
        kept = finished_unit(unit, out / unit.unit_id)
        if kept is None:
            jobs.append((unit, out / unit.unit_id))
        else:
            finished(UnitOutcome(unit, out / unit.unit_id, kept))
    if jobs:
        runner = EXECUTORS.get(executor)(quiet=quiet) if isinstance(executor, str) else executor
        runner.map(jobs, finished)
    order = {unit.unit_id: index for index, unit in enumerate(units)}
    summary.units.sort(key=lambda outcome: order[outcome.spec.unit_id])
    return summary


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


def _expand_group(group: Any, seeds: list[int], tasks: tuple[str, ...] | None, where: str) -> list[UnitSpec]:
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
    if str(group.get("device", "cpu")) not in DEVICES:
        raise XincError(f"{where}: device {group['device']!r} is not one of {', '.join(DEVICES)}")
    null_draws = group.get("null_draws")
    if null_draws is not None and (not isinstance(null_draws, int) or isinstance(null_draws, bool) or null_draws < 1):
        raise XincError(f"{where}: null_draws must be a positive integer or null, got {null_draws!r}")
    data = group["data"] if isinstance(group["data"], list) else [group["data"]]
    models = _group_models(group, where)
    units = []
    for model, settings in models.items():
        kind = _model_kind(model, where)
        for source in data:
            _check_data(str(source), kind, model, where, frames)
            unit_tasks = _unit_tasks(tasks, kind)
            units += [
                UnitSpec(model=model, data=str(source), seed=seed, size=size, frames=frames,
                         steps=settings["steps"], lr=settings["lr"], tracer=settings["tracer"], tasks=unit_tasks,
                         float16=group.get("float16", False), schedule=settings["schedule"],
                         batch_frames=settings["batch_frames"], masks=group.get("masks"), flow=group.get("flow"),
                         device=str(group.get("device", "cpu")), null_draws=null_draws)
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
    elif any(sep in source for sep in "/\\") or Path(source).suffix:
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
    from ..probes.base import default_tasks, load_task

    names = tasks if tasks is not None else tuple(default_tasks())
    return tuple(name for name in names if kind in load_task(name).signal_kinds)


def _reject_unknown(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise XincError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
