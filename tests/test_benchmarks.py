"""``python -m benchmarks``: the table holds every stage asked for, with finite times, peaks and ratios.

The entry point runs at a tiny size in a subprocess; its figures are not checked (no timing asserts),
only that every requested stage is there and measured.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}


def benchmarks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)


def table(stdout: str) -> dict[str, list[str]]:
    """stage -> the cells of its row (stage, what, time, peak memory, vs baseline, vs floor)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| stage |"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            assert len(cells) == 6, line
            rows[cells[0]] = cells
    return rows


def seconds(cell: str) -> float:
    number, unit = cell.rsplit(" ", 1)
    return float(number.replace(",", "")) * UNITS[unit]


def ratio(cell: str) -> float:
    """The ratio that begins a comparison cell (``"3.1x one forward pass (12 ms)"``)."""
    text, _ = cell.split("x ", 1)
    return float(text.replace(",", ""))


def check_measured(cells: list[str], peak: bool, floor: bool = False) -> None:
    stage, _, time_cell, peak_cell, baseline, floor_cell = cells
    assert math.isfinite(seconds(time_cell)) and seconds(time_cell) >= 0, stage
    if peak:
        assert peak_cell.startswith("+") and peak_cell.endswith("iB"), stage
    assert math.isfinite(ratio(baseline)) and ratio(baseline) >= 0, stage
    assert seconds(baseline.rsplit("(", 1)[1].rstrip(")")) > 0, stage
    if floor:
        assert math.isfinite(ratio(floor_cell)) and ratio(floor_cell) >= 0, stage


def test_a_canvas_and_the_probes_at_a_tiny_size() -> None:
    done = benchmarks("--size", "16x32", "--probe-size", "16x32", "--frames", "2", "--stages", "canvas-mlp,probes",
                      "--tasks", "color", "--null-draws", "1", "--no-alone")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table(done.stdout)
    assert set(rows) == {"canvas-mlp", "probes: color", "probes: shared pass"}
    check_measured(rows["canvas-mlp"], peak=True, floor=True)
    check_measured(rows["probes: shared pass"], peak=True)
    check_measured(rows["probes: color"], peak=False)
    assert rows["probes: color"][3] == "-"  # --no-alone: the task did not run alone for its own peak
    assert "the pass's reads" in rows["probes: color"][4]


@pytest.mark.slow
def test_every_stage_at_a_tiny_size() -> None:
    done = benchmarks("--size", "16x32", "--video-size", "16x32", "--probe-size", "16x32", "--frames", "2",
                      "--tasks", "color", "edges", "--null-draws", "1", "--fit-steps", "2", "--run-steps", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table(done.stdout)
    for stage in ("fit-mlp", "fit-cnn", "probes: color", "probes: edges", "probes: shared pass", "controls: stage",
                  "run"):
        check_measured(rows[stage], peak=True)
    assert "alone, reads included" in rows["probes: color"][1]
    for stage in ("canvas-mlp", "canvas-cnn", "canvas-hashgrid", "canvas-linear"):
        check_measured(rows[stage], peak=True, floor=True)
    for stage in ("controls: shuffled", "controls: random-init twin"):
        check_measured(rows[stage], peak=False)
    stage_lines = [cells for stage, cells in rows.items() if stage.startswith("run: ")]
    assert stage_lines and all(math.isfinite(seconds(cells[2])) for cells in stage_lines)


@pytest.mark.parametrize("args, message", [
    (["--stages", "canvas-mlp,nope"], "unknown stage nope"),
    (["--size", "128"], "invalid size '128'"),
    (["--frames", "0"], "'0' is not a positive integer"),
    (["--tasks", "nope"], "unknown task nope"),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    done = benchmarks(*args)
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1]
    assert done.stdout == ""


def test_a_stage_that_fails_is_named_and_the_exit_status_is_1() -> None:
    done = benchmarks("--video-size", "20x40", "--stages", "canvas-cnn")
    assert done.returncode == 1
    assert "stage canvas-cnn: error: a NeRV with total stride 16 needs" in done.stderr


def test_help_lists_every_stage() -> None:
    done = benchmarks("--help")
    assert done.returncode == 0
    for stage in ("fit-mlp", "fit-cnn", "canvas-mlp", "canvas-cnn", "canvas-hashgrid", "canvas-linear", "probes",
                  "controls", "run"):
        assert stage in done.stdout
