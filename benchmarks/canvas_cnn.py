"""Time and peak memory of the all-layer CNN canvas of nerv-paper, against its floor and the reference style.

Each variant runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own;
memory is reported as the peak above the process's resident size just before the variant starts.
Times are the fastest of ``--repeats`` timed runs of the variant, after one untimed warm-up run:
wall-clock, and CPU time (all threads), which a busy machine disturbs less.

* ``forward``: one forward pass per frame (the unit of cost).
* ``fill-floor``: the floor: a warm ``fill_`` of as many float32 values as the canvas has, one
  frame's worth at a time into an allocated and already written buffer (no page faults).
* ``xinc-bench``: the ``cnn`` tracer (:mod:`xinc_bench.canvas.cnn`) on all four layers, frame by
  frame (``frames=(t, t + 1)``, the streamed canvas's windows) into warm float32 arrays of one frame.
* ``per-input-channel``: the reference implementation's style, extended to every layer with the
  SPEC 4.2 carry rule: per frame and layer, a loop over input channels with one conv each into a
  ``[C_in, C_conv, h, w]`` tensor, then pixel shuffle, ``repeat`` and masking per sub-lattice, GELU
  and grouped-conv box filters on the whole ``[C_in, C_conv, H, W]`` layer (2.4 GB for block 1);
  its values go (as float16) to a sink that keeps none of them (a zero-stride array). Slow (tens of
  seconds per frame): ``--skip-reference`` leaves it out.

One frame of the float32 canvas of nerv-paper at 128x256 is 3.1 GB (0.78 G values); 30 frames as
float16 are 47 GB.

Usage: ``python -m benchmarks.canvas_cnn [--frames 3] [--threads N] [--repeats 3] [--skip-reference]``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .variants import measure, spawn

HEIGHT, WIDTH = 128, 256
VARIANTS = ("forward", "fill-floor", "xinc-bench", "per-input-channel")


def _model(num_frames: int) -> nn.Module:
    from xinc_bench.inrs.nerv import nerv_paper

    torch.manual_seed(0)
    return nerv_paper(num_frames, HEIGHT, WIDTH).eval()


def _sinks(layer_counts: dict[str, int], num_frames: int) -> dict[str, np.ndarray]:
    """Writable float16 ``[N, T, H, W]`` arrays whose elements all share one value's memory."""
    return {
        name: np.lib.stride_tricks.as_strided(
            np.zeros(1, np.float16), shape=(count, num_frames, HEIGHT, WIDTH), strides=(0, 0, 0, 0)
        )
        for name, count in layer_counts.items()
    }


def _box(maps: torch.Tensor, size: int) -> torch.Tensor:
    """The reference's box filter: a grouped conv with a ``1 / size^2`` kernel per channel."""
    channels = maps.shape[1]
    box = nn.Conv2d(channels, channels, size, padding=size // 2, groups=channels, bias=False)
    box.weight.data = torch.full((channels, 1, size, size), 1.0 / size**2)
    return box(maps)


def _reference_block(
    per_input: torch.Tensor, upscale: int, carry: tuple[tuple[int, int], ...], head_box: int
) -> torch.Tensor:
    """Reference-style placement, GELU and carry of ``[C_in, C_conv, h, w]`` block maps."""
    c_in, c_conv = per_input.shape[:2]
    groups = upscale * upscale
    shuffled = F.pixel_shuffle(per_input, upscale)
    _, c_out, height, width = shuffled.shape
    maps = shuffled.repeat(1, groups, 1, 1).view(c_in, groups, c_out, height, width)
    maps = maps.transpose(1, 2).reshape(c_in, c_conv, height, width)
    index_map = torch.zeros(height, width, dtype=torch.int8)
    for dy in range(upscale):
        for dx in range(upscale):
            index_map[dy::upscale, dx::upscale] = dy * upscale + dx + 1
    for s in range(groups):
        mask = (index_map != s + 1)[None, None].repeat(c_in, c_out, 1, 1)
        maps[:, s::groups][mask] = 0
    maps = F.gelu(maps)
    for size, factor in carry:
        maps = F.gelu(F.interpolate(_box(maps, size), scale_factor=factor, mode="nearest"))
    return _box(maps, head_box)


@torch.no_grad()
def per_input_channel_canvas(model: nn.Module, sinks: dict[str, np.ndarray]) -> None:
    """The reference style, frame by frame: a Python loop over input channels, whole layers in memory."""
    from xinc_bench.canvas.cnn import canvas_convs

    layers = canvas_convs(model)
    for t in range(next(iter(sinks.values())).shape[1]):
        trace = model.trace(torch.tensor([t]))
        for layer, x in zip(layers, trace.inputs):
            conv = layer.conv
            c_in, c_conv = conv.in_channels, conv.out_channels
            per_input = torch.empty(c_in, c_conv, *x.shape[-2:])
            for i in range(c_in):
                single = nn.Conv2d(1, c_conv, conv.kernel_size, padding=conv.padding)
                single.weight.data = conv.weight[:, i : i + 1]
                single.bias.data = conv.bias / c_in
                per_input[i] = single(x[:, i : i + 1])[0]
            maps = per_input
            if layer.activation:
                maps = _reference_block(per_input, layer.upscale, layer.carry, layer.head_box)
            sinks[layer.name][:, t] = maps.reshape(c_in * c_conv, HEIGHT, WIDTH).half().numpy()


def run_variant(variant: str, num_frames: int, repeats: int) -> dict[str, float]:
    from xinc_bench.registry import TRACERS

    import xinc_bench.canvas.cnn  # noqa: F401  (registers the cnn tracer)

    model = _model(num_frames)
    tracer = TRACERS.get("cnn")
    shape = (num_frames, HEIGHT, WIDTH)
    counts = tracer.layers(model, shape)
    if variant == "per-input-channel":
        arrays = _sinks(counts, num_frames)
    else:  # one frame of every layer, every page written once: warm
        arrays = {name: np.full((count, 1, HEIGHT, WIDTH), 0.0, np.float32) for name, count in counts.items()}
    buffers = [torch.from_numpy(array) for array in arrays.values()]
    recon = np.empty((1, HEIGHT, WIDTH, 3), np.float32)

    def once() -> None:
        with torch.no_grad():
            if variant == "per-input-channel":
                per_input_channel_canvas(model, arrays)
                return
            for t in range(num_frames):
                if variant == "forward":
                    model(torch.tensor([t]))
                elif variant == "fill-floor":
                    for buffer in buffers:
                        buffer.fill_(float(t + 1))
                else:
                    tracer.trace(model, shape, arrays, recon, HEIGHT * WIDTH, frames=(t, t + 1))

    return measure(once, 1 if variant == "per-input-channel" else repeats)


def _spawn(variant: str, num_frames: int, threads: int | None, repeats: int) -> dict[str, float]:
    arguments = ["--variant", variant, "--frames", str(num_frames), "--repeats", str(repeats)]
    if threads:
        arguments += ["--threads", str(threads)]
    return spawn("benchmarks.canvas_cnn", arguments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=3, help="frames traced (default 3; the paper's video has 30)")
    parser.add_argument("--threads", type=int, help="torch threads per variant (default: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the fastest is reported")
    parser.add_argument("--skip-reference", action="store_true", help="leave out the slow per-input-channel variant")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.frames, args.repeats)))
        return
    kernels = 18_352 + 3_224 + 2_288 + 66
    values = kernels * args.frames * HEIGHT * WIDTH
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"nerv-paper all-layer canvas, {args.frames} frames at {HEIGHT}x{WIDTH}: {kernels:,} kernels, "
          f"{values / 1e9:.2f} G values ({values * 4 / 1e9:.1f} GB as float32), fastest of {args.repeats} runs")
    variants = [v for v in VARIANTS if not (args.skip_reference and v == "per-input-channel")]
    results = {variant: _spawn(variant, args.frames, args.threads, args.repeats) for variant in variants}
    print(f"  {'variant':<18} {'wall':>9}   {'per frame':>9}   {'(median)':>10}   {'CPU':>9}   peak memory")
    for name, result in results.items():
        per_frame = result["seconds"] / args.frames
        print(f"  {name:<18} {result['seconds']:8.3f} s  {per_frame:7.3f} s  ({result['median']:8.3f} s)"
              f"  {result['cpu_seconds']:8.3f} s   +{max(result['peak_extra_mb'], 0):.0f} MB")
    ours, floor, forward = results["xinc-bench"], results["fill-floor"], results["forward"]
    print(f"  xinc-bench / fill-floor (a warm fill_ of as many float32 values; target <= 4x): "
          f"wall {ours['seconds'] / floor['seconds']:.2f}x (medians {ours['median'] / floor['median']:.2f}x), "
          f"CPU {ours['cpu_seconds'] / floor['cpu_seconds']:.2f}x")
    print(f"  xinc-bench / forward pass: wall {ours['seconds'] / forward['seconds']:.0f}x, "
          f"CPU {ours['cpu_seconds'] / forward['cpu_seconds']:.0f}x")
    if "per-input-channel" in results:
        reference = results["per-input-channel"]
        print(f"  per-input-channel / xinc-bench: time {reference['seconds'] / ours['seconds']:.1f}x, "
              f"peak memory {reference['peak_extra_mb'] / max(ours['peak_extra_mb'], 1):.1f}x")


if __name__ == "__main__":
    main()
