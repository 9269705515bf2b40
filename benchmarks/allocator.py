"""``xinc-bench run`` with and without each of the library's two allocation settings, side by side.

Two settings decide where the large temporaries of the tracer and the probes come from:

* ``--compare pages``: ``import xinc_bench`` sets PyTorch's ``THP_MEM_ALLOC_ENABLE=1`` unless the
  user set it, so large CPU tensors are aligned to 2 MiB and advised as transparent huge pages (the
  kernel's ``madvise`` mode, the default of most distributions). Arms: ``THP_MEM_ALLOC_ENABLE=0``
  (4 KiB pages) and ``=1``.
* ``--compare heap``: while a canvas is probed, every allocation is served from the C heap and the
  free memory is returned after each block (:mod:`xinc_bench.heap`), rather than each large
  temporary being mapped, faulted in and zeroed afresh. Arms: ``MALLOC_MMAP_MAX_=65536`` (glibc's
  default, which the library then leaves alone) and unset.
* ``--compare trim``: inside that heap, ``free`` keeps what it frees until the end of the block
  (the trim threshold raised), rather than handing the heap's top back to the kernel on every free
  of more than 128 KiB, so that each chunked float64 temporary is faulted in and zeroed again.
  Arms: ``MALLOC_TRIM_THRESHOLD_=131072`` (glibc's default threshold, which the library then leaves
  alone; set this way, glibc no longer raises it as it frees mapped chunks, up to 64 MiB) and unset.

It runs the same ``xinc-bench run`` once per arm, each in its own process, and prints for each its
wall, user and system CPU time, minor page faults and peak resident memory (from the child's
resource usage), the ratios, and whether the records' scores, nulls and controls are the same.

Usage: ``python -m benchmarks.allocator [--compare pages|heap|trim] [--model nerv-paper] [--size 64x128]
[--frames 2] [--draws 2] [--memory-budget 20GB]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _transparent_huge_pages() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return "unknown (no /sys/kernel/mm/transparent_hugepage)"


#: per comparison, its arms: (name, the environment variable set, its value; None: unset)
ARMS = {
    "pages": (("4 KiB pages (THP_MEM_ALLOC_ENABLE=0)", "THP_MEM_ALLOC_ENABLE", "0"),
              ("huge pages (THP_MEM_ALLOC_ENABLE=1, the default)", "THP_MEM_ALLOC_ENABLE", "1")),
    "heap": (("each large temporary mapped afresh (MALLOC_MMAP_MAX_=65536)", "MALLOC_MMAP_MAX_", "65536"),
             ("the heap reused (the default)", "MALLOC_MMAP_MAX_", None)),
    "trim": (("the heap's top trimmed on each free (MALLOC_TRIM_THRESHOLD_=131072)", "MALLOC_TRIM_THRESHOLD_", "131072"),
             ("freed memory kept until the block ends (the default)", "MALLOC_TRIM_THRESHOLD_", None)),
}


def _run(variable: str, setting: str | None, argv: list[str], out: Path) -> dict[str, float]:
    env = {key: value for key, value in os.environ.items() if key != variable}
    if setting is not None:
        env[variable] = setting
    command = [sys.executable, "-m", "xinc_bench.cli", "run", *argv, "--out", str(out), "--no-progress"]
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a full pipe would stall the run
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            raise SystemExit(f"{variable}={setting}: xinc-bench run failed:\n{stderr.read()}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "faults": usage.ru_minflt,
            "peak": usage.ru_maxrss / 1024**2}


def _scores(records: Path) -> dict[str, object]:
    """record -> its scores, nulls and controls (what must not depend on where memory comes from)."""
    recorded = {path.name: json.loads(path.read_text()) for path in sorted(records.glob("*.json"))}
    return {name: {key: record[key] for key in ("scores", "nulls", "controls")} for name, record in recorded.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=sorted(ARMS), default="heap")
    parser.add_argument("--model", default="nerv-paper")
    parser.add_argument("--data", default="bikes")
    parser.add_argument("--size", default="64x128")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--draws", type=int, default=2, help="null draws (at least 1)")
    parser.add_argument("--memory-budget", help="passed to xinc-bench run")
    args = parser.parse_args()
    argv = ["--model", args.model, "--data", args.data, "--size", args.size, "--frames", f"0:{args.frames}",
            "--steps", str(args.steps), "--null-draws", str(args.draws)]
    if args.memory_budget:
        argv += ["--memory-budget", args.memory_budget]
    figures, scores = {}, {}
    with tempfile.TemporaryDirectory(prefix="xinc-allocator-") as scratch:
        for index, (name, variable, setting) in enumerate(ARMS[args.compare]):
            out = Path(scratch) / f"arm{index}"
            figures[name] = _run(variable, setting, argv, out)
            scores[name] = _scores(out / "records")
    print(f"xinc-bench run {' '.join(argv)}; transparent huge pages: {_transparent_huge_pages()}")
    print("| allocation | wall | user CPU | system CPU | minor faults | peak memory | wall vs the first |")
    print("|---|---|---|---|---|---|---|")
    base = next(iter(figures.values()))
    for name, f in figures.items():
        print(f"| {name} | {f['wall']:.1f} s | {f['user']:.1f} s | {f['sys']:.1f} s | {f['faults'] / 1e6:.2f} M "
              f"| {f['peak']:.2f} GiB | {f['wall'] / base['wall']:.2f}x |")
    first, second = scores.values()
    print(f"scores, nulls and controls of the {len(first)} records identical: {first == second}")


if __name__ == "__main__":
    main()
