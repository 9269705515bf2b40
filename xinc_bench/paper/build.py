"""``xinc-bench paper``: run what the paper report needs, then write it.

Two sources of evidence, both written below ``OUT/runs/``:

* a suite (``configs/suites/paper-quick.yaml`` for ``--quick``, ``paper.yaml`` for ``--full``): the
  zoo trained here on built-in data with several seeds, run by any executor (local, processes, Ray)
  and resumable like ``xinc-bench suite run``;
* the paper's released FFN checkpoint (``--release``, default ``../shared/reference/...``): its canvas
  at its own 128x256 with each tracer of :data:`RELEASE_TRACERS`, probed with the suite's image tasks
  (one checkpoint, so no seed interval and no random-init control).

Then :func:`~xinc_bench.paper.report.write_paper_report` turns the records into the report. A rerun
of the same command keeps every finished unit and record. ``OUT`` must be new, empty, or a paper
report folder (it holds ``paper.json``): a folder of anything else is refused before any work.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import XincError
from ..files import write_json_atomic
from ..runs.executors import Executor, UnitOutcome
from ..runs.progress import Progress
from ..runs.rundir import RunDir
from ..runs.suite import Suite, load_suite, run_suite
from ..runs.unit import current_record

#: the marker (and summary) file of a paper report folder
MARKER = "paper.json"
#: the folder of the runs behind the report, inside ``OUT``
RUNS_DIR = "runs"
#: the suite each mode runs
MODES = {"quick": "paper-quick", "full": "paper"}
#: the paper's released FFN: ``shared/reference`` beside the checkout (an installed package gives ``--release``)
DEFAULT_RELEASE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ffn_cityscapes_0005" / "best_model.ckpt"
#: the resolution the release was trained at
RELEASE_SIZE = (128, 256)
#: the released FFN is traced with the reference rule and with its signed variant (SPEC 8.7)
RELEASE_TRACERS = ("mlp", "mlp-signed")
#: the architecture label of the release in the report
RELEASE_LABEL = "released FFN"


@dataclass(frozen=True)
class PaperRun:
    """What :func:`run_paper` did: the report folder, the suite, its unit outcomes and the wall time (this
    invocation's plus that of the earlier ones that built the same folder)."""

    out: Path
    mode: str
    suite: Suite
    outcomes: list[UnitOutcome]
    seconds: float

    @property
    def failed(self) -> dict[str, str]:
        """Unit id -> the error that stopped it."""
        return {outcome.spec.unit_id: outcome.error for outcome in self.outcomes if outcome.error is not None}


def check_out_folder(out: Path, mode: str) -> None:
    """Refuse an ``OUT`` that is a file, a non-empty folder without :data:`MARKER`, or the report of another mode.

    Raises:
        XincError: with the fix.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XincError(f"--out {out} is a file; give a new folder (or a paper report folder to resume)")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise XincError(f"--out {out} is an existing folder that is not a paper report (no {MARKER}); "
                        "give a new or empty folder, or a folder a previous `xinc-bench paper` wrote")
    try:
        marker = json.loads((out / MARKER).read_text()) if (out / MARKER).is_file() else {}
    except (OSError, ValueError) as exc:
        raise XincError(f"{out / MARKER} is unreadable ({exc}); delete it to start this report folder afresh") from None
    if isinstance(marker, dict) and marker.get("mode") not in (None, mode):
        raise XincError(f"--out {out} holds a --{marker['mode']} paper report; give another folder for --{mode}")


def check_release(path: Path) -> Path:
    """The released checkpoint's path, if it is a file.

    Raises:
        XincError: it is missing, with where to find it.
    """
    path = Path(path)
    if not path.is_file():
        raise XincError(f"released FFN checkpoint {path} not found; give --release PATH to the paper's "
                        "best_model.ckpt (shared/reference/ffn_cityscapes_0005/ in this project)")
    return path


def run_paper(
    mode: str,
    out: Path,
    *,
    release: Path | None = None,
    suite: str | Path | Suite | None = None,
    executor: str | Executor = "local",
    device: str | None = None,
    memory_budget: int | None = None,
    progress: Progress | None = None,
    on_unit: Callable[[UnitOutcome], None] | None = None,
) -> PaperRun:
    """Run (or resume) the paper mode's suite and the release's probes into ``out/runs/``, then write the report.

    ``release``: the released FFN checkpoint (default :data:`DEFAULT_RELEASE`). ``suite``: the suite to run
    instead of the mode's (its loaded copy, or a smaller one in tests). ``memory_budget``: bytes
    each unit may use (default: :func:`~xinc_bench.runs.budget.default_memory_budget`).

    Raises:
        XincError: bad ``out`` or ``release`` (before any work), an unknown mode.
    """
    if mode not in MODES:
        raise XincError(f"unknown paper mode {mode!r}; give one of {', '.join(MODES)}")
    out = Path(out)
    check_out_folder(out, mode)
    release = check_release(release or DEFAULT_RELEASE)
    suite = suite if isinstance(suite, Suite) else load_suite(suite or MODES[mode])
    progress = progress or Progress(quiet=True)
    progress.line(f"paper --{mode}: suite {suite.name} ({len(suite.units)} units) and the released FFN -> {out}")
    started = time.perf_counter()
    earlier = _earlier_seconds(out, mode)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MARKER, {"mode": mode, "suite": suite.name, "state": "running", "seconds": earlier})
    runs = out / RUNS_DIR
    summary = run_suite(suite, runs, executor=executor, device=device, memory_budget=memory_budget,
                        quiet=progress.quiet, on_unit=on_unit)
    tasks = release_tasks(suite)
    for tracer in RELEASE_TRACERS:
        with progress.stage(f"released FFN, tracer {tracer}: {len(tasks)} tasks"):
            probe_release(release, runs / release_folder(tracer), tracer, tasks, memory_budget=memory_budget)
    seconds = earlier + time.perf_counter() - started
    result = PaperRun(out, mode, suite, summary.units, seconds)
    from .report import write_paper_report

    with progress.stage("report"):
        write_paper_report(out, mode=mode, seconds=seconds, failed=result.failed, release_psnr=release_psnr(release))
    return result


def release_psnr(checkpoint: Path) -> float | None:
    """The PSNR the release notes (``info.json`` beside the checkpoint, ``best_psnr``) give, or None."""
    try:
        value = json.loads((Path(checkpoint).parent / "info.json").read_text()).get("best_psnr")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _earlier_seconds(out: Path, mode: str) -> float:
    """The wall time the earlier invocations of the same mode spent on ``out`` (0 for a new folder)."""
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return 0.0
    seconds = marker.get("seconds") if isinstance(marker, dict) and marker.get("mode") == mode else None
    return float(seconds) if isinstance(seconds, (int, float)) else 0.0


def release_folder(tracer: str) -> str:
    """The run folder name of the release traced with ``tracer``."""
    return f"release-ffn__{RELEASE_SIZE[0]}x{RELEASE_SIZE[1]}__{tracer}"


def release_tasks(suite: Suite) -> tuple[str, ...]:
    """The tasks the suite runs on its image units (the release is probed with the same ones)."""
    from ..inrs import inr_info, resolve_inr
    from ..runs.unit import unit_tasks

    for unit in suite.units:
        if inr_info(resolve_inr(unit.model)).signal_kind == "image":
            return unit_tasks(unit)
    raise XincError(f"suite {suite.name} has no image units; the release is probed with their tasks")


def probe_release(checkpoint: Path, folder: Path, tracer: str, tasks: tuple[str, ...],
                  memory_budget: int | None = None) -> list[str]:
    """Probe the released checkpoint's canvas (traced with ``tracer``, never written) with ``tasks`` into
    ``folder/records/``, then run the sanity check on it; keeps every current record. Returns the tasks probed now.

    The folder becomes a run folder like a unit's: the release as a native checkpoint, its signal (its own
    reconstruction, with masks), the records and ``records/sanity.json``. The random-init control is the same
    architecture freshly initialised (:data:`TWIN_SEED`) with the release's fixed buffers (the FFN's Fourier
    matrix, which training never changes), as a unit's twin is its model before training.
    """
    from ..canvas import write_canvas
    from ..checkpoints import load_checkpoint, save_checkpoint
    from ..runs.rundir import SANITY_NAME
    from ..runs.sanity import sanity_check
    from ..runs.stages import annotate_signal, canvas_run, probe_tasks, reconstruction_signal

    run = RunDir(folder)
    pending = [task for task in tasks if not current_record(run.record(task), task)]
    if not pending and (run.records / SANITY_NAME).is_file():
        return []
    with run.open():
        if pending:
            model, config = load_checkpoint(checkpoint, *RELEASE_SIZE)
            twin = _random_init_twin(model, config)
            signal = reconstruction_signal(model, 1, RELEASE_SIZE)
            common = dict(out=None, tracer=tracer, memory_budget=memory_budget, signal=signal,
                          annotations=annotate_signal(signal))
            canvas = canvas_run(checkpoint, RELEASE_SIZE, model=(model, config), **common)
            twin_canvas = canvas_run(checkpoint, RELEASE_SIZE, model=(twin, config), **common)
            outcome = probe_tasks(canvas, pending, outs={task: run.record(task) for task in pending},
                                  control_canvas=twin_canvas, model=model, twin=twin, preview=run.preview)
            errors = {task: str(value) for task, value in outcome.items() if isinstance(value, XincError)}
            if errors:
                raise XincError(f"the released FFN's tasks failed: {errors}")
            save_checkpoint(model, config, run.path)
            write_canvas(dataclasses.replace(canvas, layers={}), run.signal)
        sanity_check(run.path, tasks, memory_budget=memory_budget)
    return pending


#: seed of the released FFN's random-init control
TWIN_SEED = 0


def _random_init_twin(model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The release's architecture freshly initialised, with the release's buffers."""
    from ..inrs import create_inr

    with torch.random.fork_rng():
        torch.manual_seed(TWIN_SEED)
        twin = create_inr(config["model"], height=RELEASE_SIZE[0], width=RELEASE_SIZE[1],
                          **config.get("model_args", {}))
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, buffer in twin.named_buffers():
            buffer.copy_(buffers[name])
    return twin.eval()
