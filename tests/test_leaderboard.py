"""Leaderboards built from records: directions, ranks, seeds, tiers, stale versions, determinism."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from xinc_bench.errors import XincError
from xinc_bench.probes.base import Metric, Task, load_task
from xinc_bench.results.leaderboard import (
    PSNR_TIERS,
    build_leaderboard,
    markdown_table,
    psnr_tier,
    tier_view,
    write_leaderboard,
)
from xinc_bench.results.record import build_record, write_json_atomic

GINI = "distribution/gini ↑"
GINI_RANK = "distribution/gini rank"
PPN = "distribution/pixels_per_neuron ↓"
PPN_RANK = "distribution/pixels_per_neuron rank"


def write_record(
    root: Path,
    model: str,
    *,
    seed: int = 0,
    psnr: float = 25.0,
    scores: dict[str, float] | None = None,
    task: Task | None = None,
    size: tuple[int, int] = (16, 32),
    data: str = "astronaut",
) -> Path:
    """Write one record with ``build_record`` into the pipeline layout ROOT/<run>/records/<task>.json."""
    task = task or load_task("distribution")
    metadata = {
        "model": model,
        "model_config": {},
        "num_parameters": 1000,
        "bits_per_pixel": 8000 / (size[0] * size[1]),
        "data": {"data": data, "name": data, "num_frames": 1, "height": size[0], "width": size[1]},
        "seed": seed,
        "fidelity": {"psnr": psnr, "ssim": 0.5},
    }
    record = build_record(task, scores or {}, metadata)
    run = f"{model}_{data}_{size[0]}x{size[1]}_s{seed}"
    return write_json_atomic(root / run / "records" / f"{task.name}.json", record)


def distribution_scores(gini: float, pixels_per_neuron: float) -> dict[str, float]:
    return {
        "gini": gini,
        "pixels_per_neuron": pixels_per_neuron,
        "neurons_per_pixel_a0.1": 0.2,
        "neurons_per_pixel_a0.5": 0.1,
        "top_neuron_dominance": 0.0,
        "layer1/gini": 0.9,
    }


def row(df: pd.DataFrame, **keys: str) -> pd.Series:
    """The one leaderboard row whose columns equal ``keys``."""
    selected = df[(df[list(keys)] == pd.Series(keys)).all(axis=1)]
    assert len(selected) == 1, selected
    return selected.iloc[0]


def test_ranks_follow_metric_directions(tmp_path: Path) -> None:
    write_record(tmp_path, "net-a", scores=distribution_scores(gini=0.5, pixels_per_neuron=0.30))
    write_record(tmp_path, "net-b", scores=distribution_scores(gini=0.9, pixels_per_neuron=0.10))
    write_record(tmp_path, "net-c", scores=distribution_scores(gini=0.7, pixels_per_neuron=0.10))
    df = build_leaderboard(tmp_path)

    assert list(df["model"]) == ["net-a", "net-b", "net-c"]
    assert list(df[GINI_RANK]) == [3, 1, 2]  # higher is better
    assert list(df[PPN_RANK]) == [3, 1, 1]  # lower is better; ties share the best rank
    assert list(df["distribution/top_neuron_dominance rank"]) == [1, 1, 1]
    assert "distribution/layer1/gini" not in " ".join(df.columns)  # per-layer values are not headline metrics
    columns = list(df.columns)
    assert columns[:10] == ["model", "family", "data", "size", "n_seeds", "psnr_db", "psnr_tier", "ssim",
                            "bits_per_pixel", "parameters"]
    assert columns.index(GINI_RANK) == columns.index(GINI) + 1
    assert columns[-1] == "stale"


def test_ranks_are_within_data_and_size(tmp_path: Path) -> None:
    write_record(tmp_path, "net-a", scores=distribution_scores(0.5, 0.3), size=(16, 32))
    write_record(tmp_path, "net-b", scores=distribution_scores(0.9, 0.3), size=(16, 32))
    write_record(tmp_path, "net-a", scores=distribution_scores(0.1, 0.3), size=(32, 64))
    write_record(tmp_path, "net-a", scores=distribution_scores(0.2, 0.3), data="camera")
    df = build_leaderboard(tmp_path)

    assert row(df, model="net-a", size="16x32", data="astronaut")[GINI_RANK] == 2
    assert row(df, model="net-b", size="16x32")[GINI_RANK] == 1
    assert row(df, model="net-a", size="32x64")[GINI_RANK] == 1  # alone in its group
    assert row(df, model="net-a", data="camera")[GINI_RANK] == 1
    assert list(df["data"]) == ["astronaut", "astronaut", "astronaut", "camera"]


def test_seeds_are_averaged_and_counted(tmp_path: Path) -> None:
    write_record(tmp_path, "net-a", seed=0, psnr=20.0, scores=distribution_scores(0.4, 0.2))
    write_record(tmp_path, "net-a", seed=1, psnr=24.0, scores=distribution_scores(0.6, 0.4))
    write_record(tmp_path, "net-a", seed=2, psnr=25.0, scores=distribution_scores(0.8, 0.6))
    df = build_leaderboard(tmp_path)

    only = df.iloc[0]
    assert len(df) == 1
    assert only["n_seeds"] == 3
    assert only[GINI] == pytest.approx(0.6)
    assert only[PPN] == pytest.approx(0.4)
    assert only["psnr_db"] == pytest.approx(23.0)
    assert only["psnr_tier"] == "20-25 dB"
    assert only["parameters"] == 1000
    assert only["bits_per_pixel"] == pytest.approx(15.625)


@pytest.mark.parametrize(
    ("psnr", "tier"),
    [(5.0, "<20 dB"), (19.99, "<20 dB"), (20.0, "20-25 dB"), (27.5, "25-30 dB"), (30.0, "30-35 dB"),
     (34.99, "30-35 dB"), (35.0, ">=35 dB"), (60.0, ">=35 dB"), (math.nan, None)],
)
def test_psnr_tier_boundaries(psnr: float, tier: str | None) -> None:
    assert psnr_tier(psnr) == tier


def test_tier_column_and_tier_view(tmp_path: Path) -> None:
    write_record(tmp_path, "low-good", psnr=18.0, scores=distribution_scores(0.95, 0.3))
    write_record(tmp_path, "low-bad", psnr=19.0, scores=distribution_scores(0.55, 0.3))
    write_record(tmp_path, "high-good", psnr=31.0, scores=distribution_scores(0.90, 0.3))
    write_record(tmp_path, "high-bad", psnr=33.0, scores=distribution_scores(0.50, 0.3))
    df = build_leaderboard(tmp_path)
    assert dict(zip(df["model"], df["psnr_tier"])) == {
        "high-bad": "30-35 dB", "high-good": "30-35 dB", "low-bad": "<20 dB", "low-good": "<20 dB"}
    assert dict(zip(df["model"], df[GINI_RANK])) == {"low-good": 1, "high-good": 2, "low-bad": 3, "high-bad": 4}

    tiers = tier_view(df)
    assert list(tiers["model"]) == ["low-bad", "low-good", "high-bad", "high-good"]  # tier order, then model
    assert dict(zip(tiers["model"], tiers[GINI_RANK])) == {"low-good": 1, "low-bad": 2, "high-good": 1, "high-bad": 2}
    assert [label for _, label in PSNR_TIERS] == ["<20 dB", "20-25 dB", "25-30 dB", "30-35 dB", ">=35 dB"]


def test_stale_task_versions_are_flagged_and_not_ranked(tmp_path: Path) -> None:
    current = load_task("distribution")
    older = dataclasses.replace(current, version=current.version - 1)
    write_record(tmp_path, "net-a", scores=distribution_scores(0.5, 0.3))
    write_record(tmp_path, "net-b", scores=distribution_scores(0.7, 0.2))
    write_record(tmp_path, "net-old", scores=distribution_scores(0.99, 0.01), task=older)
    df = build_leaderboard(tmp_path)

    old = row(df, model="net-old")
    assert old["stale"] == f"distribution (v{older.version}, current v{current.version})"
    assert old[GINI] == pytest.approx(0.99)  # shown ...
    assert pd.isna(old[GINI_RANK]) and pd.isna(old[PPN_RANK])  # ... but not ranked
    assert row(df, model="net-b")[GINI_RANK] == 1 and row(df, model="net-a")[GINI_RANK] == 2
    assert row(df, model="net-a")["stale"] == ""


def test_current_records_win_over_stale_ones_of_the_same_row(tmp_path: Path) -> None:
    current = load_task("distribution")
    older = dataclasses.replace(current, version=current.version - 1)
    write_record(tmp_path, "net-a", seed=0, psnr=20.0, scores=distribution_scores(0.5, 0.3))
    write_record(tmp_path, "net-a", seed=1, psnr=30.0, scores=distribution_scores(0.9, 0.1), task=older)
    df = build_leaderboard(tmp_path)

    only = df.iloc[0]
    assert only["stale"] == ""
    assert only[GINI] == pytest.approx(0.5)  # the older version is not averaged in
    assert only["n_seeds"] == 1
    assert only["psnr_db"] == pytest.approx(20.0)


def test_tasks_that_cannot_be_loaded_keep_their_values_without_directions(tmp_path: Path) -> None:
    mystery = Task("mystery", 3, "mystery-probe", {}, {"score": Metric("score", True, None)})
    write_record(tmp_path, "net-a", scores={"score": 2.0, "layer1/score": 1.0}, task=mystery)
    write_record(tmp_path, "net-b", scores={"score": 1.0}, task=mystery)
    df = build_leaderboard(tmp_path)

    assert list(df["mystery/score"]) == [2.0, 1.0]
    assert not [c for c in df.columns if c.startswith("mystery/") and c != "mystery/score"]
    assert list(df["stale"]) == ["", ""]


def test_rebuild_writes_identical_bytes(tmp_path: Path) -> None:
    records = tmp_path / "records"
    write_record(records, "net-a", seed=0, psnr=21.0, scores=distribution_scores(0.5, 0.3))
    write_record(records, "net-a", seed=1, psnr=22.0, scores=distribution_scores(0.6, 0.3))
    write_record(records, "net-b", scores=distribution_scores(1 / 3, 0.2))
    out = tmp_path / "leaderboards"

    paths = write_leaderboard(build_leaderboard(records), out, "quick")
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    write_leaderboard(build_leaderboard(records), out, "quick")
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert [p.name for p in paths] == ["quick.csv", "quick.md", "quick.html"]
    assert first == second
    assert sorted(p.name for p in out.iterdir()) == ["quick.csv", "quick.html", "quick.md", "quick_assets"]
    csv = (out / "quick.csv").read_text()
    assert csv.splitlines()[1].startswith("net-a,,astronaut,16x32,2,21.5,20-25 dB,0.5,15.625,1000,")
    assert "0.333333," in csv  # fixed float format
    assert str(tmp_path) not in (out / "quick.html").read_text()  # relative links only


def test_markdown_table(tmp_path: Path) -> None:
    write_record(tmp_path, "net-a", psnr=21.23456, scores=distribution_scores(0.5, 0.3))
    lines = markdown_table(build_leaderboard(tmp_path)).splitlines()

    assert lines[0].startswith("| model | family | data | size | n_seeds | psnr_db | psnr_tier |")
    assert lines[1].startswith("|---|---|---|---|---:|---:|---|")
    assert lines[2].startswith("| net-a |  | astronaut | 16x32 | 1 | 21.23 | 20-25 dB | 0.5 | 15.62 | 1000 |")
    assert len(lines) == 3


def test_bad_records_folders_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(XincError, match="does not exist"):
        build_leaderboard(tmp_path / "missing")
    (tmp_path / "model.json").write_text(json.dumps({"format": "xinc-checkpoint/1"}))
    with pytest.raises(XincError, match="no records below"):
        build_leaderboard(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(XincError, match="broken.json"):
        build_leaderboard(tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps({"schema_version": 1, "scores": {}}))
    with pytest.raises(XincError, match="lacks task name/version or model name"):
        build_leaderboard(tmp_path)
    newer = json.loads(write_record(tmp_path / "ok", "net-a").read_text())
    (tmp_path / "broken.json").write_text(json.dumps({**newer, "schema_version": 99}))
    with pytest.raises(XincError, match="upgrade xinc-bench"):
        build_leaderboard(tmp_path)


def test_leaderboard_names_must_be_plain_file_names(tmp_path: Path) -> None:
    write_record(tmp_path, "net-a", scores=distribution_scores(0.5, 0.3))
    with pytest.raises(XincError, match="not a plain file name"):
        write_leaderboard(build_leaderboard(tmp_path), tmp_path / "out", "../escape")
