"""Results records (SPEC 6): one JSON file per probe run, written atomically (:func:`~xinc_bench.files.write_json_atomic`)."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..probes.base import Task

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
