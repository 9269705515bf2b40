"""Sanity check by model randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps";
Quantus's Model Parameter Randomisation Test, MPRT).

A score that explains a model should change when the model is destroyed. :func:`sanity_check`
takes a run folder (``RUN/model.safetensors``, ``RUN/signal.safetensors`` or a canvas file,
``RUN/records/<task>.json``) and re-initialises the trained model's parameterised layers cascading from the output down: stage
``k`` has the last ``k`` layers re-initialised, stage ``L`` (every layer) is the fully randomised
model. At each stage the canvas is traced again with the run's tracer on the run's frames, masks and
flow (read from the run's signal file, so annotations are not recomputed), window by window and
never written, and every task that has a record is run on it without null draws, all in one pass.

*Layers* are the modules that own parameters (``module.parameters(recurse=False)``) and that a
forward pass calls, ordered by when the forward pass enters them (forward pre-hooks), so the
order is the network's, not the order of registration (HNeRV registers its encoder last).
A module that owns parameters but is not called (an encoder whose embeddings are cached) is left
out. Parameters owned by the model object itself form one layer, :data:`TOP_LEVEL`.

*Re-initialisation*: the INR's own initialisation. A fresh instance of the run's INR is built under
``torch.manual_seed(seed)`` (default: the run's seed + 1, so it is not the training's own initial
state, which the ``random_init`` control already covers), and a re-initialised layer takes that
instance's parameters: the family's own initialisation (SIREN's and FINER's sine init, WIRE's
complex init), which for plain torch layers is their ``reset_parameters()``. Buffers (FFN's Fourier
matrix, cached embeddings) stay the trained model's. A model that encodes its frames (HNeRV,
``needs_frames``) re-encodes the run's frames after each stage, so a re-initialised encoder
reaches its embeddings.

Per task and score (every finite score of the trained record, per layer and headline):

* ``trained``: the record's value; ``randomised``: the value after each stage (None where the
  score is undefined on that stage's canvas);
* ``movement``: ``|fully randomised - trained| / null sd`` with the null sd of the trained record's
  ``nulls`` (``movement_unit: "null_sd"``); where the record has no null spread for the score, the
  relative change ``|d| / max(|trained|, 1e-12)`` (``movement_unit: "relative"``);
* ``insensitive``: ``movement < 2`` in null sds, or a relative change below 0.05: a score that a
  destroyed model leaves where it was does not measure the model.

The record (``RUN/records/sanity.json``, ``"kind": "sanity"``) and a figure
(``RUN/records/sanity_figures/sanity.png``: per task, its headline-level scores against the
cascade stage) are written atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..canvas import Canvas, read_canvas
from ..canvas.streamed import traced_canvas
from ..checkpoints import CONFIG_NAME, WEIGHTS_NAME, load_checkpoint
from ..data import Signal
from ..errors import XincError
from ..files import atomic_file, write_json_atomic
from ..inrs import create_inr
from ..inrs.base import signal_coordinates
from ..probes.accumulator import AccumulatorGroup, accumulate
from ..probes.base import Task, load_task
from .record import SANITY_KIND
from .rundir import CANVAS_NAME, RECORDS_DIR, SANITY_NAME, SKIPPED_NAME, RunDir

FIGURES_DIR = "sanity_figures"
FIGURE_NAME = "sanity.png"
#: version of the sanity record's layout
SCHEMA_VERSION = 1
#: a score moving less than this many null sds under full randomisation is insensitive
NULL_SD_THRESHOLD = 2.0
#: ... or, without a null spread, less than this fraction of its trained value
RELATIVE_THRESHOLD = 0.05
#: floor of ``|trained|`` in the relative change
EPS = 1e-12
#: the cascade's name for parameters owned by the model object itself
TOP_LEVEL = "(top level)"
#: canvas metadata that describes the trained model's canvas only
_TRAINED_ONLY = ("checks", "canvas_seconds", "checkpoint", "tracer", "dtype")


def cascade_layers(model: nn.Module, shape: tuple[int, int, int]) -> list[str]:
    """The model's parameterised layers in cascade order (output first).

    Args:
        model: the INR (coordinate or frame INR, see :mod:`xinc_bench.inrs.base`).
        shape: ``(T, H, W)`` of its signal (a frame INR renders frame 0; a coordinate INR 4 points).

    Returns:
        Qualified module names (:data:`TOP_LEVEL` for the model's own parameters), in the reverse
        of the order in which one forward pass enters them.

    Raises:
        XincError: the forward pass calls no module that owns parameters.
    """
    owners = {name: module for name, module in model.named_modules()
              if next(module.parameters(recurse=False), None) is not None}
    entered: list[str] = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in entered:
                entered.append(name)
        return hook

    handles = [module.register_forward_pre_hook(hook_for(name)) for name, module in owners.items()]
    try:
        with torch.no_grad():
            if getattr(model, "input_kind", "coords") == "frame":
                model(torch.arange(0, 1))
            else:
                model(signal_coordinates(shape[0], 2, 2))
    finally:
        for handle in handles:
            handle.remove()
    if not entered:
        raise XincError(f"{type(model).__name__}'s forward pass calls no module with parameters; "
                        "there is nothing to re-initialise")
    return [name or TOP_LEVEL for name in reversed(entered)]


@torch.no_grad()
def reinitialise(model: nn.Module, fresh: nn.Module, layer: str) -> None:
    """Give ``layer`` of ``model`` the parameters of the same layer of ``fresh`` (same architecture)."""
    name = "" if layer == TOP_LEVEL else layer
    target, source = model.get_submodule(name), fresh.get_submodule(name)
    for parameter, value in zip(target.parameters(recurse=False), source.parameters(recurse=False)):
        parameter.copy_(value)


def sanity_check(
    run_dir: Path,
    tasks: Sequence[str] | None = None,
    *,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    trust_code: bool = False,
    trusted_spec: str | None = None,
    memory_budget: int | None = None,
) -> dict[str, Any]:
    """Cascading model randomisation of a run; writes ``RUN/records/sanity.json`` and its figure.

    Args:
        run_dir: a run folder written by ``xinc-bench run`` (model, canvas and records).
        tasks: the tasks to check (names or task YAML paths; default: every task with a record in
            ``RUN/records/``). Each needs its record ``RUN/records/<task>.json``.
        seed: the re-initialisation seed (default: the run's seed + 1).
        progress: called with one line per cascade stage (e.g. ``print``).
        trust_code, trusted_spec: whether the code file the run's ``model.json`` names may be
            imported (see :func:`~xinc_bench.checkpoints.load_checkpoint`).
        memory_budget: bytes one traced window of a stage's canvas may take (see
            :func:`~xinc_bench.canvas.streamed.traced_canvas`).

    Returns:
        The sanity record (see the module docstring).

    Raises:
        XincError: not a run folder, no signal (nor canvas) file, no records, a task without a record,
            or a record of an older task version.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    canvas = read_canvas(_run_signal(run_dir))
    checked = _task_records(run_dir, tasks)
    shape = canvas.shape
    model, config = load_checkpoint(run_dir, shape[1], shape[2], trust_code=trust_code, trusted_spec=trusted_spec)
    if getattr(model, "needs_frames", False):
        model.set_frames(canvas.frames)  # so the forward pass runs the encoder too
    cascade = cascade_layers(model, shape)
    first_record = next(iter(checked.values()))[1]
    reinit_seed = int(seed) if seed is not None else int(first_record.get("seed") or 0) + 1
    with torch.random.fork_rng():
        torch.manual_seed(reinit_seed)
        fresh = create_inr(config["model"], num_frames=shape[0], height=shape[1], width=shape[2],
                           **config.get("model_args", {}))
    stages, stage_seconds = _cascade_scores(model, fresh, cascade, canvas, {n: t for n, (t, _) in checked.items()},
                                            progress, memory_budget)
    results = {
        name: {score: score_movement(value, [stage[name].get(score) for stage in stages], _null_sd(record, score))
               for score, value in record.get("scores", {}).items() if _is_finite(value)}
        for name, (_, record) in checked.items()
    }
    records_dir = run_dir / RECORDS_DIR
    headlines = {name: task.headline for name, (task, _) in checked.items()}
    figure = write_figure(results, headlines, cascade, records_dir / FIGURES_DIR / FIGURE_NAME)
    record = {
        "kind": SANITY_KIND,
        "schema_version": SCHEMA_VERSION,
        **{key: first_record.get(key) for key in ("package", "model", "data", "seed", "fidelity")},
        "method": {
            "reference": "Adebayo et al. 2018 cascading model randomisation (Quantus MPRT)",
            "reinitialisation": "the INR's own initialisation: parameters of a fresh instance built under "
                                "torch.manual_seed(reinit_seed); buffers kept",
            "reinit_seed": reinit_seed,
            "null_draws": 0,
            "insensitive_below": {"null_sd": NULL_SD_THRESHOLD, "relative": RELATIVE_THRESHOLD},
            "movement": "|fully randomised - trained| / null sd of the trained record (null_sd); where the record "
                        "has no null spread, |fully randomised - trained| / max(|trained|, 1e-12) (relative)",
        },
        "tracer": canvas.metadata.get("tracer"),
        "task_versions": {name: task.version for name, (task, _) in checked.items()},
        "headlines": headlines,
        "cascade": cascade,
        "tasks": results,
        "timings": {"sanity_seconds": time.perf_counter() - started, "stage_seconds": stage_seconds},
        "artifacts": [str(figure)],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(records_dir / SANITY_NAME, record)
    return record


def _cascade_scores(
    model: nn.Module, fresh: nn.Module, cascade: list[str], canvas: Canvas, tasks: dict[str, Task],
    progress: Callable[[str], None] | None, memory_budget: int | None,
) -> tuple[list[dict[str, dict[str, float]]], list[float]]:
    """Re-initialise ``cascade`` layer by layer; per stage, every task's scores on the recomputed canvas.

    Each stage's canvas is traced window by window (with the run canvas's tracer, dtype, frames,
    masks, flow and metadata; nothing is written) and read once per pass for every task.

    Returns:
        ``(stages, seconds)``: per stage, task -> finite scores; and the seconds each stage took.
    """
    signal = Signal(canvas.frames, name="run", masks=canvas.masks, flow=canvas.flow)
    metadata = {k: v for k, v in canvas.metadata.items() if k not in _TRAINED_ONLY + ("streamed",)}
    dtype = torch.float16 if canvas.metadata.get("dtype") == "float16" else torch.float32
    tracer = str(canvas.metadata["tracer"])
    frames_model = getattr(model, "needs_frames", False)
    stages: list[dict[str, dict[str, float]]] = []
    seconds: list[float] = []
    for k, layer in enumerate(cascade, start=1):
        started = time.perf_counter()
        reinitialise(model, fresh, layer)
        if frames_model:  # re-encode, so a re-initialised encoder reaches the embeddings
            model.set_frames(canvas.frames)
            model.cache_embeddings()
        stage_canvas = traced_canvas(model, signal, tracer, dtype=dtype, memory_budget=memory_budget,
                                     metadata={**metadata, "sanity_stage": k, "reinitialised": cascade[:k]})
        stages.append(_stage_scores(tasks, stage_canvas, model))
        seconds.append(time.perf_counter() - started)
        if progress is not None:
            progress(f"stage {k}/{len(cascade)}: re-initialised {', '.join(cascade[:k])} ({seconds[-1]:.1f} s)")
    return stages, seconds


def score_movement(trained: float, randomised: Sequence[float | None], null_sd: float | None) -> dict[str, Any]:
    """How far one score moves under the cascade (an entry of the sanity record's ``tasks``).

    Args:
        trained: the trained model's value.
        randomised: the value after each stage (the last: fully randomised); None where undefined.
        null_sd: the null sd of the trained record (None or 0: none; the relative change is used).
    """
    final = randomised[-1] if randomised else None
    entry: dict[str, Any] = {"trained": trained, "randomised": list(randomised), "null_sd": null_sd}
    if final is None:
        return {**entry, "movement": None, "movement_unit": "null_sd" if null_sd else "relative",
                "relative_change": None, "insensitive": False,
                "note": "undefined on the fully randomised model's canvas (it moved out of the score's domain)"}
    change = abs(final - trained)
    relative = change / max(abs(trained), EPS)
    if null_sd:
        return {**entry, "movement": change / null_sd, "movement_unit": "null_sd", "relative_change": relative,
                "insensitive": change / null_sd < NULL_SD_THRESHOLD}
    return {**entry, "movement": relative, "movement_unit": "relative", "relative_change": relative,
            "insensitive": relative < RELATIVE_THRESHOLD,
            "note": "the trained record has no null spread for this score: movement is the relative change"}


def write_figure(results: dict[str, dict[str, dict[str, Any]]], headlines: dict[str, str | None], cascade: list[str],
                 path: Path) -> Path:
    """Per task, its headline-level scores against the cascade stage; written atomically to ``path``.

    A score is drawn as its change from the trained value in its movement unit: null sds on the
    left axis, a fraction of the trained value on the right one (scores without a null spread).
    The task's headline is drawn thick, insensitive scores dashed with hollow markers and
    ``(insensitive)`` in the legend.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    figure = Figure(figsize=(5.6 * columns, 3.8 * rows), layout="constrained")
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    stages = list(range(len(cascade) + 1))
    colours = colormaps["tab10"]
    for panel, (name, scores) in zip(panels, results.items()):
        top = {score: entry for score, entry in scores.items() if "/" not in score}
        used = {entry["movement_unit"] for entry in top.values()}
        axes = {"null_sd": panel, "relative": panel.twinx() if len(used) == 2 else panel}
        for index, (score, entry) in enumerate(top.items()):
            values = [0.0] + [math.nan if v is None else (v - entry["trained"]) / _scale(entry)
                              for v in entry["randomised"]]
            axes[entry["movement_unit"]].plot(
                stages, values, color=colours(index % 10), marker="o",
                linewidth=2.8 if score == headlines.get(name) else 1.2,
                linestyle="--" if entry["insensitive"] else "-",
                markerfacecolor="none" if entry["insensitive"] else colours(index % 10),
                label=f"{score}{' (insensitive)' if entry['insensitive'] else ''}",
            )
        labels = {"null_sd": "change from trained (null sds)", "relative": "change from trained (fraction of trained)"}
        for unit, axis in axes.items():
            if unit in used:
                axis.set_ylabel(labels[unit], fontsize=8)
        _align_zeros(list(dict.fromkeys(axes.values())))
        panel.axhline(0.0, color="grey", linewidth=0.8)
        flagged = sum(entry["insensitive"] for entry in scores.values())
        panel.set_title(f"{name}: {flagged}/{len(scores)} scores insensitive (per layer included)", fontsize=9)
        panel.set_xticks(stages, ["trained", *cascade], rotation=30, fontsize=8)
        panel.set_xlabel("re-initialised down to (output first)", fontsize=8)
        handles = [line for axis in dict.fromkeys(axes.values()) for line in axis.get_lines()
                   if not line.get_label().startswith("_")]
        panel.legend(handles=handles, fontsize=7)
    for panel in panels[len(results):]:
        panel.set_visible(False)
    path = Path(path)
    with atomic_file(path, path.suffix) as tmp:
        figure.savefig(tmp, dpi=110)
    return path


def _align_zeros(axes: list[Any]) -> None:
    """Put y = 0 at the same height on twin axes (each keeps its own scale)."""
    if len(axes) < 2:
        return
    limits = [(min(0.0, low), max(0.0, high)) for low, high in (axis.get_ylim() for axis in axes)]
    below = max(-low / (high - low) if high > low else 0.5 for low, high in limits)
    above = max(high / (high - low) if high > low else 0.5 for low, high in limits)
    for axis, (low, high) in zip(axes, limits):
        span = max(-low / below if below else 0.0, high / above if above else 0.0) or 1.0
        axis.set_ylim(-below * span, above * span)


def _scale(entry: dict[str, Any]) -> float:
    """What a score's change is divided by in the figure: its null sd, or its trained magnitude."""
    return entry["null_sd"] or max(abs(entry["trained"]), EPS)


def _run_signal(run_dir: Path) -> Path:
    """The file of the run's signal (:meth:`~xinc_bench.runs.rundir.RunDir.signal_file`).

    Raises:
        XincError: not a run folder, or it has no signal (nor canvas) file.
    """
    if not run_dir.is_dir() or not (run_dir / CONFIG_NAME).is_file() or not (run_dir / WEIGHTS_NAME).is_file():
        raise XincError(f"{run_dir} is not a run folder (no {WEIGHTS_NAME} and {CONFIG_NAME}); "
                        "give a RUN_DIR written by `xinc-bench run`")
    return RunDir(run_dir).signal_file()


def _task_records(run_dir: Path, tasks: Sequence[str] | None) -> dict[str, tuple[Task, dict[str, Any]]]:
    """Task name -> (task, its trained record) for the tasks to check."""
    records_dir = run_dir / RECORDS_DIR
    fix = (f"run the probes first: `xinc-bench run ... --tasks TASK --out {run_dir}` (or `xinc-bench probe "
           f"--canvas {run_dir / CANVAS_NAME} --task TASK --out {records_dir}/TASK.json` on a saved canvas)")
    if tasks is None:
        tasks = [path.stem for path in sorted(records_dir.glob("*.json")) if path.name not in (SANITY_NAME, SKIPPED_NAME)]
        if not tasks:
            raise XincError(f"{run_dir} has no probe records in {records_dir}; {fix}")
    checked = {}
    for spec in tasks:
        try:
            task = load_task(spec)
        except XincError as exc:
            raise XincError(f"{exc}; a task from another YAML file is checked with --tasks path/to/task.yaml") from exc
        path = records_dir / f"{task.name}.json"
        if not path.is_file():
            raise XincError(f"{run_dir} has no record of task {task.name!r} ({path}); {fix.replace('TASK', task.name)}")
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise XincError(f"cannot read {path} ({exc}); re-run the probe that wrote it") from exc
        version = (record.get("task") or {}).get("version")
        if version != task.version:
            rerun = fix.replace("run the probes first", "run it again").replace("TASK", task.name)
            raise XincError(f"{path} is task {task.name!r} version {version} but the task is now version "
                            f"{task.version}; {rerun}")
        checked[task.name] = (task, record)
    return checked


def _stage_scores(tasks: dict[str, Task], canvas: Canvas, model: nn.Module) -> dict[str, dict[str, float]]:
    """Task -> every finite score of it on a stage canvas, without null draws, all tasks in one shared pass;
    figures closed unsaved. The faithfulness probe gets the stage's model itself (as the run gives it the run's).
    """
    import matplotlib.pyplot as plt

    accumulators = [task.accumulator(canvas, 0, **({"model": model} if "model" in task.needs else {}))
                    for task in tasks.values()]
    scores = {}
    for name, run in zip(tasks, accumulate(canvas, [AccumulatorGroup(accumulators)])[0]):
        for figure in run.result.figures.values():
            plt.close(figure)
        scores[name] = {score: float(value) for score, value in run.result.scores.items() if _is_finite(value)}
    return scores


def _null_sd(record: dict[str, Any], score: str) -> float | None:
    """The null sd of ``score`` in a task record; None where it has none or it is 0."""
    sd = ((record.get("nulls") or {}).get(score) or {}).get("sd")
    return float(sd) if _is_finite(sd) and sd > 0 else None


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
