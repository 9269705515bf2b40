"""The stages of a unit as library functions: fit, canvas, probe.

:func:`xinc_bench.runs.unit.run_unit` chains them (the only orchestration); ``xinc-bench fit``,
``canvas`` and ``probe`` call one each. Stages take what an earlier stage already holds in memory
(the decoded signal, the trained model) so that a unit decodes its signal and loads its model once.
Each writes its outputs atomically, so a failure leaves nothing half-written behind.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import numpy as np
import torch

from torch import nn

from ..annotate import flow_for, masks_for
from ..canvas import Canvas, compute_canvas, read_canvas
from ..canvas.streamed import traced_canvas
from ..checkpoints import load_checkpoint, save_checkpoint
from ..data import FrameRange, Signal, load_signal, parse_frames
from ..errors import XincError
from ..files import merged_dir, write_json_atomic
from ..inrs import bits_per_pixel, count_parameters, create_inr, inr_info, resolve_inr
from ..probes.base import Task, default_tasks, load_task
from ..probes.accumulator import Accumulated, Accumulator, AccumulatorGroup, ProbeAccumulator, accumulate, num_passes
from ..probes.controls import shuffle_canvas
from ..probes.stats import score_evidence
from ..training import fidelity, fit, render
from ..training.module import check_schedule
from .progress import Progress
from .preview import NeuronMass, canvas_preview, write_preview
from .record import build_record
from .rundir import INIT_DIR, RECON_NAME


@dataclass
class FitSummary:
    """What ``fit`` produced: the run directory, the model name, its fidelity, and both models in memory.

    ``trained`` and ``twin`` (the random-init control) are the models just written, on the CPU in
    eval mode, with ``config`` and ``twin_config`` their ``model.json``: the canvas stage takes them
    without reloading.
    """

    run_dir: Path
    model: str
    psnr: float
    ssim: float
    num_parameters: int
    bits_per_pixel: float
    seconds_per_step: float
    trained: nn.Module | None = None
    twin: nn.Module | None = None
    config: dict[str, Any] | None = None
    twin_config: dict[str, Any] | None = None


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
    signal: Signal | None = None,
    accelerator: str = "cpu",
    layout: str | None = None,
    sequence: str | None = None,
) -> FitSummary:
    """Train ``model_spec`` on ``data_spec`` and write ``out/model.safetensors`` + ``model.json``.

    Also writes the random-initialised twin (same seed, untrained) to ``out/init/`` and the
    reconstruction as ``out/recon.png``. Learning rate defaults to the model's ``default_lr``
    or the paper's 9e-4; ``schedule`` (see :data:`~xinc_bench.training.module.SCHEDULES`) to the
    model's ``default_schedule`` or ``constant``; ``batch_frames`` (frames per step of a frame INR)
    to 1. ``logger`` is a Lightning logger for the training curves (e.g. from
    :func:`xinc_bench.results.wandb_logging.make_logger`), ``False`` for none. ``signal``: the
    signal already decoded from ``data_spec`` (default: decode it here). ``accelerator``: Lightning's
    (``cpu`` or ``cuda``). ``layout`` and ``sequence``: the dataset layout and sequence of a
    dataset root ``data_spec`` (stored in ``model.json`` so later stages decode the same signal).
    """
    if schedule is not None:
        check_schedule(schedule)
    name = resolve_inr(model_spec)
    info = inr_info(name)
    if signal is None:
        signal = load_signal(data_spec, size, frames, **_dataset(layout, sequence))
    if info.signal_kind == "video" and signal.kind == "image":
        raise XincError(f"{model_spec} is a video INR but {data_spec} gives one image; give a video source (e.g. "
                        "bikes) and --frames of at least 2 frames (e.g. 0:2)")
    if info.signal_kind == "image" and signal.kind == "video":
        raise XincError(f"{model_spec} is an image INR but {data_spec} has {signal.num_frames} frames; use --frames 0:1")
    L.seed_everything(seed, verbose=False)
    model = create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width)
    twin = copy.deepcopy(model)
    lr = lr if lr is not None else float(getattr(model, "default_lr", 9e-4))
    schedule = schedule or getattr(model, "default_schedule", "constant")
    batch_frames = batch_frames or 1
    result = fit(model, signal, steps=steps, lr=lr, schedule=schedule, seed=seed, batch_frames=batch_frames,
                 progress_bar=progress_bar, logger=logger, accelerator=accelerator)
    num_parameters = count_parameters(model)
    config = {
        "model": model_spec,
        "model_args": {},
        "signal": {**_signal_config(data_spec, signal, frames), **_dataset(layout, sequence)},
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
    twin_config = {**config, "training": {**config["training"], "steps": 0},
                   "fidelity": {"psnr": twin_psnr, "ssim": twin_ssim}}
    with merged_dir(Path(out)) as stage:
        save_checkpoint(model, config, stage)
        save_checkpoint(twin, twin_config, stage / INIT_DIR)
        save_png(result.recon, stage / RECON_NAME)
    return FitSummary(Path(out), model_spec, result.psnr, result.ssim, num_parameters, config["bits_per_pixel"],
                      result.seconds_per_step, trained=model.eval(), twin=twin.eval(), config=config,
                      twin_config=twin_config)


def canvas_run(
    checkpoint: Path,
    size: tuple[int, int],
    *,
    out: Path | None,
    frames: FrameRange | None = None,
    data_spec: str | None = None,
    tracer: str | None = None,
    dtype: torch.dtype = torch.float32,
    mask_source: str | None = None,
    flow_source: str | None = None,
    mask_options: dict[str, Any] | None = None,
    flow_options: dict[str, Any] | None = None,
    model: tuple[nn.Module, dict[str, Any]] | None = None,
    signal: Signal | None = None,
    annotations: dict[str, str] | None = None,
    trust_code: bool = False,
    progress: Callable[[int], None] | None = None,
    layers: tuple[str, ...] | None = None,
    memory_budget: int | None = None,
) -> Canvas:
    """Compute the canvas of a checkpoint at ``size`` and stream it into ``out``, or (``out=None``)
    return it traced on demand and never written (:func:`~xinc_bench.canvas.streamed.traced_canvas`).

    The signal is the checkpoint's training data (or ``data_spec``) at ``size``. A paper release
    checkpoint carries no data: then the frames are its own clipped reconstruction. Masks (and,
    for videos, flow) are stored with the canvas: the signal's own ground truth, else the
    ``mask_source`` (default ``felzenszwalb``) and ``flow_source`` (default ``dis``).

    ``model``: ``(module, config)`` of the checkpoint already in memory (default: load it);
    ``signal``: the signal already decoded (default: decode it here); ``annotations``: what
    :func:`annotate_signal` returned for it when its masks and flow are already filled in
    (default: fill them here). ``trust_code``: import the code file the checkpoint names, if any
    (``--trust-code``; a run folder is data, see :func:`~xinc_bench.checkpoints.load_checkpoint`).
    ``progress``: called with the output pixels of each traced chunk (``T * H * W`` in all);
    ``layers``: trace only these layers (default: all). ``memory_budget``: bytes one traced window
    of every layer may take (``out=None`` only; default
    :func:`~xinc_bench.canvas.canvas.default_chunk_bytes`).
    """
    model, config = model if model is not None else load_checkpoint(Path(checkpoint), *size, trust_code=trust_code)
    info = inr_info(config["model"])  # registered by the fit or the load above
    signal_config = config.get("signal", {})
    data_spec = data_spec or signal_config.get("data")
    if frames is None and signal_config.get("frames"):
        frames = _parse_stored_frames(signal_config["frames"])
    if signal is None and data_spec is not None:
        dataset = _dataset(signal_config.get("layout"), signal_config.get("sequence")) \
            if data_spec == signal_config.get("data") else {}
        signal = load_signal(data_spec, size, frames, **dataset)
    elif signal is None:
        signal = reconstruction_signal(model, signal_config.get("num_frames", 1), size)
    if annotations is None:
        annotations = annotate_signal(signal, mask_source, flow_source, mask_options, flow_options)
    recon = render(model, signal)
    psnr, ssim = fidelity(recon, signal.frames)
    num_parameters = count_parameters(model)
    metadata = {
        "model": config["model"],
        "model_config": config.get("model_args", {}),
        "family": info.family,
        "num_parameters": num_parameters,
        "bits_per_pixel": bits_per_pixel(num_parameters, signal.num_pixels),
        "data": _signal_config(data_spec, signal, frames),
        "seed": config.get("training", {}).get("seed"),
        "training": config.get("training", {}),
        "fidelity": {"psnr": psnr, "ssim": ssim} if data_spec else config.get("fidelity", {}),
        "checkpoint": str(Path(checkpoint).resolve()),
        "annotations": annotations,
    }
    if signal.categories and annotations["masks"] == "gt":  # categories name the ground-truth segments only
        metadata["categories"] = {str(k): v for k, v in signal.categories.items()}
    if out is None:
        return traced_canvas(model, signal, tracer or info.tracer, layers=layers, dtype=dtype,
                             memory_budget=memory_budget, metadata=metadata)
    return compute_canvas(model, signal, tracer or info.tracer, out=Path(out), dtype=dtype, metadata=metadata,
                          progress=progress, layers=layers)


def reconstruction_signal(model: nn.Module, num_frames: int, size: tuple[int, int]) -> Signal:
    """The model's own rendering, clipped to [0, 1], as its signal (a paper release carries no data)."""
    placeholder = Signal(torch.zeros(num_frames, *size, 3), name="reconstruction")
    return Signal(render(model, placeholder).clamp(0, 1), name="reconstruction",
                  source={"source": "model reconstruction"})


def annotate_signal(
    signal: Signal,
    mask_source: str | None = None,
    flow_source: str | None = None,
    mask_options: dict[str, Any] | None = None,
    flow_options: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Fill ``signal.masks`` (and, for videos, ``signal.flow``) in place; returns their sources.

    The signal's own ground truth is used unless a source is named; otherwise ``felzenszwalb``
    masks and ``dis`` flow (:mod:`xinc_bench.annotate`, cached by content hash).
    """
    annotations = {"masks": mask_source or ("gt" if signal.masks is not None else "felzenszwalb")}
    signal.masks = masks_for(signal, mask_source, **(mask_options or {}))
    if signal.num_frames > 1:
        annotations["flow"] = flow_source or ("gt" if signal.flow is not None else "dis")
        signal.flow = flow_for(signal, flow_source, **(flow_options or {}))
    return annotations


def probe_run(
    canvas_path: Path,
    task_name: str,
    *,
    out: Path,
    control_canvas: Path | None = None,
    null_draws: int | None = None,
    model: nn.Module | None = None,
    twin: nn.Module | None = None,
    layers: tuple[str, ...] | None = None,
    trust_code: bool = False,
) -> dict[str, Any]:
    """Run one task on a canvas file and write its record (:func:`probe_tasks` for one task).

    Raises:
        XincError: whatever stopped the task (see :func:`probe_tasks`).
    """
    outcome = probe_tasks(canvas_path, [task_name], outs={task_name: Path(out)}, control_canvas=control_canvas,
                          null_draws=null_draws, model=model, twin=twin, layers=layers, trust_code=trust_code)
    record = outcome[task_name]
    if isinstance(record, XincError):
        raise record
    return record


def probe_tasks(
    canvas: Canvas | Path,
    task_names: Sequence[str],
    *,
    outs: Mapping[str, Path],
    control_canvas: Canvas | Path | None = None,
    null_draws: int | None = None,
    model: nn.Module | None = None,
    twin: nn.Module | None = None,
    layers: tuple[str, ...] | None = None,
    trust_code: bool = False,
    progress: Progress | None = None,
    preview: Path | None = None,
) -> dict[str, dict[str, Any] | XincError]:
    """Run tasks on a canvas, reading it once per pass for all of them, and write each record atomically.

    Every task's probe is fed the canvas's blocks (:func:`~xinc_bench.probes.accumulator.accumulate`),
    then the same probe the blocks of the spatial-shuffle control (each block of the canvas read
    again and shuffled in memory), then the random-init twin's canvas, all tasks at once on each;
    a canvas's accumulators are freed before the next canvas is read, so the memory holds one
    canvas's probe state at a time (:func:`~xinc_bench.runs.budget.plan_unit`). Every score is stored beside its null (the task's null model,
    ``null_draws`` draws, default the task's own count) and both controls' scores, per layer and
    headline, in ``outs[task]`` (figures beside it).

    Args:
        canvas: the canvas, or its file (a canvas traced on demand, :func:`~xinc_bench.canvas.streamed.traced_canvas`,
            is traced once per pass, for itself and again for its shuffled control).
        control_canvas: canvas (or file) of the random-initialised twin; its scores go into ``controls``.
        null_draws: number of null draws (at least 1), overriding the tasks'.
        model, twin: the canvas's model and the random-init twin's, for tasks that need the model
            (``needs: [model]``; default: loaded from the checkpoint each canvas names).
        layers: probe only these layers of the canvases (default: all).
        trust_code: import the code file a checkpoint names when the model is loaded for a task.
        progress: reports the passes over each canvas.
        preview: write the canvas's preview (:func:`~xinc_bench.runs.preview.canvas_preview`, the
            neurons' total |C| summed in the same pass) to this file.

    Returns:
        task -> its record, or the :class:`XincError` that stopped it (the task does not apply to
        the canvas, the canvas lacks what it needs (:func:`unmet_needs`), or its probe refused
        the canvas); the other tasks carry on.

    Raises:
        XincError: the canvas cannot be read (a missing file, NaN or inf, a layer not in it).
    """
    progress = progress or Progress(quiet=True)
    where = f" on {canvas}" if isinstance(canvas, Path) else ""
    canvas = select_layers(_as_canvas(canvas), layers)
    outcome: dict[str, dict[str, Any] | XincError] = {}
    tasks: dict[str, Task] = {}  # as the caller names them (a name or a YAML path) -> the task
    for name in task_names:
        task = with_null_draws(load_task(name), null_draws)
        reason = unmet_needs(task, canvas)
        if reason:
            outcome[name] = XincError(f"task {task.name!r} cannot run{where}: {reason}")
        else:
            tasks[name] = task
    if not tasks:
        _write_preview(canvas, None, preview)
        return outcome
    trained: dict[str, ProbeAccumulator] = {}
    # building computes what a probe needs from the model alone (faithfulness's ablation ground truth)
    with progress.stage(f"prepare {_tasks_text(len(tasks))}", total=len(tasks), unit="task") as advance:
        for name, task in tasks.items():
            try:
                trained[name] = task.accumulator(canvas, **_model_params(task, canvas, model, trust_code))
            except XincError as exc:  # the probe refuses the canvas (or its parameters) before reading it
                outcome[name] = exc
            advance(1)
    if not trained:
        _write_preview(canvas, None, preview)
        return outcome
    label = _tasks_text(len(trained))  # the tasks whose probes accepted the canvas
    main = _probe_pass(canvas, {**trained, _PREVIEW: NeuronMass()} if preview else trained, f"probe {label}", progress)
    if preview:
        _write_preview(canvas, main.pop(_PREVIEW).result, preview)
    runs = {name: {"main": run} for name, run in main.items()}
    # each control is probed in passes of its own once the canvas's accumulators are freed, so that one
    # canvas's probe state is held at a time (the shuffled control is made again from the canvas's blocks)
    shuffled_canvas = shuffle_canvas(canvas, seed=0)
    shuffled = {name: acc.for_control(shuffled_canvas) for name, acc in trained.items()
                if runs[name]["main"].error is None}
    del trained
    gc.collect()  # the canvas's accumulators, freed now even where they hold reference cycles
    for name, run in _probe_pass(shuffled_canvas, shuffled, f"probe {label} on the shuffled control", progress).items():
        runs[name]["shuffled"] = _without_figures(run)
    del shuffled
    gc.collect()
    if control_canvas is not None:
        twin_canvas = select_layers(_as_canvas(control_canvas), layers)
        twins: dict[str, ProbeAccumulator] = {}
        for name, task in tasks.items():
            if name in runs and all(run.error is None for run in runs[name].values()):
                try:
                    twins[name] = task.accumulator(twin_canvas, 0, **_model_params(task, twin_canvas, twin, trust_code))
                except XincError as exc:
                    runs[name]["random_init"] = Accumulated(error=exc)
        for name, run in _probe_pass(twin_canvas, twins, f"probe {label} on the random-init control",
                                     progress).items():
            runs[name]["random_init"] = _without_figures(run)
        del twins
    for name, by_canvas in runs.items():
        error = next((run.error for run in by_canvas.values() if run.error is not None), None)
        if error is not None:
            outcome[name] = error
            continue
        controls = {control: _control_scores(run) for control, run in by_canvas.items() if control != "main"}
        outcome[name] = _write_record(tasks[name], by_canvas["main"], controls, canvas.metadata, Path(outs[name]))
    return outcome


def _tasks_text(count: int) -> str:
    """``1 task``, ``8 tasks``."""
    return f"{count} task{'s' if count > 1 else ''}"


def _probe_pass(canvas: Canvas, accumulators: Mapping[str, Accumulator], label: str,
                progress: Progress) -> dict[str, Accumulated]:
    """Feed ``canvas`` to ``accumulators`` (every pass they need, one stage line) and return what became of each."""
    if not accumulators:
        return {}
    group = [AccumulatorGroup(list(accumulators.values()))]
    with progress.stage(label, total=num_passes(group) * canvas.shape[0], unit="frame") as advance:
        runs = accumulate(canvas, group, isolate_errors=True, advance=advance)[0]
    return dict(zip(accumulators, runs))


#: the key of the preview's accumulator among the tasks' in the canvas's pass
_PREVIEW = "(preview)"


def _write_preview(canvas: Canvas, mass: dict[str, torch.Tensor] | None, out: Path | None) -> None:
    """Write the canvas's preview to ``out`` (if given), from the neuron masses of a pass already made
    (``None``: a pass of its own)."""
    if out is not None:
        write_preview(canvas_preview(canvas, mass), out)


def _as_canvas(canvas: Canvas | Path | str) -> Canvas:
    """A canvas, read (lazily) from its file when given a path."""
    return canvas if isinstance(canvas, Canvas) else read_canvas(Path(canvas))


def _write_record(task: Task, run: Accumulated, controls: dict[str, dict[str, float]], metadata: dict[str, Any],
                  out: Path) -> dict[str, Any]:
    """Write one task's record (and its figures beside it) atomically; returns the record."""
    result = run.result
    assert result is not None
    scores, nulls, absent = score_evidence(
        result.scores, result.nulls, result.absent, {name: m.null for name, m in task.metrics.items()}
    )
    figure_dir = out.with_name(f"{out.stem}_figures")
    with merged_dir(figure_dir) as stage:
        artifacts = save_figures(result.figures, stage)
    record = build_record(
        task,
        scores,
        metadata,
        controls=controls,
        timings={"probe_seconds": run.seconds},
        artifacts=[str(figure_dir / name) for name in artifacts],
        nulls=nulls,
        absent=absent,
    )
    write_json_atomic(out, record)
    return record


def _model_params(task: Task, canvas: Canvas, model: nn.Module | None, trust_code: bool) -> dict[str, Any]:
    """Tasks that need the model itself (``needs: [model]``) get it: the one given, else the canvas's checkpoint."""
    if "model" not in task.needs:
        return {}
    if model is None:
        checkpoint = canvas.metadata.get("checkpoint")
        if not checkpoint:
            raise XincError(f"task {task.name!r} needs the model, but the canvas names no checkpoint; "
                            "make the canvas with `xinc-bench canvas --checkpoint ...`")
        _, height, width = canvas.shape
        model, _ = load_checkpoint(Path(checkpoint), height, width, trust_code=trust_code)
    return {"model": model.eval()}


def applicable_tasks(canvas: Canvas) -> list[str]:
    """The default tasks (:func:`~xinc_bench.probes.base.default_tasks`) that apply to this canvas's signal kind."""
    kind = "image" if canvas.shape[0] == 1 else "video"
    return [name for name in default_tasks() if kind in load_task(name).signal_kinds]


def unmet_needs(task: Task, canvas: Canvas) -> str | None:
    """Why ``task`` cannot run on ``canvas`` (its signal kind, or masks or flow it needs), or None."""
    kind = "image" if canvas.shape[0] == 1 else "video"
    if kind not in task.signal_kinds:
        return f"it applies to {', '.join(task.signal_kinds)} canvases, not to this {kind}"
    missing = [need for need in ("masks", "flow") if need in task.needs and getattr(canvas, need) is None]
    if missing:
        return f"it needs {' and '.join(missing)}, which the canvas lacks; give --masks / --flow when computing it"
    return None


def select_layers(canvas: Canvas, layers: tuple[str, ...] | None) -> Canvas:
    """``canvas`` restricted to ``layers`` (in the canvas's order; None: all of them)."""
    if layers is None:
        return canvas
    unknown = [name for name in layers if name not in canvas.layer_names]
    if unknown:
        raise XincError(f"--layers names {', '.join(unknown)}, which the canvas lacks; its layers are "
                        f"{', '.join(canvas.layer_names)}")
    return dataclasses.replace(canvas, layers={name: canvas.layers[name] for name in canvas.layer_names
                                               if name in layers})


def with_null_draws(task: Task, draws: int | None) -> Task:
    """``task`` with ``draws`` null draws (None: the task's own count); fewer than 1 is refused."""
    if draws is None:
        return task
    if int(draws) < 1:
        raise XincError(f"--null-draws must be a positive number of draws, not {draws}")
    return dataclasses.replace(task, nulls=dataclasses.replace(task.nulls, draws=int(draws)))


def _without_figures(run: Accumulated) -> Accumulated:
    """``run`` with the figures of its result closed unsaved (a control's figures are not kept)."""
    import matplotlib.pyplot as plt

    if run.result is not None:
        for figure in run.result.figures.values():
            plt.close(figure)
        run.result.figures = {}
    return run


def _control_scores(run: Accumulated) -> dict[str, float]:
    """Every finite score of a task on a control canvas (per layer and headline)."""
    assert run.result is not None
    return {name: value for name, value in run.result.scores.items() if math.isfinite(value)}


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


def _dataset(layout: str | None, sequence: str | None) -> dict[str, str]:
    """``load_signal``'s keyword arguments for a dataset layout (none for other data)."""
    return {} if layout is None and sequence is None else {"layout": layout, "sequence": sequence}


def _parse_stored_frames(text: str) -> FrameRange:
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
