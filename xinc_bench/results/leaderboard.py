"""Leaderboards (SPEC 6): a pure function of a folder of records, written as CSV, Markdown and HTML.

One row per (model, data, size), the model named by its preset (plus any constructor overrides);
records of several seeds are averaged and counted in ``n_seeds``. ``family`` is the record's
``model.family`` or else the registered INR's family (empty for unknown models). Columns:

* ``model``, ``family``, ``data``, ``size`` (``HxW`` or ``TxHxW``), ``n_seeds``;
* fidelity: ``psnr_db``, ``psnr_tier``, ``ssim``, ``bits_per_pixel``, ``parameters``;
* per headline metric of every task: ``<task>/<metric> ↑`` (higher is better), ``... ↓`` (lower is
  better) or no arrow (no preferred direction, e.g. a correlation whose sign is the finding), and
  for directed metrics ``<task>/<metric> rank``: 1 = best among the rows with the same data and
  size (ties share the lower rank);
* ``stale``: the tasks whose values in this row come from an older (or other) task version than
  the current ``tasks/<task>.yaml``, e.g. ``color (v1, current v2)``. Stale values are shown but
  never ranked, and a row never mixes versions of one task: when any seed has a current record,
  only current records are used.

PSNR tiers (``PSNR_TIERS``) are ``<20 dB``, ``20-25 dB``, ``25-30 dB``, ``30-35 dB``, ``>=35 dB``
(lower bound inclusive); :func:`tier_view` ranks models only against rows of the same tier, so
architectures are compared at matched reconstruction quality.

A task whose YAML cannot be loaded (deleted, or its probe not registered) keeps its values: its
headline metrics are then the record's un-prefixed scores, without directions or ranks, and its
current version is the newest one among the records.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import XincError
from .html import (
    escape,
    format_number,
    image,
    neuron_mass,
    page,
    save_map_png,
    save_preview,
    save_rgb_png,
    slug,
    staged_directory,
    top_neurons,
    write_text_atomic,
)
from .record import SCHEMA_VERSION

#: (exclusive upper bound in dB, label), ascending; the lower bound of a tier is inclusive
PSNR_TIERS: tuple[tuple[float, str], ...] = (
    (20.0, "<20 dB"),
    (25.0, "20-25 dB"),
    (30.0, "25-30 dB"),
    (35.0, "30-35 dB"),
    (math.inf, ">=35 dB"),
)
KEY_COLUMNS = ["model", "family", "data", "size"]
FIDELITY_COLUMNS = ["psnr_db", "psnr_tier", "ssim", "bits_per_pixel", "parameters"]
STALE_COLUMN = "stale"
ARROWS = {True: "↑", False: "↓"}
#: a directed metric column: ``<task>/<metric> ↑`` or ``<task>/<metric> ↓``
DIRECTED_COLUMN = re.compile(r"^(?P<task>[^/\s]+)/(?P<metric>\S+) (?P<arrow>[↑↓])$")
#: the run directory layout written by ``xinc_bench.pipeline.run_all``: RUN/records/<task>.json
RUN_RECORDS_DIR = "records"
RUN_CANVAS = "canvas.safetensors"
#: neuron maps of the last layer shown beside each leaderboard row
THUMBNAIL_NEURONS = 3
THUMBNAIL_WIDTH = 96
THUMBNAILS_HEADER = "canvas, frame 0: reconstruction and top neurons of the last layer"
FIGURE_WIDTH = 400


@dataclass(frozen=True)
class RecordFile:
    """One record (SPEC 6) and the file it was read from."""

    path: Path
    record: dict[str, Any]

    @property
    def task(self) -> str:
        return self.record["task"]["name"]

    @property
    def version(self) -> int:
        return int(self.record["task"]["version"])


@dataclass(frozen=True)
class TaskInfo:
    """What a leaderboard needs from a task: its current version and headline metric directions."""

    name: str
    version: int
    directions: dict[str, bool | None]


def read_records(directory: Path) -> list[RecordFile]:
    """Every record below ``directory`` (JSON files with a ``schema_version``), sorted by path.

    Other JSON files (``model.json`` of a run, say) are skipped.

    Raises:
        XincError: the folder is missing, a JSON file is unreadable, or a record has a newer schema.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise XincError(f"records folder {directory} does not exist; write records with `xinc-bench run --out DIR`")
    records = []
    for path in sorted(directory.rglob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise XincError(f"cannot read {path} ({exc}); delete it or re-run the probe that wrote it") from exc
        if not isinstance(payload, dict) or "schema_version" not in payload:
            continue
        if not _is_record(payload):
            raise XincError(f"record {path} lacks task name/version or model name; re-run the probe that wrote it")
        if int(payload["schema_version"]) > SCHEMA_VERSION:
            raise XincError(
                f"record {path} has schema version {payload['schema_version']} but this xinc-bench reads up to "
                f"{SCHEMA_VERSION}; upgrade xinc-bench"
            )
        records.append(RecordFile(path, payload))
    return records


def _is_record(payload: dict[str, Any]) -> bool:
    task, model = payload.get("task"), payload.get("model")
    return isinstance(task, dict) and {"name", "version"} <= task.keys() and isinstance(model, dict) and "name" in model


def task_info(name: str, records: list[RecordFile]) -> TaskInfo:
    """The current version and metric directions of task ``name`` (from its YAML when it loads)."""
    from ..probes import load_task

    try:
        task = load_task(name)
    except XincError:
        metrics = sorted({m for r in records for m in r.record.get("scores", {}) if "/" not in m})
        return TaskInfo(name, max(r.version for r in records), {m: None for m in metrics})
    return TaskInfo(name, task.version, {m: spec.higher_is_better for m, spec in task.metrics.items()})


def metric_column(task: str, metric: str, higher_is_better: bool | None) -> str:
    """The leaderboard column of a headline metric, with its direction arrow if it has one."""
    arrow = ARROWS.get(higher_is_better)
    return f"{task}/{metric} {arrow}" if arrow else f"{task}/{metric}"


def rank_column(value_column: str) -> str:
    """The rank column beside a directed metric column (``<task>/<metric> rank``)."""
    match = DIRECTED_COLUMN.match(value_column)
    return f"{match['task']}/{match['metric']} rank"


def psnr_tier(psnr: float) -> str | None:
    """The ``PSNR_TIERS`` label of a PSNR in dB (None for a missing PSNR)."""
    if psnr is None or math.isnan(psnr):
        return None
    return next(label for upper, label in PSNR_TIERS if psnr < upper)


def _model_label(model: dict[str, Any]) -> str:
    config = model.get("config") or {}
    overrides = ",".join(f"{k}={json.dumps(config[k], sort_keys=True)}" for k in sorted(config))
    return f"{model.get('name')}[{overrides}]" if overrides else str(model.get("name"))


def _family(model: dict[str, Any]) -> str:
    if model.get("family"):
        return str(model["family"])
    from ..inrs import inr_info

    try:
        return inr_info(str(model.get("name"))).family
    except XincError:
        return ""


def _size(data: dict[str, Any]) -> str:
    shape = [data.get("height"), data.get("width")]
    if (data.get("num_frames") or 1) > 1:
        shape.insert(0, data["num_frames"])
    return "x".join(str(s) for s in shape) if None not in shape else ""


def _record_table(records: list[RecordFile], infos: dict[str, TaskInfo]) -> pd.DataFrame:
    """One row per record: its row key, task, version, seed and where it came from."""
    rows = []
    for item in records:
        record, data = item.record, item.record.get("data") or {}
        seed = record.get("seed")
        rows.append({
            "model": _model_label(record["model"]),
            "family": _family(record["model"]),
            "data": str(data.get("name") or data.get("data") or ""),
            "size": _size(data),
            "task": item.task,
            "version": item.version,
            "current": item.version == infos[item.task].version,
            "seed": "" if seed is None else str(seed),
            "seed_order": float(seed) if isinstance(seed, (int, float)) else math.inf,
            "created": str(record.get("created", "")),
            "path": str(item.path),
            "item": item,
        })
    return pd.DataFrame(rows)


def _select(table: pd.DataFrame, infos: dict[str, TaskInfo]) -> pd.DataFrame:
    """The records a leaderboard uses: one per (row, task, seed), never mixing task versions in a row.

    Per (row, task, seed) the current version wins, then the newest version, then the newest
    record; per (row, task) only current records are used when any exists, else the newest version.
    """
    ordered = table.sort_values(["current", "version", "created", "path"])
    latest = ordered.drop_duplicates(KEY_COLUMNS + ["task", "seed"], keep="last")
    group = latest.groupby(KEY_COLUMNS + ["task"])
    best_version = group["version"].transform("max")
    any_current = group["current"].transform("any")
    chosen = latest[latest["current"] | (~any_current & (latest["version"] == best_version))].copy()
    chosen["stale"] = [
        "" if current else f"{task} (v{version}, current v{infos[task].version})"
        for task, version, current in zip(chosen["task"], chosen["version"], chosen["current"])
    ]
    return chosen


def _values(chosen: pd.DataFrame, infos: dict[str, TaskInfo]) -> pd.DataFrame:
    """Long table: one value per (row, seed, metric column)."""
    rows = []
    for key, seed, item in zip(chosen[KEY_COLUMNS].itertuples(index=False), chosen["seed"], chosen["item"]):
        info = infos[item.task]
        scores = item.record.get("scores", {})
        for metric, direction in info.directions.items():
            rows.append((*key, seed, metric_column(info.name, metric, direction), _number(scores.get(metric))))
    return pd.DataFrame(rows, columns=KEY_COLUMNS + ["seed", "column", "value"])


def _fidelity(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per row: PSNR and SSIM averaged over seeds (one value per seed), parameters and bits per pixel."""
    per_seed = chosen.sort_values("path").drop_duplicates(KEY_COLUMNS + ["seed"])
    rows = []
    for key, item in zip(per_seed[KEY_COLUMNS].itertuples(index=False), per_seed["item"]):
        fidelity, model = item.record.get("fidelity") or {}, item.record["model"]
        rows.append((*key, _number(fidelity.get("psnr")), _number(fidelity.get("ssim")),
                     _number(model.get("bits_per_pixel")), _number(model.get("num_parameters"))))
    table = pd.DataFrame(rows, columns=KEY_COLUMNS + ["psnr_db", "ssim", "bits_per_pixel", "parameters"])
    grouped = table.groupby(KEY_COLUMNS, sort=True)
    result = grouped[["psnr_db", "ssim", "bits_per_pixel"]].mean()
    result["parameters"] = grouped["parameters"].first().astype("Int64")
    result["n_seeds"] = grouped.size()
    result["psnr_tier"] = [psnr_tier(p) for p in result["psnr_db"]]
    return result


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def add_ranks(df: pd.DataFrame, within: list[str]) -> pd.DataFrame:
    """(Re)compute every ``<task>/<metric> rank`` column, ranking rows only within groups of ``within``.

    Rank 1 = best by the column's arrow; rows with a missing value or a stale version of the task
    get no rank.
    """
    df = df.copy()
    stale_tasks = df[STALE_COLUMN].map(_stale_tasks)
    for column in [c for c in df.columns if DIRECTED_COLUMN.match(c)]:
        match = DIRECTED_COLUMN.match(column)
        eligible = ~stale_tasks.map(lambda tasks: match["task"] in tasks)
        values = df[column].where(eligible)
        groups = values.groupby([df[c] for c in within], dropna=False)
        ranks = groups.rank(method="min", ascending=match["arrow"] == "↓")
        df[rank_column(column)] = ranks.round().astype("Int64")
    return df


def _stale_tasks(cell: str) -> set[str]:
    return {part.split(" (")[0] for part in cell.split("; ") if part}


def build_leaderboard(records_dir: Path) -> pd.DataFrame:
    """The leaderboard of every record below ``records_dir`` (see the module docstring for columns).

    Rows are sorted by data, size, model; ranks are within (data, size). ``df.attrs["sources"]``
    maps each row's :func:`row_id` to the run it illustrates (its canvas file and probe figures,
    from the lowest seed), which :func:`write_leaderboard` turns into pictures.

    Raises:
        XincError: the folder is missing or holds no records, or a record is unreadable.
    """
    records = read_records(Path(records_dir))
    if not records:
        raise XincError(f"no records below {records_dir}; write some with `xinc-bench run --out {records_dir}/RUN`")
    by_task: dict[str, list[RecordFile]] = {}
    for item in records:
        by_task.setdefault(item.task, []).append(item)
    infos = {name: task_info(name, items) for name, items in sorted(by_task.items())}
    chosen = _select(_record_table(records, infos), infos)
    values = _values(chosen, infos)
    scores = values.groupby(KEY_COLUMNS + ["column"], sort=True)["value"].mean().unstack("column")
    metric_columns = [metric_column(i.name, m, d) for i in infos.values() for m, d in i.directions.items()]
    stale = chosen.groupby(KEY_COLUMNS)["stale"].agg(lambda labels: "; ".join(sorted({s for s in labels if s})))
    table = _fidelity(chosen).join(scores.reindex(columns=metric_columns)).join(stale.rename(STALE_COLUMN))
    table = table.reset_index()
    table = add_ranks(table, ["data", "size"])
    ordered = KEY_COLUMNS + ["n_seeds"] + FIDELITY_COLUMNS
    for column in metric_columns:
        ordered += [column] + ([rank_column(column)] if DIRECTED_COLUMN.match(column) else [])
    table = table[ordered + [STALE_COLUMN]].sort_values(["data", "size", "model", "family"], ignore_index=True)
    table.attrs["sources"] = _sources(chosen)
    return table


def row_id(row: pd.Series | dict[str, Any]) -> str:
    """A stable, file-name-safe identifier of a leaderboard row (from its key columns)."""
    return slug("__".join(str(row[c]) for c in KEY_COLUMNS if row[c]))


def _sources(chosen: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per row id: the canvas file and the probe figures of the row's lowest-seed run."""
    sources: dict[str, dict[str, Any]] = {}
    for _, record_row in chosen.sort_values(["seed_order", "seed", "path"]).iterrows():
        item: RecordFile = record_row["item"]
        entry = sources.setdefault(row_id(record_row), {"seed": record_row["seed"], "canvas": None, "figures": {}})
        if entry["seed"] != record_row["seed"] or item.task in entry["figures"]:
            continue
        entry["figures"][item.task] = [str(p) for p in record_figures(item)]
        run_canvas = item.path.parent.parent / RUN_CANVAS
        if entry["canvas"] is None and item.path.parent.name == RUN_RECORDS_DIR and run_canvas.is_file():
            entry["canvas"] = str(run_canvas)
    return sources


def record_figures(item: RecordFile) -> list[Path]:
    """The figure files of a record that exist, sorted by name.

    An artefact is looked up first in the ``<task>_figures/`` folder beside the record (so records
    moved or copied with their figures resolve to their own copies), then at the path as written.
    """
    found = []
    for artifact in item.record.get("artifacts", []):
        written = Path(artifact)
        beside = item.path.parent / f"{item.path.stem}_figures" / written.name
        path = beside if beside.is_file() else written
        if path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.name)


def tier_view(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard with ranks recomputed within (data, size, PSNR tier), sorted by tier.

    Compares architectures only against others reconstructing the signal equally well; rows
    without a PSNR form their own group, listed last.
    """
    tier_order = {label: index for index, (_, label) in enumerate(PSNR_TIERS)}
    ranked = add_ranks(df, ["data", "size", "psnr_tier"])
    order = ranked["psnr_tier"].map(lambda t: tier_order.get(t, len(tier_order)))
    ranked = ranked.assign(_tier=order).sort_values(["data", "size", "_tier", "model", "family"], ignore_index=True)
    return ranked.drop(columns="_tier")


def write_leaderboard(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """Write ``<name>.csv``, ``<name>.md`` and ``<name>.html`` (+ ``<name>_assets/``) into ``out_dir``.

    The HTML page is self-contained with relative links: a sortable table (click a header),
    per row the reconstruction and the top neuron maps of the last layer (when the row's run
    folder holds its canvas), and every probe figure. Pictures need ``df.attrs["sources"]`` (set by
    :func:`build_leaderboard`); without it the page has the table only. Rebuilding from the same
    records rewrites identical bytes. Returns the CSV, Markdown and HTML paths.
    """
    if not name or slug(name) != name:
        raise XincError(f"leaderboard name {name!r} is not a plain file name; use letters, digits, '.', '_' or '-'")
    out_dir = Path(out_dir)
    assets = f"{name}_assets"
    with staged_directory(out_dir / assets) as stage:
        pictures = _render_pictures(df, stage, assets)
    csv_text = df.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    csv_path = write_text_atomic(out_dir / f"{name}.csv", csv_text)
    md_path = write_text_atomic(out_dir / f"{name}.md", markdown_table(df))
    html_path = write_text_atomic(out_dir / f"{name}.html", _html_page(df, name, pictures))
    return [csv_path, md_path, html_path]


def markdown_table(df: pd.DataFrame) -> str:
    """The leaderboard as a GitHub Markdown table (numbers formatted as on the HTML page)."""
    def cell(value: Any) -> str:
        return format_number(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(c) for c in df.columns) + " |",
        "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(_scalar(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> Any:
    """``None`` for a missing cell (NaN, NA, None), else the value."""
    return None if pd.isna(value) else value


def _render_pictures(df: pd.DataFrame, stage: Path, assets: str) -> dict[str, dict[str, Any]]:
    """Render thumbnails and figure previews (:func:`save_preview`) of every row into ``stage/<row id>/``.

    Returns per row id: ``thumbnails`` (list of (link, caption)) and ``figures`` (task -> list of
    (link, caption)), links relative to the page (``<assets>/<row id>/...``).
    """
    from ..canvas import read_canvas

    def link(path: Path) -> str:
        return f"{assets}/{path.relative_to(stage).as_posix()}"

    pictures: dict[str, dict[str, Any]] = {}
    for _, row in df.iterrows():
        rid = row_id(row)
        source = df.attrs.get("sources", {}).get(rid)
        if source is None:
            continue
        folder = stage / rid
        thumbnails = _thumbnails(read_canvas(Path(source["canvas"])), folder) if source["canvas"] else []
        figures = {
            task: [(link(save_preview(p, folder / slug(task) / p.name)), f"{task}: {p.stem}") for p in map(Path, paths)]
            for task, paths in sorted(source["figures"].items())
        }
        pictures[rid] = {"thumbnails": [(link(path), caption) for path, caption in thumbnails], "figures": figures}
    return pictures


def _thumbnails(canvas: Any, folder: Path) -> list[tuple[Path, str]]:
    """Frame 0 of the reconstruction and of the last layer's top neurons, as PNGs in ``folder``."""
    recon = canvas.recon if canvas.recon is not None else canvas.frames
    shown = [(save_rgb_png(recon[0], folder / "recon.png"), "reconstruction")]
    last = canvas.layer_names[-1]
    indices, shares = top_neurons(neuron_mass(canvas, last), THUMBNAIL_NEURONS)
    first_frame = canvas.layer_frames(last, 0, 1)[indices, 0]
    for neuron, share, neuron_map in zip(indices.tolist(), shares.tolist(), first_frame):
        path = save_map_png(neuron_map, folder / f"{slug(last)}_n{neuron}.png")
        shown.append((path, f"{last} n{neuron} ({100 * share:.1f}%)"))
    return shown


SORT_SCRIPT = """
document.querySelectorAll("table.leaderboard").forEach(function (table) {
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, column) {
    if (!th.classList.contains("sortable")) { return; }
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = th.dataset.type === "number";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        if (x === "" && y === "") { return 0; }
        if (x === "") { return 1; }
        if (y === "") { return -1; }
        var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _html_page(df: pd.DataFrame, name: str, pictures: dict[str, dict[str, Any]]) -> str:
    tiers = ", ".join(label for _, label in PSNR_TIERS)
    intro = (
        f"<h1>xinc-bench leaderboard: {escape(name)}</h1>\n"
        "<p class=\"note\">One row per model, data and size; values are means over <code>n_seeds</code> seeds. "
        "↑ higher is better, ↓ lower is better, no arrow: no preferred direction (not ranked). "
        "Rank 1 = best among rows with the same data and size (or tier, in a tier view). "
        f"PSNR tiers: {escape(tiers)}. Rows with a <code>stale</code> entry carry values from an older task "
        "version: shown, highlighted, not ranked. Click a column header to sort.</p>\n"
    )
    return page(f"xinc-bench leaderboard: {name}", intro + _html_table(df, pictures) + _html_figures(df, pictures),
                SORT_SCRIPT)


def _html_table(df: pd.DataFrame, pictures: dict[str, dict[str, Any]]) -> str:
    """The sortable table; the canvas thumbnails follow the key columns."""
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) for c in df.columns}
    split = len(KEY_COLUMNS)
    headers = [
        f'<th class="sortable{"" if numeric[c] else " text"}" data-type="{"number" if numeric[c] else "text"}" '
        f'scope="col">{_breakable(c)}</th>'
        for c in df.columns
    ]
    headers.insert(split, f'<th class="text" scope="col">{escape(THUMBNAILS_HEADER)}</th>')
    body = []
    for _, row in df.iterrows():
        rid = row_id(row)
        cells = [_html_cell(row[c], numeric[c], link=f"#{rid}" if c == "model" else None) for c in df.columns]
        thumbs = "".join(
            image(src, caption, width=THUMBNAIL_WIDTH, pixelated=True)
            for src, caption in pictures.get(rid, {}).get("thumbnails", [])
        )
        cells.insert(split, f'<td class="text"><div class="pictures thumbnails">{thumbs}</div></td>')
        stale = ' class="stale"' if row[STALE_COLUMN] else ""
        body.append(f'<tr id="row-{rid}"{stale}>{"".join(cells)}</tr>')
    return (
        f'<div class="scroll"><table class="leaderboard">\n<thead><tr>{"".join(headers)}</tr></thead>\n<tbody>\n'
        + "\n".join(body) + "\n</tbody>\n</table></div>\n"
    )


def _breakable(column: str) -> str:
    """A column name escaped for HTML, with line-break opportunities after ``/`` and ``_``."""
    return re.sub(r"([/_])", r"\1<wbr>", escape(column))


def _html_cell(value: Any, numeric: bool, link: str | None = None) -> str:
    value = _scalar(value)
    text = escape(format_number(value))
    sort_key = "" if value is None else (repr(float(value)) if numeric else str(value))
    content = f'<a href="{link}">{text}</a>' if link else text
    cls = "" if numeric else ' class="text"'
    return f'<td{cls} data-value="{escape(sort_key)}">{content}</td>'


def _html_figures(df: pd.DataFrame, pictures: dict[str, dict[str, Any]]) -> str:
    sections = ["<h2>Probe figures</h2>"]
    for _, row in df.iterrows():
        rid = row_id(row)
        figures = pictures.get(rid, {}).get("figures", {})
        if not figures:
            continue
        sections.append(f'<h3 id="{rid}">{escape(row["model"])} on {escape(row["data"])} {escape(row["size"])}</h3>')
        shown = [image(src, caption, caption=caption, width=FIGURE_WIDTH)
                 for pairs in figures.values() for src, caption in pairs]
        sections.append(f'<div class="pictures">{"".join(shown)}</div>')
    return "\n".join(sections) + "\n"
