"""``UnitSpec``: everything that defines one unit of work (one model, one signal, one seed).

``xinc-bench run``, ``fit``/``canvas``/``probe``, suites and tests all build a ``UnitSpec`` and hand
it to :func:`xinc_bench.runs.unit.run_unit`; nothing else describes a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import FrameRange
from ..errors import XincError

#: devices a unit can run on (``auto``: CUDA when available, else the CPU)
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class UnitSpec:
    """One unit: a model fitted to one signal with one seed, its canvases and its records.

    Attributes:
        model: registered INR name, ``path/to/file.py:Class`` or ``module:Class``.
        data: data source name, an image file, or a dataset root (with ``layout``).
        size: ``(H, W)`` of the signal.
        frames: frame range of a video (``None``: the source's default).
        seed: training seed.
        steps: optimiser steps.
        lr: learning rate (``None``: the model's default).
        schedule: learning-rate schedule (``None``: the model's default).
        batch_frames: frames per step of a frame INR (``None``: 1).
        tracer: tracer name (``None``: the model's).
        layers: the layers to trace and probe (``None``: every layer the tracer knows).
        masks: mask source (``None``: ground truth when the signal has it, else felzenszwalb).
        flow: flow source for videos (``None``: ground truth when known, else DIS).
        mask_options: options of the mask source (SAM checkpoint, model type), as ``(key, value)`` pairs.
        flow_options: options of the flow source (RAFT weights, model), as ``(key, value)`` pairs.
        layout: dataset layout of ``data`` (``cityscapes-vps``, ``vipseg``, ``davis``; ``None``: not a dataset).
        sequence: the dataset's sequence (with ``layout``).
        tasks: task names or YAML paths (``None``: every task that applies to the signal,
            variants aside).
        device: ``cpu``, ``cuda`` or ``auto``.
        float16: trace (and, with ``save_canvas``, store) the canvases as float16.
        save_canvas: keep both canvases as files in the run folder (default: traced, probed and dropped).
        memory_budget: bytes the unit may hold in memory (``None``: :func:`default_memory_budget`); sets
            how many frames of the canvas are traced at once. Not part of the unit's identity.
        null_draws: null draws per score (``None``: each task's own count).
        sanity: also run the sanity check (model randomisation) on the records.
        trust_code: allow importing the code file a run folder names (see :mod:`xinc_bench.inrs.user`).
    """

    model: str
    data: str
    size: tuple[int, int]
    frames: FrameRange | None = None
    seed: int = 0
    steps: int = 1000
    lr: float | None = None
    schedule: str | None = None
    batch_frames: int | None = None
    tracer: str | None = None
    layers: tuple[str, ...] | None = None
    masks: str | None = None
    flow: str | None = None
    mask_options: tuple[tuple[str, Any], ...] = ()
    flow_options: tuple[tuple[str, Any], ...] = ()
    layout: str | None = None
    sequence: str | None = None
    tasks: tuple[str, ...] | None = None
    device: str = "cpu"
    float16: bool = False
    save_canvas: bool = False
    null_draws: int | None = None
    sanity: bool = False
    memory_budget: int | None = field(default=None, compare=False)
    trust_code: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise XincError(f"unknown device {self.device!r}; give one of {', '.join(DEVICES)}")
        if self.steps <= 0:
            raise XincError(f"steps must be a positive integer, got {self.steps}")
        if self.memory_budget is not None and self.memory_budget < 1:
            raise XincError(f"--memory-budget must be a positive number of bytes, not {self.memory_budget}")
        if self.null_draws is not None and self.null_draws < 1:
            raise XincError(f"--null-draws must be a positive number of draws, not {self.null_draws}")

    @property
    def unit_id(self) -> str:
        """Folder name of the unit: ``<model>__<data>__<H>x<W>[__f<start>-<stop>]__seed<seed>[__<tracer>]``
        (the tracer only when one is named: two tracers of one model are two units)."""
        data = self.sequence if self.sequence else (Path(self.data).stem if _is_path(self.data) else self.data)
        parts = [self.model, data, f"{self.size[0]}x{self.size[1]}"]
        if self.frames is not None:
            stop = "" if self.frames.stop is None else self.frames.stop
            step = "" if self.frames.step == 1 else f"-{self.frames.step}"
            parts.append(f"f{self.frames.start}-{stop}{step}")
        parts.append(f"seed{self.seed}")
        if self.tracer is not None:
            parts.append(self.tracer)
        return "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part) for part in parts)

    def describe(self) -> dict[str, Any]:
        """The unit's settings as JSON-serialisable values."""
        return {
            "unit": self.unit_id,
            "model": self.model,
            "data": self.data,
            "layout": self.layout,
            "sequence": self.sequence,
            "seed": self.seed,
            "size": f"{self.size[0]}x{self.size[1]}",
            "frames": None if self.frames is None else str(self.frames),
            "steps": self.steps,
            "lr": self.lr,
            "schedule": self.schedule,
            "batch_frames": self.batch_frames,
            "tracer": self.tracer,
            "layers": None if self.layers is None else list(self.layers),
            "masks": self.masks,
            "flow": self.flow,
            "tasks": None if self.tasks is None else list(self.tasks),
            "device": self.device,
            "float16": self.float16,
            "save_canvas": self.save_canvas,
            "null_draws": self.null_draws,
            "sanity": self.sanity,
        }


def _is_path(spec: str) -> bool:
    return any(sep in spec for sep in "/\\") or bool(Path(spec).suffix)
