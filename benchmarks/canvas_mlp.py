"""Time and peak memory of the all-layer MLP canvas of ffn-paper, against the reference style.

Each variant runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own;
memory is reported as the peak above the process's resident size just before the variant starts.

* ``forward``: one forward pass of the model over every pixel (the unit of cost).
* ``xinc-bench``: :func:`xinc_bench.canvas.compute_canvas` with the ``mlp`` tracer (all layers).
* ``per-neuron``: the reference implementation's style: one matmul per neuron, each layer's full
  ``[N_in, N_out, pixels]`` contribution tensor kept in memory before it is summed.

Usage: ``python benchmarks/canvas_mlp.py [--large]`` (``--large`` adds 1024x2048, Cityscapes' full
resolution, where the per-neuron style would need far more than 24 GiB and is only estimated).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

SIZES = [(128, 256)]
LARGE = (1024, 2048)


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


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


def run_variant(variant: str, height: int, width: int) -> dict[str, float]:
    from xinc_bench.canvas import compute_canvas
    from xinc_bench.data import Signal
    from xinc_bench.inrs import image_coordinates

    model = _model(height, width)
    coords = image_coordinates(height, width)
    signal = Signal(torch.zeros(1, height, width, 3), "zeros")
    baseline = _rss_mb()
    started = time.perf_counter()
    with torch.no_grad():
        if variant == "forward":
            for i in range(0, coords.shape[0], 16384):
                model(coords[i : i + 16384])
        elif variant == "xinc-bench":
            compute_canvas(model, signal, "mlp")
        elif variant == "per-neuron":
            per_neuron_canvas(model, coords)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_extra_mb": peak - baseline}


def _spawn(variant: str, height: int, width: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--variant", variant, "--size", f"{height}x{width}"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", action="store_true", help="also run 1024x2048")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        height, width = map(int, args.size.split("x"))
        print(json.dumps(run_variant(args.variant, height, width)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    sizes = SIZES + ([LARGE] if args.large else [])
    for height, width in sizes:
        pixels = height * width
        canvas_mb = (208 + 104 + 104) * pixels * 4 / 2**20
        reference_mb = (208 * 104 + 104 * 104 + 104 * 3) * pixels * 4 / 2**20
        print(f"\nffn-paper all-layer canvas at {height}x{width} ({pixels:,} pixels): "
              f"canvas {canvas_mb:,.0f} MB, all [N_in, N_out, P] tensors {reference_mb:,.0f} MB")
        results = {"forward": _spawn("forward", height, width), "xinc-bench": _spawn("xinc-bench", height, width)}
        if reference_mb < 12 * 1024:
            results["per-neuron"] = _spawn("per-neuron", height, width)
        else:
            print(f"  per-neuron (reference style): skipped, needs {reference_mb / 1024:,.0f} GiB > 24 GiB machine")
        for name, result in results.items():
            print(f"  {name:<12} {result['seconds']:8.3f} s   peak +{result['peak_extra_mb']:8.0f} MB")
        forward = results["forward"]["seconds"]
        ours = results["xinc-bench"]
        print(f"  canvas / forward pass time: {ours['seconds'] / forward:.2f}x (target <= 3x)")
        print(f"  canvas peak memory / canvas size: {ours['peak_extra_mb'] / canvas_mb:.2f}x")
        if "per-neuron" in results:
            reference = results["per-neuron"]
            print(f"  per-neuron / xinc-bench: time {reference['seconds'] / ours['seconds']:.1f}x, "
                  f"peak memory {reference['peak_extra_mb'] / max(ours['peak_extra_mb'], 1):.1f}x")


if __name__ == "__main__":
    main()
