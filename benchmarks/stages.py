"""The stages of ``python -m benchmarks``; each runs in a subprocess of its own (``--child STAGE``).

Every stage measures one thing of the library through its public functions and, side by side in
the same process, what it is compared with. Peak memory is the peak resident size (``VmHWM``,
reset through ``/proc/self/clear_refs`` when the measurement begins) above the resident size at that
moment, so imports, the signal and the model are not counted.

* ``fit-mlp``, ``fit-cnn``: one optimiser step of :func:`xinc_bench.training.fit` (its
  ``seconds_per_step``: Lightning's ``trainer.fit`` time over the steps, start-up included) against
  one forward+backward pass of the same batch (MSE, no optimiser).
* ``canvas-mlp``, ``canvas-cnn``, ``canvas-hashgrid``, ``canvas-linear``: every block of a canvas
  traced on demand (:func:`xinc_bench.canvas.streamed.traced_canvas`, window by window within the
  memory budget, as the probes' driver reads it) against one forward pass
  (:func:`xinc_bench.inrs.base.render_output`, without autograd) and against the floor: a warm
  ``fill_`` of as many float32 values into an already-allocated buffer of one window.
* ``probes`` (and ``probe:<task>``): every task's accumulator in one shared pass
  (:func:`xinc_bench.probes.accumulator.accumulate`) over the traced canvas of the probe model, each
  one's time (building it plus :attr:`~xinc_bench.probes.accumulator.Accumulated.seconds`) against
  the pass's reads alone (the same traced canvas read block by block, as many passes, no probe);
  ``probe:<task>`` runs one task alone for its own peak memory.
* ``controls``: the shuffled control (its accumulators fed the canvas's blocks read again and
  shuffled, in passes of their own, as ``run`` does) and the random-init twin (seed 1; its
  accumulators on its own traced canvas) against the canvas's own probing.
* ``run``: :func:`xinc_bench.runs.unit.run_unit` of a small unit, each stage line it prints, and the
  whole against the sum of its stage lines.
"""

from __future__ import annotations

import io
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from xinc_bench.canvas import Canvas  # noqa: E402
from xinc_bench.canvas.streamed import traced_canvas  # noqa: E402
from xinc_bench.data import Signal, load_signal, parse_frames  # noqa: E402
from xinc_bench.errors import XincError  # noqa: E402
from xinc_bench.inrs import create_inr, inr_info, resolve_inr  # noqa: E402
from xinc_bench.inrs.base import render_output  # noqa: E402
from xinc_bench.probes.accumulator import (  # noqa: E402
    Accumulated, AccumulatorGroup, ProbeAccumulator, accumulate, num_passes, window_frames,
)
from xinc_bench.probes.base import Task, load_task  # noqa: E402
from xinc_bench.probes.controls import shuffle_canvas  # noqa: E402

from .table import PROBE_ROW, SHARED_PASS, Reference, Row  # noqa: E402
from .variants import PeakMemory  # noqa: E402

#: timed repeats of a baseline (the median is reported) or a floor (the fastest), after one untimed warm-up
BASELINE_REPEATS = 5
#: the image and the video every stage uses
IMAGE, VIDEO = "astronaut", "bikes"
#: canvas stage -> (layer family, model, tracer, whether it is the video model)
CANVASES = {
    "canvas-mlp": ("MLP", "ffn-paper", "mlp", False),
    "canvas-cnn": ("CNN", "nerv-paper", "cnn", True),
    "canvas-hashgrid": ("hash grid", "hashgrid-33k", "mlp", False),
    "canvas-linear": ("generic hooks", "ffn-paper", "linear", False),
}
#: fit stage -> (model, whether it is the video model)
FITS = {"fit-mlp": ("ffn-paper", False), "fit-cnn": ("nerv-paper", True)}


@dataclass(frozen=True)
class Settings:
    """What the stages run on (``python -m benchmarks --help`` describes each)."""

    size: tuple[int, int] = (128, 256)
    video_size: tuple[int, int] = (64, 128)
    probe_size: tuple[int, int] = (32, 64)
    frames: int = 2
    probe_model: str = "ffn-video"
    tasks: tuple[str, ...] | None = None
    null_draws: int = 2
    fit_steps: int = 20
    run_steps: int = 2
    repeats: int = 1
    threads: int | None = None
    memory_budget: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        """Settings from JSON values (lists for tuples)."""
        tuples = {key: tuple(data[key]) for key in ("size", "video_size", "probe_size", "tasks") if data.get(key)}
        return cls(**{**data, **tuples})


def timed(run: Callable[[], Any]) -> float:
    """Wall seconds of one call of ``run``."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def repeated_seconds(run: Callable[[], Any], pick: Callable[[list[float]], float] = statistics.median) -> float:
    """The median (or ``pick``) of the wall seconds of :data:`BASELINE_REPEATS` calls of ``run``, after one
    untimed warm-up call."""
    run()
    return pick([timed(run) for _ in range(BASELINE_REPEATS)])


def _signal(video: bool, size: tuple[int, int], frames: int) -> Signal:
    return load_signal(VIDEO, size, parse_frames(f"0:{frames}")) if video else load_signal(IMAGE, size)


def _model(name: str, signal: Signal, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_inr(name, num_frames=signal.num_frames, height=signal.height, width=signal.width).eval()


def _signal_text(signal: Signal) -> str:
    frames = f"{signal.num_frames} frames at " if signal.num_frames > 1 else ""
    return f"{signal.name} {frames}{signal.height}x{signal.width}"


def fit_step(stage: str, settings: Settings) -> list[Row]:
    """One ``fit`` step against one forward+backward pass of the same batch (full batch, or one frame)."""
    from xinc_bench.training import fit  # Lightning takes seconds to import: only where it is used
    from xinc_bench.training.module import FrameBatches, FullBatchPixels

    name, video = FITS[stage]
    signal = _signal(video, settings.video_size if video else settings.size, settings.frames)
    model = _model(name, signal)
    frame_model = getattr(model, "input_kind", "coords") == "frame"
    inputs, target = (FrameBatches(signal, 1, 1, 0) if frame_model else FullBatchPixels(signal, 1))[0]
    meter = PeakMemory()
    meter.start()
    result = fit(model, signal, steps=settings.fit_steps, lr=float(getattr(model, "default_lr", 9e-4)),
                 schedule=getattr(model, "default_schedule", "constant"), progress_bar=False)
    peak = meter.above_start()
    model.train()

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(inputs), target).backward()

    batch = "1 frame per step" if frame_model else f"full batch ({signal.height * signal.width:,} pixels)"
    return [Row(stage, f"{name} on {_signal_text(signal)}, {batch}; `fit`'s seconds per step over "
                       f"{settings.fit_steps} steps (Lightning start-up included)",
                result.seconds_per_step, peak,
                baseline=Reference("one forward+backward of the batch", repeated_seconds(forward_backward)))]


def read_every_block(canvas: Canvas, passes: int = 1) -> None:
    """Read every block of ``canvas`` ``passes`` times, window by window, as the probes' driver does."""
    num_frames = canvas.shape[0]
    step = window_frames(canvas)
    for _ in range(passes):
        for start in range(0, num_frames, step):
            for name in canvas.layer_names:
                canvas.layer_frames(name, start, min(num_frames, start + step))


def fill_floor(total: int, block: int) -> float:
    """Seconds to write ``total`` float32 values into an allocated, warm buffer of ``block`` values (the
    fastest of :data:`BASELINE_REPEATS`: a floor)."""
    buffer = torch.empty(block)
    buffer.fill_(0.0)  # every page mapped before timing

    def write() -> None:
        for start in range(0, total, block):
            buffer[: min(block, total - start)].fill_(1.0)

    return repeated_seconds(write, pick=min)


def canvas_stage(stage: str, settings: Settings) -> list[Row]:
    """Every block of the traced canvas against one forward pass and against a warm ``fill_``."""
    family, name, tracer, video = CANVASES[stage]
    signal = _signal(video, settings.video_size if video else settings.size, settings.frames)
    model = _model(name, signal)
    num_frames, height, width = signal.num_frames, signal.height, signal.width

    def forward_pass() -> None:
        with torch.no_grad():
            render_output(model, (num_frames, height, width))

    forward = repeated_seconds(forward_pass)  # also warms the model up

    def trace_once() -> tuple[float, float, int, int]:
        """Seconds and peak memory to read the canvas once; its neurons and frames per window."""
        canvas = _traced(model, signal, tracer, settings)
        meter = PeakMemory()
        meter.start()
        seconds = timed(lambda: read_every_block(canvas))
        neurons = sum(canvas.layer_shape(layer)[0] for layer in canvas.layer_names)
        return seconds, meter.above_start(), neurons, window_frames(canvas)

    measured = [trace_once() for _ in range(settings.repeats)]
    _, peak, neurons, step = measured[0]
    windows = -(-num_frames // step)
    values = neurons * num_frames * height * width
    floor = fill_floor(values, neurons * min(step, num_frames) * height * width)
    repeats = f"; median of {settings.repeats}" if settings.repeats > 1 else ""
    return [Row(stage, f"{family}: {name}, `{tracer}` tracer, {_signal_text(signal)}: {neurons:,} neurons, "
                       f"{values / 1e6:,.1f} M values, traced in {windows} window{'s' * (windows > 1)}{repeats}",
                statistics.median(seconds for seconds, *_ in measured), peak,
                baseline=Reference("one forward pass", forward),
                floor=Reference("a warm fill_ of as many float32", floor))]


def _probe_unit(settings: Settings, seed: int = 0) -> tuple[Signal, nn.Module, str]:
    """The probe model's signal (with masks and flow), the model (seeded, untrained) and its tracer."""
    from xinc_bench.runs.stages import annotate_signal

    name = resolve_inr(settings.probe_model)
    info = inr_info(name)
    signal = _signal(info.signal_kind == "video", settings.probe_size, settings.frames)
    annotate_signal(signal)
    return signal, _model(name, signal, seed), info.tracer


def _traced(model: nn.Module, signal: Signal, tracer: str, settings: Settings) -> Canvas:
    """The model's canvas of ``signal``, traced on demand within the settings' memory budget."""
    return traced_canvas(model, signal, tracer, memory_budget=settings.memory_budget)


def _probe_canvas(settings: Settings) -> tuple[Signal, nn.Module, str, Canvas]:
    """:func:`_probe_unit` and the model's traced canvas."""
    signal, model, tracer = _probe_unit(settings)
    return signal, model, tracer, _traced(model, signal, tracer, settings)


def _tasks(settings: Settings, canvas: Canvas) -> list[Task]:
    """The tasks asked for (default: every task that applies to the canvas); one that cannot run is refused."""
    from xinc_bench.runs.stages import applicable_tasks, unmet_needs

    tasks = [load_task(name) for name in settings.tasks or applicable_tasks(canvas)]
    for task in tasks:
        reason = unmet_needs(task, canvas)
        if reason:
            raise XincError(f"task {task.name!r} cannot run on {settings.probe_model}'s canvas: {reason}")
    return tasks


def _build(tasks: Sequence[Task], canvas: Canvas, model: nn.Module,
           null_draws: int) -> tuple[list[ProbeAccumulator], list[float]]:
    """Each task's accumulator on ``canvas`` and the seconds building it took (faithfulness ablates here)."""
    built, seconds = [], []
    for task in tasks:
        started = time.perf_counter()
        built.append(task.accumulator(canvas, null_draws, **({"model": model} if "model" in task.needs else {})))
        seconds.append(time.perf_counter() - started)
    return built, seconds


def _draws(settings: Settings) -> str:
    return f"{settings.null_draws} null draw{'s' * (settings.null_draws > 1)}"


def _cost(build: float, run: Accumulated) -> float:
    return build + run.seconds


def _outcome(run: Accumulated) -> str:
    return "" if run.error is None else f"; stopped: {run.error}"


def probes_stage(settings: Settings) -> list[Row]:
    """Every task in one shared pass, each one's time against the pass's reads alone."""
    signal, model, tracer, canvas = _probe_canvas(settings)
    tasks = _tasks(settings, canvas)
    meter = PeakMemory()
    meter.start()
    started = time.perf_counter()
    accumulators, builds = _build(tasks, canvas, model, settings.null_draws)
    groups = [AccumulatorGroup(accumulators)]
    runs = accumulate(canvas, groups, isolate_errors=True)[0]
    shared = time.perf_counter() - started
    peak = meter.above_start()
    passes = num_passes(groups)
    probe_passes = [accumulator.passes for accumulator in accumulators]
    del canvas, groups, accumulators  # free the traced window before the reads are timed
    reads = Reference("the pass's reads", timed(lambda: read_every_block(
        _traced(model, signal, tracer, settings), passes)))
    rows = [Row(f"{PROBE_ROW}{task.name}", f"build {build:.2f} s + accumulator {run.seconds:.2f} s in the shared "
                                          f"pass; {count} pass{'es' * (count > 1)}{_outcome(run)}",
                _cost(build, run), baseline=reads)
            for task, count, build, run in zip(tasks, probe_passes, builds, runs)]
    rows.append(Row(SHARED_PASS, f"{len(tasks)} tasks, {_draws(settings)}, on the traced canvas of "
                                 f"{settings.probe_model} (untrained, `{tracer}` tracer), {_signal_text(signal)}; "
                                 f"{passes} pass{'es' * (passes > 1)}, reads included",
                    shared, peak, baseline=reads))
    return rows


def probe_alone(task_name: str, settings: Settings) -> list[Row]:
    """One task alone on the probe model's traced canvas: its own peak memory (and time, reads included)."""
    signal, model, tracer, canvas = _probe_canvas(settings)
    meter = PeakMemory()
    meter.start()
    started = time.perf_counter()
    accumulators, _ = _build([load_task(task_name)], canvas, model, settings.null_draws)
    accumulate(canvas, [AccumulatorGroup(accumulators)], isolate_errors=True)
    return [Row(f"{PROBE_ROW}{task_name}", "alone", time.perf_counter() - started, meter.above_start())]


def controls_stage(settings: Settings) -> list[Row]:
    """The shuffled control and the random-init twin against the canvas's own probing, each canvas in
    passes of its own after the previous one's accumulators are freed, as ``run`` does."""
    signal, model, tracer, canvas = _probe_canvas(settings)
    twin = _model(resolve_inr(settings.probe_model), signal, seed=1)
    twin_canvas = _traced(twin, signal, tracer, settings)
    tasks = _tasks(settings, canvas)
    meter = PeakMemory()
    meter.start()
    started = time.perf_counter()
    own, own_builds = _build(tasks, canvas, model, settings.null_draws)
    on_canvas = accumulate(canvas, [AccumulatorGroup(own)], isolate_errors=True)[0]
    shuffled_started = time.perf_counter()
    shuffled = shuffle_canvas(canvas, seed=0)
    controls = [accumulator.for_control(shuffled) for accumulator in own]
    del own
    on_shuffled = accumulate(shuffled, [AccumulatorGroup(controls)], isolate_errors=True)[0]
    del controls
    shuffled_seconds = time.perf_counter() - shuffled_started
    twin_started = time.perf_counter()
    twins, _ = _build(tasks, twin_canvas, twin, 0)
    on_twin = accumulate(twin_canvas, [AccumulatorGroup(twins)], isolate_errors=True)[0]
    twin_seconds = time.perf_counter() - twin_started
    total = time.perf_counter() - started
    peak = meter.above_start()
    probing = Reference("the canvas's own probing", sum(map(_cost, own_builds, on_canvas)))
    stopped = "".join(_outcome(run) for run in (*on_canvas, *on_shuffled, *on_twin))
    return [
        Row("controls: shuffled", f"{len(tasks)} accumulators without null draws (built from the canvas's, whose "
                                  "model-only state and distribution thresholds they share) on the canvas's blocks "
                                  f"read again and shuffled, reads included{stopped}",
            shuffled_seconds, baseline=probing),
        Row("controls: random-init twin", f"{len(tasks)} accumulators without null draws built and fed the twin's "
                                          "traced canvas (seed 1), reads included",
            twin_seconds, baseline=probing),
        Row("controls: stage", f"{settings.probe_model} (untrained, `{tracer}` tracer), {_signal_text(signal)}, "
                               f"{_draws(settings)}: the canvas's passes, the shuffled control's, "
                               "then the twin's, reads and builds included",
            total, peak, baseline=probing),
    ]


#: a stage line of :class:`~xinc_bench.runs.progress.Progress`: ``<name> (<seconds> s)``
STAGE_LINE = re.compile(r"(?P<name>.+) \((?P<seconds>[0-9.]+) s\)")


def run_stage(settings: Settings) -> tuple[list[Row], list[str]]:
    """``run_unit`` of a small unit, each of its stage lines, and the whole against their sum; also the
    other lines it printed (what it states before it starts, warnings)."""
    from xinc_bench.runs.progress import Progress
    from xinc_bench.runs.spec import UnitSpec
    from xinc_bench.runs.unit import run_unit

    spec = UnitSpec(model=settings.probe_model, data=VIDEO, size=settings.probe_size,
                    frames=parse_frames(f"0:{settings.frames}"), steps=settings.run_steps,
                    tasks=settings.tasks, null_draws=settings.null_draws)
    stream = io.StringIO()
    meter = PeakMemory()
    with tempfile.TemporaryDirectory() as folder:
        meter.start()
        started = time.perf_counter()
        result = run_unit(spec, Path(folder) / spec.unit_id, progress=Progress(stream=stream))
        seconds = time.perf_counter() - started
        peak = meter.above_start()
    printed = stream.getvalue().splitlines()
    lines = [match for match in map(STAGE_LINE.fullmatch, printed) if match]
    rows = [Row(f"run: {line['name']}", "a stage line of `run_unit`", float(line["seconds"])) for line in lines]
    skipped = f", {len(result.skipped)} skipped ({', '.join(result.skipped)})" if result.skipped else ""
    rows.append(Row("run", f"`run_unit` of {spec.model} on {VIDEO}, {settings.frames} frames at "
                           f"{spec.size[0]}x{spec.size[1]}, {spec.steps} steps, {_draws(settings)}: "
                           f"{len(result.records_written)} tasks{skipped}",
                    seconds, peak, baseline=Reference("the sum of its stage lines",
                                                      sum(float(line["seconds"]) for line in lines))))
    return rows, [f"`run_unit` printed: {line}" for line in printed if not STAGE_LINE.fullmatch(line)]


def run(stage: str, settings: Settings) -> tuple[list[Row], list[str]]:
    """The rows of ``stage`` (a ``--stages`` name or ``probe:<task>``) and notes to print under the table."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if stage == "run":
        return run_stage(settings)
    if stage in FITS:
        return fit_step(stage, settings), []
    if stage in CANVASES:
        return canvas_stage(stage, settings), []
    if stage.startswith("probe:"):
        return probe_alone(stage.removeprefix("probe:"), settings), []
    return {"probes": probes_stage, "controls": controls_stage}[stage](settings), []
