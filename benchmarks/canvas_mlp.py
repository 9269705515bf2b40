"""Time and peak memory of the all-layer MLP canvas of ffn-paper, against one forward pass, its floor
and the reference style.

Each variant runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own;
memory is reported as the peak above the process's resident size just before the variant starts.
Times are the fastest of ``--repeats`` timed runs, after one untimed warm-up run: wall-clock,
and CPU time (all threads), which a busy machine disturbs less.

* ``forward``: one forward pass of the model over every pixel (the unit of cost).
* ``fill-floor``: the floor: a warm ``fill_`` of as many float32 values as the canvas has, into
  allocated and already written arrays (no page faults).
* ``tracer``: the ``mlp`` tracer (:mod:`xinc_bench.canvas.mlp`) on all layers into warm float32
  arrays: what a streamed canvas's window costs beyond its memory.
* ``compute-canvas``: :func:`xinc_bench.canvas.compute_canvas` with the ``mlp`` tracer (all layers):
  the tracer plus a fresh canvas (its pages are first written here) and the NaN/inf check.
* ``per-neuron``: the reference implementation's style: one matmul per neuron, each layer's full
  ``[N_in, N_out, pixels]`` contribution tensor kept in memory before it is summed (skipped where
  it would not fit).

Usage: ``python -m benchmarks.canvas_mlp [--large] [--threads N] [--repeats 3]`` (``--large`` adds
1024x2048, Cityscapes' full resolution).
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from .variants import measure, spawn

SIZES = [(128, 256)]
LARGE = (1024, 2048)


def _model(height: int, width: int):
    from xinc_bench.inrs import create_inr

    torch.manual_seed(0)
    return create_inr("ffn-paper", height=height, width=width).eval()


@torch.no_grad()
def per_neuron_canvas(model, coords: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference style: a Python loop over neurons keeping ``[N_in, N_out, P]`` per layer."""
    trace = model.trace(coords)
    maps = {}
    last = len(trace.targets) - 1
    for index, (inputs, target) in enumerate(zip(trace.inputs, trace.targets)):
        num_in = inputs.shape[1]
        full = torch.empty(num_in, target.out_features, inputs.shape[0])
        for j in range(num_in):
            full[j] = (inputs[:, j : j + 1] @ target.weight[:, j : j + 1].T + target.bias / num_in).T
        summed = full.sum(dim=1)
        maps[f"layer{index + 1}"] = summed if index == last else summed.clamp(min=0)
    return maps


def run_variant(variant: str, height: int, width: int, repeats: int) -> dict[str, float]:
    import numpy as np

    from xinc_bench.canvas import compute_canvas
    from xinc_bench.data import Signal
    from xinc_bench.inrs import image_coordinates
    from xinc_bench.registry import TRACERS

    model = _model(height, width)
    coords = image_coordinates(height, width)
    signal = Signal(torch.zeros(1, height, width, 3), "zeros")
    tracer = TRACERS.get("mlp")
    shape = (1, height, width)
    arrays: dict[str, np.ndarray] = {}
    if variant in ("tracer", "fill-floor"):  # every page written once: warm
        arrays = {name: np.full((count, *shape), 0.0, np.float32) for name, count in tracer.layers(model, shape).items()}
    buffers = [torch.from_numpy(array) for array in arrays.values()]
    recon = np.empty((*shape, 3), np.float32)

    def once() -> None:
        with torch.no_grad():
            if variant == "forward":
                for i in range(0, coords.shape[0], 16384):
                    model(coords[i : i + 16384])
            elif variant == "fill-floor":
                for buffer in buffers:
                    buffer.fill_(1.0)
            elif variant == "tracer":
                tracer.trace(model, shape, arrays, recon, 16384)
            elif variant == "compute-canvas":
                compute_canvas(model, signal, "mlp")
            elif variant == "per-neuron":
                per_neuron_canvas(model, coords)

    return measure(once, 1 if variant == "per-neuron" else repeats)


def _spawn(variant: str, height: int, width: int, threads: int | None, repeats: int) -> dict[str, float]:
    arguments = ["--variant", variant, "--size", f"{height}x{width}", "--repeats", str(repeats)]
    if threads:
        arguments += ["--threads", str(threads)]
    return spawn("benchmarks.canvas_mlp", arguments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", action="store_true", help="also run 1024x2048")
    parser.add_argument("--threads", type=int, help="torch threads per variant (default: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the fastest is reported")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        height, width = map(int, args.size.split("x"))
        print(json.dumps(run_variant(args.variant, height, width, args.repeats)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, "
          f"fastest of {args.repeats} runs")
    sizes = SIZES + ([LARGE] if args.large else [])
    for height, width in sizes:
        pixels = height * width
        canvas_mb = (208 + 104 + 104) * pixels * 4 / 2**20
        reference_mb = (208 * 104 + 104 * 104 + 104 * 3) * pixels * 4 / 2**20
        print(f"\nffn-paper all-layer canvas at {height}x{width} ({pixels:,} pixels): "
              f"canvas {canvas_mb:,.0f} MB, all [N_in, N_out, P] tensors {reference_mb:,.0f} MB")
        variants = ["forward", "fill-floor", "tracer", "compute-canvas"]
        results = {variant: _spawn(variant, height, width, args.threads, args.repeats) for variant in variants}
        if reference_mb < 12 * 1024:
            results["per-neuron"] = _spawn("per-neuron", height, width, args.threads, 1)
        else:
            print(f"  per-neuron (reference style): skipped, needs {reference_mb / 1024:,.0f} GiB > 24 GiB machine")
        print(f"  {'variant':<15} {'wall':>9}   {'(median)':>10}   {'CPU':>9}   peak memory")
        for name, result in results.items():
            print(f"  {name:<15} {result['seconds']:8.3f} s  ({result['median']:8.3f} s)  {result['cpu_seconds']:8.3f} s"
                  f"   +{max(result['peak_extra_mb'], 0):.0f} MB")
        forward, floor = results["forward"], results["fill-floor"]
        ours, end_to_end = results["tracer"], results["compute-canvas"]

        def ratio(result: dict[str, float], base: dict[str, float]) -> str:
            return f"wall {result['seconds'] / base['seconds']:.2f}x, CPU {result['cpu_seconds'] / base['cpu_seconds']:.2f}x"

        print(f"  tracer / forward pass (target <= 2x): {ratio(ours, forward)}; tracer / fill-floor: {ratio(ours, floor)}")
        print(f"  compute-canvas / forward pass: {ratio(end_to_end, forward)} "
              f"(a fresh canvas's page faults and the NaN check included)")
        print(f"  canvas peak memory / canvas size: {end_to_end['peak_extra_mb'] / canvas_mb:.2f}x")
        if "per-neuron" in results:
            reference = results["per-neuron"]
            print(f"  per-neuron / tracer: time {reference['seconds'] / ours['seconds']:.1f}x, "
                  f"peak memory {reference['peak_extra_mb'] / max(end_to_end['peak_extra_mb'], 1):.1f}x (vs compute-canvas)")


if __name__ == "__main__":
    main()
