"""What the side-by-side benchmark scripts share: run each variant in its own subprocess and time it.

A variant is a zero-argument function doing the measured work once. :func:`measure` runs it once
untimed (allocator, caches, lazy initialisation), then ``runs`` timed times, and reports the fastest
wall-clock and CPU time (all threads, which a busy machine disturbs less), the median wall-clock
time and the peak resident memory above the process's size before the first run. :func:`spawn`
runs a script's ``--variant`` in a fresh interpreter, so each peak is the variant's own.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """The process's resident memory now, in MiB (NaN where /proc is absent)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def measure(once: Callable[[], None], runs: int) -> dict[str, float]:
    """Time ``once``: a warm-up run when ``runs > 1``, then ``runs`` timed runs (see the module docstring)."""
    baseline = rss_mb()
    if runs > 1:
        once()
    times, cpu_times = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        once()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": min(times), "median": statistics.median(times), "cpu_seconds": min(cpu_times),
            "peak_extra_mb": peak - baseline}


def spawn(module: str, arguments: Sequence[str]) -> dict[str, float]:
    """Run ``python -m <module> <arguments>`` from the repository root; the JSON on its last output line."""
    out = subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])
