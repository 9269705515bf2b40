"""The regression check on real tiny runs: an unchanged model passes, a changed one fails."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from xinc_bench import cli
from xinc_bench.errors import XincError
from xinc_bench.results.check import (
    Tolerance,
    check,
    parse_tolerance,
    tolerance_for,
)
from xinc_bench.probes.base import load_task
from xinc_bench.results.leaderboard import build_leaderboard, headline_metric
from xinc_bench.runs import UnitSpec, run_unit

UNIT = UnitSpec(model="ffn-paper", data="astronaut", seed=0, size=(16, 32), steps=40, tasks=("distribution",))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same smoke model trained three times: baseline, an identical rerun, and 4 steps only."""
    root = tmp_path_factory.mktemp("check")
    folders = {}
    for name, steps in (("baseline", 40), ("rerun", 40), ("undertrained", 4)):
        unit = dataclasses.replace(UNIT, steps=steps)
        run_unit(unit, root / name / unit.unit_id)
        folders[name] = root / name
    csv = root / "baseline.csv"
    build_leaderboard(folders["baseline"]).to_csv(csv, index=False, float_format="%.6g")
    folders["csv"] = csv
    return folders


def test_unchanged_model_passes_against_records_and_csv(runs: dict[str, Path]) -> None:
    for baseline in (runs["baseline"], runs["csv"]):
        result = check(runs["rerun"], baseline, 0.0, strict=True)
        assert result.passed, result.report()
        assert set(result.table["status"]) == {"ok"}
        headline = f"distribution/{headline_metric(load_task('distribution'))}"
        assert set(result.table["metric"]) == {"psnr_db", "ssim", headline}  # the task's one headline score


def test_undertrained_model_fails_with_a_readable_table(runs: dict[str, Path]) -> None:
    result = check(runs["undertrained"], runs["csv"], {"default": 0.01, "psnr_db": 0.5})
    assert not result.passed
    psnr = result.table.set_index("metric").loc["psnr_db"]
    baseline_psnr = build_leaderboard(runs["baseline"])["psnr_db"].iloc[0]
    assert psnr["baseline"] == pytest.approx(baseline_psnr, rel=1e-5)
    assert psnr["current"] < psnr["baseline"] - 0.5
    assert (psnr["status"], psnr["tolerance"], bool(psnr["fails"])) == ("regressed", 0.5, True)
    report = result.report()
    assert report.startswith("xinc-bench check FAILED")
    header = report.splitlines()[1].split()
    assert header == ["model", "data", "size", "metric", "baseline", "current", "delta", "tolerance", "status"]
    assert any(line.split()[3:4] == ["psnr_db"] and line.split()[-1] == "regressed" for line in report.splitlines())


def test_huge_tolerance_lets_the_changed_model_pass(runs: dict[str, Path]) -> None:
    result = check(runs["undertrained"], runs["baseline"], 100.0)
    assert result.passed and set(result.table["status"]) == {"ok"}


def test_strict_fails_improvements_too(runs: dict[str, Path]) -> None:
    # the baseline is better trained than the undertrained run, so checked the other way round it improved
    lenient = check(runs["baseline"], runs["undertrained"], {"default": 100.0, "psnr_db": 0.5})
    assert lenient.passed
    assert lenient.table.set_index("metric").loc["psnr_db", "status"] == "improved"
    assert not check(runs["baseline"], runs["undertrained"], {"default": 100.0, "psnr_db": 0.5}, strict=True).passed


def test_missing_metric_fails(runs: dict[str, Path], tmp_path: Path) -> None:
    table = pd.read_csv(runs["csv"])
    table["distribution/extra ↑"] = 1.0
    baseline = tmp_path / "with_extra.csv"
    table.to_csv(baseline, index=False)
    result = check(runs["rerun"], baseline, 0.0)
    assert result.table.set_index("metric").loc["distribution/extra", "status"] == "missing"
    assert not result.passed


def test_check_command_exit_codes(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ok = ["check", "--records", str(runs["rerun"]), "--baseline", str(runs["csv"]), "--tolerance", "0.05"]
    assert cli.main(ok) == 0
    assert "PASSED" in capsys.readouterr().out
    bad = ["check", "--records", str(runs["undertrained"]), "--baseline", str(runs["csv"]),
           "--tolerance", "0.01", "--tolerance", "psnr_db=0.5"]
    assert cli.main(bad) == 1
    assert "regressed" in capsys.readouterr().out


def test_bad_inputs_raise(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(XincError, match="does not exist"):
        check(runs["rerun"], tmp_path / "nope.csv", 0.0)
    other = tmp_path / "other.csv"
    table = pd.read_csv(runs["csv"]).assign(model="someone-else")
    table.to_csv(other, index=False)
    with pytest.raises(XincError, match="none of the records' rows"):
        check(runs["rerun"], other, 0.0)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(XincError, match="neither a leaderboard .csv"):
        check(runs["rerun"], tmp_path / "notes.txt", 0.0)
    with pytest.raises(XincError, match="invalid tolerance"):
        check(runs["rerun"], runs["csv"], "-1")


def test_tolerance_parsing_and_lookup() -> None:
    parsed = parse_tolerance(["0.02", "psnr_db=0.5", "clustering/*=10%"])
    assert parsed == {"default": Tolerance(absolute=0.02), "psnr_db": Tolerance(absolute=0.5),
                      "clustering/*": Tolerance(relative=0.1)}
    assert tolerance_for("clustering/silhouette", parsed).allowed(2.0) == pytest.approx(0.2)
    assert tolerance_for("psnr_db", parsed).allowed(30.0) == 0.5
    assert tolerance_for("color/r2", parsed).allowed(-7.0) == 0.02
    assert parse_tolerance(0.1) == {"default": Tolerance(absolute=0.1)}
    assert math.isclose(parse_tolerance("5%")["default"].allowed(-20.0), 1.0)


def test_a_moved_copy_of_the_baseline_still_matches(runs: dict[str, Path], tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(runs["baseline"], moved)
    assert check(runs["rerun"], moved, 0.0, strict=True).passed
