"""Leaderboards (SPEC 6): a pure function of a folder of records, written as CSV, Markdown and HTML.

Rows
----
One row per (model, data, size), the model named by its preset (plus any constructor overrides).
``family`` is the record's ``model.family`` or else the registered INR's family (empty for unknown
models). Rows of the family ``known-answer`` (:data:`REFERENCE_FAMILY`: INRs whose right answer is
known by construction) are **reference rows**: shown, marked (``reference`` is True, and the
Markdown and HTML list them in a section of their own), never ranked and never counted in another
row's rank.

Seeds and intervals
-------------------
A row aggregates the records of all its seeds (``n_seeds`` of them). Fidelity (PSNR) and every
task's headline score are the mean over seeds with a 95% percentile bootstrap interval of that mean:
:func:`scipy.stats.bootstrap` with ``method="percentile"``, 9,999 resamples and a generator seeded
with 0 (:func:`xinc_bench.probes.stats.bootstrap_interval`), so a rebuild gives the same interval.
With one seed the interval is not available (empty in the CSV, ``n/a`` on the pages), never zero
width. With three seeds a percentile interval spans, in effect, the smallest to the largest seed value.

Columns (the DataFrame and the CSV)
-----------------------------------
* ``model``, ``family``, ``data``, ``size`` (``HxW`` or ``TxHxW``), ``reference``, ``n_seeds``;
* fidelity: ``psnr_db`` with ``psnr_db lo`` and ``psnr_db hi``, ``psnr_tier``, ``ssim``,
  ``bits_per_pixel``, ``parameters``;
* per task, its headline metric (the task's ``headline:``, else its first metric):
  ``<task>/<metric> ↑`` (higher is better), ``... ↓`` (lower is better) or no arrow (no preferred
  direction, e.g. a correlation whose sign is the finding): the mean over seeds; ``<task>/<metric>
  lo`` and ``hi``: its interval; ``<task>/<metric> z``: the mean over seeds of its effect size against
  its null ((value - null mean) / null sd, from the records' ``nulls``); and for directed metrics
  ``<task>/<metric> rank``;
* ``sanity``: the headline scores a sanity record (``records/sanity.json``, model randomisation) of
  any seed flags as insensitive; they carry a dagger (†) on the pages;
* ``absent``: the headline scores a probe could not compute, with the records' reasons (their value
  is empty, never 0 or NaN in a ranked cell);
* ``stale``: the tasks whose values in this row come from an older (or other) task version than
  the current ``tasks/<task>.yaml``, e.g. ``color (v1, current v2)``. Stale values are shown but
  never ranked, and a row never mixes versions of one task: when any seed has a current record,
  only current records are used.

Ranks
-----
Within (data, size) (or within a PSNR tier, :func:`tier_view`), rank 1 = best by the column's
arrow. A row ranks below every row whose value is strictly better **unless their intervals
overlap**: then the two tie and the worse one shares the better rank. Rows without an interval
(one seed) tie only on equal values. Reference rows, stale values and absent values are not ranked.

Every other score of a task (its other metrics, per layer: value, null mean and sd, effect size,
p-value, both controls and the sanity movement) is on the task's own page, linked from the table.
A build warns (:class:`DegenerateColumnWarning`) about every task metric that is constant, or empty,
across all non-reference rows: such a column cannot tell models apart.

PSNR tiers (``PSNR_TIERS``) are ``<20 dB``, ``20-25 dB``, ``25-30 dB``, ``30-35 dB``, ``>=35 dB``
(lower bound inclusive); :func:`tier_view` ranks models only against rows of the same tier, so
architectures are compared at matched reconstruction quality.

A task whose YAML cannot be loaded (deleted, or its probe not registered) keeps its values: its
metrics are then the record's un-prefixed scores, without directions or ranks, its headline the
first of them in name order, and its current version the newest one among the records.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..errors import XincError
from ..probes.base import TASKS_DIR, Task
from ..probes.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, bootstrap_interval
from .html import (
    escape,
    format_number,
    image,
    page,
    save_map_png,
    save_preview,
    save_rgb_png,
    short_number,
    slug,
)
from ..files import replaced_dir, write_text_atomic
from ..runs.record import SANITY_KIND, RecordFile, scan_records
from ..canvas import read_canvas
from ..runs.preview import run_preview
from ..runs.rundir import CONFIG_NAME, RECORDS_DIR, RunDir

#: (exclusive upper bound in dB, label), ascending; the lower bound of a tier is inclusive
PSNR_TIERS: tuple[tuple[float, str], ...] = (
    (20.0, "<20 dB"),
    (25.0, "20-25 dB"),
    (30.0, "25-30 dB"),
    (35.0, "30-35 dB"),
    (math.inf, ">=35 dB"),
)
KEY_COLUMNS = ["model", "family", "data", "size"]
REFERENCE_COLUMN = "reference"
#: the model family of known-answer INRs: reference rows, never ranked against the zoo
REFERENCE_FAMILY = "known-answer"
PSNR_COLUMN = "psnr_db"
FIDELITY_COLUMNS = [PSNR_COLUMN, f"{PSNR_COLUMN} lo", f"{PSNR_COLUMN} hi", "psnr_tier", "ssim", "bits_per_pixel",
                    "parameters"]
SANITY_COLUMN = "sanity"
ABSENT_COLUMN = "absent"
STALE_COLUMN = "stale"
ARROWS = {True: "↑", False: "↓"}
#: a directed metric column: ``<task>/<metric> ↑`` or ``<task>/<metric> ↓``
DIRECTED_COLUMN = re.compile(r"^(?P<task>[^/\s]+)/(?P<metric>\S+) (?P<arrow>[↑↓])$")
#: the mark of a headline score that a sanity record flags as insensitive
DAGGER = "†"
#: how a sanity record's ``movement_unit`` is written beside the movement
SANITY_UNITS = {"null_sd": "sd", "relative": "rel"}
#: neuron maps of the last layer shown beside each leaderboard row
THUMBNAIL_NEURONS = 3
THUMBNAIL_WIDTH = 96
THUMBNAILS_HEADER = "canvas, frame 0: reconstruction and top neurons of the last layer"
FIGURE_WIDTH = 400
INTERVAL_TEXT = (
    f"{100 * CONFIDENCE:.0f}% percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap, "
    f"{BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}); n/a with one seed"
)


class DegenerateColumnWarning(UserWarning):
    """A leaderboard column is constant (or empty) across all rows, so it cannot tell models apart."""


@dataclass(frozen=True)
class TaskInfo:
    """What a leaderboard needs from a task: its current version, metric directions and headline metric.

    ``task`` is the loaded YAML (for the metric descriptions on the task page), None when it cannot be loaded.
    """

    name: str
    version: int
    directions: dict[str, bool | None]
    headline: str
    task: Task | None = None


@dataclass(frozen=True, eq=False)
class Detail:
    """Every score behind a leaderboard: what the task pages show.

    Attributes:
        scores: one row per (row key, task, score): ``value`` (mean over seeds), ``seeds`` (how many
            had a value), ``null_model``, ``null_mean``, ``null_sd``, ``effect_size`` (means over
            seeds), ``p_value`` (the largest over seeds), one column per control (mean over seeds),
            ``movement`` (mean over seeds), ``movement_unit`` (``sd``: null sds, ``rel``: relative
            change) and ``insensitive`` (any seed) from sanity records, and ``note`` (why a score or
            its null is absent).
        tasks: the tasks, by name.
        controls: the control names, in column order.
    """

    scores: pd.DataFrame
    tasks: dict[str, TaskInfo]
    controls: tuple[str, ...] = field(default=())

    def __deepcopy__(self, memo: dict[int, Any]) -> "Detail":
        # pandas deep-copies ``DataFrame.attrs`` on every operation; a Detail is never mutated, so share it
        return self


def headline_metric(task: Task) -> str:
    """The task's leaderboard metric: its ``headline:``, else its first metric."""
    return task.headline or next(iter(task.metrics))


def task_info(name: str, records: list[RecordFile], tasks_dir: Path = TASKS_DIR) -> TaskInfo:
    """The current version, metric directions and headline of task ``name`` (from its YAML when it loads)."""
    from ..probes import load_task

    try:
        task = load_task(name, Path(tasks_dir))
    except XincError:
        names = sorted({m for r in records for key in ("scores", "absent") for m in r.record.get(key) or {}
                        if "/" not in m})
        return TaskInfo(name, max(r.version for r in records), {m: None for m in names}, names[0] if names else "")
    directions = {m: spec.higher_is_better for m, spec in task.metrics.items()}
    return TaskInfo(name, task.version, directions, headline_metric(task), task)


def metric_column(task: str, metric: str, higher_is_better: bool | None) -> str:
    """The leaderboard column of a headline metric, with its direction arrow if it has one."""
    arrow = ARROWS.get(higher_is_better)
    return f"{task}/{metric} {arrow}" if arrow else f"{task}/{metric}"


def _base(value_column: str) -> str:
    """``<task>/<metric>`` of a value column (its arrow dropped)."""
    return value_column.split(" ")[0]


def rank_column(value_column: str) -> str:
    """The rank column beside a directed metric column (``<task>/<metric> rank``)."""
    return f"{_base(value_column)} rank"


def interval_columns(value_column: str) -> tuple[str, str]:
    """The interval columns beside a value column: ``<name> lo``, ``<name> hi``."""
    return f"{_base(value_column)} lo", f"{_base(value_column)} hi"


def effect_column(value_column: str) -> str:
    """The mean effect size column beside a headline value column (``<task>/<metric> z``)."""
    return f"{_base(value_column)} z"


def psnr_tier(psnr: float) -> str | None:
    """The ``PSNR_TIERS`` label of a PSNR in dB (None for a missing PSNR)."""
    if psnr is None or math.isnan(psnr):
        return None
    return next(label for upper, label in PSNR_TIERS if psnr < upper)


def _model_label(model: dict[str, Any]) -> str:
    """``name``, or ``name[key=value,...]`` with the config overrides and a tracer other than the model's own
    (records of one model traced two ways are two rows, never two seeds of one)."""
    from ..inrs import default_tracer

    config = model.get("config") or {}
    overrides = [f"{k}={json.dumps(config[k], sort_keys=True)}" for k in sorted(config)]
    tracer, default = model.get("tracer"), default_tracer(str(model.get("name")))
    if tracer and default is not None and tracer != default:
        overrides.append(f"tracer={tracer}")
    return f"{model.get('name')}[{','.join(overrides)}]" if overrides else str(model.get("name"))



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


def _row_key(payload: dict[str, Any]) -> dict[str, str]:
    """The leaderboard row a record or sanity record belongs to."""
    data = payload.get("data") or {}
    return {
        "model": _model_label(payload["model"]),
        "family": _family(payload["model"]),
        "data": str(data.get("name") or data.get("data") or ""),
        "size": _size(data),
    }


def _seed_label(seed: Any) -> str:
    return "" if seed is None else str(seed)


def _record_table(records: list[RecordFile], infos: dict[str, TaskInfo]) -> pd.DataFrame:
    """One row per record: its row key, task, version, seed and where it came from."""
    rows = []
    for item in records:
        record = item.record
        seed = record.get("seed")
        rows.append({
            **_row_key(record),
            "task": item.task,
            "version": item.version,
            "current": item.version == infos[item.task].version,
            "seed": _seed_label(seed),
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


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _score_table(chosen: pd.DataFrame, infos: dict[str, TaskInfo]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Long table: one row per (row, seed, task, score) with the record's value, null summary,
    absence reason and control values; and the control names found."""
    controls = tuple(sorted({name for item in chosen["item"] for name in item.record.get("controls") or {}}))
    rows = []
    for key, seed, item in zip(chosen[KEY_COLUMNS].itertuples(index=False), chosen["seed"], chosen["item"]):
        record, info = item.record, infos[item.task]
        scores, nulls, absent = (record.get(k) or {} for k in ("scores", "nulls", "absent"))
        control_scores = {name: values or {} for name, values in (record.get("controls") or {}).items()}
        for score in dict.fromkeys([info.headline, *info.directions, *scores, *absent]):
            null = nulls.get(score) or {}
            rows.append((
                *key, seed, item.task, score, _number(scores.get(score)), str(null.get("model") or ""),
                _number(null.get("mean")), _number(null.get("sd")), _number(null.get("effect_size")),
                _number(null.get("p_value")), str(null.get("reason") or ""), str(absent.get(score) or ""),
                *(_number(control_scores.get(name, {}).get(score)) for name in controls),
            ))
    columns = KEY_COLUMNS + ["seed", "task", "score", "value", "null_model", "null_mean", "null_sd", "effect_size",
                             "p_value", "null_reason", "absent", *controls]
    return pd.DataFrame(rows, columns=columns), controls


def _sanity_table(sanity: list[RecordFile]) -> pd.DataFrame:
    """Long table: one row per (row, seed, task, score) of every sanity record."""
    rows = []
    for item in sanity:
        key, seed = _row_key(item.record), _seed_label(item.record.get("seed"))
        for task, scores in (item.record.get("tasks") or {}).items():
            for score, result in (scores or {}).items():
                unit = SANITY_UNITS.get(result.get("movement_unit"), "")
                rows.append((*key.values(), seed, task, score, _number(result.get("movement")), unit,
                             bool(result.get("insensitive"))))
    return pd.DataFrame(rows, columns=KEY_COLUMNS + ["seed", "task", "score", "movement", "movement_unit",
                                                     "insensitive"])


def _join_unique(texts: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(t for t in texts if t))


def _aggregate(long: pd.DataFrame, sanity: pd.DataFrame, controls: tuple[str, ...]) -> pd.DataFrame:
    """Per (row, task, score): means over seeds (p-value: the largest), reasons and sanity flags."""
    keys = KEY_COLUMNS + ["task", "score"]
    grouped = long.groupby(keys, sort=False)
    table = grouped.agg(
        value=("value", "mean"), seeds=("value", "count"), records=("seed", "nunique"),
        null_model=("null_model", _join_unique), null_mean=("null_mean", "mean"), null_sd=("null_sd", "mean"),
        effect_size=("effect_size", "mean"), p_value=("p_value", "max"), null_reason=("null_reason", _join_unique),
        absent_reason=("absent", _join_unique), absent_seeds=("absent", lambda s: int((s != "").sum())),
        **{name: (name, "mean") for name in controls},
    )
    flags = sanity.groupby(keys).agg(movement=("movement", "mean"), movement_unit=("movement_unit", _join_unique),
                                     insensitive=("insensitive", "any"))
    table = table.join(flags, how="left")
    table["insensitive"] = table["insensitive"].fillna(False).astype(bool)
    table["movement_unit"] = table["movement_unit"].fillna("")
    table["note"] = [_note(*values) for values in zip(table["absent_reason"], table["absent_seeds"],
                                                       table["records"], table["null_reason"])]
    return table.reset_index()


def _note(absent_reason: str, absent_seeds: int, records: int, null_reason: str) -> str:
    """Why a score (or its null summary) is missing, for hover text and the task pages."""
    parts = []
    if absent_reason:
        share = "" if absent_seeds == records else f" (in {absent_seeds} of {records} seeds)"
        parts.append(f"absent{share}: {absent_reason}")
    if null_reason:
        parts.append(f"no null summary: {null_reason}")
    return "; ".join(parts)


def _fidelity(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per row: PSNR (mean and interval over seeds), SSIM, parameters, bits per pixel, seed count, tier."""
    per_seed = chosen.sort_values("path").drop_duplicates(KEY_COLUMNS + ["seed"])
    rows = []
    for key, item in zip(per_seed[KEY_COLUMNS].itertuples(index=False), per_seed["item"]):
        fidelity, model = item.record.get("fidelity") or {}, item.record["model"]
        rows.append((*key, _number(fidelity.get("psnr")), _number(fidelity.get("ssim")),
                     _number(model.get("bits_per_pixel")), _number(model.get("num_parameters"))))
    table = pd.DataFrame(rows, columns=KEY_COLUMNS + [PSNR_COLUMN, "ssim", "bits_per_pixel", "parameters"])
    grouped = table.groupby(KEY_COLUMNS, sort=True)
    result = grouped[[PSNR_COLUMN, "ssim", "bits_per_pixel"]].mean()
    result["parameters"] = grouped["parameters"].first().astype("Int64")
    result["n_seeds"] = grouped.size()
    lo, hi = _intervals(grouped[PSNR_COLUMN])
    result[f"{PSNR_COLUMN} lo"], result[f"{PSNR_COLUMN} hi"] = lo, hi
    result["psnr_tier"] = [psnr_tier(p) for p in result[PSNR_COLUMN]]
    return result


def _intervals(values: Any) -> tuple[pd.Series, pd.Series]:
    """Per group of a grouped Series: the bootstrap interval of its mean (NaN, NaN without one)."""
    bounds = values.agg(lambda v: bootstrap_interval(v.to_numpy()) or (math.nan, math.nan))
    return bounds.map(lambda b: b[0]).astype(float), bounds.map(lambda b: b[1]).astype(float)


def _headline(long: pd.DataFrame, detail: pd.DataFrame, infos: dict[str, TaskInfo]) -> pd.DataFrame:
    """Wide table, per row: every task's headline value, interval, mean effect size; sanity and absent notes."""
    index = KEY_COLUMNS
    headline_of = {name: info.headline for name, info in infos.items()}
    is_headline = detail["score"] == detail["task"].map(headline_of)
    heads = detail[is_headline].set_index(index + ["task"])
    per_seed = long[long["score"] == long["task"].map(headline_of)]
    lo, hi = _intervals(per_seed.groupby(index + ["task"], sort=False)["value"])
    heads = heads.assign(lo=lo, hi=hi)
    wide = pd.DataFrame(index=heads.index.droplevel("task").unique())
    for name, info in infos.items():
        value_column = metric_column(name, info.headline, info.directions.get(info.headline))
        part = heads.xs(name, level="task")  # every record has a row for its task's headline
        low, high = interval_columns(value_column)
        wide[value_column] = part["value"]
        wide[low], wide[high] = part["lo"], part["hi"]
        wide[effect_column(value_column)] = part["effect_size"]
    flagged = heads[heads["insensitive"]].reset_index()
    wide[SANITY_COLUMN] = _per_row(flagged, wide.index, lambda r: f"{r.task}/{r.score}")
    missing = heads[heads["absent_reason"] != ""].reset_index()
    wide[ABSENT_COLUMN] = _per_row(missing, wide.index, lambda r: f"{r.task}/{r.score}: {r.note}")
    return wide


def _per_row(table: pd.DataFrame, index: pd.Index, text: Any) -> pd.Series:
    """``"; "``-joined ``text(row)`` of the rows of ``table`` per leaderboard row (empty where none)."""
    labels: dict[tuple[str, ...], list[str]] = {}
    for item in table.itertuples(index=False):
        labels.setdefault(tuple(getattr(item, c) for c in KEY_COLUMNS), []).append(text(item))
    return pd.Series(["; ".join(labels.get(key, [])) for key in index], index=index, dtype=object)


def interval_ranks(values: np.ndarray, lows: np.ndarray, highs: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks (1 = best) of ``values`` where overlapping intervals tie.

    Row ``i`` ranks ``1 + #{j : value_j strictly better than value_i and the intervals of i and j do
    not overlap}``; a row without an interval (NaN bound) overlaps nothing, so it ties only on an
    equal value (ranks by value, as :meth:`pandas.Series.rank` with ``method="min"``).
    """
    values, lows, highs = (np.asarray(a, dtype=np.float64) for a in (values, lows, highs))
    signed = values if higher_is_better else -values
    better = signed[None, :] > signed[:, None]  # [i, j]: row j is strictly better than row i
    has = ~(np.isnan(lows) | np.isnan(highs))
    overlap = has[:, None] & has[None, :] & (lows[:, None] <= highs[None, :]) & (lows[None, :] <= highs[:, None])
    return 1 + (better & ~overlap).sum(axis=1)


def add_ranks(df: pd.DataFrame, within: list[str]) -> pd.DataFrame:
    """(Re)compute every ``<task>/<metric> rank`` column, ranking rows only within groups of ``within``.

    Rank 1 = best by the column's arrow, with ties where intervals overlap (:func:`interval_ranks`);
    reference rows, rows with a missing value and rows with a stale version of the task get no rank.
    """
    df = df.copy()
    stale_tasks = df[STALE_COLUMN].map(_stale_tasks)
    for column in [c for c in df.columns if DIRECTED_COLUMN.match(c)]:
        match = DIRECTED_COLUMN.match(column)
        low, high = interval_columns(column)
        eligible = ~df[REFERENCE_COLUMN].astype(bool) & df[column].notna()
        eligible &= ~stale_tasks.map(lambda tasks: match["task"] in tasks)
        ranks = pd.Series(pd.NA, index=df.index, dtype="Int64")
        for _, group in df[eligible].groupby(within, dropna=False, sort=False):
            ranks.loc[group.index] = interval_ranks(group[column], group[low], group[high], match["arrow"] == "↑")
        df[rank_column(column)] = ranks
    return df


def _stale_tasks(cell: str) -> set[str]:
    return {part.split(" (")[0] for part in cell.split("; ") if part}


def build_leaderboard(records_dir: Path, tasks_dir: Path = TASKS_DIR) -> pd.DataFrame:
    """The leaderboard of every record below ``records_dir`` (see the module docstring for columns).

    Rows are sorted with reference rows last, then by data, size, model; ranks are within (data,
    size). ``tasks_dir`` is where the task YAMLs (current versions, directions, headlines) are read.
    ``df.attrs``: ``sources`` maps each row's :func:`row_id` to the run it illustrates (its canvas
    file and probe figures, from the lowest seed), which :func:`write_leaderboard` turns into
    pictures; ``detail`` is the :class:`Detail` behind the task pages; ``degenerate`` lists the
    warnings issued (also as :class:`DegenerateColumnWarning`).

    Raises:
        XincError: the folder is missing or holds no records, or a record is unreadable.
    """
    records, sanity = scan_records(Path(records_dir))
    if not records:
        raise XincError(f"no records below {records_dir}; write some with `xinc-bench run --out {records_dir}/RUN`")
    by_task: dict[str, list[RecordFile]] = {}
    for item in records:
        by_task.setdefault(item.task, []).append(item)
    infos = {name: task_info(name, items, tasks_dir) for name, items in sorted(by_task.items())}
    chosen = _select(_record_table(records, infos), infos)
    long, controls = _score_table(chosen, infos)
    detail = _aggregate(long, _sanity_table(sanity), controls)
    stale = chosen.groupby(KEY_COLUMNS)["stale"].agg(lambda labels: "; ".join(sorted({s for s in labels if s})))
    table = _fidelity(chosen).join(_headline(long, detail, infos)).join(stale.rename(STALE_COLUMN)).reset_index()
    table[REFERENCE_COLUMN] = table["family"] == REFERENCE_FAMILY
    table = add_ranks(table, ["data", "size"])
    ordered = KEY_COLUMNS + [REFERENCE_COLUMN, "n_seeds"] + FIDELITY_COLUMNS
    for name, info in infos.items():
        column = metric_column(name, info.headline, info.directions.get(info.headline))
        ordered += [column, *interval_columns(column), effect_column(column)]
        ordered += [rank_column(column)] if DIRECTED_COLUMN.match(column) else []
    table = table[ordered + [SANITY_COLUMN, ABSENT_COLUMN, STALE_COLUMN]]
    table = table.sort_values([REFERENCE_COLUMN, "data", "size", "model", "family"], ignore_index=True)
    table.attrs["sources"] = _sources(chosen, sanity)
    table.attrs["detail"] = Detail(detail, infos, controls)
    table.attrs["degenerate"] = _degenerate_columns(detail, table[~table[REFERENCE_COLUMN]])
    for message in table.attrs["degenerate"]:
        warnings.warn(message, DegenerateColumnWarning, stacklevel=2)
    return table


def _in_rows(table: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Which rows of ``table`` belong to one of the leaderboard ``rows`` (matched on the key columns)."""
    return pd.MultiIndex.from_frame(table[KEY_COLUMNS]).isin(pd.MultiIndex.from_frame(rows[KEY_COLUMNS]))


def _degenerate_columns(detail: pd.DataFrame, zoo: pd.DataFrame) -> list[str]:
    """One message per task metric (un-prefixed score) constant or empty across all rows of ``zoo``."""
    rows = detail[_in_rows(detail, zoo)]
    rows = rows[~rows["score"].str.contains("/", regex=False)]
    messages = []
    for (task, score), group in rows.groupby(["task", "score"], sort=True):
        if len(group) < 2:
            continue
        values = group["value"].dropna()
        if values.empty:
            reasons = _join_unique(group["absent_reason"])
            messages.append(f"leaderboard column {task}/{score} is empty in all {len(group)} rows"
                            + (f" (absent: {reasons})" if reasons else ""))
        elif len(values) >= 2 and values.max() - values.min() <= 1e-12 * max(1.0, abs(values.max())):
            messages.append(f"leaderboard column {task}/{score} is constant ({short_number(values.iloc[0])}) "
                            f"across all {len(values)} rows with a value: it cannot tell models apart")
    return messages


def row_id(row: pd.Series | dict[str, Any]) -> str:
    """A stable, file-name-safe identifier of a leaderboard row (from its key columns)."""
    return slug("__".join(str(row[c]) for c in KEY_COLUMNS if row[c]))


def _sources(chosen: pd.DataFrame, sanity: list[RecordFile]) -> dict[str, dict[str, Any]]:
    """Per row id: the run folder and the probe figures (and sanity figure) of the row's lowest-seed run."""
    sources: dict[str, dict[str, Any]] = {}
    for _, record_row in chosen.sort_values(["seed_order", "seed", "path"]).iterrows():
        item: RecordFile = record_row["item"]
        entry = sources.setdefault(row_id(record_row), {"seed": record_row["seed"], "run": None, "figures": {}})
        if entry["seed"] != record_row["seed"] or item.task in entry["figures"]:
            continue
        entry["figures"][item.task] = [str(p) for p in record_figures(item)]
        run_dir = item.path.parent.parent
        if entry["run"] is None and item.path.parent.name == RECORDS_DIR and (run_dir / CONFIG_NAME).is_file():
            entry["run"] = str(run_dir)
    for item in sanity:
        entry = sources.get(row_id(_row_key(item.record)))
        if entry is not None and entry["seed"] == _seed_label(item.record.get("seed")):
            entry["figures"][SANITY_KIND] = [str(p) for p in record_figures(item)]
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
    without a PSNR form their own group, listed last (reference rows after all of them). The
    pages of a tier view show the tier beside the PSNR (``df.attrs["by_tier"]``).
    """
    tier_order = {label: index for index, (_, label) in enumerate(PSNR_TIERS)}
    ranked = add_ranks(df, ["data", "size", "psnr_tier"])
    order = ranked["psnr_tier"].map(lambda t: tier_order.get(t, len(tier_order)))
    ranked = ranked.assign(_tier=order).sort_values([REFERENCE_COLUMN, "data", "size", "_tier", "model", "family"],
                                                    ignore_index=True)
    ranked = ranked.drop(columns="_tier")
    ranked.attrs["by_tier"] = True
    return ranked


# ---------------------------------------------------------------------------------------------------------------------
# the headline table as the pages show it


@dataclass(frozen=True)
class Cell:
    """One cell of the headline table as the Markdown and HTML pages show it.

    ``text`` is what the cell reads; ``parts`` (when given) splits it where the HTML may wrap a
    narrow column (``text`` = the parts joined by spaces); ``sort`` is the value the HTML table
    sorts by (a number, a text, or None: sorts last); ``title`` the hover text; ``href`` a link
    relative to the leaderboard page.
    """

    text: str
    sort: float | str | None = None
    title: str = ""
    href: str | None = None
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """A column of the headline table: its header, whether it sorts as numbers, the raw column it shows."""

    header: str
    numeric: bool
    source: str
    href: str | None = None


def _task_page_file(task: str) -> str:
    return f"task_{slug(task)}.html"


def task_page_link(name: str, task: str) -> str:
    """The link, relative to the leaderboard page ``<name>.html``, of the page of ``task``."""
    return f"{name}_assets/{_task_page_file(task)}"


def headline_columns(df: pd.DataFrame, name: str) -> list[Column]:
    """The columns of the headline table: model, data, seeds, PSNR (tier in a tier view), one per
    task headline, notes (sanity, stale)."""
    columns = [Column("model", False, "model"), Column("data", False, "data"), Column("seeds", True, "n_seeds"),
               Column("PSNR dB", True, PSNR_COLUMN)]
    if df.attrs.get("by_tier"):
        columns.append(Column("PSNR tier", False, "psnr_tier"))
    detail: Detail | None = df.attrs.get("detail")
    tasks = detail.tasks if detail else {}
    for task, info in tasks.items():
        value_column = metric_column(task, info.headline, info.directions.get(info.headline))
        columns.append(Column(value_column, True, value_column, task_page_link(name, task)))
    columns.append(Column("notes", False, "notes"))
    return columns


def _value_parts(value: float, low: float, high: float) -> tuple[str, str]:
    """``("0.710", "[0.680, 0.740]")``, or ``[n/a]`` without an interval."""
    interval = "n/a" if math.isnan(low) or math.isnan(high) else f"{short_number(low)}, {short_number(high)}"
    return short_number(value), f"[{interval}]"


def _effect_text(effect: float) -> str:
    if abs(effect) >= 1e4:
        return f"{effect:.2e}"
    return f"{effect:.1f}" if round(effect, 1) != 0 else "0.0"


def headline_cells(df: pd.DataFrame, name: str) -> list[list[Cell]]:
    """The cells of every row of the headline table (in :func:`headline_columns` order).

    A task cell reads ``value [lo, hi] z=effect #rank``: the mean over seeds, its interval (``n/a``
    with one seed), the mean effect size against the score's null (``z=n/a`` when its null has no
    spread), the rank within the group, and ``†`` when a sanity record flags the score as
    insensitive. An absent score reads ``absent`` with the reason as hover text.
    """
    detail: Detail | None = df.attrs.get("detail")
    lookup = detail.scores.set_index(KEY_COLUMNS + ["task", "score"]) if detail else pd.DataFrame()
    columns = headline_columns(df, name)
    rows = []
    for _, row in df.iterrows():
        rid = row_id(row)
        cells = []
        for column in columns:
            if column.href is not None:
                task = column.source.split("/")[0]
                info = detail.tasks[task]
                entry = lookup.loc[(*row[KEY_COLUMNS], task, info.headline)] \
                    if (*row[KEY_COLUMNS], task, info.headline) in lookup.index else None
                cells.append(_task_cell(row, column, entry, f"{column.href}#row-{rid}"))
            elif column.source == PSNR_COLUMN:
                psnr = _float(row[PSNR_COLUMN])
                parts = () if math.isnan(psnr) else _value_parts(psnr, _float(row[f"{PSNR_COLUMN} lo"]),
                                                                 _float(row[f"{PSNR_COLUMN} hi"]))
                title = f"SSIM {format_number(_scalar(row['ssim']))}; tier {row['psnr_tier']}; {INTERVAL_TEXT}"
                cells.append(Cell(" ".join(parts), None if math.isnan(psnr) else psnr, title, parts=parts))
            elif column.source == "data":
                cells.append(Cell(f"{row['data']} {row['size']}".strip(), f"{row['data']} {row['size']}"))
            elif column.source == "model":
                family = f"family {row['family'] or 'unknown'}; {format_number(_scalar(row['parameters']))} " \
                         f"parameters; {format_number(_scalar(row['bits_per_pixel']))} bits per pixel"
                cells.append(Cell(str(row["model"]), str(row["model"]), family, f"#{rid}"))
            elif column.source == "notes":
                cells.append(_notes_cell(row))
            else:
                value = _scalar(row[column.source])
                cells.append(Cell(format_number(value), value))
        rows.append(cells)
    return rows


def _float(value: Any) -> float:
    value = _scalar(value)
    return math.nan if value is None else float(value)


def _task_cell(row: pd.Series, column: Column, entry: pd.Series | None, href: str) -> Cell:
    value = _float(row[column.source])
    if math.isnan(value):
        note = "" if entry is None else entry["note"]
        return Cell("absent" if note else "", None, note, href if note else None)
    low, high = interval_columns(column.source)
    parts = list(_value_parts(value, _float(row[low]), _float(row[high])))
    title = [f"{int(entry['seeds']) if entry is not None else 0} seed(s); {INTERVAL_TEXT}"]
    if entry is not None and entry["null_model"]:
        effect = _float(row[effect_column(column.source)])
        parts.append(f"z={'n/a' if math.isnan(effect) else _effect_text(effect)}")
        title.append(f"null {entry['null_model']}: mean {short_number(entry['null_mean'])}, "
                     f"sd {short_number(entry['null_sd'])}, largest p over seeds {short_number(entry['p_value'])}")
    rank = rank_column(column.source)
    if rank in row.index and not pd.isna(row[rank]):
        parts.append(f"#{int(row[rank])}")
    if entry is not None and entry["insensitive"]:
        parts.append(DAGGER)
        title.append(f"sanity: insensitive to model randomisation (movement {_movement_text(entry)})")
    if entry is not None and entry["note"]:
        title.append(entry["note"])
    return Cell(" ".join(parts), value, "; ".join(title), href, tuple(parts))


def _notes_cell(row: pd.Series) -> Cell:
    parts = []
    if row[SANITY_COLUMN]:
        parts.append(f"{DAGGER} insensitive: {row[SANITY_COLUMN]}")
    if row[STALE_COLUMN]:
        parts.append(f"stale: {row[STALE_COLUMN]}")
    text = "; ".join(parts)
    return Cell(text, text, row[ABSENT_COLUMN])


def _movement_text(entry: pd.Series) -> str:
    """A sanity movement with its unit (``3.2 sd``: null sds; ``0.01 rel``: relative change); empty without one."""
    movement = _float(entry["movement"])
    return "" if math.isnan(movement) else f"{short_number(movement)} {entry['movement_unit']}".strip()


def _scalar(value: Any) -> Any:
    """``None`` for a missing cell (NaN, NA, None), else the value."""
    return None if pd.isna(value) else value


def _legend(df: pd.DataFrame) -> list[str]:
    """The notes printed under the headline table (plain text)."""
    within = "data, size and PSNR tier" if df.attrs.get("by_tier") else "data and size"
    lines = [
        "A cell reads \"value [lo, hi] z=effect #rank\": value = mean over seeds; [lo, hi] = the "
        f"{INTERVAL_TEXT}; z = mean effect size against the score's null, (value - null mean) / null sd (n/a "
        f"where the null has no spread); #rank = rank among rows with the same {within}, where rows whose "
        "intervals overlap tie (share the better rank). ↑ higher is better, ↓ lower is better, no arrow: no "
        "preferred direction (not ranked). Every other score of a task is on the task's page.",
        f"{DAGGER}: a sanity check (model randomisation) found the score insensitive: it barely moves when the "
        "model it explains is destroyed.",
    ]
    detail: Detail | None = df.attrs.get("detail")
    if detail is not None:
        headline_of = {task: info.headline for task, info in detail.tasks.items()}
        scores = detail.scores
        absent = scores[(scores["absent_reason"] != "") & (scores["score"] == scores["task"].map(headline_of))]
        absent = absent[_in_rows(absent, df)]
        for (task, score, reason), group in absent.groupby(["task", "score", "absent_reason"], sort=True):
            lines.append(f"{task}/{score} absent in {len(group)} row(s): {reason}")
    lines += [f"warning: {message}" for message in df.attrs.get("degenerate", [])]
    return lines


def markdown_table(df: pd.DataFrame, name: str = "leaderboard") -> str:
    """The headline table as GitHub Markdown: ranked rows, then reference rows in a section of their own, then notes."""
    columns = headline_columns(df, name)
    cells = headline_cells(df, name)

    def escape_md(text: str) -> str:
        return text.replace("|", "\\|")

    def table(rows: list[list[Cell]]) -> list[str]:
        lines = ["| " + " | ".join(escape_md(c.header) for c in columns) + " |",
                 "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|"]
        return lines + ["| " + " | ".join(escape_md(cell.text) for cell in row) + " |" for row in rows]

    reference = df[REFERENCE_COLUMN].astype(bool).tolist()
    lines = table([row for row, ref in zip(cells, reference) if not ref])
    if any(reference):
        lines += ["", f"Reference rows (model family `{REFERENCE_FAMILY}`: the right answer is known by construction; "
                      "not ranked):", ""]
        lines += table([row for row, ref in zip(cells, reference) if ref])
    lines += [""] + [f"- {escape_md(line)}" for line in _legend(df)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# writing


def write_leaderboard(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    """Write ``<name>.csv``, ``<name>.md`` and ``<name>.html`` (+ ``<name>_assets/``) into ``out_dir``.

    The CSV holds every column of ``df`` (numbers in separate columns); the Markdown and HTML show
    the headline table. The HTML page is self-contained with relative links: a sortable table (click
    a header), per row the reconstruction and the top neuron maps of the last layer (when the row's
    run folder holds its canvas), every probe figure, and one page per task
    (``<name>_assets/task_<task>.html``) with every score against its null and controls. Pictures
    and task pages need ``df.attrs`` from :func:`build_leaderboard`. Rebuilding from the same records
    rewrites identical bytes. Returns the CSV, Markdown and HTML paths.
    """
    if not name or slug(name) != name:
        raise XincError(f"leaderboard name {name!r} is not a plain file name; use letters, digits, '.', '_' or '-'")
    out_dir = Path(out_dir)
    assets = f"{name}_assets"
    with replaced_dir(out_dir / assets) as stage:
        pictures = _render_pictures(df, stage, assets)
        detail: Detail | None = df.attrs.get("detail")
        for task in (detail.tasks if detail else {}):
            write_text_atomic(stage / _task_page_file(task), _task_page(df, name, task))
    csv_text = df.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    csv_path = write_text_atomic(out_dir / f"{name}.csv", csv_text)
    md_path = write_text_atomic(out_dir / f"{name}.md", markdown_table(df, name))
    html_path = write_text_atomic(out_dir / f"{name}.html", _html_page(df, name, pictures))
    return [csv_path, md_path, html_path]


def _render_pictures(df: pd.DataFrame, stage: Path, assets: str) -> dict[str, dict[str, Any]]:
    """Render thumbnails and figure previews (:func:`save_preview`) of every row into ``stage/<row id>/``.

    Returns per row id: ``thumbnails`` (list of (link, caption)) and ``figures`` (task -> list of
    (link, caption)), links relative to the page (``<assets>/<row id>/...``).
    """
    def link(path: Path) -> str:
        return f"{assets}/{path.relative_to(stage).as_posix()}"

    pictures: dict[str, dict[str, Any]] = {}
    for _, row in df.iterrows():
        rid = row_id(row)
        source = df.attrs.get("sources", {}).get(rid)
        if source is None:
            continue
        folder = stage / rid
        thumbnails = _thumbnails(Path(source["run"]), folder) if source["run"] else []
        figures = {
            task: [(link(save_preview(p, folder / slug(task) / p.name)), f"{task}: {p.stem}") for p in map(Path, paths)]
            for task, paths in sorted(source["figures"].items())
        }
        pictures[rid] = {"thumbnails": [(link(path), caption) for path, caption in thumbnails], "figures": figures}
    return pictures


def _thumbnails(run_dir: Path, folder: Path) -> list[tuple[Path, str]]:
    """Frame 0 of a run's reconstruction and of its last layer's top neurons (from the run's preview), as
    PNGs in ``folder``; none when the run has no signal (nor canvas) file."""
    run = RunDir(run_dir)
    if not (run.signal.is_file() or run.canvas.is_file()):
        return []
    signal = read_canvas(run.signal_file())
    shown = [(save_rgb_png((signal.recon if signal.recon is not None else signal.frames)[0], folder / "recon.png"),
              "reconstruction")]
    preview = run_preview(run_dir)
    if preview:
        last, layer = list(preview.items())[-1]
        count = min(THUMBNAIL_NEURONS, len(layer.indices))
        for neuron, share, neuron_map in zip(layer.indices[:count].tolist(), layer.shares[:count].tolist(),
                                             layer.maps[:count]):
            path = save_map_png(neuron_map, folder / f"{slug(last)}_n{neuron}.png")
            shown.append((path, f"{last} n{neuron} ({100 * share:.1f}%)"))
    return shown


SORT_SCRIPT = """
document.querySelectorAll("table.leaderboard").forEach(function (table) {
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, column) {
    if (!th.classList.contains("sortable")) { return; }
    th.addEventListener("click", function (event) {
      if (event.target.closest("a")) { return; }
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
        "<p class=\"note\">One row per model, data and size; values are means over the row's seeds. "
        f"PSNR tiers: {escape(tiers)}. Rows with a stale entry in their notes carry values from an older task "
        "version: shown, highlighted, not ranked. Hover a cell for its null, seeds and sanity result; click a "
        "task cell or a task's <em>detail</em> link for every score of the task (per layer, against its null "
        "and the controls); click a column header to sort.</p>\n"
    )
    columns = headline_columns(df, name)
    cells = headline_cells(df, name)
    reference = df[REFERENCE_COLUMN].astype(bool).tolist()
    body = intro + _html_table(df[[not r for r in reference]], [c for c, r in zip(cells, reference) if not r],
                               columns, pictures, "leaderboard")
    if any(reference):
        body += (f'<h2 id="reference">Reference rows</h2>\n<p class="note">Model family <code>{REFERENCE_FAMILY}'
                 "</code>: INRs whose right answer is known by construction. Shown for calibration, never "
                 "ranked.</p>\n")
        body += _html_table(df[reference], [c for c, r in zip(cells, reference) if r], columns, pictures,
                            "leaderboard reference")
    legend = "".join(f"<li>{escape(line)}</li>" for line in _legend(df))
    body += f'<ul class="note legend">{legend}</ul>\n'
    return page(f"xinc-bench leaderboard: {name}", body + _html_figures(df, pictures), SORT_SCRIPT)


def _html_table(df: pd.DataFrame, cells: list[list[Cell]], columns: list[Column],
                pictures: dict[str, dict[str, Any]], css: str) -> str:
    """A sortable headline table; the canvas thumbnails (where any row has them) follow the model and data columns."""
    split = 2
    shown = any(pictures.get(row_id(row), {}).get("thumbnails") for _, row in df.iterrows())
    headers = []
    for column in columns:
        link = f' <a class="detail" href="{escape(column.href)}">detail</a>' if column.href else ""
        kind = "number" if column.numeric else "text"
        headers.append(
            f'<th class="sortable{"" if column.numeric else " text"}" data-type="{kind}"'
            f' data-column="{escape(column.header)}" scope="col">{_breakable(column.header)}{link}</th>'
        )
    if shown:
        headers.insert(split, f'<th class="text" scope="col">{escape(THUMBNAILS_HEADER)}</th>')
    body = []
    for (_, row), row_cells in zip(df.iterrows(), cells):
        rid = row_id(row)
        html_cells = [_html_cell(cell, column) for cell, column in zip(row_cells, columns)]
        thumbs = "".join(
            image(src, caption, width=THUMBNAIL_WIDTH, pixelated=True)
            for src, caption in pictures.get(rid, {}).get("thumbnails", [])
        )
        if shown:
            html_cells.insert(split, f'<td class="text"><div class="pictures thumbnails">{thumbs}</div></td>')
        stale = ' class="stale"' if row[STALE_COLUMN] else ""
        body.append(f'<tr id="row-{rid}"{stale}>{"".join(html_cells)}</tr>')
    return (
        f'<div class="scroll"><table class="{css}">\n<thead><tr>{"".join(headers)}</tr></thead>\n<tbody>\n'
        + "\n".join(body) + "\n</tbody>\n</table></div>\n"
    )


def _breakable(column: str) -> str:
    """A column name escaped for HTML, with line-break opportunities after ``/`` and ``_``."""
    return re.sub(r"([/_])", r"\1<wbr>", escape(column))


def _html_cell(cell: Cell, column: Column) -> str:
    if cell.sort is None:
        sort_key = ""
    else:
        sort_key = repr(float(cell.sort)) if column.numeric else str(cell.sort)
    text = " ".join(f'<span class="part">{escape(part)}</span>' for part in cell.parts) or escape(cell.text)
    content = f'<a href="{escape(cell.href)}">{text}</a>' if cell.href else text
    cls = ' class="score"' if column.href else ("" if column.numeric else ' class="text"')
    title = f' title="{escape(cell.title)}"' if cell.title else ""
    return f'<td{cls} data-value="{escape(sort_key)}"{title}>{content}</td>'


def _html_figures(df: pd.DataFrame, pictures: dict[str, dict[str, Any]]) -> str:
    sections = ["<h2>Probe figures</h2>"]
    for _, row in df.iterrows():
        rid = row_id(row)
        figures = pictures.get(rid, {}).get("figures", {})
        if not any(figures.values()):
            continue
        sections.append(f'<h3 id="{rid}">{escape(row["model"])} on {escape(row["data"])} {escape(row["size"])}</h3>')
        shown = [image(src, caption, caption=caption, width=FIGURE_WIDTH)
                 for pairs in figures.values() for src, caption in pairs]
        sections.append(f'<div class="pictures">{"".join(shown)}</div>')
    return "\n".join(sections) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# task pages


DETAIL_HEADERS = ("score", "value", "seeds", "null", "null mean", "null sd", "effect size", "p (largest)")


def _task_page(df: pd.DataFrame, name: str, task: str) -> str:
    """The page of one task: its metrics, then per leaderboard row every score against its null and controls."""
    detail: Detail = df.attrs["detail"]
    info = detail.tasks[task]
    back = f"../{name}.html"
    intro = [f'<p><a href="{escape(back)}">back to the leaderboard {escape(name)}</a></p>',
             f"<h1>{escape(name)}: task {escape(task)} (v{info.version})</h1>"]
    if info.task is not None and info.task.description:
        intro.append(f'<p class="note">{escape(info.task.description)}</p>')
    intro.append(_metrics_table(info))
    intro.append(
        '<p class="note">Per row, every score of the task (headline metrics, then per layer): value = mean over '
        "seeds; seeds = how many had a value; null mean, null sd and effect size ((value - null mean) / null sd) "
        "= means over seeds; p = the largest empirical two-sided p-value over seeds (Phipson and Smyth: never 0; "
        "with D draws at least 1/(D+1)); control columns = the score on each control (shuffled canvas, random-init "
        f"twin), mean over seeds; sanity = how far the score moves under model randomisation, {DAGGER} = "
        "insensitive. Hover or read the note for why a score or its null is absent.</p>")
    scores = detail.scores[detail.scores["task"] == task]
    sections = []
    for _, row in df.iterrows():
        key = tuple(row[KEY_COLUMNS])
        mask = (scores[KEY_COLUMNS] == pd.Series(dict(zip(KEY_COLUMNS, key)))).all(axis=1)
        rows = scores[mask]
        if rows.empty:
            continue
        rid = row_id(row)
        label = f"{row['model']} on {row['data']} {row['size']}".strip()
        marks = " (reference row)" if row[REFERENCE_COLUMN] else ""
        sections.append(f'<h2 id="row-{rid}">{escape(label)}: {int(row["n_seeds"])} seed(s){escape(marks)}</h2>')
        sections.append(_detail_table(rows, detail.controls, info.headline))
    title = f"xinc-bench leaderboard: {name}, task {task}"
    return page(title, "\n".join(intro + sections))


def _metrics_table(info: TaskInfo) -> str:
    """What each metric of the task measures: direction, range, null model, description."""
    rows = []
    for metric, direction in info.directions.items():
        spec = info.task.metrics.get(metric) if info.task is not None else None
        cells = [metric + (" (headline)" if metric == info.headline else ""), ARROWS.get(direction, ""),
                 _range_text(spec.range) if spec is not None else "", (spec.null or "") if spec is not None else "",
                 spec.description if spec is not None else ""]
        rows.append("<tr>" + "".join(_td(c, True, wrap=i == len(cells) - 1) for i, c in enumerate(cells)) + "</tr>")
    header = "".join(_th(h) for h in ("metric", "direction", "range", "null", "what it measures"))
    return (f'<table class="metrics">\n<thead><tr>{header}</tr></thead>\n<tbody>\n' + "\n".join(rows)
            + "\n</tbody></table>")


def _range_text(bounds: tuple[float | None, float | None]) -> str:
    low, high = bounds
    if low is None and high is None:
        return ""
    return f"[{'-inf' if low is None else format_number(low)}, {'inf' if high is None else format_number(high)}]"


def _th(text: str, text_column: bool = True) -> str:
    cls = ' class="text"' if text_column else ""
    return f'<th{cls} scope="col">{escape(text)}</th>'


def _td(content: str, text_column: bool = False, wrap: bool = False) -> str:
    """A table cell; ``wrap``: long text (descriptions, notes) wraps instead of widening the table."""
    classes = " ".join(c for c, on in (("text", text_column), ("wrap", wrap)) if on)
    cls = f' class="{classes}"' if classes else ""
    return f"<td{cls}>{escape(content)}</td>"


def _detail_table(rows: pd.DataFrame, controls: tuple[str, ...], headline: str) -> str:
    """Every score of one leaderboard row: value, seeds, null summary, controls, sanity movement, note."""
    text_columns = {"score", "null", "note"}
    headers = [*DETAIL_HEADERS, *controls, "sanity", "note"]
    head = "".join(_th(h, h in text_columns) for h in headers)
    body = []
    for _, entry in rows.iterrows():
        value = _float(entry["value"])
        sanity = _movement_text(entry) + (f" {DAGGER}" if entry["insensitive"] else "")
        texts = [
            entry["score"],
            "absent" if math.isnan(value) and entry["note"] else short_number(value),
            str(int(entry["seeds"])),
            entry["null_model"],
            *(short_number(_float(entry[c])) for c in ("null_mean", "null_sd", "effect_size", "p_value", *controls)),
            sanity,
            entry["note"],
        ]
        cells = "".join(_td(t, h in text_columns, wrap=h == "note" and bool(t)) for t, h in zip(texts, headers))
        css = ' class="headline"' if entry["score"] == headline else ""
        body.append(f'<tr{css} data-score="{escape(entry["score"])}">{cells}</tr>')
    return (f'<div class="scroll"><table class="detail">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody>\n</table></div>")
