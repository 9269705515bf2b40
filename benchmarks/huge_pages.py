"""``xinc-bench run`` with large tensors on transparent huge pages, against 4 KiB pages, side by side.

``import xinc_bench`` sets PyTorch's ``THP_MEM_ALLOC_ENABLE=1`` unless the user set it: large CPU
tensors are then aligned to 2 MiB and advised as huge pages (the kernel's ``madvise`` mode, the
default of most distributions). This runs the same ``xinc-bench run`` twice, each in its own
process, with ``THP_MEM_ALLOC_ENABLE=0`` and ``=1``, and prints for each its wall, user and system
CPU time, minor page faults and peak resident memory (from the child's resource usage), the ratios,
and whether the records' scores, nulls and controls are the same.

Usage: ``python -m benchmarks.huge_pages [--model nerv-paper] [--size 64x128] [--frames 2] [--draws 2]
[--memory-budget 20GB]``.
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


def _run(setting: str, argv: list[str], out: Path) -> dict[str, float]:
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": setting}
    command = [sys.executable, "-m", "xinc_bench.cli", "run", *argv, "--out", str(out), "--no-progress"]
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a full pipe would stall the run
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            raise SystemExit(f"THP_MEM_ALLOC_ENABLE={setting}: xinc-bench run failed:\n{stderr.read()}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "faults": usage.ru_minflt,
            "peak": usage.ru_maxrss / 1024**2}


def _scores(records: Path) -> dict[str, object]:
    """record -> its scores, nulls and controls (what must not depend on the pages)."""
    recorded = {path.name: json.loads(path.read_text()) for path in sorted(records.glob("*.json"))}
    return {name: {key: record[key] for key in ("scores", "nulls", "controls")} for name, record in recorded.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nerv-paper")
    parser.add_argument("--data", default="bikes")
    parser.add_argument("--size", default="64x128")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--draws", type=int, default=2, help="null draws (at least 1)")
    parser.add_argument("--memory-budget", help="passed to xinc-bench run (the paper's frame size plans 19 GB)")
    args = parser.parse_args()
    argv = ["--model", args.model, "--data", args.data, "--size", args.size, "--frames", f"0:{args.frames}",
            "--steps", str(args.steps), "--null-draws", str(args.draws)]
    if args.memory_budget:
        argv += ["--memory-budget", args.memory_budget]
    figures, scores = {}, {}
    with tempfile.TemporaryDirectory(prefix="xinc-huge-pages-") as scratch:
        for setting, name in (("0", "4 KiB pages (THP_MEM_ALLOC_ENABLE=0)"),
                              ("1", "huge pages (THP_MEM_ALLOC_ENABLE=1, the default)")):
            out = Path(scratch) / f"thp{setting}"
            figures[name] = _run(setting, argv, out)
            scores[name] = _scores(out / "records")
    print(f"xinc-bench run {' '.join(argv)}; transparent huge pages: {_transparent_huge_pages()}")
    print("| pages | wall | user CPU | system CPU | minor faults | peak memory | wall vs 4 KiB pages |")
    print("|---|---|---|---|---|---|---|")
    base = next(iter(figures.values()))
    for name, f in figures.items():
        print(f"| {name} | {f['wall']:.1f} s | {f['user']:.1f} s | {f['sys']:.1f} s | {f['faults'] / 1e6:.2f} M "
              f"| {f['peak']:.2f} GiB | {f['wall'] / base['wall']:.2f}x |")
    first, second = scores.values()
    print(f"scores, nulls and controls of the {len(first)} records identical: {first == second}")


if __name__ == "__main__":
    main()
