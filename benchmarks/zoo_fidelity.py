"""Fidelity and training cost of the INR zoo at matched budget, side by side in one run.

For each preset (default: ffn-paper and the ``-33k`` presets) and each image (default: astronaut
and camera at 128x256), trains with the preset's default learning rate and the given schedule
(default: the library's 1,000 full-batch steps) and prints one Markdown table: parameters, bits
per pixel, PSNR and SSIM per image, and the mean wall time per training step.

Video INRs are measured the same way on a frame range (``--frames 0:30``); a step of a frame INR
(NeRV, HNeRV) is one frame, so an epoch is ``T`` steps.

Usage: ``python benchmarks/zoo_fidelity.py [--steps 1000] [--models a,b] [--data a,b]
[--size 128x256] [--frames 0:30] [--save DIR]`` (``--save`` keeps each run directory, with
``recon.png``). Video table: ``--models nerv-paper,hnerv-small,ffn-video --data bikes --frames 0:30``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from xinc_bench.data import parse_frames, parse_size
from xinc_bench.runs.stages import fit_run

MODELS = ["ffn-paper", "siren-33k", "wire-33k", "gauss-33k", "finer-33k", "hashgrid-33k", "mfn-33k"]
DATA = ["astronaut", "camera"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--data", default=",".join(DATA))
    parser.add_argument("--size", default="128x256")
    parser.add_argument("--frames", default=None, help="frame range of video sources, e.g. 0:30")
    parser.add_argument("--save", type=Path, default=None, help="keep the run directories here")
    args = parser.parse_args()
    size = parse_size(args.size)
    frames = parse_frames(args.frames) if args.frames else None
    models, data = args.models.split(","), args.data.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, {args.size}"
          + (f", frames {args.frames}" if frames else "") + "\n")
    header = "| model | parameters | bpp | " + " | ".join(f"{d} PSNR (dB) | {d} SSIM" for d in data) + " | s/step |"
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    with tempfile.TemporaryDirectory() as scratch:
        root = args.save or Path(scratch)
        for model in models:
            fits = [fit_run(model, source, size, out=root / f"{model}__{source}", steps=args.steps,
                            frames=frames, progress_bar=False)
                    for source in data]
            cells = " | ".join(f"{f.psnr:.2f} | {f.ssim:.3f}" for f in fits)
            per_step = sum(f.seconds_per_step for f in fits) / len(fits)
            rows.append(f"| {model} | {fits[0].num_parameters:,} | {fits[0].bits_per_pixel:.2f} | {cells} | {per_step:.3f} |")
            print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
