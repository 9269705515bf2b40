"""What a unit will hold in memory and write to disk, stated and checked before any work.

A unit traces its canvases a window of frames at a time (every layer of those frames together) and
hands each block to every probe while it is in memory. Its peak memory is, per window of ``F``
frames, the traced window (every layer, in the trace's dtype) plus up to :func:`block_copies`
float32 copies of the largest layer's block (``|C|`` and the probes' temporaries; the float32 read
of a float16 window or of a canvas file; the shuffled control's copy of a file's block), on top of :data:`RESERVE` for the model, the signal, the
probes' per-pixel state and the interpreter, and of what the probes hold across blocks (their
samples of the canvas, carried frames, maps from the model:
:meth:`~xinc_bench.probes.base.Task.held_bytes`, once: each canvas, the trained model's and its
controls', is probed in passes of its own). :func:`plan_unit` picks the largest ``F`` that fits the memory budget and
refuses a budget that cannot hold one frame; the disk holds the checkpoints, the signal, the
preview and the records, and both canvases only with ``--save-canvas``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import XincError

#: memory set aside for everything but the canvas (model, signal, probe state, interpreter)
RESERVE = 2 << 30
#: fraction of the machine's memory a unit may use by default
DEFAULT_FRACTION = 0.6
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def physical_memory() -> int:
    """Bytes of memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_budget() -> int:
    """The default budget: :data:`DEFAULT_FRACTION` of the machine's memory."""
    return int(DEFAULT_FRACTION * physical_memory())


def parse_bytes(text: str) -> int:
    """A size such as ``12GiB``, ``8G``, ``512MB`` or ``1073741824`` in bytes (G = 10^9, GiB = 2^30).

    Raises:
        XincError: not a positive size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise XincError(f"--memory-budget {text!r} is not a positive size; give e.g. 12GiB, 8G or 512MB")
    return int(float(match.group(1)) * _UNITS[unit])


def size_text(num_bytes: float) -> str:
    """``num_bytes`` for people: ``3.1 GB``, ``420 MB``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{int(num_bytes)} B"


def block_copies(dtype: np.dtype, save_canvas: bool) -> int:
    """float32 copies of the largest layer's block a pass holds besides the traced window.

    Two always: ``|C|``, which the probes share, and their temporaries. One more when the block is
    read as a float32 copy (of a float16 window, or from a canvas file with ``--save-canvas``), and
    one more for a file's spatial-shuffle control, which shuffles a copy (a traced block is its
    reader's own and is shuffled in place, :meth:`~xinc_bench.canvas.canvas.Canvas.reads_fresh`).
    """
    copies = 2
    if save_canvas or np.dtype(dtype) != np.float32:
        copies += 1
    if save_canvas:
        copies += 1
    return copies


@dataclass(frozen=True)
class UnitPlan:
    """How a unit will use memory and disk.

    Attributes:
        frames_per_window: frames of every layer traced (and probed) at once.
        window_bytes: bytes of one traced window.
        block_bytes: bytes of one float32 block of the largest layer.
        held_bytes: bytes the probes hold across blocks.
        peak_bytes: the estimated peak memory.
        budget: the memory budget.
        disk_bytes: bytes the unit writes.
        saved_canvas_bytes: bytes of the two canvas files among them (0 without ``--save-canvas``).
    """

    frames_per_window: int
    window_bytes: int
    block_bytes: int
    held_bytes: int
    peak_bytes: int
    budget: int
    disk_bytes: int
    saved_canvas_bytes: int

    def statement(self) -> str:
        """One line: what the unit will hold and write."""
        canvases = (f", both canvases {size_text(self.saved_canvas_bytes)} (--save-canvas)"
                    if self.saved_canvas_bytes else "; the canvases are streamed, not written")
        held = f"; the probes' samples {size_text(self.held_bytes)}" if self.held_bytes else ""
        return (f"memory: about {size_text(self.peak_bytes)} of the {size_text(self.budget)} budget "
                f"({self.frames_per_window} frame{'s' if self.frames_per_window > 1 else ''} of every layer traced "
                f"at once, {size_text(self.window_bytes)}{held}); disk: {size_text(self.disk_bytes)}{canvases}")


def plan_unit(counts: dict[str, int], shape: tuple[int, int, int], dtype: np.dtype, *, budget: int | None,
              save_canvas: bool, out: Path, signal_bytes: int, held_bytes: int = 0) -> UnitPlan:
    """The unit's plan, refused before any work when memory or disk cannot hold it.

    Args:
        counts: layer -> neurons traced; shape: ``(T, H, W)``; dtype: the trace's (and canvas files') dtype.
        budget: the memory budget (``None``: :func:`default_memory_budget`).
        save_canvas: both canvases are written as files.
        out: the run folder (its disk is checked); signal_bytes: bytes of the signal file and checkpoints.
        held_bytes: bytes the probes hold across blocks (one canvas's accumulators).

    Raises:
        XincError: one line with the sizes: the budget cannot hold one frame of every layer, or the
            disk cannot hold what the unit writes.
    """
    budget = default_memory_budget() if budget is None else int(budget)
    num_frames, height, width = shape
    itemsize = np.dtype(dtype).itemsize
    window_frame = sum(counts.values()) * height * width * itemsize
    block_frame = max(counts.values()) * height * width * 4
    copies = block_copies(dtype, save_canvas)
    per_frame = window_frame + copies * block_frame
    frames = min(num_frames, (budget - RESERVE - held_bytes) // per_frame)
    if frames < 1:
        held = f", the probes' samples {size_text(held_bytes)}" if held_bytes else ""
        raise XincError(
            f"--memory-budget {size_text(budget)} cannot hold one frame of the canvas: tracing and probing one "
            f"frame of every layer takes about {size_text(RESERVE + held_bytes + per_frame)} ({size_text(window_frame)} "
            f"traced, {copies} copies of the largest layer's {size_text(block_frame)}{held}); give a larger "
            "--memory-budget, a smaller --size, fewer --layers or --tasks, or --float16")
    saved = 2 * num_frames * window_frame if save_canvas else 0
    plan = UnitPlan(frames_per_window=int(frames), window_bytes=int(frames * window_frame),
                    block_bytes=int(frames * block_frame), held_bytes=int(held_bytes),
                    peak_bytes=int(RESERVE + held_bytes + frames * per_frame),
                    budget=budget, disk_bytes=int(signal_bytes + saved), saved_canvas_bytes=int(saved))
    folder = Path(out).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if plan.disk_bytes > free:
        fix = ("drop --save-canvas (the canvases are then streamed), or store them as --float16, "
               if save_canvas else "")
        raise XincError(f"the run writes {size_text(plan.disk_bytes)} but {folder} has {size_text(free)} free; "
                        f"free some space, write elsewhere, {fix}or trace fewer frames or a smaller --size")
    return plan
