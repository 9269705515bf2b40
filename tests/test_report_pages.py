"""The static pages in a real headless Chromium: they load from disk, every picture resolves,
the leaderboard sorts by a clicked column, and a screenshot of each page is kept."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

import pytest

from browser import HeadlessChromium, find_chromium
from test_leaderboard import distribution_scores, write_record
from xinc_bench import pipeline
from xinc_bench.errors import XincError
from xinc_bench.probes.base import load_task
from xinc_bench.results.leaderboard import build_leaderboard, write_leaderboard
from xinc_bench.results.report import NEURONS_PER_LAYER, write_report

CHROMIUM = find_chromium()
MODELS = ("ffn-paper", "siren-33k")
SIZE = (16, 32)

BROKEN_IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
LINKS = (
    "Array.from(document.querySelectorAll('a[href], img[src]'))"
    ".map(e => e.getAttribute('href') || e.getAttribute('src'))"
)
#: click the header whose text is the column name; read a column's cell texts in row order
CLICK = "Array.from(document.querySelectorAll('th')).find(th => th.textContent === '{}').click()"
COLUMN = (
    "var i = Array.from(document.querySelectorAll('table.leaderboard th')).findIndex(th => th.textContent === '{}');"
    "Array.from(document.querySelectorAll('table.leaderboard tbody tr')).map(r => r.cells[i].textContent)"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real runs (fit 20 steps at 16x32, canvas, random-init control, distribution probe)."""
    root = tmp_path_factory.mktemp("runs")
    for model in MODELS:
        out = root / model
        pipeline.fit_run(model, "astronaut", SIZE, out=out, steps=20, seed=0, progress_bar=False)
        pipeline.canvas_run(out, SIZE, out=out / pipeline.CANVAS_NAME)
        pipeline.canvas_run(out / pipeline.INIT_DIR, SIZE, out=out / pipeline.INIT_DIR / pipeline.CANVAS_NAME)
        record = out / pipeline.RECORDS_DIR / "distribution.json"
        pipeline.probe_run(out / pipeline.CANVAS_NAME, "distribution", out=record,
                           control_canvas=out / pipeline.INIT_DIR / pipeline.CANVAS_NAME)
    return root


@pytest.fixture(scope="module")
def browser() -> Iterator[HeadlessChromium]:
    """One headless Chromium for the module's page tests (skipped where none is installed)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (CI installs it: apt-get install -y chromium)")
    with HeadlessChromium(CHROMIUM) as chromium:
        yield chromium


def assert_self_contained(page: Path, browser: HeadlessChromium) -> None:
    """Every picture decoded, every link relative and pointing at an existing file."""
    assert browser.evaluate(BROKEN_IMAGES) == []
    for link in browser.evaluate(LINKS):
        if link.startswith("#"):
            continue
        assert not re.match(r"^[a-z]+:|^/", link), link
        assert (page.parent / link).is_file(), link


def test_leaderboard_page_shows_pictures(runs: Path, tmp_path: Path, browser: HeadlessChromium) -> None:
    df = build_leaderboard(runs)
    page = write_leaderboard(df, tmp_path / "leaderboards", "quick")[2]
    browser.open(page)

    assert browser.evaluate("document.title") == "xinc-bench leaderboard: quick"
    assert browser.evaluate("document.querySelectorAll('table.leaderboard tbody tr').length") == len(MODELS)
    # per row: reconstruction + 3 neuron maps, and the distribution probe's figures
    thumbnails = browser.evaluate("document.querySelectorAll('.thumbnails img').length")
    figures = browser.evaluate("document.querySelectorAll('figure img').length")
    assert thumbnails == 4 * len(MODELS)
    assert figures == len(MODELS) * len(list((runs / MODELS[0] / "records" / "distribution_figures").glob("*.png")))
    assert_self_contained(page, browser)
    shot = browser.screenshot(tmp_path / "leaderboard.png")
    print(f"leaderboard screenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_sorts_by_clicked_column(tmp_path: Path, browser: HeadlessChromium) -> None:
    for name, gini in [("net-c", 0.9), ("net-a", 0.1), ("net-b", 0.5)]:
        write_record(tmp_path / "records", name, scores=distribution_scores(gini, 0.3))
    page = write_leaderboard(build_leaderboard(tmp_path / "records"), tmp_path, "sorting")[2]
    browser.open(page)
    models = COLUMN.format("model")

    assert browser.evaluate(models) == ["net-a", "net-b", "net-c"]
    browser.evaluate(CLICK.format("distribution/gini ↑"))
    assert browser.evaluate(models) == ["net-a", "net-b", "net-c"]  # ascending first
    browser.evaluate(CLICK.format("distribution/gini ↑"))
    assert browser.evaluate(models) == ["net-c", "net-b", "net-a"]
    browser.evaluate(CLICK.format("distribution/gini rank"))
    assert browser.evaluate(models) == ["net-c", "net-b", "net-a"]
    browser.evaluate(CLICK.format("model"))
    browser.evaluate(CLICK.format("model"))
    assert browser.evaluate(models) == ["net-c", "net-b", "net-a"]
    sorted_header = "var th = document.querySelector('th[aria-sort]'); th.textContent + ' ' + th.getAttribute('aria-sort')"
    assert browser.evaluate(sorted_header) == "model descending"


def test_numeric_columns_sort_as_numbers(tmp_path: Path, browser: HeadlessChromium) -> None:
    for name, gini in [("net-a", 0.9), ("net-b", 0.1), ("net-c", 0.5), ("net-d", 0.3), ("net-e", 0.2),
                       ("net-f", 0.6), ("net-g", 0.7), ("net-h", 0.8), ("net-i", 0.05), ("net-j", 0.02), ("net-k", 0.01)]:
        write_record(tmp_path / "records", name, scores=distribution_scores(gini, 0.3))
    page = write_leaderboard(build_leaderboard(tmp_path / "records"), tmp_path, "numbers")[2]
    browser.open(page)
    assert browser.evaluate(CLICK.format("distribution/gini rank")) is None
    assert browser.evaluate(COLUMN.format("distribution/gini rank")) == [str(r) for r in range(1, 12)]  # not 1, 10, 11, 2


def test_stale_rows_are_highlighted_and_sorted_last(tmp_path: Path, browser: HeadlessChromium) -> None:
    current = load_task("distribution")
    older = dataclasses.replace(current, version=current.version - 1)
    write_record(tmp_path / "records", "net-a", scores=distribution_scores(0.5, 0.3))
    write_record(tmp_path / "records", "net-b", scores=distribution_scores(0.7, 0.3))
    write_record(tmp_path / "records", "net-old", scores=distribution_scores(0.9, 0.3), task=older)
    browser.open(write_leaderboard(build_leaderboard(tmp_path / "records"), tmp_path, "stale")[2])

    assert browser.evaluate("Array.from(document.querySelectorAll('tr.stale')).map(r => r.id)") == [
        "row-net-old__astronaut__16x32"]
    browser.evaluate(CLICK.format("distribution/gini rank"))
    assert browser.evaluate(COLUMN.format("model")) == ["net-b", "net-a", "net-old"]
    assert browser.evaluate(COLUMN.format("distribution/gini rank")) == ["1", "2", ""]


def test_run_report_page(runs: Path, tmp_path: Path, browser: HeadlessChromium) -> None:
    run = runs / MODELS[0]
    page = write_report(run)
    assert page == run / "report.html"
    browser.open(page)

    canvas_layers = browser.evaluate("Array.from(document.querySelectorAll('h3')).map(h => h.textContent)")
    assert canvas_layers[:3] == ["layer1: 208 neurons, 0 all-zero maps", "layer2: 104 neurons, 0 all-zero maps",
                                 "layer3: 104 neurons, 0 all-zero maps"]
    assert browser.evaluate("document.querySelectorAll('.grid img').length") == 3 * NEURONS_PER_LAYER
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
