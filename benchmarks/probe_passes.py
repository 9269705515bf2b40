"""Probing a canvas: one shared read per pass for every task, against one read per task.

Three ways to score the same tasks (with their null draws) and the spatial-shuffle control on
the canvas of an untrained nerv-paper (seed 0) on bikes, side by side in one run:

* ``per task, file``: today's file is read by each task on its own, and again by each task
  on the shuffled control (shuffled lazily on every read), as ``task.run`` does;
* ``shared, file``: :func:`~xinc_bench.runs.stages.probe_tasks`'s driver: every block of the file
  is read once per pass and handed to all tasks, then read again per pass of the controls and,
  shuffled in memory, handed to all of them;
* ``shared, streamed``: the same driver on a canvas traced on demand, window by window, that is
  never written (:func:`~xinc_bench.canvas.streamed.traced_canvas`); the file variants' time to
  trace and write the file is printed beside it.

Usage: ``python benchmarks/probe_passes.py [--frames 4] [--size 32x64] [--draws 5] [--tasks ...]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from xinc_bench.canvas import compute_canvas, read_canvas  # noqa: E402
from xinc_bench.canvas.streamed import traced_canvas  # noqa: E402
from xinc_bench.data import load_signal, parse_frames  # noqa: E402
from xinc_bench.inrs.base import create_inr  # noqa: E402
from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate  # noqa: E402
from xinc_bench.probes.base import load_task  # noqa: E402
from xinc_bench.probes.controls import shuffle_canvas  # noqa: E402
from xinc_bench.runs.stages import annotate_signal  # noqa: E402

TASKS = ("distribution", "color", "edges", "partitions", "objects", "motion")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", default="32x64")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    signal = load_signal("bikes", (height, width), parse_frames(f"0:{args.frames}"))
    annotate_signal(signal)
    torch.manual_seed(0)
    model = create_inr("nerv-paper", num_frames=signal.num_frames, height=height, width=width).eval()
    tasks = [load_task(name) for name in args.tasks]

    def shared(canvas):
        own = [task.accumulator(canvas, args.draws) for task in tasks]
        accumulate(canvas, [AccumulatorGroup(own)])
        controls = [accumulator.for_control(shuffle_canvas(canvas)) for accumulator in own]
        accumulate(shuffle_canvas(canvas), [AccumulatorGroup(controls)])
        plt.close("all")

    def per_task(canvas):
        for task in tasks:
            task.run(canvas, args.draws)
            task.run(shuffle_canvas(canvas), 0)
        plt.close("all")

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "canvas.safetensors"
        started = time.perf_counter()
        compute_canvas(model, signal, "cnn", out=path, dtype=torch.float16)
        write_seconds = time.perf_counter() - started
        size_gb = path.stat().st_size / 1e9
        for name, run in (("per task, file", per_task), ("shared, file", shared)):
            started = time.perf_counter()
            run(read_canvas(path))
            rows.append((name, time.perf_counter() - started))
    started = time.perf_counter()
    streamed = traced_canvas(model, signal, "cnn", dtype=torch.float16)
    shared(streamed)
    rows.append(("shared, streamed (traced on demand)", time.perf_counter() - started))
    windows = streamed.layers[streamed.layer_names[0]].windows  # type: ignore[union-attr]

    print(f"nerv-paper (untrained), bikes {args.frames} frames at {args.size}; tasks {', '.join(args.tasks)}; "
          f"{args.draws} null draws; canvas file {size_gb:.2f} GB float16, traced and written in {write_seconds:.1f} s")
    baseline = rows[0][1]
    print("| probing | time | vs per task |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} s | {seconds / baseline:.2f}x |")
    print(f"| file variants incl. writing the canvas | per task {baseline + write_seconds:.1f} s, shared "
          f"{rows[1][1] + write_seconds:.1f} s | |")
    print(f"streamed: {windows.frames_traced} frames traced ({windows.frames_traced // max(1, args.frames)} passes) "
          f"in {windows.seconds:.1f} s; peak RSS of this process {_peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
