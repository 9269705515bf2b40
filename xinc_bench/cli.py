"""The ``xinc-bench`` command line: list, fit, canvas, probe, run, suite, leaderboard, report, sanity, check.

Exit codes: 0 on success, 2 on bad input (one line on stderr naming the problem and the fix),
1 when ``check`` finds a regression or a ``suite run`` step failed (rerun to retry).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

from .errors import XincError
from .results.check import add_check_arguments, check_main
from .results.suite import add_suite_arguments, suite_main
from .training.module import SCHEDULES


def _size(text: str) -> tuple[int, int]:
    from .data import parse_size

    try:
        return parse_size(text)
    except XincError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _frames(text: str):  # -> FrameRange
    from .data import parse_frames

    try:
        return parse_frames(text)
    except XincError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="xinc-bench", description="Interpretability benchmark for implicit neural representations.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list registered models, data sources, tracers or tasks")
    listing.add_argument("what", choices=["models", "data", "tracers", "tasks"])
    listing.set_defaults(handler=_cmd_list)

    def add_signal(sub: argparse.ArgumentParser, data_required: bool = True) -> None:
        sub.add_argument("--data", required=data_required, help="data source name (xinc-bench list data) or an image file")
        sub.add_argument("--size", type=_size, default=(128, 256), help="HEIGHTxWIDTH (default 128x256)")
        sub.add_argument("--frames", type=_frames, default=None, help="frame range START:STOP[:STEP] for videos")

    def add_annotations(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--tracer", default=None, help="tracer name (default: the model's; xinc-bench list tracers)")
        sub.add_argument("--masks", default=None, help="mask source: gt, felzenszwalb, slic or sam (default: gt if the data has masks, else felzenszwalb)")
        sub.add_argument("--flow", default=None, help="flow source for videos: gt, dis, farneback or raft (default: gt if known, else dis)")
        sub.add_argument("--sam-checkpoint", type=Path, default=None, help="segment-anything checkpoint for --masks sam")
        sub.add_argument("--sam-model-type", default="vit_b", help="vit_b, vit_l or vit_h (default vit_b)")
        sub.add_argument("--raft-weights", type=Path, default=None, help="torchvision RAFT weights for --flow raft")
        sub.add_argument("--raft-model", default="small", help="small or large (default small)")
        sub.add_argument("--float16", action="store_true", help="store the canvas as float16 (half the disk)")

    def add_null_draws(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--null-draws", type=_positive_int, default=None,
                         help="null draws per score (default: each task's own count, see its YAML)")

    def add_training(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", required=True, help="registered INR name, path/to/file.py:Class or module:Class")
        add_signal(sub)
        sub.add_argument("--steps", type=_positive_int, default=1000, help="optimiser steps (default 1000)")
        sub.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's, else 9e-4)")
        sub.add_argument("--schedule", choices=SCHEDULES, default=None,
                         help="learning-rate schedule (default: the model's, else constant)")
        sub.add_argument("--batch-frames", type=_positive_int, default=None,
                         help="frames per step of a frame INR such as NeRV (default 1)")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--out", type=Path, required=True, help="run directory")
        sub.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        sub.add_argument("--wandb", choices=["disabled", "offline", "online"], default="disabled",
                         help="log training curves, fidelity, scores and figures to Weights & Biases (default disabled)")
        sub.add_argument("--wandb-project", default="xinc-bench", help="W&B project (default xinc-bench)")

    fit = commands.add_parser("fit", help="train an INR on a signal and write a checkpoint")
    add_training(fit)
    fit.set_defaults(handler=_cmd_fit)

    canvas = commands.add_parser("canvas", help="compute the canvas of a checkpoint into a canvas file")
    canvas.add_argument("--checkpoint", type=Path, required=True, help="RUN_DIR, its model.safetensors, or a paper .ckpt")
    add_signal(canvas, data_required=False)
    add_annotations(canvas)
    canvas.add_argument("--out", type=Path, required=True, help="canvas file (.safetensors)")
    canvas.set_defaults(handler=_cmd_canvas)

    probe = commands.add_parser("probe", help="run a probe task on a canvas file and write its record")
    probe.add_argument("--canvas", type=Path, required=True)
    probe.add_argument("--task", required=True, help="task name (xinc-bench list tasks) or a task YAML file")
    probe.add_argument("--control-canvas", type=Path, default=None, help="canvas of the random-initialised twin")
    probe.add_argument("--out", type=Path, required=True, help="record JSON path")
    add_null_draws(probe)
    probe.set_defaults(handler=_cmd_probe)

    run = commands.add_parser("run", help="fit, canvas, every applicable probe, records and a summary table")
    add_training(run)
    add_annotations(run)
    add_null_draws(run)
    run.set_defaults(handler=_cmd_run)

    suite = commands.add_parser("suite", help="run a benchmark suite (models x data x seeds x tasks), resumably")
    suite_commands = suite.add_subparsers(dest="suite_command", required=True, metavar="ACTION")
    suite_run = suite_commands.add_parser("run", help="run (or resume) a suite, or one shard of it")
    add_suite_arguments(suite_run)
    suite_run.set_defaults(handler=suite_main)
    suite_list = suite_commands.add_parser("list", help="list the suites in configs/suites/ and their sizes")
    suite_list.set_defaults(handler=_cmd_suite_list)

    checking = commands.add_parser("check", help="compare records with a baseline leaderboard; exit 1 on a regression")
    add_check_arguments(checking)
    checking.set_defaults(handler=check_main)

    board = commands.add_parser("leaderboard", help="build CSV, Markdown and HTML leaderboards from a records folder")
    board.add_argument("records", type=Path, help="folder of run directories / records (searched recursively)")
    board.add_argument("--out", type=Path, default=Path("leaderboards"))
    board.add_argument("--name", default="leaderboard", help="file name stem (e.g. quick)")
    board.add_argument("--by-tier", action="store_true", help="rank architectures only within a PSNR tier")
    board.set_defaults(handler=_cmd_leaderboard)

    sanity = commands.add_parser("sanity", help="model randomisation check of a run: which scores move when the "
                                 "model's layers are re-initialised (writes RUN_DIR/records/sanity.json)")
    sanity.add_argument("run_dir", type=Path, help="run folder written by `xinc-bench run`")
    sanity.add_argument("--tasks", nargs="+", default=None,
                        help="tasks to check (names or task YAML files; default: every task with a record in the run)")
    sanity.add_argument("--seed", type=int, default=None, help="re-initialisation seed (default: the run's seed + 1)")
    sanity.set_defaults(handler=_cmd_sanity)

    report = commands.add_parser("report", help="write RUN_DIR/report.html: reconstruction, neuron maps, probe figures")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(handler=_cmd_report)
    return parser


def _annotation_options(args: argparse.Namespace) -> dict:
    """Mask and flow sources with their options, as ``canvas_run`` takes them."""
    mask_options = {"checkpoint": args.sam_checkpoint, "model_type": args.sam_model_type} if args.masks == "sam" else {}
    flow_options = {"weights": args.raft_weights, "model": args.raft_model} if args.flow == "raft" else {}
    return {"mask_source": args.masks, "flow_source": args.flow, "mask_options": mask_options, "flow_options": flow_options}


def _cmd_list(args: argparse.Namespace) -> None:
    from .probes.base import available_tasks, load_task
    from .registry import DATA_SOURCES, INRS, TRACERS

    if args.what == "tasks":
        for name in available_tasks():
            task = load_task(name)
            print(f"{name:<16} v{task.version}  {', '.join(task.metrics)}")
        return
    if args.what == "models":
        from .inrs import inr_info

        for name in INRS.names():
            info = inr_info(name)
            print(f"{name:<18} {info.family:<10} {info.signal_kind:<6} {info.description}")
        return
    registry = {"data": DATA_SOURCES, "tracers": TRACERS}[args.what]
    for entry in registry:
        detail = entry.metadata.get("description") or entry.metadata.get("kind") or ""
        print(f"{entry.name:<18} {detail}")


def _cmd_fit(args: argparse.Namespace) -> None:
    from .pipeline import fit_run

    from .results.wandb_logging import log_run, make_logger

    logger = make_logger(args.wandb, args.wandb_project, _run_name(args), args.out)
    summary = fit_run(args.model, args.data, args.size, out=args.out, frames=args.frames, steps=args.steps,
                      lr=args.lr, schedule=args.schedule, batch_frames=args.batch_frames, seed=args.seed,
                      progress_bar=not args.no_progress, logger=logger)
    if logger:
        print(f"W&B run -> {log_run(args.out, args.wandb, logger=logger)}")
    print(f"{summary.model}: PSNR {summary.psnr:.2f} dB, SSIM {summary.ssim:.4f}, "
          f"{summary.num_parameters:,} parameters ({summary.bits_per_pixel:.2f} bpp) -> {summary.run_dir}")


def _cmd_canvas(args: argparse.Namespace) -> None:
    from .pipeline import canvas_run

    canvas = canvas_run(args.checkpoint, args.size, out=args.out, frames=args.frames, data_spec=args.data,
                        tracer=args.tracer, dtype=torch.float16 if args.float16 else torch.float32,
                        **_annotation_options(args))
    layers = ", ".join(f"{name} [{canvas.layer_shape(name)[0]}]" for name in canvas.layer_names)
    print(f"canvas of {canvas.metadata.get('model')} ({canvas.metadata.get('tracer')}): {layers}; "
          f"checks {canvas.metadata.get('checks')} -> {args.out}")


def _cmd_probe(args: argparse.Namespace) -> None:
    from .pipeline import probe_run

    record = probe_run(args.canvas, args.task, out=args.out, control_canvas=args.control_canvas,
                       null_draws=args.null_draws)
    _print_scores(record)
    print(f"record -> {args.out}")


def _cmd_run(args: argparse.Namespace) -> None:
    from .pipeline import run_all
    from .results.wandb_logging import log_run, make_logger

    logger = make_logger(args.wandb, args.wandb_project, _run_name(args), args.out)
    records = run_all(args.model, args.data, args.size, out=args.out, frames=args.frames, steps=args.steps,
                      lr=args.lr, schedule=args.schedule, batch_frames=args.batch_frames, seed=args.seed,
                      tracer=args.tracer, progress_bar=not args.no_progress,
                      dtype=torch.float16 if args.float16 else torch.float32, logger=logger,
                      null_draws=args.null_draws,
                      **_annotation_options(args))
    if logger:
        print(f"W&B run -> {log_run(args.out, args.wandb, logger=logger)}")
    print()
    for record in records:
        _print_scores(record)
    if records:
        fidelity = records[0]["fidelity"]
        print(f"\n{args.model} on {args.data}: PSNR {fidelity.get('psnr', float('nan')):.2f} dB, "
              f"SSIM {fidelity.get('ssim', float('nan')):.4f}; records in {args.out / 'records'}")


def _run_name(args: argparse.Namespace) -> str:
    return f"{args.model}-{Path(args.data).stem}-seed{args.seed}"


def _cmd_suite_list(args: argparse.Namespace) -> None:
    from .results.suite import available_suites, load_suite

    for name in available_suites():
        suite = load_suite(name)
        print(f"{name:<8} {len(suite.units):>3} units  {suite.path}")


def _cmd_leaderboard(args: argparse.Namespace) -> None:
    from .results.leaderboard import build_leaderboard, tier_view, write_leaderboard

    table = build_leaderboard(args.records)
    paths = write_leaderboard(tier_view(table) if args.by_tier else table, args.out, args.name)
    print(f"{len(table)} rows -> " + ", ".join(str(p) for p in paths))


def _cmd_sanity(args: argparse.Namespace) -> None:
    from .sanity import FIGURES_DIR, FIGURE_NAME, SANITY_NAME, sanity_check

    record = sanity_check(args.run_dir, args.tasks, seed=args.seed, progress=lambda line: print(line, file=sys.stderr))
    print(f"{'task':<14} {'score':<28} {'trained':>9} {'randomised':>10} {'movement':>10}  flag")
    for task, scores in record["tasks"].items():
        headline = record["headlines"][task]
        for score, entry in scores.items():
            if "/" in score:
                continue
            unit = "sd" if entry["movement_unit"] == "null_sd" else "rel"
            movement = "n/a" if entry["movement"] is None else f"{entry['movement']:.3g} {unit}"
            name = score + (" *" if score == headline else "")
            print(f"{task:<14} {name:<28} {_fmt(entry['trained']):>9} {_fmt(entry['randomised'][-1]):>10} "
                  f"{movement:>10}  {'INSENSITIVE' if entry['insensitive'] else ''}")
    flagged = sum(entry["insensitive"] for scores in record["tasks"].values() for entry in scores.values())
    total = sum(len(scores) for scores in record["tasks"].values())
    records = args.run_dir / "records"
    cascade, seconds = record["cascade"], record["timings"]["sanity_seconds"]
    print(f"* headline. {flagged} of {total} scores (per layer included) insensitive after re-initialising "
          f"{len(cascade)} layers ({', '.join(cascade)}) in {seconds:.0f} s")
    print(f"record -> {records / SANITY_NAME}, figure -> {records / FIGURES_DIR / FIGURE_NAME}")


def _cmd_report(args: argparse.Namespace) -> None:
    from .results.report import write_report

    print(f"report -> {write_report(args.run_dir)}")


def _print_scores(record: dict) -> None:
    """One line per metric of the record's task: value, its null (mean, sd, effect size, p) and the controls."""
    from .probes.base import load_task

    task = load_task(record["task"]["name"])
    controls = record.get("controls", {})
    nulls = record.get("nulls", {})
    header = (f"{'task':<14} {'metric':<26} {'score':>9} {'null mean':>10} {'null sd':>9} {'effect':>8} {'p':>6}"
              + "".join(f" {name:>12}" for name in controls))
    print(header)
    for metric, spec in task.metrics.items():
        arrow = {True: "↑", False: "↓", None: " "}[spec.higher_is_better]
        value = record["scores"].get(metric)
        null = nulls.get(metric) or {}
        row = (f"{task.name:<14} {metric + ' ' + arrow:<26} {_fmt(value):>9} {_fmt(null.get('mean')):>10} "
               f"{_fmt(null.get('sd')):>9} {_fmt(null.get('effect_size'), 2):>8} {_fmt(null.get('p_value'), 3):>6}")
        row += "".join(f" {_fmt(control.get(metric)):>12}" for control in controls.values())
        print(row)
        if value is None and metric in record.get("absent", {}):
            print(f"{'':<14} {'':<26} absent: {record['absent'][metric]}")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_lightning()
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except XincError as exc:
        print(f"xinc-bench: error: {exc}", file=sys.stderr)
        return 2


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
