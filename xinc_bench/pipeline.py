"""The four jobs of the command line as library functions: fit, canvas, probe, run.

Each writes its outputs atomically, so a failure leaves nothing half-written behind.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch

from .annotate import flow_for, masks_for
from .canvas import Canvas, compute_canvas, read_canvas
from .canvas.file import write_canvas
from .canvas.compute import canvas_tensors, check_disk_space
from .checkpoints import load_checkpoint, save_checkpoint
from .data import FrameRange, Signal, load_signal
from .errors import XincError
from .inrs import bits_per_pixel, count_parameters, create_inr, inr_info, resolve_inr
from .registry import TRACERS
from .probes.base import Task, available_tasks, load_task
from .probes.controls import shuffle_canvas
from .probes.stats import score_evidence
from .files import merged_dir, scratch_dir, write_json_atomic
from .results.record import build_record
from .training import fidelity, fit, render
from .training.module import check_schedule

#: the random-initialised twin of a run lives here inside the run directory (a control)
INIT_DIR = "init"
CANVAS_NAME = "canvas.safetensors"
RECORDS_DIR = "records"


@dataclass
class FitSummary:
    """What ``fit`` produced: the run directory, the model name and its fidelity."""

    run_dir: Path
    model: str
    psnr: float
    ssim: float
    num_parameters: int
    bits_per_pixel: float
    seconds_per_step: float


def fit_run(
    model_spec: str,
    data_spec: str,
    size: tuple[int, int],
    *,
    out: Path,
    frames: FrameRange | None = None,
    steps: int = 1000,
    lr: float | None = None,
    schedule: str | None = None,
    batch_frames: int | None = None,
    seed: int = 0,
    progress_bar: bool = True,
    logger: Any = False,
) -> FitSummary:
    """Train ``model_spec`` on ``data_spec`` and write ``out/model.safetensors`` + ``model.json``.

    Also writes the random-initialised twin (same seed, untrained) to ``out/init/`` and the
    reconstruction as ``out/recon.png``. Learning rate defaults to the model's ``default_lr``
    or the paper's 9e-4; ``schedule`` (see :data:`~xinc_bench.training.module.SCHEDULES`) to the
    model's ``default_schedule`` or ``constant``; ``batch_frames`` (frames per step of a frame INR)
    to 1. ``logger`` is a Lightning logger for the training curves (e.g. from
    :func:`xinc_bench.results.wandb_logging.make_logger`), ``False`` for none.
    """
    if schedule is not None:
        check_schedule(schedule)
    name = resolve_inr(model_spec)
    info = inr_info(name)
    signal = load_signal(data_spec, size, frames)
    if info.signal_kind == "video" and signal.kind == "image":
        raise XincError(f"{model_spec} is a video INR but {data_spec} is an image; give a video source (e.g. bikes)")
    if info.signal_kind == "image" and signal.kind == "video":
        raise XincError(f"{model_spec} is an image INR but {data_spec} has {signal.num_frames} frames; use --frames 0:1")
    L.seed_everything(seed, verbose=False)
    model = create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width)
    twin = copy.deepcopy(model)
    lr = lr if lr is not None else float(getattr(model, "default_lr", 9e-4))
    schedule = schedule or getattr(model, "default_schedule", "constant")
    batch_frames = batch_frames or 1
    result = fit(model, signal, steps=steps, lr=lr, schedule=schedule, seed=seed, batch_frames=batch_frames,
                 progress_bar=progress_bar, logger=logger)
    num_parameters = count_parameters(model)
    config = {
        "model": model_spec,
        "model_args": {},
        "signal": _signal_config(data_spec, signal, frames),
        "training": {"steps": steps, "lr": lr, "schedule": schedule, "batch_frames": batch_frames, "seed": seed,
                     "seconds_per_step": result.seconds_per_step},
        "fidelity": {"psnr": result.psnr, "ssim": result.ssim},
        "num_parameters": num_parameters,
        "bits_per_pixel": bits_per_pixel(num_parameters, signal.num_pixels),
    }
    if getattr(model, "needs_frames", False):
        twin.set_frames(signal.frames)
    if getattr(model, "needs_signal", False):
        twin.set_signal(signal)
    twin_recon = render(twin, signal)
    for trained in (model, twin):
        if getattr(trained, "needs_frames", False):
            trained.cache_embeddings()  # checkpoints carry the embeddings, not the frames
    twin_psnr, twin_ssim = fidelity(twin_recon, signal.frames)
    with merged_dir(Path(out)) as stage:
        save_checkpoint(model, config, stage)
        save_checkpoint(twin, {**config, "training": {**config["training"], "steps": 0},
                               "fidelity": {"psnr": twin_psnr, "ssim": twin_ssim}}, stage / INIT_DIR)
        save_png(result.recon, stage / "recon.png")
    return FitSummary(Path(out), model_spec, result.psnr, result.ssim, num_parameters,
                      config["bits_per_pixel"], result.seconds_per_step)


def canvas_run(
    checkpoint: Path,
    size: tuple[int, int],
    *,
    out: Path,
    frames: FrameRange | None = None,
    data_spec: str | None = None,
    tracer: str | None = None,
    dtype: torch.dtype = torch.float32,
    mask_source: str | None = None,
    flow_source: str | None = None,
    mask_options: dict[str, Any] | None = None,
    flow_options: dict[str, Any] | None = None,
) -> Canvas:
    """Compute the canvas of a checkpoint at ``size`` and stream it into ``out``.

    The signal is the checkpoint's training data (or ``data_spec``) at ``size``. A paper release
    checkpoint carries no data: then the frames are its own clipped reconstruction. Masks (and,
    for videos, flow) are stored with the canvas: the signal's own ground truth, else the
    ``mask_source`` (default ``felzenszwalb``) and ``flow_source`` (default ``dis``).
    """
    model, config = load_checkpoint(Path(checkpoint), *size)
    name = resolve_inr(config["model"])
    info = inr_info(name)
    signal_config = config.get("signal", {})
    data_spec = data_spec or signal_config.get("data")
    if frames is None and signal_config.get("frames"):
        frames = _parse_stored_frames(signal_config["frames"])
    if data_spec is not None:
        signal = load_signal(data_spec, size, frames)
    else:
        num_frames = signal_config.get("num_frames", 1)
        placeholder = Signal(torch.zeros(num_frames, *size, 3), name="reconstruction")
        recon = render(model, placeholder)
        signal = Signal(recon.clamp(0, 1), name="reconstruction", source={"source": "model reconstruction"})
    annotations = {"masks": mask_source or ("gt" if signal.masks is not None else "felzenszwalb")}
    signal.masks = masks_for(signal, mask_source, **(mask_options or {}))
    if signal.num_frames > 1:
        annotations["flow"] = flow_source or ("gt" if signal.flow is not None else "dis")
        signal.flow = flow_for(signal, flow_source, **(flow_options or {}))
    recon = render(model, signal)
    psnr, ssim = fidelity(recon, signal.frames)
    num_parameters = count_parameters(model)
    metadata = {
        "model": config["model"],
        "model_config": config.get("model_args", {}),
        "family": info.family,
        "num_parameters": num_parameters,
        "bits_per_pixel": bits_per_pixel(num_parameters, signal.num_pixels),
        "data": _signal_config(data_spec, signal, frames) if data_spec else signal.source,
        "seed": config.get("training", {}).get("seed"),
        "training": config.get("training", {}),
        "fidelity": {"psnr": psnr, "ssim": ssim} if data_spec else config.get("fidelity", {}),
        "checkpoint": str(Path(checkpoint).resolve()),
        "annotations": annotations,
    }
    if signal.categories and annotations["masks"] == "gt":  # categories name the ground-truth segments only
        metadata["categories"] = {str(k): v for k, v in signal.categories.items()}
    return compute_canvas(model, signal, tracer or info.tracer, out=Path(out), dtype=dtype, metadata=metadata)


def probe_run(
    canvas_path: Path,
    task_name: str,
    *,
    out: Path,
    control_canvas: Path | None = None,
    shuffled_canvas: Path | None = None,
    null_draws: int | None = None,
) -> dict[str, Any]:
    """Run one task on a canvas file and write its record (and figures beside it) atomically.

    Every score is stored beside its null (the task's null model, ``null_draws`` draws, default the
    task's own count) and both controls' scores, per layer and headline.

    Args:
        control_canvas: canvas of the random-initialised twin; its scores go into ``controls``.
        shuffled_canvas: the spatial-shuffle control already written by :func:`shuffled_control`
            (default: shuffled lazily on every read, which costs a shuffle per pass over a layer).
        null_draws: number of null draws (at least 1), overriding the task's.
    """
    task = with_null_draws(load_task(task_name), null_draws)
    canvas = read_canvas(Path(canvas_path))
    _check_applicable(task, canvas)
    started = time.perf_counter()
    result = task.run(canvas, **_model_params(task, canvas))
    probe_seconds = time.perf_counter() - started
    scores, nulls, absent = score_evidence(
        result.scores, result.nulls, result.absent, {name: m.null for name, m in task.metrics.items()}
    )
    shuffled = read_canvas(Path(shuffled_canvas)) if shuffled_canvas is not None else shuffle_canvas(canvas, seed=0)
    controls = {"shuffled": _control_scores(task, shuffled, _model_params(task, canvas))}
    if control_canvas is not None:
        twin = read_canvas(Path(control_canvas))
        controls["random_init"] = _control_scores(task, twin, _model_params(task, twin))
    out = Path(out)
    figure_dir = out.with_name(f"{out.stem}_figures")
    with merged_dir(figure_dir) as stage:
        artifacts = save_figures(result.figures, stage)
    record = build_record(
        task,
        scores,
        canvas.metadata,
        controls=controls,
        timings={"probe_seconds": probe_seconds},
        artifacts=[str(figure_dir / name) for name in artifacts],
        nulls=nulls,
        absent=absent,
    )
    write_json_atomic(out, record)
    return record


def _model_params(task: Task, canvas: Canvas) -> dict[str, Any]:
    """Probes that need the model itself (faithfulness) get it from the canvas's checkpoint."""
    if task.probe != "faithfulness":
        return {}
    checkpoint = canvas.metadata.get("checkpoint")
    if not checkpoint:
        raise XincError(f"task {task.name!r} needs the model, but the canvas names no checkpoint; "
                        "make the canvas with `xinc-bench canvas --checkpoint ...`")
    _, height, width = canvas.shape
    model, _ = load_checkpoint(Path(checkpoint), height, width)
    return {"model": model.eval()}


def applicable_tasks(canvas: Canvas) -> list[str]:
    """Tasks in ``tasks/`` that apply to this canvas's signal kind."""
    kind = "image" if canvas.shape[0] == 1 else "video"
    return [name for name in available_tasks() if kind in load_task(name).signal_kinds]


def _check_applicable(task: Task, canvas: Canvas) -> None:
    kind = "image" if canvas.shape[0] == 1 else "video"
    if kind not in task.signal_kinds:
        raise XincError(f"task {task.name!r} applies to {', '.join(task.signal_kinds)} canvases, not to this {kind}")


def with_null_draws(task: Task, draws: int | None) -> Task:
    """``task`` with ``draws`` null draws (None: the task's own count); fewer than 1 is refused."""
    if draws is None:
        return task
    if int(draws) < 1:
        raise XincError(f"--null-draws must be a positive number of draws, not {draws}")
    return dataclasses.replace(task, nulls=dataclasses.replace(task.nulls, draws=int(draws)))


def _control_scores(task: Task, canvas: Canvas, params: dict[str, Any]) -> dict[str, float]:
    """Every finite score of a control canvas (per layer and headline), without null draws; figures closed unsaved."""
    import matplotlib.pyplot as plt

    result = task.run(canvas, null_draws=0, **params)
    for figure in result.figures.values():
        plt.close(figure)
    return {name: value for name, value in result.scores.items() if math.isfinite(value)}


def _signal_config(data_spec: str | None, signal: Signal, frames: FrameRange | None) -> dict[str, Any]:
    return {
        "data": data_spec,
        "name": signal.name,
        "num_frames": signal.num_frames,
        "height": signal.height,
        "width": signal.width,
        "frames": str(frames) if frames is not None else None,
        "content_hash": signal.content_hash(),
        "source": signal.source,
    }


def _parse_stored_frames(text: str) -> FrameRange:
    from .data import parse_frames

    return parse_frames(text)


def save_png(frames: torch.Tensor, path: Path) -> Path:
    """Save frame 0 of ``[T, H, W, 3]`` (clipped to [0, 1]) as a PNG."""
    import imageio.v3 as iio

    image = (frames[0].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    iio.imwrite(path, image)
    return path


def save_figures(figures: dict[str, Any], directory: Path) -> list[str]:
    """Save matplotlib figures as ``<name>.png`` into ``directory``; returns the file names."""
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for name, figure in figures.items():
        figure.savefig(directory / f"{name}.png", dpi=110)
        plt.close(figure)
        names.append(f"{name}.png")
    return names


def run_all(
    model_spec: str,
    data_spec: str,
    size: tuple[int, int],
    *,
    out: Path,
    frames: FrameRange | None = None,
    steps: int = 1000,
    lr: float | None = None,
    schedule: str | None = None,
    batch_frames: int | None = None,
    seed: int = 0,
    tracer: str | None = None,
    mask_source: str | None = None,
    flow_source: str | None = None,
    mask_options: dict[str, Any] | None = None,
    flow_options: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    progress_bar: bool = True,
    logger: Any = False,
    null_draws: int | None = None,
) -> list[dict[str, Any]]:
    """Fit, compute the canvas and its random-init control, run every applicable task.

    Writes ``out/model.safetensors``, ``out/canvas.safetensors``, ``out/init/canvas.safetensors``
    (stored as ``dtype``) and one record per task in ``out/records/``. Returns the records.
    ``logger``: as in :func:`fit_run`; ``null_draws``: as in :func:`probe_run`. Probes read the canvases in frame chunks, so memory stays
    bounded whatever the canvas size; the disk must hold both canvases.
    """
    out = Path(out)
    _check_run_disk_space(model_spec, data_spec, size, frames, tracer, dtype, out)
    fit_run(model_spec, data_spec, size, out=out, frames=frames, steps=steps, lr=lr, schedule=schedule,
            batch_frames=batch_frames, seed=seed, progress_bar=progress_bar, logger=logger)
    annotations = {"tracer": tracer, "mask_source": mask_source, "flow_source": flow_source,
                   "mask_options": mask_options, "flow_options": flow_options, "dtype": dtype}
    canvas = canvas_run(out, size, out=out / CANVAS_NAME, frames=frames, **annotations)
    canvas_run(out / INIT_DIR, size, out=out / INIT_DIR / CANVAS_NAME, frames=frames, **annotations)
    with shuffled_control(out / CANVAS_NAME) as shuffled:
        return [
            probe_run(out / CANVAS_NAME, task, out=out / RECORDS_DIR / f"{task}.json",
                      control_canvas=out / INIT_DIR / CANVAS_NAME, shuffled_canvas=shuffled, null_draws=null_draws)
            for task in applicable_tasks(canvas)
        ]


@contextmanager
def shuffled_control(canvas_path: Path) -> Iterator[Path]:
    """Write the spatial-shuffle control of a canvas file once, for all the tasks probing it.

    The shuffle (:func:`~xinc_bench.probes.controls.shuffle_canvas`, seed 0) is the one the
    probes would otherwise compute lazily on every pass over a layer, which for a big canvas
    costs more than the probes. It is written beside the canvas, in the canvas's dtype (a
    permutation of float16 values is exact in float16), and removed afterwards.
    """
    canvas_path = Path(canvas_path)
    canvas = read_canvas(canvas_path)
    dtype = torch.float16 if canvas.metadata.get("dtype") == "float16" else torch.float32
    with scratch_dir(canvas_path.parent, "shuffled") as folder:
        yield write_canvas(shuffle_canvas(canvas, seed=0), folder / CANVAS_NAME, dtype=dtype)


def _check_run_disk_space(
    model_spec: str, data_spec: str, size: tuple[int, int], frames: FrameRange | None, tracer: str | None,
    dtype: torch.dtype, out: Path,
) -> None:
    """Before training: refuse a run whose canvases (model, random-init and shuffled controls) the disk cannot hold."""
    name = resolve_inr(model_spec)
    signal = load_signal(data_spec, size, frames)
    shape = (signal.num_frames, signal.height, signal.width)
    model = create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width)
    counts = TRACERS.get(tracer or inr_info(name).tracer).layers(model, shape)
    np_dtype = np.dtype(np.float16 if dtype == torch.float16 else np.float32)
    check_disk_space(out / CANVAS_NAME, canvas_tensors(counts, shape, np_dtype),
                     what="the run's three canvases (the model's, its random-init control's and the shuffled "
                     "control's, removed after probing)", copies=3)
