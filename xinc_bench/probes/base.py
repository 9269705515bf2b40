"""Probe tasks, and the probe interface they name.

A probe is a :class:`~xinc_bench.probes.accumulator.ProbeAccumulator` class registered in
``PROBES``: built from a canvas and parameters, it is given the canvas's layers block by block
(so any canvas, in memory, in a file or being traced, can be probed) and returns named scalar
scores, their null draws and figures. A *task* is a YAML file in
``tasks/`` naming the probe, its version and parameters, its null draws (``nulls: {draws, seed}``)
and for every metric what it measures, its range, its direction, its chance value and the null
model it is measured against (``null_model:``, a name in :data:`~xinc_bench.registry.NULL_MODELS`).
One metric is the task's ``headline`` (the leaderboard's column for the task).

A *variant* task (``variant_of: <task>``) is another task's probe with some parameters changed,
typically the reference code's choice where SPEC 8 corrects it (``grid: strided``, say). Its file
gives ``name``, ``description`` and the changed ``params``; the rest (probe, version, metrics,
nulls, needs) is its parent's. A variant runs only when named (``--tasks partitions-strided-grid``):
the tasks a run takes by default (:func:`default_tasks`) are the non-variant ones.

The probe receives ``params["null_draws"]`` and ``params["null_seed"]`` and returns, for every
metric (per layer and headline) with a null, the scores of each draw in ``ProbeResult.nulls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import NULL_MODELS, PROBES
from ..resources import bundled_dir
from .accumulator import ProbeAccumulator, ProbeResult, run_accumulator

__all__ = ["Metric", "NullSettings", "ProbeAccumulator", "ProbeResult", "Task", "available_tasks", "default_tasks",
           "load_task"]

#: where the task YAML files live (the checkout's top-level ``tasks/``, or its installed copy)
TASKS_DIR = bundled_dir("tasks", "tasks")


@dataclass(frozen=True)
class Metric:
    """A metric of a task: what it measures, its direction, range, chance value and null model."""

    name: str
    higher_is_better: bool | None
    chance: float | None
    description: str = ""
    #: the null model its effect size is measured against (None: no null, e.g. counts)
    null: str | None = None
    #: ``(low, high)``, either None when unbounded
    range: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class NullSettings:
    """How many null draws a task makes, and their seed."""

    draws: int = 20
    seed: int = 0


#: what a task can need beyond a canvas: its masks, its flow, or the model itself (ablations)
NEEDS = ("masks", "flow", "model")


@dataclass(frozen=True)
class Task:
    """A probe task loaded from ``tasks/<name>.yaml``.

    ``needs`` lists what the task needs beyond the canvas's maps (:data:`NEEDS`); the runner gives
    the model to a task that needs it and skips, with the reason, a task whose needs are unmet.
    """

    name: str
    version: int
    probe: str
    params: dict[str, Any]
    metrics: dict[str, Metric]
    description: str = ""
    signal_kinds: tuple[str, ...] = ("image", "video")
    nulls: NullSettings = NullSettings()
    headline: str | None = None
    needs: tuple[str, ...] = ()
    #: the task this one varies (``None``: a task of its own); see the module docstring
    variant_of: str | None = None

    def run(self, canvas: Canvas, null_draws: int | None = None, **overrides: Any) -> ProbeResult:
        """Run the task's probe on ``canvas`` with the task parameters (and ``overrides``).

        ``null_draws`` overrides the task's number of null draws (0: none, e.g. for controls).
        """
        return run_accumulator(self.accumulator(canvas, null_draws, **overrides), canvas)

    def held_bytes(self, counts: dict[str, int], shape: tuple[int, int, int]) -> int:
        """Bytes the task's probe holds beyond one block on a canvas of layers ``counts`` and frames
        ``shape`` (:meth:`~xinc_bench.probes.accumulator.ProbeAccumulator.held_bytes`)."""
        return PROBES.get(self.probe).held_bytes(counts, shape, self.params)

    def accumulator(self, canvas: Canvas, null_draws: int | None = None, **overrides: Any) -> ProbeAccumulator:
        """The task's probe as an accumulator over ``canvas`` (see :mod:`~xinc_bench.probes.accumulator`).

        ``null_draws`` overrides the task's number of null draws (0: none, e.g. for controls).
        """
        draws = self.nulls.draws if null_draws is None else null_draws
        params = {**self.params, "null_draws": draws, "null_seed": self.nulls.seed, **overrides}
        return PROBES.get(self.probe)(canvas, params)


def load_task(name_or_path: str, tasks_dir: Path = TASKS_DIR) -> Task:
    """Load a task by name (``tasks/<name>.yaml``) or from a YAML path (a variant with its parent's settings)."""
    path = _task_path(name_or_path, tasks_dir)
    raw = _read_task_file(path)
    parent_name = raw.get("variant_of") if isinstance(raw, dict) else None
    if parent_name is not None:
        beside = path.parent / f"{parent_name}.yaml"  # a user's variant may sit beside its own parent
        parent_path = beside if beside.is_file() else _task_path(str(parent_name), tasks_dir)
        parent = _read_task_file(parent_path)
        if isinstance(parent, dict) and parent.get("variant_of") is not None:
            raise XincError(f"task file {path}: variant_of names {parent_name!r}, itself a variant; "
                            f"name the task it varies ({parent['variant_of']!r})")
        unknown = sorted(set(raw) - _VARIANT_KEYS)
        if unknown:
            raise XincError(f"task file {path}: a variant gives only {sorted(_VARIANT_KEYS)}, not {unknown}; "
                            f"the rest is {parent_name!r}'s")
        raw = {**parent, **raw, "params": {**(parent.get("params") or {}), **(raw.get("params") or {})}}
    try:
        metrics = {metric: _metric(metric, spec) for metric, spec in raw["metrics"].items()}
        nulls = raw.get("nulls") or {}
        task = Task(
            name=raw["name"],
            version=int(raw["version"]),
            probe=raw["probe"],
            params=dict(raw.get("params") or {}),
            metrics=metrics,
            description=raw.get("description", ""),
            signal_kinds=tuple(raw.get("signal_kinds", ("image", "video"))),
            nulls=NullSettings(draws=int(nulls.get("draws", 20)), seed=int(nulls.get("seed", 0))),
            headline=raw.get("headline"),
            needs=tuple(raw.get("needs") or ()),
            variant_of=None if parent_name is None else str(parent_name),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise XincError(f"task file {path} is malformed ({exc!r}); it needs name, version, probe and metrics") from exc
    probe = PROBES.get(task.probe)  # unknown probe names fail here, listing the known ones
    if not (isinstance(probe, type) and issubclass(probe, ProbeAccumulator)):
        raise XincError(f"probe {task.probe!r} ({probe!r}) is not a ProbeAccumulator subclass; a probe implements "
                        "update(layer, start, chunk) and compute() (see xinc_bench.probes.accumulator)")
    for metric in task.metrics.values():
        if metric.null is not None:
            NULL_MODELS.entry(metric.null)  # unknown null models fail here, listing the known ones
    if task.headline is not None and task.headline not in task.metrics:
        raise XincError(f"task file {path}: headline {task.headline!r} is not one of its metrics")
    unknown = sorted(set(task.needs) - set(NEEDS))
    if unknown:
        raise XincError(f"task file {path}: unknown needs {unknown}; a task can need {', '.join(NEEDS)}")
    if task.nulls.draws < 0:
        raise XincError(f"task file {path}: nulls.draws must be 0 or more, not {task.nulls.draws}")
    return task


def _metric(name: str, spec: dict[str, Any]) -> Metric:
    low, high = spec.get("range") or (None, None)
    return Metric(
        name,
        spec.get("higher_is_better"),
        spec.get("chance"),
        spec.get("description", ""),
        null=spec.get("null_model"),
        range=(None if low is None else float(low), None if high is None else float(high)),
    )


#: the keys of a variant's file (the rest comes from the task it varies)
_VARIANT_KEYS = {"name", "description", "variant_of", "params"}


def _task_path(name_or_path: str, tasks_dir: Path) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = tasks_dir / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(available_tasks(tasks_dir)) or "(none)"
            raise XincError(f"unknown task {name_or_path!r}. Known tasks: {known}")
    return path


def _read_task_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise XincError(f"cannot read task file {path}: {exc}") from exc


def available_tasks(tasks_dir: Path = TASKS_DIR) -> list[str]:
    """Names of the task YAML files in ``tasks_dir`` (variants included)."""
    return sorted(p.stem for p in tasks_dir.glob("*.yaml"))


def default_tasks(tasks_dir: Path = TASKS_DIR) -> list[str]:
    """The tasks a run takes when none are named: every task in ``tasks_dir`` that is not a variant."""
    return [name for name in available_tasks(tasks_dir) if load_task(name, tasks_dir).variant_of is None]
