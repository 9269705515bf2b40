"""Records (SPEC 6): one JSON file per task run on a unit; the one module that builds and reads them.

:func:`build_record` makes a record (written atomically by the runner, :mod:`xinc_bench.files`);
:func:`read_records` and :func:`read_sanity_records` read every record below a folder.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import XincError
from ..probes.base import Task

#: ``"kind"`` of a sanity record (model randomisation, ``RUN/records/sanity.json``)
SANITY_KIND = "sanity"
#: 2: scores beside their null summaries (``nulls``) and the reasons for absent scores (``absent``);
#: controls hold every score, per layer too
SCHEMA_VERSION = 2


def git_commit() -> str | None:
    """The commit of the xinc-bench checkout in use, if it is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Versions and hardware, stored beside every result."""
    import lightning

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def build_record(
    task: Task,
    scores: dict[str, float],
    canvas_metadata: dict[str, Any],
    *,
    controls: dict[str, dict[str, float]] | None = None,
    timings: dict[str, float] | None = None,
    artifacts: list[str] | None = None,
    nulls: dict[str, dict[str, Any]] | None = None,
    absent: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Assemble a SPEC 6 record from a task's scores and the canvas's metadata.

    Args:
        scores: finite score values (per layer ``"<layer>/<metric>"`` and headline).
        nulls: per score, its null summary (:class:`~xinc_bench.probes.stats.NullSummary` as a dict).
        absent: per score left out, the reason (never stored as 0 or NaN).
        controls: control name (``shuffled``, ``random_init``) -> that control's scores.
    """
    meta = canvas_metadata
    return {
        "schema_version": SCHEMA_VERSION,
        "task": {"name": task.name, "version": task.version, "probe": task.probe, "params": task.params},
        "package": {"name": "xinc-bench", "version": __version__, "git_commit": git_commit()},
        "model": {
            "name": meta.get("model"),
            "family": meta.get("family"),
            "config": meta.get("model_config", {}),
            "num_parameters": meta.get("num_parameters"),
            "bits_per_pixel": meta.get("bits_per_pixel"),
            "tracer": meta.get("tracer"),
        },
        "data": meta.get("data", {}),
        "seed": meta.get("seed"),
        "fidelity": meta.get("fidelity", {}),
        "scores": scores,
        "nulls": nulls or {},
        "absent": absent or {},
        "null_draws": {"draws": task.nulls.draws, "seed": task.nulls.seed},
        "controls": controls or {},
        "timings": {"canvas_seconds": meta.get("canvas_seconds"), **(timings or {})},
        "artifacts": artifacts or [],
        "environment": environment(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass(frozen=True)
class RecordFile:
    """One record (SPEC 6) and the file it was read from."""

    path: Path
    record: dict[str, Any]

    @property
    def task(self) -> str:
        return self.record["task"]["name"]

    @property
    def version(self) -> int:
        return int(self.record["task"]["version"])


def read_records(directory: Path) -> list[RecordFile]:
    """Every task record below ``directory`` (JSON files with a ``schema_version``), sorted by path.

    Other JSON files (``model.json`` of a run, sanity records) are skipped.

    Raises:
        XincError: the folder is missing, a JSON file is unreadable, or a record has a newer schema.
    """
    return scan_records(Path(directory))[0]


def read_sanity_records(directory: Path) -> list[RecordFile]:
    """Every sanity record (``"kind": "sanity"``) below ``directory``, sorted by path."""
    return scan_records(Path(directory))[1]


def scan_records(directory: Path) -> tuple[list[RecordFile], list[RecordFile]]:
    """(task records, sanity records) below ``directory``, each sorted by path (see :func:`read_records`)."""
    if not directory.is_dir():
        raise XincError(f"records folder {directory} does not exist; write records with `xinc-bench run --out DIR`")
    records, sanity = [], []
    for path in sorted(directory.rglob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise XincError(f"cannot read {path} ({exc}); delete it or re-run the probe that wrote it") from exc
        if not isinstance(payload, dict):
            continue
        if payload.get("kind") == SANITY_KIND:
            if isinstance(payload.get("model"), dict) and isinstance(payload.get("tasks"), dict):
                sanity.append(RecordFile(path, payload))
            continue
        if "schema_version" not in payload:
            continue
        if not _is_record(payload):
            raise XincError(f"record {path} lacks task name/version or model name; re-run the probe that wrote it")
        if int(payload["schema_version"]) > SCHEMA_VERSION:
            raise XincError(
                f"record {path} has schema version {payload['schema_version']} but this xinc-bench reads up to "
                f"{SCHEMA_VERSION}; upgrade xinc-bench"
            )
        records.append(RecordFile(path, payload))
    return records, sanity


def _is_record(payload: dict[str, Any]) -> bool:
    task, model = payload.get("task"), payload.get("model")
    return isinstance(task, dict) and {"name", "version"} <= task.keys() and isinstance(model, dict) and "name" in model


def headline_metric(task: Task) -> str:
    """The task's leaderboard metric: its ``headline:``, else its first metric."""
    return task.headline or next(iter(task.metrics))
