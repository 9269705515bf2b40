"""The ``xinc-bench`` command line: list, fit, canvas, probe, run, suite, leaderboard, report, sanity, check.

Exit codes: 0 on success, 2 on bad input (one line on stderr naming the problem and the fix),
1 when ``check`` finds a regression or a ``suite run`` step failed (rerun to retry).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .errors import XincError
from .runs.budget import parse_bytes
from .runs.spec import DEVICES, UnitSpec
from .training.fit import quiet_lightning
from .training.module import SCHEDULES

if TYPE_CHECKING:
    from .runs.executors import Executor, UnitOutcome
    from .runs.progress import Progress


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
        sub.add_argument("--data", required=data_required,
                         help="data source name (xinc-bench list data), an image or video file, or a dataset root "
                              "(with --layout and --sequence)")
        sub.add_argument("--layout", default=None,
                         help="dataset layout of the --data folder: cityscapes-vps, vipseg or davis (its ground-truth "
                              "masks become the default mask source)")
        sub.add_argument("--sequence", default=None, help="the dataset's sequence (with --layout)")
        sub.add_argument("--size", type=_size, default=(128, 256), help="HEIGHTxWIDTH (default 128x256)")
        sub.add_argument("--frames", type=_frames, default=None, help="frame range START:STOP[:STEP] for videos")

    def add_layers(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--layers", nargs="+", default=None,
                         help="trace (canvas, run) and probe (probe, run) only these layers (default: all)")

    def add_annotations(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--tracer", default=None, help="tracer name (default: the model's; xinc-bench list tracers)")
        sub.add_argument("--masks", default=None, help="mask source: gt, felzenszwalb, slic or sam (default: gt if the data has masks, else felzenszwalb)")
        sub.add_argument("--flow", default=None, help="flow source for videos: gt, dis, farneback or raft (default: gt if known, else dis)")
        sub.add_argument("--sam-checkpoint", type=Path, default=None, help="segment-anything checkpoint for --masks sam")
        sub.add_argument("--sam-model-type", default="vit_b", help="vit_b, vit_l or vit_h (default vit_b)")
        sub.add_argument("--raft-weights", type=Path, default=None, help="torchvision RAFT weights for --flow raft")
        sub.add_argument("--raft-model", default="small", help="small or large (default small)")
        sub.add_argument("--float16", action="store_true",
                         help="trace and store the canvas as float16 (half the memory and disk)")

    def add_trust(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--trust-code", action="store_true",
                         help="allow importing the Python file a run folder's model.json names (a run folder is "
                              "data: without this flag its code is never run)")

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
        sub.add_argument("--device", choices=DEVICES, default="cpu",
                         help="where to train: cpu (default), cuda, or auto (cuda when available)")
        sub.add_argument("--out", type=Path, required=True, help="run directory")
        sub.add_argument("--no-progress", action="store_true", help="print no progress (errors and results only)")
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
    add_layers(canvas)
    add_trust(canvas)
    canvas.set_defaults(handler=_cmd_canvas)

    probe = commands.add_parser("probe", help="run a probe task on a canvas file and write its record")
    probe.add_argument("--canvas", type=Path, required=True)
    probe.add_argument("--task", required=True, help="task name (xinc-bench list tasks) or a task YAML file")
    probe.add_argument("--control-canvas", type=Path, default=None, help="canvas of the random-initialised twin")
    probe.add_argument("--out", type=Path, required=True, help="record JSON path")
    add_layers(probe)
    add_null_draws(probe)
    add_trust(probe)
    probe.set_defaults(handler=_cmd_probe)

    run = commands.add_parser("run", help="fit, canvas, every applicable probe, records, a report and a summary "
                              "table; resumable (rerun the same command after an interrupt)")
    add_training(run)
    add_annotations(run)
    add_layers(run)
    add_null_draws(run)
    run.add_argument("--tasks", nargs="+", default=None, help="tasks to run (default: every task that applies; a variant, such as partitions-strided-grid, runs only when named)")
    run.add_argument("--sanity", action="store_true", help="also run the sanity check (model randomisation)")
    run.add_argument("--save-canvas", action="store_true",
                     help="keep both canvases (the model's and the random-init twin's) as files in the run folder, "
                          "for `probe` (default: they are traced, probed and dropped, never written)")
    run.add_argument("--memory-budget", default=None,
                     help="memory the run may use, e.g. 12GiB or 8G (default: 60%% of this machine's memory); sets "
                          "how many frames are traced at once, and a budget too small for one frame is refused")
    add_trust(run)
    run.set_defaults(handler=_cmd_run)

    suite = commands.add_parser("suite", help="run a benchmark suite (models x data x seeds x tasks), resumably")
    suite_commands = suite.add_subparsers(dest="suite_command", required=True, metavar="ACTION")
    suite_run = suite_commands.add_parser("run", help="run (or resume) a suite, or one shard of it")
    _add_suite_arguments(suite_run)
    suite_run.set_defaults(handler=_cmd_suite_run)
    suite_list = suite_commands.add_parser("list", help="list the suites in configs/suites/ and their sizes")
    suite_list.set_defaults(handler=_cmd_suite_list)

    checking = commands.add_parser("check", help="compare records with a baseline leaderboard; exit 1 on a regression")
    _add_check_arguments(checking)
    checking.set_defaults(handler=_cmd_check)

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
    add_trust(sanity)
    sanity.set_defaults(handler=_cmd_sanity)

    report = commands.add_parser("report", help="write RUN_DIR/report.html: reconstruction, neuron maps, probe figures")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(handler=_cmd_report)

    paper = commands.add_parser("paper", help="re-measure the XINC paper's claims: runs a suite and the released "
                                "FFN, writes OUT/report.md and OUT/report.html with a verdict per claim; resumable")
    modes = paper.add_mutually_exclusive_group()
    modes.add_argument("--quick", dest="mode", action="store_const", const="quick",
                       help="built-in data, short schedules, 3 seeds (the default; about an hour on 2 CPU cores)")
    modes.add_argument("--full", dest="mode", action="store_const", const="full",
                       help="the paper's schedules and more seeds (a GPU or cluster job; see the README)")
    paper.add_argument("--out", type=Path, required=True,
                       help="report folder: new, empty, or one a previous `xinc-bench paper` wrote (resumed)")
    paper.add_argument("--release", type=Path, default=None,
                       help="the paper's released FFN checkpoint (default: "
                            "../shared/reference/ffn_cityscapes_0005/best_model.ckpt beside the checkout)")
    _add_executor_arguments(paper)
    paper.set_defaults(handler=_cmd_paper, mode="quick")
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
            what = f"variant of {task.variant_of}: {_params_text(task.params, load_task(task.variant_of).params)}" \
                if task.variant_of else ", ".join(task.metrics)
            print(f"{name:<26} v{task.version}  {what}")
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


def _params_text(params: dict, parent: dict) -> str:
    """The parameters a variant changes, as ``key: value`` pairs."""
    return ", ".join(f"{key}: {value}" for key, value in params.items() if parent.get(key) != value)


def unit_spec(args: argparse.Namespace) -> UnitSpec:
    """The :class:`UnitSpec` of ``fit`` or ``run`` arguments."""
    return UnitSpec(
        model=args.model, data=args.data, size=args.size, frames=args.frames, seed=args.seed, steps=args.steps,
        lr=args.lr, schedule=args.schedule, batch_frames=args.batch_frames, device=args.device,
        layout=args.layout, sequence=args.sequence,
        tracer=getattr(args, "tracer", None), layers=_tuple(getattr(args, "layers", None)),
        masks=getattr(args, "masks", None), flow=getattr(args, "flow", None),
        mask_options=tuple(_annotation_options(args)["mask_options"].items()) if hasattr(args, "masks") else (),
        flow_options=tuple(_annotation_options(args)["flow_options"].items()) if hasattr(args, "flow") else (),
        tasks=_tuple(getattr(args, "tasks", None)), float16=getattr(args, "float16", False),
        null_draws=getattr(args, "null_draws", None), sanity=getattr(args, "sanity", False),
        save_canvas=getattr(args, "save_canvas", False),
        memory_budget=None if getattr(args, "memory_budget", None) is None else parse_bytes(args.memory_budget),
        trust_code=getattr(args, "trust_code", False),
    )


def _tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _cmd_fit(args: argparse.Namespace) -> None:
    from .results.wandb_logging import log_run, make_logger
    from .runs import RunDir
    from .runs.stages import fit_run
    from .runs.unit import resolve_device

    spec = unit_spec(args)
    logger = make_logger(args.wandb, args.wandb_project, _run_name(args), args.out)
    with RunDir(args.out).open() as run:
        summary = fit_run(spec.model, spec.data, spec.size, out=run.path, frames=spec.frames, steps=spec.steps,
                          lr=spec.lr, schedule=spec.schedule, batch_frames=spec.batch_frames, seed=spec.seed,
                          progress_bar=not args.no_progress and sys.stderr.isatty(), logger=logger,
                          accelerator=resolve_device(spec.device), layout=spec.layout, sequence=spec.sequence)
    if logger:
        print(f"W&B run -> {log_run(args.out, args.wandb, logger=logger)}")
    print(f"{summary.model}: PSNR {summary.psnr:.2f} dB, SSIM {summary.ssim:.4f}, "
          f"{summary.num_parameters:,} parameters ({summary.bits_per_pixel:.2f} bpp) -> {summary.run_dir}")


def _cmd_canvas(args: argparse.Namespace) -> None:
    from .runs.stages import canvas_run

    if args.out.is_dir():
        raise XincError(f"--out {args.out} is a folder; give the canvas file to write, e.g. {args.out / 'canvas.safetensors'}")

    canvas = canvas_run(args.checkpoint, args.size, out=args.out, frames=args.frames, data_spec=args.data,
                        tracer=args.tracer, dtype=torch.float16 if args.float16 else torch.float32,
                        trust_code=args.trust_code, layers=_tuple(args.layers), **_annotation_options(args))
    layers = ", ".join(f"{name} [{canvas.layer_shape(name)[0]}]" for name in canvas.layer_names)
    print(f"canvas of {canvas.metadata.get('model')} ({canvas.metadata.get('tracer')}): {layers}; "
          f"checks {canvas.metadata.get('checks')} -> {args.out}")


def _cmd_probe(args: argparse.Namespace) -> None:
    from .runs.stages import probe_run

    if args.out.is_dir():
        raise XincError(f"--out {args.out} is a folder; give the record file to write, e.g. {args.out / 'record.json'}")
    record = probe_run(args.canvas, args.task, out=args.out, control_canvas=args.control_canvas,
                       null_draws=args.null_draws, layers=_tuple(args.layers), trust_code=args.trust_code)
    _print_scores(record)
    print(f"record -> {args.out}")


def _cmd_run(args: argparse.Namespace) -> None:
    import json

    from .results.report import write_report
    from .results.wandb_logging import log_run, make_logger
    from .runs import RunDir, run_unit
    from .runs.progress import Progress

    spec = unit_spec(args)
    logger = make_logger(args.wandb, args.wandb_project, _run_name(args), args.out)
    progress = Progress(quiet=args.no_progress)
    result = run_unit(spec, args.out, progress=progress, logger=logger)
    with progress.stage("report"):
        report = write_report(args.out)
    if logger:
        print(f"W&B run -> {log_run(args.out, args.wandb, logger=logger)}")
    print()
    run = RunDir(args.out)
    for task in result.records_written + result.records_kept:
        _print_scores(json.loads(run.record(task).read_text()))
    for task, reason in result.skipped.items():
        print(f"warning: task {task} skipped: {reason}", file=sys.stderr)
    kept = f", {len(result.records_kept)} kept from an earlier run" if result.records_kept else ""
    print(f"\n{spec.model} on {spec.sequence or spec.data}: PSNR {result.fidelity.get('psnr', float('nan')):.2f} dB, "
          f"SSIM {result.fidelity.get('ssim', float('nan')):.4f}; {len(result.records_written)} records written{kept}"
          f"{f', {len(result.skipped)} tasks skipped' if result.skipped else ''}")
    print(f"records -> {run.records}\nreport -> {report}")


def _run_name(args: argparse.Namespace) -> str:
    return f"{args.model}-{Path(args.data).stem}-seed{args.seed}"


def _add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``xinc-bench suite run``."""
    from .runs.suite import available_suites

    parser.add_argument("suite", help=f"suite name ({', '.join(available_suites())}) or a suite YAML file")
    parser.add_argument("--out", type=Path, required=True, help="results folder (one run directory per unit)")
    parser.add_argument("--shard", default=None,
                        help="run shard i of n only, 1-based, e.g. 1/2 and 2/2 on two machines")
    _add_executor_arguments(parser)
    parser.add_argument("--masks", default=None, help="mask source for every unit (default: each group's, "
                        "else the data's ground truth, else felzenszwalb)")
    parser.add_argument("--flow", default=None, help="flow source for every video unit (default: each group's, "
                        "else the data's ground truth, else dis)")
    parser.add_argument("--wandb", choices=["disabled", "offline", "online"], default="disabled",
                        help="Weights & Biases logging of each unit (default disabled)")
    parser.add_argument("--wandb-project", default="xinc-bench", help="W&B project (default xinc-bench)")


def _add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """How a suite's units run (``suite run`` and ``paper``): executor, jobs, address, device, memory, progress."""
    from .runs.executors import EXECUTORS  # (the module registers the executors)

    parser.add_argument("--executor", choices=EXECUTORS.names(), default="local",
                        help="how the units are run: local (default; one after the other here), processes "
                             "(--jobs at once here), ray (one Ray task each on a cluster, --address)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="units run at once by --executor processes (default: this machine's CPUs); "
                             "the other executors refuse it (ray runs as many as the cluster has room for)")
    parser.add_argument("--address", default=None,
                        help="the Ray cluster of --executor ray: HOST:PORT of its head (what `ray start --head` "
                             "printed), ray://HOST:PORT or auto (default: the one `ray start` started here, else "
                             "a private one)")
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="where every unit trains: cpu, cuda or auto (default: each group's, else cpu); "
                             "with --executor ray a cuda unit asks the cluster for one GPU")
    parser.add_argument("--memory-budget", default=None,
                        help="memory each unit may use, e.g. 12GiB (default: 60%% of this machine's memory; "
                             "give each of several units run at once its share)")
    parser.add_argument("--no-progress", action="store_true", help="print only one line per unit")


def _cmd_suite_run(args: argparse.Namespace) -> int:
    """``xinc-bench suite run``: 0 when every unit of the shard finished, 1 when some failed (rerun to retry)."""
    from .results.wandb_logging import check_mode, log_run
    from .runs.executors import UnitOutcome
    from .runs.progress import Progress
    from .runs.suite import load_suite, parse_shard, run_suite, shard_units

    check_mode(args.wandb)
    executor = _executor(args)
    shard = parse_shard(args.shard) if args.shard else None
    suite = load_suite(args.suite)
    units = shard_units(suite.units, shard)
    progress = Progress()
    progress.line(f"suite {suite.name}: {len(units)} of {len(suite.units)} units -> {args.out}")
    print_unit = _unit_printer(progress, len(units))

    def report(outcome: UnitOutcome) -> None:
        result = outcome.result
        if args.wandb != "disabled" and result is not None and result.records_written:
            log_run(outcome.run_dir, args.wandb, project=args.wandb_project, name=outcome.spec.unit_id,
                    group=suite.name, save_dir=args.out)
        print_unit(outcome)

    summary = run_suite(suite, args.out, shard, executor=executor, masks=args.masks, flow=args.flow, device=args.device,
                        memory_budget=None if args.memory_budget is None else parse_bytes(args.memory_budget),
                        quiet=args.no_progress, on_unit=report)
    if summary.failed:
        progress.line(f"{len(summary.failed)} units failed; fix the cause and run the same command again to retry "
                      "them (finished work is kept)")
        return 1
    return 0


def _unit_printer(progress: Progress, total: int) -> Callable[[UnitOutcome], None]:
    """Prints one line per finished unit of a suite: what it wrote, its time and the suite's ETA."""
    from .runs.progress import UnitCounter, duration_text

    counter = UnitCounter(total)

    def report(outcome: UnitOutcome) -> None:
        result = outcome.result
        eta = counter.count(worked=result is not None and not result.untouched)
        if result is None:
            state = f"FAILED: {outcome.error}"
        elif result.untouched:
            state = "complete, kept"
        else:
            state = (f"{len(result.records_written)} records written" + (", sanity checked" if result.sanity else "")
                     + (f", {len(result.skipped)} tasks skipped" if result.skipped else "")
                     + f" ({result.seconds:.1f} s)")
        progress.line(f"unit {counter.done}/{counter.total} {outcome.spec.unit_id}: {state}"
                      + ("" if eta is None else f"; ETA {duration_text(eta)}"))
        for task, reason in (result.skipped if result is not None else {}).items():
            progress.line(f"  warning: task {task} skipped: {reason}")

    return report


def _cmd_paper(args: argparse.Namespace) -> int:
    """``xinc-bench paper``: 0 when the report is complete, 1 when some units failed (rerun to retry them)."""
    from .paper.build import MODES, run_paper
    from .runs.progress import Progress, duration_text
    from .runs.suite import load_suite

    suite = load_suite(MODES[args.mode])
    result = run_paper(args.mode, args.out, release=args.release, suite=suite, executor=_executor(args),
                       device=args.device, progress=Progress(quiet=args.no_progress),
                       on_unit=_unit_printer(Progress(), len(suite.units)),
                       memory_budget=None if args.memory_budget is None else parse_bytes(args.memory_budget))
    print(f"report -> {args.out / 'report.html'} and {args.out / 'report.md'} ({duration_text(result.seconds)})")
    if result.failed:
        print(f"{len(result.failed)} units failed and are missing from the report; fix the cause and run the same "
              "command again (finished work is kept)", file=sys.stderr)
        return 1
    return 0


def _executor(args: argparse.Namespace) -> Executor:
    """The executor of ``--executor`` with ``--jobs`` or ``--address``, each refused where it does not apply.

    Raises:
        XincError: ``--jobs`` without ``--executor processes``, or below 1; ``--address`` without ``--executor
            ray``; ``--executor ray`` without Ray installed.
    """
    from .registry import EXECUTORS

    if args.jobs is not None and args.executor != "processes":
        raise XincError(f"--jobs sets how many units --executor processes runs at once; --executor {args.executor} "
                        "does not take it (add --executor processes, or drop --jobs)")
    if args.address is not None and args.executor != "ray":
        raise XincError("--address names the Ray cluster of --executor ray; add --executor ray, or drop --address")
    options = {"processes": {"jobs": args.jobs}, "ray": {"address": args.address}}.get(args.executor, {})
    return EXECUTORS.get(args.executor)(quiet=args.no_progress, **options)


def _cmd_suite_list(args: argparse.Namespace) -> None:
    from .runs.suite import available_suites, load_suite

    for name in available_suites():
        suite = load_suite(name)
        print(f"{name:<8} {len(suite.units):>3} units  {suite.path}")


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``xinc-bench check``: --records, --baseline, --tolerance (repeatable), --strict, --all."""
    parser.add_argument("--records", type=Path, required=True, help="folder of records to check (searched recursively)")
    parser.add_argument("--baseline", type=Path, required=True, help="leaderboard CSV or a folder of baseline records")
    parser.add_argument("--tolerance", action="append", default=None, metavar="[METRIC=]VALUE",
                        help="allowed move: 0.05 (absolute) or 5%% (relative); METRIC=VALUE or PATTERN=VALUE "
                             "for one metric (e.g. psnr_db=0.5, 'clustering/*=10%%'); repeatable; default 0")
    parser.add_argument("--strict", action="store_true", help="fail on moves beyond tolerance in either direction")
    parser.add_argument("--all", action="store_true", help="list every compared value, not only those that moved")


def _cmd_check(args: argparse.Namespace) -> int:
    """``xinc-bench check``: print the report; return 1 on a failing check, 0 otherwise.

    Raises:
        XincError: bad input (the CLI turns it into exit code 2).
    """
    from .results.check import check

    result = check(args.records, args.baseline, args.tolerance or 0.0, strict=args.strict)
    print(result.report(show_all=args.all))
    return 0 if result.passed else 1


def _cmd_leaderboard(args: argparse.Namespace) -> None:
    from .results.leaderboard import build_leaderboard, tier_view, write_leaderboard

    table = build_leaderboard(args.records)
    paths = write_leaderboard(tier_view(table) if args.by_tier else table, args.out, args.name)
    print(f"{len(table)} rows -> " + ", ".join(str(p) for p in paths))


def _cmd_sanity(args: argparse.Namespace) -> None:
    from .runs.sanity import FIGURES_DIR, FIGURE_NAME, SANITY_NAME, sanity_check

    record = sanity_check(args.run_dir, args.tasks, seed=args.seed, progress=lambda line: print(line, file=sys.stderr),
                          trust_code=args.trust_code)
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
    quiet_lightning()
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except XincError as exc:
        print(f"xinc-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
