"""What the benchmarks share: peak memory above a start, and for the side-by-side scripts, each
variant run in its own subprocess and timed.

A variant is a zero-argument function doing the measured work once. :func:`measure` runs it once
untimed (allocator, caches, lazy initialisation), then ``runs`` timed times, and reports the fastest
wall-clock and CPU time (all threads, which a busy machine disturbs less), the median wall-clock
time and the peak resident memory above the process's size before the first run. :func:`spawn`
runs a script's ``--variant`` in a fresh interpreter, so each peak is the variant's own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from xinc_bench.errors import XincError

ROOT = Path(__file__).resolve().parent.parent


class PeakMemory:
    """Peak resident memory above the resident size at :meth:`start`, from ``/proc/self/status``."""

    def __init__(self) -> None:
        self.start_mb = 0.0

    def start(self) -> None:
        """Reset the peak to the current resident size (where the kernel allows it) and remember that size."""
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:  # the peak stays the process's own since it began: an upper bound
            pass
        self.start_mb = _status_mb("VmRSS")

    def above_start(self) -> float:
        """MiB by which the peak since :meth:`start` exceeds the resident size at :meth:`start`."""
        return _status_mb("VmHWM") - self.start_mb


def _status_mb(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` of this process, MiB."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise XincError(f"/proc/self/status gives no {key}: the benchmarks measure memory on Linux only")


def measure(once: Callable[[], None], runs: int) -> dict[str, float]:
    """Time ``once``: a warm-up run when ``runs > 1``, then ``runs`` timed runs (see the module docstring)."""
    meter = PeakMemory()
    meter.start()
    if runs > 1:
        once()
    times, cpu_times = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        once()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    return {"seconds": min(times), "median": statistics.median(times), "cpu_seconds": min(cpu_times),
            "peak_extra_mb": meter.above_start()}


def spawn(module: str, arguments: Sequence[str]) -> dict[str, float]:
    """Run ``python -m <module> <arguments>`` from the repository root; the JSON on its last output line."""
    out = subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])
