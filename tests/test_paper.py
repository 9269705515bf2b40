"""`xinc-bench paper`: task variants, the verdict rule on constructed evidence whose answer is known,
a real (small) paper run with the released FFN, its report in a headless Chromium, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from browser import HeadlessChromium
from xinc_bench.cli import main
from xinc_bench.errors import XincError
from xinc_bench.paper.build import MARKER, release_folder, run_paper
from xinc_bench.paper.claims import (
    CLAIMS,
    DEPENDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_SUPPORTED,
    SUPPORTED,
    judge,
)
from xinc_bench.paper.evidence import KEY, Evidence
from xinc_bench.probes.base import default_tasks, load_task
from xinc_bench.results.leaderboard import _model_label
from xinc_bench.runs import UnitSpec
from xinc_bench.runs.suite import load_suite
from xinc_bench.runs.unit import unit_tasks

CLAIM = {claim.key: claim for claim in CLAIMS}
BROKEN_IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"


# --- task variants -------------------------------------------------------------------------------

def test_a_variant_is_its_parent_with_the_changed_parameters() -> None:
    parent, variant = load_task("partitions"), load_task("partitions-strided-grid")
    assert variant.variant_of == "partitions" and parent.variant_of is None
    assert variant.params == {**parent.params, "grid": "strided"}
    assert (variant.version, variant.probe, variant.headline, variant.metrics, variant.nulls, variant.needs) == \
        (parent.version, parent.probe, parent.headline, parent.metrics, parent.nulls, parent.needs)
    assert load_task("partitions-gabor6").params["gabor_bank"] == "reference"
    assert load_task("partitions-reference-other").params["other_instance"] == "reference"


def test_variants_run_only_when_named() -> None:
    defaults = default_tasks()
    assert "partitions" in defaults and not any(name.startswith("partitions-") for name in defaults)
    spec = UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32))
    assert "partitions-strided-grid" not in unit_tasks(spec)
    named = UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32), tasks=("partitions-strided-grid",))
    assert unit_tasks(named) == ("partitions-strided-grid",)


@pytest.mark.parametrize("content, message", [
    ("name: v2\nvariant_of: v1\nparams: {grid: strided}\n", "itself a variant"),
    ("name: v1\nvariant_of: partitions\nversion: 9\nparams: {}\n", "a variant gives only"),
])
def test_a_malformed_variant_is_refused_with_the_fix(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "partitions.yaml").write_text((Path(__file__).parents[1] / "tasks" / "partitions.yaml").read_text())
    (tmp_path / "v1.yaml").write_text("name: v1\nvariant_of: partitions\nparams: {grid: strided}\n")
    (tmp_path / "bad.yaml").write_text(content)
    assert load_task("v1", tmp_path).params["grid"] == "strided"
    with pytest.raises(XincError, match=message):
        load_task("bad", tmp_path)


def test_two_tracers_of_one_model_are_two_units_and_two_leaderboard_rows() -> None:
    plain = UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32))
    signed = UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32), tracer="mlp-signed")
    assert plain.unit_id == "ffn-paper__astronaut__16x32__seed0"
    assert signed.unit_id == "ffn-paper__astronaut__16x32__seed0__mlp-signed"
    assert _model_label({"name": "ffn-paper", "tracer": "mlp"}) == "ffn-paper"  # its own tracer: no label
    assert _model_label({"name": "ffn-paper", "tracer": "mlp-signed"}) == "ffn-paper[tracer=mlp-signed]"


def test_the_quick_suite_runs_every_variant_of_a_claim_it_judges() -> None:
    suite = load_suite("paper-quick")
    ffn = [unit for unit in suite.units if unit.model == "ffn-paper"]
    assert {unit.tracer for unit in ffn} == {None, "mlp-signed"} and {unit.seed for unit in ffn} == {0, 1, 2}
    variants = {"partitions-strided-grid", "partitions-gabor6", "partitions-reference-other"}
    assert all(variants <= set(unit.tasks) for unit in suite.units if unit.frames is None)
    assert {unit.data for unit in suite.units if unit.model == "nerv-paper"} == {"synthetic-moving", "bikes"}


# --- the verdict rule on constructed evidence ------------------------------------------------------

def _row(task: str, metric: str, values: tuple[float, float, float], *, effect: float = 10.0, tracer: str = "mlp",
         insensitive: bool | None = False, architecture: str = "m", seeds: int = 3) -> dict:
    mean, low, high = values
    return {"architecture": architecture, "data": "d", "tracer": tracer, "task": task, "layer": "", "metric": metric,
            "seeds": seeds, "mean": mean, "low": low, "high": high, "null_mean": 0.5, "null_sd": 0.01,
            "effect": effect, "movement": 0.0 if insensitive else 9.0, "insensitive": insensitive, "psnr": 30.0,
            "default_tracer": tracer == "mlp", "first_unit": "u"}


def _evidence(*rows: dict) -> Evidence:
    frame = pd.DataFrame(list(rows))
    assert set(KEY) <= set(frame.columns)
    return Evidence(frame)


def test_a_claim_is_supported_only_when_every_interval_clears_its_threshold_beyond_the_null() -> None:
    space = CLAIM["space-agnostic"]
    agnostic = _evidence(_row("partitions", "spatial_agnosticism", (0.7, 0.65, 0.75)))
    assert judge(space, agnostic, "m", "d", "mlp").verdict == SUPPORTED
    spatial = _evidence(_row("partitions", "spatial_agnosticism", (0.3, 0.25, 0.35), effect=-8.0))
    assert judge(space, spatial, "m", "d", "mlp").verdict == NOT_SUPPORTED
    straddles = _evidence(_row("partitions", "spatial_agnosticism", (0.55, 0.45, 0.65)))
    assert judge(space, straddles, "m", "d", "mlp").verdict == INCONCLUSIVE
    near_null = _evidence(_row("partitions", "spatial_agnosticism", (0.7, 0.65, 0.75), effect=1.5))
    assert judge(space, near_null, "m", "d", "mlp").verdict == INCONCLUSIVE
    nothing = _evidence(_row("distribution", "gini", (0.7, 0.65, 0.75)))
    assert judge(space, nothing, "m", "d", "mlp").verdict == NOT_MEASURED


def test_a_negative_claim_is_supported_below_its_threshold_and_parts_must_agree() -> None:
    objects = CLAIM["objects"]
    colour_led = _evidence(_row("partitions", "object_vs_color", (0.3, 0.28, 0.32), effect=-5.0))
    assert judge(objects, colour_led, "m", "d", "mlp").verdict == SUPPORTED
    bias = CLAIM["colour-edges"]
    half = _evidence(_row("partitions", "color_bias", (0.8, 0.75, 0.85)),
                     _row("partitions", "edge_bias", (0.3, 0.25, 0.35), effect=-4.0))
    assert judge(bias, half, "m", "d", "mlp").verdict == INCONCLUSIVE


def test_a_single_checkpoint_is_judged_on_its_value_and_the_distribution_rule_ignores_the_null() -> None:
    distributed = CLAIM["distributed"]
    release = _evidence(_row("distribution", "neurons_per_pixel_a0.1", (0.2, math.nan, math.nan), effect=0.0, seeds=1),
                        _row("distribution", "pixels_per_neuron", (0.15, math.nan, math.nan), effect=-1.0, seeds=1))
    assert judge(distributed, release, "m", "d", "mlp").verdict == SUPPORTED
    sparse = _evidence(_row("distribution", "neurons_per_pixel_a0.1", (0.02, 0.01, 0.03)),
                       _row("distribution", "pixels_per_neuron", (0.05, 0.04, 0.06)))
    assert judge(distributed, sparse, "m", "d", "mlp").verdict == NOT_SUPPORTED


def test_scores_that_a_destroyed_model_leaves_in_place_decide_nothing() -> None:
    space = CLAIM["space-agnostic"]
    insensitive = _evidence(_row("partitions", "spatial_agnosticism", (0.7, 0.65, 0.75), insensitive=True))
    verdict = judge(space, insensitive, "m", "d", "mlp")
    assert verdict.verdict == INCONCLUSIVE and verdict.default.insensitive


def test_a_variant_that_changes_a_definite_verdict_makes_it_depend_on_the_method() -> None:
    space = CLAIM["space-agnostic"]
    lattice = _evidence(_row("partitions", "spatial_agnosticism", (0.55, 0.45, 0.65)),
                        _row("partitions-strided-grid", "spatial_agnosticism", (0.94, 0.93, 0.95), effect=40.0))
    verdict = judge(space, lattice, "m", "d", "mlp")
    assert verdict.default.verdict == INCONCLUSIVE and verdict.variants["grid"].verdict == SUPPORTED
    assert verdict.verdict == DEPENDS and verdict.deciding_variants == ["grid"]
    agreeing = _evidence(_row("partitions", "spatial_agnosticism", (0.7, 0.65, 0.75)),
                         _row("partitions-strided-grid", "spatial_agnosticism", (0.94, 0.93, 0.95)),
                         _row("partitions", "spatial_agnosticism", (0.72, 0.66, 0.78), tracer="mlp-signed"))
    verdict = judge(space, agreeing, "m", "d", "mlp")
    assert verdict.verdict == SUPPORTED and set(verdict.variants) == {"grid", "tracer"}


# --- a real paper run (slow: the released FFN is traced and probed at its 128x256, twice) --------------

TINY_SUITE = """\
name: paper-test
description: a paper run small enough for the tests
seeds: [0, 1]
sanity_seeds: [0]
tasks: [distribution, partitions, partitions-strided-grid]
groups:
  - size: 16x32
    steps: 20
    data: [astronaut]
    models: [ffn-paper]
  - size: 16x32
    steps: 20
    tracer: mlp-signed
    data: [astronaut]
    models: [ffn-paper]
"""


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """A paper report of a tiny suite (ffn-paper with both tracers, 2 seeds) and the released FFN."""
    root = tmp_path_factory.mktemp("paper")
    suite = root / "suite.yaml"
    suite.write_text(TINY_SUITE)
    result = run_paper("quick", root / "report", release=reference_dir / "best_model.ckpt", suite=suite)
    assert result.failed == {}
    return root / "report"


@pytest.mark.slow
def test_the_report_judges_every_model_with_the_numbers_behind_it(paper: Path) -> None:
    marker = json.loads((paper / MARKER).read_text())
    assert marker["state"] == "complete" and marker["seconds"] > 0
    assert set(marker["verdicts"]) == {"released FFN · Cityscapes-VPS 0005 frame", "ffn-paper · astronaut"}
    for verdicts in marker["verdicts"].values():
        assert "motion" not in verdicts  # no video: the motion claim does not apply
        assert verdicts["space-agnostic"] in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, DEPENDS)
    evidence = pd.read_csv(paper / "evidence.csv")
    trained = evidence[(evidence["architecture"] == "ffn-paper") & (evidence["layer"].isna())
                       & (evidence["task"] == "partitions") & (evidence["metric"] == "spatial_agnosticism")]
    assert set(trained["tracer"]) == {"mlp", "mlp-signed"} and set(trained["seeds"]) == {2}
    record = json.loads((paper / "runs" / "ffn-paper__astronaut__16x32__seed1" / "records" / "partitions.json")
                        .read_text())
    seed0 = json.loads((paper / "runs" / "ffn-paper__astronaut__16x32__seed0" / "records" / "partitions.json")
                       .read_text())
    row = trained[trained["tracer"] == "mlp"].iloc[0]
    expected = (record["scores"]["spatial_agnosticism"] + seed0["scores"]["spatial_agnosticism"]) / 2
    assert row["mean"] == pytest.approx(expected) and row["low"] <= row["mean"] <= row["high"]
    release_dir = paper / "runs" / release_folder("mlp-signed")
    release = json.loads((release_dir / "records" / "partitions.json").read_text())
    assert release["model"]["tracer"] == "mlp-signed" and release["data"]["height"] == 128
    assert set(release["controls"]) == {"shuffled", "random_init"}  # a fresh twin with the release's Fourier matrix
    sanity = json.loads((release_dir / "records" / "sanity.json").read_text())
    assert set(sanity["tasks"]) == {"distribution", "partitions", "partitions-strided-grid"}
    text = (paper / "report.md").read_text()
    assert "## Verdicts" in text and "How a verdict is decided" in text
    for claim in CLAIMS:
        assert f"## {claim.number}. {claim.title}" in text


@pytest.mark.slow
def test_a_second_run_keeps_every_unit_and_record(paper: Path, reference_dir: Path) -> None:
    records = sorted(paper.rglob("records/*.json"))
    before = {path: path.stat().st_mtime_ns for path in records}
    suite = paper.parent / "suite.yaml"
    result = run_paper("quick", paper, release=reference_dir / "best_model.ckpt", suite=suite)
    assert all(outcome.result.untouched for outcome in result.outcomes)
    assert {path: path.stat().st_mtime_ns for path in records} == before


@pytest.mark.slow
def test_the_html_report_shows_the_verdict_table_and_every_figure(paper: Path, browser: HeadlessChromium,
                                                                   tmp_path: Path) -> None:
    page = paper / "report.html"
    browser.open(page)
    assert browser.evaluate("document.title") == "The XINC paper's findings, re-measured"
    assert browser.evaluate(BROKEN_IMAGES) == []
    images = browser.evaluate("document.images.length")
    assert images == len(list((paper / "report_assets").iterdir())) and images >= 8
    summary = browser.evaluate("Array.from(document.querySelector('table.paper').tBodies[0].rows)"
                               ".map(r => Array.from(r.cells).map(c => c.textContent))")
    marker = json.loads((paper / MARKER).read_text())
    assert [cells[0] for cells in summary] == list(marker["verdicts"])
    for cells in summary:
        verdicts = marker["verdicts"][cells[0]]
        assert [cells[2 + index].startswith(verdicts[claim.key]) for index, claim in enumerate(CLAIMS)
                if claim.key in verdicts] == [True] * len(verdicts)
    coloured = browser.evaluate("document.querySelectorAll('td.supported, td.not-supported, td.inconclusive, "
                                "td.depends').length")
    assert coloured >= len(summary) * 4
    shot = browser.screenshot(tmp_path / "paper.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- bad input -------------------------------------------------------------------------------------

def test_a_folder_of_something_else_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["paper", "--quick", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "not a paper report" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_missing_release_is_refused_with_where_to_find_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["paper", "--out", str(tmp_path / "report"), "--release", str(tmp_path / "nope.ckpt")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "released FFN checkpoint" in error and "--release" in error
    assert not (tmp_path / "report").exists()


def test_a_report_of_the_other_mode_is_not_resumed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / MARKER).write_text(json.dumps({"mode": "quick"}))
    assert main(["paper", "--full", "--out", str(tmp_path)]) == 2
    assert "holds a --quick paper report" in capsys.readouterr().err
