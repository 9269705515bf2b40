"""The static pages in a real headless Chromium: they load from disk, every picture resolves,
the leaderboard sorts by a clicked column, and a screenshot of each page is kept."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from browser import HeadlessChromium
from test_leaderboard import toy, toy_scores, toy_tasks, write_record, write_sanity
from xinc_bench.runs import UnitSpec, run_unit
from xinc_bench.errors import XincError
from xinc_bench.probes.base import load_task
from xinc_bench.results.leaderboard import (
    DegenerateColumnWarning,
    build_leaderboard,
    headline_metric,
    write_leaderboard,
)
from xinc_bench.results.report import write_report
from xinc_bench.runs.preview import PREVIEW_NEURONS

MODELS = ("ffn-paper", "siren-33k")
SIZE = (16, 32)

BROKEN_IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
LINKS = (
    "Array.from(document.querySelectorAll('a[href], img[src]'))"
    ".map(e => e.getAttribute('href') || e.getAttribute('src'))"
)
#: click the header of a column (by its name); read a column's cell texts (or hover titles) in row order
CLICK = "document.querySelector('table.leaderboard th[data-column=\"{}\"]').click()"
COLUMN = (
    "var table = document.querySelector('table.leaderboard');"
    "var i = Array.from(table.tHead.rows[0].cells).findIndex(th => th.dataset.column === '{}');"
    "Array.from(table.tBodies[0].rows).map(r => r.cells[i].{})"
)
SCORE = "toy/score ↑"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real runs (fit 20 steps at 16x32, canvas, random-init control, distribution probe)."""
    root = tmp_path_factory.mktemp("runs")
    for model in MODELS:
        run_unit(UnitSpec(model=model, data="astronaut", size=SIZE, steps=20, tasks=("distribution",)), root / model)
    return root


def assert_self_contained(page: Path, browser: HeadlessChromium) -> None:
    """Every picture decoded, every link relative and pointing at an existing file."""
    assert browser.evaluate(BROKEN_IMAGES) == []
    for link in browser.evaluate(LINKS):
        if link.startswith("#"):
            continue
        assert not re.match(r"^[a-z]+:|^/", link), link
        assert (page.parent / link.split("#")[0]).is_file(), link


def test_leaderboard_page_shows_pictures_and_task_pages(runs: Path, tmp_path: Path,
                                                         browser: HeadlessChromium) -> None:
    df = build_leaderboard(runs)
    page = write_leaderboard(df, tmp_path / "leaderboards", "quick")[2]
    browser.open(page)

    assert browser.evaluate("document.title") == "xinc-bench leaderboard: quick"
    assert browser.evaluate("document.querySelectorAll('table.leaderboard tbody tr').length") == len(MODELS)
    headers = browser.evaluate("Array.from(document.querySelectorAll('table.leaderboard th'))"
                               ".map(th => th.dataset.column || 'thumbnails')")
    headline = f"distribution/{headline_metric(load_task('distribution'))}"
    assert [h.split(" ")[0] for h in headers] == ["model", "data", "thumbnails", "seeds", "PSNR", headline, "notes"]
    # per row: reconstruction + 3 neuron maps, and the distribution probe's figures
    thumbnails = browser.evaluate("document.querySelectorAll('.thumbnails img').length")
    figures = browser.evaluate("document.querySelectorAll('figure img').length")
    assert thumbnails == 4 * len(MODELS)
    assert figures == len(MODELS) * len(list((runs / MODELS[0] / "records" / "distribution_figures").glob("*.png")))
    assert_self_contained(page, browser)
    shot = browser.screenshot(tmp_path / "leaderboard.png")
    print(f"leaderboard screenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the task cell links to the row on the task page: every score of the record against its null and controls
    link = browser.evaluate("document.querySelector('table.leaderboard tbody tr td a[href*=\"task_\"]')"
                            ".getAttribute('href')")
    assert link == f"quick_assets/task_distribution.html#row-{MODELS[0]}__ffn__astronaut__16x32"
    task_page = page.parent / link.split("#")[0]
    browser.open(task_page)
    assert_self_contained(task_page, browser)
    record = json.loads((runs / MODELS[0] / "records" / "distribution.json").read_text())
    section = f"document.getElementById('row-{MODELS[0]}__ffn__astronaut__16x32').nextElementSibling"
    scores = browser.evaluate(f"Array.from({section}.querySelectorAll('tbody tr')).map(r => r.dataset.score)")
    assert set(scores) == set(record["scores"]) | set(record["absent"]) | set(load_task("distribution").metrics)
    header = browser.evaluate(f"Array.from({section}.querySelectorAll('th')).map(th => th.textContent)")
    assert header == ["score", "value", "seeds", "null", "null mean", "null sd", "effect size", "p (largest)",
                      "random_init", "shuffled", "sanity", "note"]
    cells = browser.evaluate(f"Array.from({section}.querySelector('tr.headline').cells).map(c => c.textContent)")
    name = headline.split("/")[1]
    assert cells[0] == name and float(cells[1]) == pytest.approx(record["scores"][name], rel=2e-3)
    assert float(cells[9]) == pytest.approx(record["controls"]["shuffled"][name], rel=2e-3, abs=1e-9)
    null = record["nulls"].get(name)
    if null and null.get("effect_size") is not None:
        assert float(cells[6]) == pytest.approx(null["effect_size"], rel=2e-3)
    shot = browser.screenshot(tmp_path / "task_page.png")
    print(f"task page screenshot: {shot}")


def test_headline_cells_hover_reference_and_sanity(tmp_path: Path, browser: HeadlessChromium) -> None:
    tasks = toy_tasks(tmp_path / "tasks")
    records = tmp_path / "records"
    null = {"model": "label_permutation", "draws": 20, "mean": 0.5, "sd": 0.02, "effect_size": 12.34,
            "p_value": 1 / 21, "reason": None}
    for seed, value in enumerate([0.80, 0.85, 0.90]):
        write_record(records, "net-a", task=toy(tasks), seed=seed, scores=toy_scores(value), nulls={"score": null})
    write_sanity(records, "net-a", tasks={"toy": {"score": {"movement": 0.5, "movement_unit": "null_sd",
                                                            "insensitive": True}}})
    write_record(records, "net-b", task=toy(tasks), scores={"spread": 0.3, "flat": 0.2},
                 absent={"score": "the canvas has no masks"})
    write_record(records, "tiled-known", task=toy(tasks), scores=toy_scores(0.99), family="known-answer")
    with pytest.warns(DegenerateColumnWarning, match="toy/spread"):
        df = build_leaderboard(records, tasks)
    page = write_leaderboard(df, tmp_path / "out", "cells")[2]
    browser.open(page)

    texts = browser.evaluate(COLUMN.format(SCORE, "textContent"))
    assert texts[0].startswith("0.850 [0.800, 0.900] z=12.3 #1") and texts[0].endswith("†")
    assert texts[1] == "absent"
    titles = browser.evaluate(COLUMN.format(SCORE, "title"))
    assert "3 seed(s); 95% percentile bootstrap interval" in titles[0]
    assert "null label_permutation: mean 0.500, sd 0.0200" in titles[0]
    assert "sanity: insensitive to model randomisation (movement 0.500 sd)" in titles[0]
    assert titles[1] == "absent: the canvas has no masks"
    reference = "Array.from(document.querySelectorAll('table.reference tbody tr')).map(r => r.cells[0].textContent)"
    assert browser.evaluate(reference) == ["tiled-known"]
    assert browser.evaluate("document.querySelector('table.reference tbody tr').textContent").count("#") == 0
    legend = browser.evaluate("document.querySelector('ul.legend').textContent")
    assert "toy/score absent in 1 row(s): the canvas has no masks" in legend
    assert "warning: leaderboard column toy/spread is constant" in legend
    assert_self_contained(page, browser)


def test_leaderboard_sorts_by_clicked_column(tmp_path: Path, browser: HeadlessChromium) -> None:
    tasks = toy_tasks(tmp_path / "tasks")
    for name, score in [("net-c", 0.9), ("net-a", 0.1), ("net-b", 0.5)]:
        write_record(tmp_path / "records", name, task=toy(tasks), scores=toy_scores(score))
    page = write_leaderboard(build_leaderboard(tmp_path / "records", tasks), tmp_path, "sorting")[2]
    browser.open(page)
    models = COLUMN.format("model", "textContent")

    assert browser.evaluate(models) == ["net-a", "net-b", "net-c"]
    browser.evaluate(CLICK.format(SCORE))
    assert browser.evaluate(models) == ["net-a", "net-b", "net-c"]  # ascending first
    browser.evaluate(CLICK.format(SCORE))
    assert browser.evaluate(models) == ["net-c", "net-b", "net-a"]
    browser.evaluate(CLICK.format("model"))
    browser.evaluate(CLICK.format("model"))
    assert browser.evaluate(models) == ["net-c", "net-b", "net-a"]
    sorted_header = ("var th = document.querySelector('th[aria-sort]');"
                     "th.dataset.column + ' ' + th.getAttribute('aria-sort')")
    assert browser.evaluate(sorted_header) == "model descending"


def test_numeric_columns_sort_as_numbers(tmp_path: Path, browser: HeadlessChromium) -> None:
    tasks = toy_tasks(tmp_path / "tasks")
    for name, score in [("net-a", 9.0), ("net-b", 0.1), ("net-c", 10.0), ("net-d", 0.3), ("net-e", 100.0),
                        ("net-f", 2.0), ("net-g", 11.0)]:
        write_record(tmp_path / "records", name, task=toy(tasks), scores=toy_scores(score))
    page = write_leaderboard(build_leaderboard(tmp_path / "records", tasks), tmp_path, "numbers")[2]
    browser.open(page)
    assert browser.evaluate(CLICK.format(SCORE)) is None
    values = [text.split(" ")[0] for text in browser.evaluate(COLUMN.format(SCORE, "textContent"))]
    assert values == ["0.100", "0.300", "2.00", "9.00", "10.0", "11.0", "100"]  # not 0.1, 10, 100, 11, 2


def test_stale_rows_are_highlighted_and_sorted_last(tmp_path: Path, browser: HeadlessChromium) -> None:
    tasks = toy_tasks(tmp_path / "tasks")
    current = toy(tasks)
    older = dataclasses.replace(current, version=current.version - 1)
    write_record(tmp_path / "records", "net-a", task=current, scores=toy_scores(0.5))
    write_record(tmp_path / "records", "net-b", task=current, scores=toy_scores(0.7))
    write_record(tmp_path / "records", "net-old", task=older, scores=toy_scores(0.9))
    browser.open(write_leaderboard(build_leaderboard(tmp_path / "records", tasks), tmp_path, "stale")[2])

    assert browser.evaluate("Array.from(document.querySelectorAll('tr.stale')).map(r => r.id)") == [
        "row-net-old__astronaut__16x32"]
    assert browser.evaluate(COLUMN.format("notes", "textContent"))[2] == "stale: toy (v1, current v2)"
    browser.evaluate(CLICK.format(SCORE))
    browser.evaluate(CLICK.format(SCORE))
    assert browser.evaluate(COLUMN.format("model", "textContent")) == ["net-old", "net-b", "net-a"]
    assert [t.split(" ")[-1] for t in browser.evaluate(COLUMN.format(SCORE, "textContent"))] == ["[n/a]", "#1", "#2"]


def test_run_report_page(runs: Path, tmp_path: Path, browser: HeadlessChromium) -> None:
    run = runs / MODELS[0]
    page = write_report(run)
    assert page == run / "report.html"
    browser.open(page)

    canvas_layers = browser.evaluate("Array.from(document.querySelectorAll('h3')).map(h => h.textContent)")
    assert canvas_layers[:3] == ["layer1: 208 neurons, 0 all-zero maps", "layer2: 104 neurons, 0 all-zero maps",
                                 "layer3: 104 neurons, 0 all-zero maps"]
    assert browser.evaluate("document.querySelectorAll('.grid img').length") == 3 * PREVIEW_NEURONS
    captions = browser.evaluate("Array.from(document.querySelectorAll('figcaption')).map(c => c.textContent)")
    assert captions[:2] == ["target, frame 0", "reconstruction, frame 0"]
    # every metric with its null (mean, sd, effect size, p) and both controls beside it
    header = browser.evaluate(
        "Array.from(document.querySelector('table.scores').querySelectorAll('th')).map(th => th.textContent)")
    assert header == ["score", "direction", "value", "null mean", "null sd", "effect size", "p", "random_init",
                      "shuffled", "chance"]
    gini_row = browser.evaluate(
        "Array.from(document.querySelector('table.scores').rows).find(r => r.cells[0].textContent === 'gini')"
        ".cells[1].textContent"
    )
    assert gini_row == "↑"
    # the folded table lists every per-layer score with its own null
    assert browser.evaluate("document.querySelectorAll('table.scores').length") > 1
    assert_self_contained(page, browser)
    assert str(runs) not in page.read_text()
    shot = browser.screenshot(tmp_path / "report.png")
    print(f"report screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_report_is_rewritten_identically(runs: Path) -> None:
    run = runs / MODELS[1]
    first = write_report(run).read_bytes()
    assets = {p.relative_to(run): p.read_bytes() for p in sorted((run / "report_assets").rglob("*")) if p.is_file()}
    assert write_report(run).read_bytes() == first
    assert {p.relative_to(run): p.read_bytes() for p in sorted((run / "report_assets").rglob("*")) if p.is_file()} \
        == assets
    assert not [p for p in run.iterdir() if ".tmp-" in p.name or ".old-" in p.name]



def test_report_needs_a_run_directory_with_a_canvas(tmp_path: Path) -> None:
    with pytest.raises(XincError, match="does not exist"):
        write_report(tmp_path / "missing")
    with pytest.raises(XincError, match="xinc-bench canvas --checkpoint"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()
