"""Leaderboards built from records: headlines, seeds and intervals, interval ties, effect sizes,
reference rows, sanity marks, absent scores, degenerate-column warnings, tiers, stale versions,
task pages and determinism.

Records are written with the real record builder (``build_record``) for toy tasks whose YAML is
written here, so the expected numbers are known in advance and do not depend on the shipped tasks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap

from xinc_bench.errors import XincError
from xinc_bench.probes.base import Task, load_task
from xinc_bench.probes.stats import summarise_null
from xinc_bench.results.leaderboard import (
    PSNR_TIERS,
    DegenerateColumnWarning,
    build_leaderboard,
    headline_columns,
    interval_ranks,
    markdown_table,
    psnr_tier,
    tier_view,
    write_leaderboard,
)
from xinc_bench.files import write_json_atomic
from xinc_bench.runs.record import build_record, read_records, read_sanity_records

TOY_YAML = """\
name: toy
version: 2
probe: distribution
description: A toy task for leaderboard tests.
headline: score
metrics:
  spread:
    higher_is_better: false
    chance: null
    description: a lower-is-better metric
  score:
    higher_is_better: true
    chance: 0.0
    null_model: label_permutation
    range: [0, 1]
    description: the headline, higher is better
  flat:
    higher_is_better: null
    chance: null
    description: a metric without a direction
"""
#: no ``headline:``: its first metric is the headline
PLAIN_YAML = """\
name: plain
version: 1
probe: distribution
metrics:
  first:
    higher_is_better: false
    chance: null
  second:
    higher_is_better: true
    chance: null
"""
SCORE, LO, HI, Z, RANK = "toy/score ↑", "toy/score lo", "toy/score hi", "toy/score z", "toy/score rank"


def toy_tasks(folder: Path) -> Path:
    """Write the toy task YAMLs into ``folder`` and return it (a ``tasks_dir`` for :func:`build_leaderboard`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.yaml").write_text(TOY_YAML)
    (folder / "plain.yaml").write_text(PLAIN_YAML)
    return folder


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    return toy_tasks(tmp_path / "tasks")


def toy(tasks_dir: Path, name: str = "toy") -> Task:
    return load_task(str(tasks_dir / f"{name}.yaml"))


def toy_scores(score: float, spread: float = 0.3, flat: float | None = None) -> dict[str, float]:
    """Scores of the toy task (``flat`` defaults to a value that varies with ``score``)."""
    return {"score": score, "spread": spread, "flat": score / 2 if flat is None else flat,
            "layer1/score": score + 0.01, "layer2/score": score - 0.01}


def write_record(
    root: Path,
    model: str,
    *,
    task: Task,
    seed: int = 0,
    psnr: float = 25.0,
    scores: dict[str, float] | None = None,
    size: tuple[int, int] = (16, 32),
    data: str = "astronaut",
    family: str | None = None,
    nulls: dict[str, dict[str, Any]] | None = None,
    absent: dict[str, str] | None = None,
    controls: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Write one record with ``build_record`` into the pipeline layout ROOT/<run>/records/<task>.json."""
    metadata = {
        "model": model,
        "family": family,
        "model_config": {},
        "num_parameters": 1000,
        "bits_per_pixel": 8000 / (size[0] * size[1]),
        "data": {"data": data, "name": data, "num_frames": 1, "height": size[0], "width": size[1]},
        "seed": seed,
        "fidelity": {"psnr": psnr, "ssim": 0.5},
    }
    record = build_record(task, scores or {}, metadata, nulls=nulls, absent=absent, controls=controls)
    run = f"{model}_{data}_{size[0]}x{size[1]}_s{seed}"
    return write_json_atomic(root / run / "records" / f"{task.name}.json", record)


def write_sanity(root: Path, model: str, *, seed: int = 0, size: tuple[int, int] = (16, 32),
                 data: str = "astronaut", tasks: dict[str, dict[str, dict[str, Any]]]) -> Path:
    """A sanity record (model randomisation) in the layout the sanity check writes: RUN/records/sanity.json."""
    payload = {
        "kind": "sanity",
        "schema_version": 2,
        "model": {"name": model, "family": None, "config": {}},
        "data": {"data": data, "name": data, "num_frames": 1, "height": size[0], "width": size[1]},
        "seed": seed,
        "tasks": tasks,
    }
    run = f"{model}_{data}_{size[0]}x{size[1]}_s{seed}"
    return write_json_atomic(root / run / "records" / "sanity.json", payload)


def build(records: Path, tasks_dir: Path) -> pd.DataFrame:
    """The leaderboard, with degenerate-column warnings silenced (tests of them use pytest.warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateColumnWarning)
        return build_leaderboard(records, tasks_dir)


def row(df: pd.DataFrame, **keys: str) -> pd.Series:
    """The one leaderboard row whose columns equal ``keys``."""
    selected = df[(df[list(keys)] == pd.Series(keys)).all(axis=1)]
    assert len(selected) == 1, selected
    return selected.iloc[0]


def scipy_interval(values: list[float]) -> tuple[float, float]:
    """The interval the leaderboard promises, computed here directly with scipy."""
    result = bootstrap((np.asarray(values),), np.mean, confidence_level=0.95, n_resamples=9999,
                       method="percentile", random_state=np.random.default_rng(0))
    return result.confidence_interval.low, result.confidence_interval.high


def test_seed_mean_and_bootstrap_interval(tmp_path: Path, tasks: Path) -> None:
    values, psnrs = [0.2, 0.4, 0.9], [20.0, 22.0, 27.0]
    for seed, (value, psnr) in enumerate(zip(values, psnrs)):
        write_record(tmp_path / "records", "net-a", task=toy(tasks), seed=seed, psnr=psnr,
                     scores=toy_scores(value, spread=0.1 * seed))
    df = build(tmp_path / "records", tasks)

    only = df.iloc[0]
    assert len(df) == 1 and only["n_seeds"] == 3
    assert only[SCORE] == pytest.approx(0.5)
    assert (only[LO], only[HI]) == pytest.approx(scipy_interval(values))
    assert only["psnr_db"] == pytest.approx(23.0)
    assert (only["psnr_db lo"], only["psnr_db hi"]) == pytest.approx(scipy_interval(psnrs))
    assert only[LO] < only[SCORE] < only[HI]  # three distinct seeds: never zero width
    assert only["psnr_tier"] == "20-25 dB"
    assert only["parameters"] == 1000 and only["bits_per_pixel"] == pytest.approx(15.625)
    assert "toy/spread ↓" not in df.columns  # one headline per task; the rest is on the task page
    cell = markdown_table(df, "t").splitlines()[2]
    assert f"0.500 [{only[LO]:.3f}, {only[HI]:.3f}]" in cell
    assert "23.0 [" in cell


def test_one_seed_has_no_interval(tmp_path: Path, tasks: Path) -> None:
    write_record(tmp_path / "records", "net-a", task=toy(tasks), scores=toy_scores(0.7), psnr=21.0)
    df = build(tmp_path / "records", tasks)

    only = df.iloc[0]
    assert only["n_seeds"] == 1
    assert math.isnan(only[LO]) and math.isnan(only[HI])
    assert math.isnan(only["psnr_db lo"]) and math.isnan(only["psnr_db hi"])
    lines = markdown_table(df, "t").splitlines()
    assert "| 0.700 [n/a] #1 |" in lines[2] and "| 21.0 [n/a] |" in lines[2]
    write_leaderboard(df, tmp_path / "out", "one")
    csv = pd.read_csv(tmp_path / "out" / "one.csv")
    assert csv[LO].isna().all() and csv[HI].isna().all()  # empty, never a zero-width interval


def test_effect_size_is_the_mean_over_seeds(tmp_path: Path, tasks: Path) -> None:
    for seed, effect in enumerate([10.0, 14.0]):
        null = {"model": "label_permutation", "draws": 20, "mean": 0.5, "sd": 0.02, "effect_size": effect,
                "p_value": 1 / 21, "reason": None}
        write_record(tmp_path / "records", "net-a", task=toy(tasks), seed=seed, scores=toy_scores(0.7),
                     nulls={"score": null})
    df = build(tmp_path / "records", tasks)

    assert df.iloc[0][Z] == pytest.approx(12.0)
    assert "z=12.0" in markdown_table(df, "t").splitlines()[2]


def test_effect_size_of_a_real_null_summary(tmp_path: Path, tasks: Path) -> None:
    draws = [0.40, 0.45, 0.50, 0.55, 0.60] * 4
    summary = summarise_null(0.8, draws, "label_permutation")
    write_record(tmp_path / "records", "net-a", task=toy(tasks), scores=toy_scores(0.8),
                 nulls={"score": summary.as_dict()})
    df = build(tmp_path / "records", tasks)

    assert df.iloc[0][Z] == pytest.approx((0.8 - 0.5) / np.std(draws, ddof=1))
    assert "0.800 [n/a] z=4.1 #1" in markdown_table(df, "t").splitlines()[2]


def test_interval_ranks_tie_when_intervals_overlap() -> None:
    nan = math.nan
    values = np.array([0.85, 0.76, 0.20, 0.50, 0.50])
    lows = np.array([0.80, 0.70, 0.10, nan, nan])
    highs = np.array([0.90, 0.82, 0.30, nan, nan])
    # 0 and 1 overlap: tie at 1; the rows without an interval tie only with each other (equal values)
    assert interval_ranks(values, lows, highs, True).tolist() == [1, 1, 5, 3, 3]
    assert interval_ranks(values, lows, highs, False).tolist() == [4, 4, 1, 2, 2]
    # chained overlaps: b ties a, c ties b but not a: c shares b's rank only as far as a stays better
    assert interval_ranks(np.array([0.95, 0.9, 0.84]), np.array([0.9, 0.85, 0.8]), np.array([1.0, 0.95, 0.88]),
                          True).tolist() == [1, 1, 2]


def test_ranks_from_seeds_tie_when_intervals_overlap(tmp_path: Path, tasks: Path) -> None:
    per_model = {"net-a": [0.80, 0.85, 0.90], "net-b": [0.70, 0.75, 0.82], "net-c": [0.10, 0.20, 0.30]}
    for model, values in per_model.items():
        for seed, value in enumerate(values):
            write_record(tmp_path / "records", model, task=toy(tasks), seed=seed, scores=toy_scores(value))
    write_record(tmp_path / "records", "net-d", task=toy(tasks), scores=toy_scores(0.5))  # one seed: no interval
    df = build(tmp_path / "records", tasks)

    a, b = row(df, model="net-a"), row(df, model="net-b")
    assert a[LO] <= b[HI]  # the intervals overlap ...
    assert dict(zip(df["model"], df[RANK])) == {"net-a": 1, "net-b": 1, "net-c": 4, "net-d": 3}  # ... so they tie
    assert "#1" in markdown_table(df, "t").splitlines()[3]


def test_ranks_follow_metric_directions(tmp_path: Path, tasks: Path) -> None:
    plain = toy(tasks, "plain")
    for model, first in [("net-a", 0.3), ("net-b", 0.1), ("net-c", 0.1)]:
        write_record(tmp_path / "records", model, task=plain, scores={"first": first, "second": 1.0})
    for model, score in [("net-a", 0.5), ("net-b", 0.9), ("net-c", 0.7)]:
        write_record(tmp_path / "records", model, task=toy(tasks), scores=toy_scores(score))
    df = build(tmp_path / "records", tasks)

    assert list(df["model"]) == ["net-a", "net-b", "net-c"]
    assert list(df[RANK]) == [3, 1, 2]  # higher is better
    assert list(df["plain/first rank"]) == [3, 1, 1]  # no headline in the YAML: its first metric; lower is better
    columns = list(df.columns)
    assert columns[:13] == ["model", "family", "data", "size", "reference", "n_seeds", "psnr_db", "psnr_db lo",
                            "psnr_db hi", "psnr_tier", "ssim", "bits_per_pixel", "parameters"]
    assert columns[13:18] == ["plain/first ↓", "plain/first lo", "plain/first hi", "plain/first z",
                              "plain/first rank"]
    assert columns[18:23] == [SCORE, LO, HI, Z, RANK]
    assert columns[-3:] == ["sanity", "absent", "stale"]
    assert not [c for c in columns if "layer1" in c or "second" in c or "spread" in c]


def test_ranks_are_within_data_and_size(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    write_record(records, "net-a", task=toy(tasks), scores=toy_scores(0.5), size=(16, 32))
    write_record(records, "net-b", task=toy(tasks), scores=toy_scores(0.9), size=(16, 32))
    write_record(records, "net-a", task=toy(tasks), scores=toy_scores(0.1), size=(32, 64))
    write_record(records, "net-a", task=toy(tasks), scores=toy_scores(0.2), data="camera")
    df = build(records, tasks)

    assert row(df, model="net-a", size="16x32", data="astronaut")[RANK] == 2
    assert row(df, model="net-b", size="16x32")[RANK] == 1
    assert row(df, model="net-a", size="32x64")[RANK] == 1  # alone in its group
    assert row(df, model="net-a", data="camera")[RANK] == 1
    assert list(df["data"]) == ["astronaut", "astronaut", "astronaut", "camera"]


def test_reference_rows_are_shown_but_never_ranked(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    write_record(records, "net-a", task=toy(tasks), scores=toy_scores(0.5))
    write_record(records, "net-b", task=toy(tasks), scores=toy_scores(0.6))
    write_record(records, "tiled-known", task=toy(tasks), scores=toy_scores(0.99), family="known-answer")
    df = build(records, tasks)

    assert list(df["model"]) == ["net-a", "net-b", "tiled-known"]  # reference rows last
    assert list(df["reference"]) == [False, False, True]
    assert pd.isna(row(df, model="tiled-known")[RANK])
    assert dict(zip(df["model"][:2], df[RANK][:2])) == {"net-a": 2, "net-b": 1}  # not pushed down by the reference
    text = markdown_table(df, "t")
    main, reference = text.split("Reference rows")
    assert "tiled-known" not in main and "net-a" in main
    assert "| tiled-known | astronaut 16x32 |" in reference and "#" not in reference.split("\n\n")[1]


def test_sanity_records_mark_insensitive_headlines(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    for seed in (0, 1):
        write_record(records, "net-a", task=toy(tasks), seed=seed, scores=toy_scores(0.5 + 0.1 * seed))
        write_sanity(records, "net-a", seed=seed, tasks={"toy": {
            "score": {"trained": 0.5, "randomised": [0.5, 0.49], "movement": 0.01 * (seed + 1),
                      "insensitive": seed == 1},
            "spread": {"trained": 0.3, "randomised": [0.1], "movement": 0.2, "insensitive": False},
        }})
    write_record(records, "net-b", task=toy(tasks), scores=toy_scores(0.6))
    write_sanity(records, "net-b", tasks={"toy": {
        "score": {"trained": 0.6, "randomised": [0.1], "movement": 0.5, "insensitive": False},
        "spread": {"trained": 0.3, "randomised": [0.3], "movement": 0.0, "insensitive": True},
    }})
    assert len(read_records(records)) == 3 and len(read_sanity_records(records)) == 3
    df = build(records, tasks)

    assert len(df) == 2
    assert row(df, model="net-a")["sanity"] == "toy/score"  # one seed flagged it: enough for the mark
    assert row(df, model="net-b")["sanity"] == ""  # only a non-headline score is insensitive there
    lines = markdown_table(df, "t").splitlines()
    assert lines[2].startswith("| net-a |") and "† |" in lines[2] and "† insensitive: toy/score" in lines[2]
    assert lines[3].startswith("| net-b |") and "†" not in lines[3]
    detail = df.attrs["detail"].scores.set_index(["model", "score"])
    assert detail.loc[("net-a", "score"), "movement"] == pytest.approx(0.015)
    assert bool(detail.loc[("net-b", "spread"), "insensitive"])


def test_absent_headline_shows_its_reason_and_is_not_ranked(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    reason = "the canvas has no masks; give --masks"
    scores = {k: v for k, v in toy_scores(0.5).items() if not k.endswith("score")}
    write_record(records, "net-a", task=toy(tasks), scores=scores, absent={"score": reason})
    write_record(records, "net-b", task=toy(tasks), scores=toy_scores(0.6))
    df = build(records, tasks)

    a = row(df, model="net-a")
    assert math.isnan(a[SCORE]) and pd.isna(a[RANK])
    assert a["absent"] == f"toy/score: absent: {reason}"
    assert row(df, model="net-b")[RANK] == 1
    text = markdown_table(df, "t")
    assert "| absent |" in text.splitlines()[2]
    assert f"toy/score absent in 1 row(s): {reason}" in text


def test_constant_and_empty_columns_warn(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    for model, score in [("net-a", 0.5), ("net-b", 0.7), ("net-c", 0.6)]:
        scores = {"score": score, "spread": 0.3, "layer1/spread": score}
        write_record(records, model, task=toy(tasks), scores=scores, absent={"flat": "no categories"})
    write_record(records, "known", task=toy(tasks), scores={"score": 1.0, "spread": 0.0}, family="known-answer")
    with pytest.warns(DegenerateColumnWarning) as caught:
        df = build_leaderboard(records, tasks)

    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        "leaderboard column toy/flat is empty in all 3 rows (absent: no categories)",
        "leaderboard column toy/spread is constant (0.300) across all 3 rows with a value: it cannot tell models apart",
    ]  # the reference row is not counted; per-layer scores and varying columns do not warn
    assert df.attrs["degenerate"] == [str(w.message) for w in caught]
    assert "warning: leaderboard column toy/spread is constant" in markdown_table(df, "t")


@pytest.mark.parametrize(
    ("psnr", "tier"),
    [(5.0, "<20 dB"), (19.99, "<20 dB"), (20.0, "20-25 dB"), (27.5, "25-30 dB"), (30.0, "30-35 dB"),
     (34.99, "30-35 dB"), (35.0, ">=35 dB"), (60.0, ">=35 dB"), (math.nan, None)],
)
def test_psnr_tier_boundaries(psnr: float, tier: str | None) -> None:
    assert psnr_tier(psnr) == tier


def test_tier_column_and_tier_view(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    write_record(records, "low-good", task=toy(tasks), psnr=18.0, scores=toy_scores(0.95))
    write_record(records, "low-bad", task=toy(tasks), psnr=19.0, scores=toy_scores(0.55))
    write_record(records, "high-good", task=toy(tasks), psnr=31.0, scores=toy_scores(0.90))
    write_record(records, "high-bad", task=toy(tasks), psnr=33.0, scores=toy_scores(0.50))
    df = build(records, tasks)
    assert dict(zip(df["model"], df["psnr_tier"])) == {
        "high-bad": "30-35 dB", "high-good": "30-35 dB", "low-bad": "<20 dB", "low-good": "<20 dB"}
    assert dict(zip(df["model"], df[RANK])) == {"low-good": 1, "high-good": 2, "low-bad": 3, "high-bad": 4}

    tiers = tier_view(df)
    assert list(tiers["model"]) == ["low-bad", "low-good", "high-bad", "high-good"]  # tier order, then model
    assert dict(zip(tiers["model"], tiers[RANK])) == {"low-good": 1, "low-bad": 2, "high-good": 1, "high-bad": 2}
    assert [label for _, label in PSNR_TIERS] == ["<20 dB", "20-25 dB", "25-30 dB", "30-35 dB", ">=35 dB"]
    assert "PSNR tier" in [c.header for c in headline_columns(tiers, "t")]
    assert "PSNR tier" not in [c.header for c in headline_columns(df, "t")]
    assert "| low-bad | astronaut 16x32 | 1 | 19.0 [n/a] | <20 dB |" in markdown_table(tiers, "t")


def test_stale_task_versions_are_flagged_and_not_ranked(tmp_path: Path, tasks: Path) -> None:
    current = toy(tasks)
    older = dataclasses.replace(current, version=current.version - 1)
    write_record(tmp_path / "records", "net-a", task=current, scores=toy_scores(0.5))
    write_record(tmp_path / "records", "net-b", task=current, scores=toy_scores(0.7))
    write_record(tmp_path / "records", "net-old", task=older, scores=toy_scores(0.99))
    df = build(tmp_path / "records", tasks)

    old = row(df, model="net-old")
    assert old["stale"] == "toy (v1, current v2)"
    assert old[SCORE] == pytest.approx(0.99)  # shown ...
    assert pd.isna(old[RANK])  # ... but not ranked
    assert row(df, model="net-b")[RANK] == 1 and row(df, model="net-a")[RANK] == 2
    assert row(df, model="net-a")["stale"] == ""
    assert "stale: toy (v1, current v2)" in markdown_table(df, "t")


def test_current_records_win_over_stale_ones_of_the_same_row(tmp_path: Path, tasks: Path) -> None:
    current = toy(tasks)
    older = dataclasses.replace(current, version=current.version - 1)
    write_record(tmp_path / "records", "net-a", task=current, seed=0, psnr=20.0, scores=toy_scores(0.5))
    write_record(tmp_path / "records", "net-a", task=older, seed=1, psnr=30.0, scores=toy_scores(0.9))
    df = build(tmp_path / "records", tasks)

    only = df.iloc[0]
    assert only["stale"] == ""
    assert only[SCORE] == pytest.approx(0.5)  # the older version is not averaged in
    assert only["n_seeds"] == 1
    assert only["psnr_db"] == pytest.approx(20.0)


def test_tasks_that_cannot_be_loaded_keep_their_values_without_directions(tmp_path: Path, tasks: Path) -> None:
    mystery = dataclasses.replace(toy(tasks), name="mystery", version=3)
    write_record(tmp_path / "records", "net-a", task=mystery, scores={"score": 2.0, "layer1/score": 1.0})
    write_record(tmp_path / "records", "net-b", task=mystery, scores={"score": 1.0})
    df = build(tmp_path / "records", tasks)

    assert list(df["mystery/score"]) == [2.0, 1.0]  # headline: the first un-prefixed score; no arrow, no rank
    assert [c for c in df.columns if c.startswith("mystery/")] == ["mystery/score", "mystery/score lo",
                                                                    "mystery/score hi", "mystery/score z"]
    assert list(df["stale"]) == ["", ""]


def test_rebuild_writes_identical_bytes_and_task_pages(tmp_path: Path, tasks: Path) -> None:
    records = tmp_path / "records"
    write_record(records, "net-a", task=toy(tasks), seed=0, psnr=21.0, scores=toy_scores(0.5))
    write_record(records, "net-a", task=toy(tasks), seed=1, psnr=22.0, scores=toy_scores(0.6))
    write_record(records, "net-b", task=toy(tasks), scores=toy_scores(1 / 3))
    out = tmp_path / "leaderboards"

    paths = write_leaderboard(build(records, tasks), out, "quick")
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    write_leaderboard(build(records, tasks), out, "quick")
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert [p.name for p in paths] == ["quick.csv", "quick.md", "quick.html"]
    assert first == second
    assert sorted(p.name for p in out.iterdir()) == ["quick.csv", "quick.html", "quick.md", "quick_assets"]
    assert sorted(p.name for p in (out / "quick_assets").iterdir()) == ["task_toy.html"]
    csv = (out / "quick.csv").read_text()
    assert csv.splitlines()[1].startswith("net-a,,astronaut,16x32,False,2,21.5,21,22,20-25 dB,0.5,15.625,1000,0.55,")
    assert ",0.333333," in csv  # fixed float format
    assert str(tmp_path) not in (out / "quick.html").read_text()  # relative links only
    page = (out / "quick_assets" / "task_toy.html").read_text()
    assert 'href="../quick.html"' in page and 'id="row-net-a__astronaut__16x32"' in page
    assert 'data-score="layer2/score"' in page


def test_markdown_headline_table(tmp_path: Path, tasks: Path) -> None:
    write_record(tmp_path / "records", "net-a", task=toy(tasks), psnr=21.23456, scores=toy_scores(0.5))
    write_record(tmp_path / "records", "net-a", task=toy(tasks, "plain"), psnr=21.23456,
                 scores={"first": 0.25, "second": 1.0})
    lines = markdown_table(build(tmp_path / "records", tasks), "t").splitlines()

    assert lines[0] == "| model | data | seeds | PSNR dB | plain/first ↓ | toy/score ↑ | notes |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|---|"
    assert lines[2] == "| net-a | astronaut 16x32 | 1 | 21.2 [n/a] | 0.250 [n/a] #1 | 0.500 [n/a] #1 |  |"
    assert lines[3] == ""
    assert lines[4].startswith('- A cell reads "value [lo, hi] z=effect #rank": value = mean over seeds; '
                               "[lo, hi] = the 95% percentile bootstrap interval of the mean over seeds")


def test_bad_records_folders_raise_clear_errors(tmp_path: Path, tasks: Path) -> None:
    with pytest.raises(XincError, match="does not exist"):
        build_leaderboard(tmp_path / "missing")
    (tmp_path / "model.json").write_text(json.dumps({"format": "xinc-checkpoint/1"}))
    write_sanity(tmp_path, "net-a", tasks={})
    with pytest.raises(XincError, match="no records below"):  # a sanity record alone is no leaderboard
        build_leaderboard(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(XincError, match="broken.json"):
        build_leaderboard(tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps({"schema_version": 1, "scores": {}}))
    with pytest.raises(XincError, match="lacks task name/version or model name"):
        build_leaderboard(tmp_path)
    newer = json.loads(write_record(tmp_path / "ok", "net-a", task=toy(tasks)).read_text())
    (tmp_path / "broken.json").write_text(json.dumps({**newer, "schema_version": 99}))
    with pytest.raises(XincError, match="upgrade xinc-bench"):
        build_leaderboard(tmp_path)


def test_leaderboard_names_must_be_plain_file_names(tmp_path: Path, tasks: Path) -> None:
    write_record(tmp_path / "records", "net-a", task=toy(tasks), scores=toy_scores(0.5))
    with pytest.raises(XincError, match="not a plain file name"):
        write_leaderboard(build(tmp_path / "records", tasks), tmp_path / "out", "../escape")
