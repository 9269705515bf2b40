"""The probe interface and probe tasks.

A probe is a function ``probe(canvas, params) -> ProbeResult`` registered in ``PROBES``; it reads
the canvas only through :class:`~xinc_bench.canvas.Canvas` (so any canvas file can be probed)
and returns named scalar scores plus figures. A *task* is a YAML file in ``tasks/`` naming the
probe, its version and parameters, and for every headline metric its direction and chance value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import PROBES
from ..resources import bundled_dir

#: where the task YAML files live (the checkout's top-level ``tasks/``, or its installed copy)
TASKS_DIR = bundled_dir("tasks", "tasks")


@dataclass
class ProbeResult:
    """What a probe returns.

    Attributes:
        scores: metric name -> value. Headline metrics use the names declared in the task YAML;
            per-layer values are ``"<layer>/<metric>"``.
        figures: artefact name -> matplotlib Figure, saved as ``<name>.png`` beside the record.
    """

    scores: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)


Probe = Callable[[Canvas, dict[str, Any]], ProbeResult]


@dataclass(frozen=True)
class Metric:
    """A headline metric of a task: its direction and the value chance gives."""

    name: str
    higher_is_better: bool | None
    chance: float | None
    description: str = ""


@dataclass(frozen=True)
class Task:
    """A probe task loaded from ``tasks/<name>.yaml``."""

    name: str
    version: int
    probe: str
    params: dict[str, Any]
    metrics: dict[str, Metric]
    description: str = ""
    signal_kinds: tuple[str, ...] = ("image", "video")

    def run(self, canvas: Canvas, **overrides: Any) -> ProbeResult:
        """Run the task's probe on ``canvas`` with the task parameters (and ``overrides``)."""
        return PROBES.get(self.probe)(canvas, {**self.params, **overrides})


def load_task(name_or_path: str, tasks_dir: Path = TASKS_DIR) -> Task:
    """Load a task by name (``tasks/<name>.yaml``) or from a YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = tasks_dir / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(available_tasks(tasks_dir)) or "(none)"
            raise XincError(f"unknown task {name_or_path!r}. Known tasks: {known}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise XincError(f"cannot read task file {path}: {exc}") from exc
    try:
        metrics = {
            metric: Metric(metric, spec.get("higher_is_better"), spec.get("chance"), spec.get("description", ""))
            for metric, spec in raw["metrics"].items()
        }
        task = Task(
            name=raw["name"],
            version=int(raw["version"]),
            probe=raw["probe"],
            params=dict(raw.get("params") or {}),
            metrics=metrics,
            description=raw.get("description", ""),
            signal_kinds=tuple(raw.get("signal_kinds", ("image", "video"))),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise XincError(f"task file {path} is malformed ({exc!r}); it needs name, version, probe and metrics") from exc
    PROBES.get(task.probe)  # unknown probe names fail here, listing the known ones
    return task


def available_tasks(tasks_dir: Path = TASKS_DIR) -> list[str]:
    """Names of the task YAML files in ``tasks_dir``."""
    return sorted(p.stem for p in tasks_dir.glob("*.yaml"))
