"""``python -m benchmarks``: every stage of a unit, its time, its peak memory and its ratio to its floor.

Prints one Markdown table (the README's): per stage the wall time, the peak resident memory above
the process's resident size when the measurement began, and the ratio against what it is compared
with, measured side by side in the same process:

=================  ===================================================  ================================
stage              what                                                 against
=================  ===================================================  ================================
fit-mlp, fit-cnn   one step of ``fit`` (ffn-paper on astronaut at       one forward+backward of the
                   --size; nerv-paper on bikes at --video-size)         same batch
canvas-mlp         ffn-paper, ``mlp`` tracer, at --size                 one forward pass, and a warm
canvas-cnn         nerv-paper, ``cnn`` tracer, --frames at --video-size ``fill_`` of as many float32
canvas-hashgrid    hashgrid-33k, ``mlp`` tracer, at --size              values into an allocated
canvas-linear      ffn-paper, the generic ``linear`` hook tracer        buffer (the floor)
probes             each task's accumulator in one shared pass over the  the pass's reads alone
                   --probe-model's canvas (each task also runs alone,
                   in its own process, for its own peak memory,
                   unless --no-alone)
controls           the shuffled control and the random-init twin        the canvas's own probing
run                ``run_unit`` of the --probe-model on bikes, with     the sum of its stage lines
                   each stage line it prints
=================  ===================================================  ================================

Canvases are traced on demand, window by window (``traced_canvas``, as the probes' driver reads
them); probes and controls use an untrained model (seed 0; the twin seed 1). Each stage runs in a
subprocess of its own, so its peak memory is its own. The defaults finish in minutes on a 2-core
CPU; the paper's sizes are ``--size 1024x2048`` (ffn-paper on Cityscapes) and ``--video-size
128x256 --frames 30`` (nerv-paper on bikes). Exit status: 0, 1 when a stage failed (the others are
still reported), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from .table import PROBE_ROW, SHARED_PASS, Row, markdown

#: the repository root (``python -m benchmarks`` runs the stages from there)
ROOT = Path(__file__).resolve().parents[1]
#: the stages, in the order they run
STAGES = ("fit-mlp", "fit-cnn", "canvas-mlp", "canvas-cnn", "canvas-hashgrid", "canvas-linear", "probes",
          "controls", "run")


class StageFailed(Exception):
    """A stage's subprocess exited with an error (its last lines of stderr are the message)."""


def parse_size(text: str) -> tuple[int, int]:
    """``"128x256"`` -> ``(128, 256)``; argparse reports anything else."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: give positive HEIGHTxWIDTH, e.g. 128x256")
    return int(match[1]), int(match[2])


def positive(text: str) -> int:
    """A positive integer; argparse reports anything else."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line (``python -m benchmarks --help``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), metavar="STAGE",
                        help=f"stages to run, space- or comma-separated (default: all): {', '.join(STAGES)}")
    parser.add_argument("--size", type=parse_size, default=(128, 256), metavar="HxW",
                        help="image size of fit-mlp and the image canvases (default 128x256)")
    parser.add_argument("--video-size", type=parse_size, default=(64, 128), metavar="HxW",
                        help="frame size of fit-cnn and canvas-cnn, nerv-paper (default 64x128; a multiple of 16)")
    parser.add_argument("--frames", type=positive, default=2, metavar="N",
                        help="frames of bikes for the video stages (default 2; the paper: 30)")
    parser.add_argument("--probe-model", default="ffn-video", metavar="NAME",
                        help="model of probes, controls and run (default ffn-video; nerv-paper is the paper's)")
    parser.add_argument("--probe-size", type=parse_size, default=(32, 64), metavar="HxW",
                        help="frame size of probes, controls and run (default 32x64)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="tasks of probes, controls and run (default: every task that applies)")
    parser.add_argument("--null-draws", type=positive, default=2, metavar="N",
                        help="null draws per score in probes and run (default 2; the tasks' own: 20)")
    parser.add_argument("--no-alone", action="store_true",
                        help="do not also run each task alone in its own process (then its peak memory is not "
                             "measured: `-`)")
    parser.add_argument("--fit-steps", type=positive, default=20, metavar="N",
                        help="optimiser steps the fit stages average over (default 20)")
    parser.add_argument("--run-steps", type=positive, default=2, metavar="N",
                        help="optimiser steps of the run stage's unit (default 2)")
    parser.add_argument("--repeats", type=positive, default=1, metavar="N",
                        help="times each canvas is traced, its median reported (default 1; baselines and floors: "
                             "median of 5)")
    parser.add_argument("--threads", type=positive, metavar="N", help="torch threads (default: torch's default)")
    parser.add_argument("--memory-budget", type=positive, metavar="BYTES",
                        help="bytes of one window of a traced canvas (default: 1 GiB, or XINC_CHUNK_BYTES)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser


def chosen_stages(parser: argparse.ArgumentParser, names: Sequence[str]) -> list[str]:
    """The stages asked for (comma- or space-separated), in the order they run; an unknown one exits 2."""
    asked = [name for text in names for name in text.split(",") if name]
    unknown = [name for name in asked if name not in STAGES]
    if unknown or not asked:
        parser.error(f"unknown stage {', '.join(unknown) or '(none)'}; choose from {', '.join(STAGES)}")
    return [stage for stage in STAGES if stage in asked]


def check_tasks(parser: argparse.ArgumentParser, tasks: Sequence[str] | None) -> None:
    """Exit 2 naming a task that is neither in ``tasks/`` nor a YAML file."""
    known = sorted(path.stem for path in (ROOT / "tasks").glob("*.yaml"))
    unknown = [task for task in tasks or () if task not in known and not Path(task).is_file()]
    if unknown:
        parser.error(f"unknown task {', '.join(unknown)}; known tasks: {', '.join(known)}")


def spawn(stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Run ``stage`` in a subprocess of its own; its rows, notes, and torch's version and threads.

    Raises:
        StageFailed: the subprocess exited with an error.
    """
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "rows.json"
        done = subprocess.run([sys.executable, "-m", "benchmarks", "--child", stage, "--settings", json.dumps(settings),
                               "--result", str(result)], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            errors = [line for line in lines if line.startswith("error: ")]
            raise StageFailed("\n".join(errors[-1:] or lines[-8:]) or f"exit status {done.returncode}")
        return json.loads(result.read_text())


def child(stage: str, settings: str, result: str) -> int:
    """Run one stage in this process and write its rows to ``result`` (exit status 2 on a library error)."""
    import torch

    from xinc_bench.errors import XincError

    from .stages import Settings, run

    try:
        rows, notes = run(stage, Settings.from_json(json.loads(settings)))
    except XincError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(result).write_text(json.dumps({"rows": [row.to_json() for row in rows], "notes": notes,
                                        "torch": torch.__version__, "threads": torch.get_num_threads()}))
    return 0


def with_peaks_alone(shared: list[Row], settings: dict[str, Any], failures: list[str]) -> list[Row]:
    """The shared pass's probe rows, each with the peak memory (and time) of its task run alone."""
    rows = []
    for row in shared:
        task = row.stage.removeprefix(PROBE_ROW)
        if row.stage.startswith(PROBE_ROW) and row.stage != SHARED_PASS:
            try:
                alone = Row.from_json(spawn(f"probe:{task}", settings)["rows"][0])
                row.peak_mb = alone.peak_mb
                row.what += f"; alone, reads included: {alone.seconds:.2f} s (its peak memory)"
            except StageFailed as exc:
                failures.append(f"probes: {task} alone: {exc}")
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stages asked for, print their table; the exit status (0, or 1 when a stage failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.settings, args.result)
    stages = chosen_stages(parser, args.stages)
    check_tasks(parser, args.tasks)
    settings = {key: getattr(args, key) for key in ("size", "video_size", "probe_size", "frames", "probe_model",
                                                    "tasks", "null_draws", "fit_steps", "run_steps", "repeats",
                                                    "threads", "memory_budget")}
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    failures: list[str] = []
    environment: dict[str, Any] = {}
    for index, stage in enumerate(stages, 1):
        print(f"benchmarks: {stage} ({index}/{len(stages)}) ...", file=sys.stderr, flush=True)
        stage_started = time.perf_counter()
        try:
            environment = spawn(stage, settings)
        except StageFailed as exc:
            failures.append(f"{stage}: {exc}")
            continue
        stage_rows = [Row.from_json(row) for row in environment["rows"]]
        notes += environment["notes"]
        alone = stage == "probes" and not args.no_alone
        rows += with_peaks_alone(stage_rows, settings, failures) if alone else stage_rows
        print(f"benchmarks: {stage} done in {time.perf_counter() - stage_started:.1f} s",
              file=sys.stderr, flush=True)
    command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
    torch_text = f"torch {environment['torch']}, {environment['threads']} threads, " if environment else ""
    print(f"`{command}`: {len(stages)} stage{'s' * (len(stages) > 1)} in {time.perf_counter() - started:.0f} s; "
          f"{torch_text}{os.cpu_count()} CPUs, load average {load_start:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end.\n")
    print(markdown(rows))
    alone = "" if args.no_alone else "; a probe's is that of its task run alone, in its own process"
    print(f"\nPeak memory: above the process's resident size when the measurement began (`-`: not measured on "
          f"its own){alone}.")
    if notes:
        print("\n" + "\n".join(f"- {note}" for note in notes))
    for failure in failures:
        print(f"benchmarks: stage {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
