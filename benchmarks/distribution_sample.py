"""The distribution probe with (d) on a pixel sample, against (d) on every pixel, side by side.

On a layer of more than ``gini_pixels`` pixels the distribution probe takes the Gini coefficient's
mean over a seeded sample of that many pixels (the per-pixel sort is most of the probe's cost);
(a)-(c) use every pixel either way. This scores the canvas of an untrained nerv-paper (seed 0) on
bikes, traced on demand, twice in one run: ``gini_pixels`` = the canvas's pixels (every pixel, the
exact mean) and the task's default (2^17), and prints both times, the ratio and how far the sampled
Gini of each layer is from the exact one (against the stated bound ``0.5 / sqrt(gini_pixels)``).

Usage: ``python -m benchmarks.distribution_sample [--frames 8] [--size 128x256] [--draws 0]``.
"""

from __future__ import annotations

import argparse
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from xinc_bench.canvas.streamed import traced_canvas  # noqa: E402
from xinc_bench.data import load_signal, parse_frames  # noqa: E402
from xinc_bench.inrs.base import create_inr  # noqa: E402
from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate  # noqa: E402
from xinc_bench.probes.base import load_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="128x256")
    parser.add_argument("--draws", type=int, default=0, help="null draws (they are scored on every drawn pixel)")
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    signal = load_signal("bikes", (height, width), parse_frames(f"0:{args.frames}"))
    torch.manual_seed(0)
    model = create_inr("nerv-paper", num_frames=signal.num_frames, height=height, width=width).eval()
    task = load_task("distribution")
    sample = int(task.params["gini_pixels"])
    pixels = signal.num_pixels
    results, seconds = {}, {}
    for name, gini_pixels in (("every pixel", pixels), (f"sample of {sample:,}", sample)):
        canvas = traced_canvas(model, signal, "cnn")
        accumulator = task.accumulator(canvas, args.draws, gini_pixels=gini_pixels)
        started = time.perf_counter()
        [[state]] = accumulate(canvas, [AccumulatorGroup([accumulator])])
        seconds[name] = time.perf_counter() - started
        results[name] = state.result.scores
        plt.close("all")
    exact, sampled = results.values()
    neurons = sum(canvas.layer_shape(layer)[0] for layer in canvas.layer_names)
    print(f"nerv-paper (untrained), bikes {args.frames} frames at {args.size}: {pixels:,} pixels x {neurons:,} maps "
          f"({pixels * neurons / 1e9:.1f} G values), {args.draws} null draws")
    print("| (d) over | time | vs every pixel |")
    print("|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.1f} s | {value / seconds['every pixel']:.2f}x |")
    bound = 0.5 / math.sqrt(sample)
    print(f"| layer | gini, every pixel | gini, sample | difference (bound of one standard error {bound:.4f}) |")
    print("|---|---|---|---|")
    for layer in canvas.layer_names:
        key = f"{layer}/gini"
        print(f"| {layer} | {exact[key]:.5f} | {sampled[key]:.5f} | {sampled[key] - exact[key]:+.5f} |")
    same = all(exact[key] == sampled[key] for key in exact if not key.endswith("gini"))
    print(f"every other score identical: {same}")


if __name__ == "__main__":
    main()
