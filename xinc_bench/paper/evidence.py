"""The numbers behind the paper report: every score of every record, then aggregated over seeds.

:func:`evidence_table` reads the records of the report's run folders into one long table (one row
per record score, per layer and headline: its value, null mean, null sd and effect size, and the
sanity movement of the seed that ran the check); :func:`aggregate` reduces it over seeds to the
mean, its 95 % bootstrap interval (:func:`~xinc_bench.probes.stats.bootstrap_interval`), the mean
null and the mean effect size. :class:`Evidence` looks an aggregate up by what a claim asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..inrs import default_tracer
from ..probes.stats import bootstrap_interval
from ..runs.record import RecordFile, scan_records

#: the columns that name one measured score (over seeds)
KEY = ["architecture", "data", "tracer", "task", "layer", "metric"]


def evidence_table(run_folders: dict[Path, str | None]) -> pd.DataFrame:
    """One row per score of every record below the run folders (``folder -> architecture label``; None: the
    records' model name).

    Columns: ``KEY`` + ``seed``, ``value``, ``null_mean``, ``null_sd``, ``effect``, ``movement``
    (sanity movement in null sds or relative, NaN where the seed ran no check), ``insensitive``,
    ``psnr``, ``default_tracer`` (the model's own tracer traced it) and ``unit`` (the run folder).
    ``layer`` is ``""`` for headline scores (means over layers).
    """
    rows = []
    for folder, architecture in run_folders.items():
        if not Path(folder).is_dir():
            continue
        records, sanity = scan_records(Path(folder))
        movements = _sanity_movements(sanity)
        for item in records:
            rows.extend(_score_rows(item, architecture or str(item.record["model"]["name"]), movements))
    columns = KEY + ["seed", "value", "null_mean", "null_sd", "effect", "movement", "insensitive", "psnr",
                     "default_tracer", "unit"]
    return pd.DataFrame(rows, columns=columns)


def _sanity_movements(sanity: list[RecordFile]) -> dict[tuple[str, str, str], dict]:
    """(unit folder, task, score) -> that score's sanity entry."""
    entries = {}
    for item in sanity:
        for task, scores in item.record["tasks"].items():
            for score, entry in scores.items():
                entries[(str(item.path.parent.parent), task, score)] = entry
    return entries


def _score_rows(item: RecordFile, architecture: str, movements: dict[tuple[str, str, str], dict]) -> list[dict]:
    record = item.record
    unit = str(item.path.parent.parent)
    data = record.get("data") or {}
    tracer = str(record["model"].get("tracer") or "")
    own_tracer = tracer == default_tracer(str(record["model"]["name"]))
    rows = []
    for score, value in record["scores"].items():
        layer, _, metric = score.rpartition("/")
        null = record.get("nulls", {}).get(score) or {}
        sanity = movements.get((unit, item.task, score)) or {}
        rows.append({
            "architecture": architecture,
            "data": str(data.get("name") or data.get("data") or ""),
            "tracer": tracer,
            "task": item.task,
            "layer": layer,
            "metric": metric,
            "seed": record.get("seed"),
            "value": float(value),
            "null_mean": _number(null.get("mean")),
            "null_sd": _number(null.get("sd")),
            "effect": _number(null.get("effect_size")),
            "movement": _number(sanity.get("movement")),
            "insensitive": sanity.get("insensitive"),
            "psnr": _number((record.get("fidelity") or {}).get("psnr")),
            "default_tracer": own_tracer,
            "unit": unit,
        })
    return rows


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """The long table reduced over seeds, one row per ``KEY``.

    Columns: ``KEY`` + ``seeds`` (how many), ``mean``, ``low``, ``high`` (95 % bootstrap interval of
    the mean over seeds; NaN with a single seed), ``null_mean``, ``null_sd`` and ``effect`` (means over
    seeds), ``movement`` and ``insensitive`` (of the seed that ran the sanity check; NaN/None if none),
    ``psnr`` (mean over seeds), ``default_tracer`` and ``first_unit`` (the run folder of the first seed).
    """
    rows = []
    for key, group in table.groupby(KEY, sort=True, dropna=False):
        interval = bootstrap_interval(group["value"].tolist())
        checked = group.dropna(subset=["movement"])
        flags = group["insensitive"].dropna()
        rows.append({
            **dict(zip(KEY, key)),
            "seeds": int(group["seed"].nunique(dropna=False)),
            "mean": float(group["value"].mean()),
            "low": interval[0] if interval else math.nan,
            "high": interval[1] if interval else math.nan,
            "null_mean": float(group["null_mean"].mean()),
            "null_sd": float(group["null_sd"].mean()),
            "effect": float(group["effect"].mean()),
            "movement": float(checked["movement"].iloc[0]) if len(checked) else math.nan,
            "insensitive": bool(flags.iloc[0]) if len(flags) else None,
            "psnr": float(group["psnr"].mean()),
            "default_tracer": bool(group["default_tracer"].iloc[0]),
            "first_unit": str(group.sort_values("seed", na_position="first")["unit"].iloc[0]),
        })
    return pd.DataFrame(rows, columns=KEY + ["seeds", "mean", "low", "high", "null_mean", "null_sd", "effect",
                                             "movement", "insensitive", "psnr", "default_tracer", "first_unit"])


@dataclass(frozen=True)
class Aggregate:
    """One score over seeds (a row of :func:`aggregate`)."""

    mean: float
    low: float
    high: float
    seeds: int
    null_mean: float
    null_sd: float
    effect: float
    movement: float
    insensitive: bool | None

    @property
    def bounds(self) -> tuple[float, float]:
        """The seed interval, or ``(mean, mean)`` for a single seed (one released checkpoint)."""
        if math.isnan(self.low) or math.isnan(self.high):
            return self.mean, self.mean
        return self.low, self.high


class Evidence:
    """Aggregated scores looked up by (architecture, data, tracer, task, metric, layer)."""

    def __init__(self, aggregated: pd.DataFrame) -> None:
        self.table = aggregated
        self._index = {tuple(row[k] for k in KEY): row for row in aggregated.to_dict("records")}

    def get(self, architecture: str, data: str, tracer: str, task: str, metric: str, layer: str = "") -> Aggregate | None:
        """The score's aggregate, or None where it was not measured (or is absent on that canvas)."""
        row = self._index.get((architecture, data, tracer, task, layer, metric))
        if row is None:
            return None
        return Aggregate(row["mean"], row["low"], row["high"], row["seeds"], row["null_mean"], row["null_sd"],
                         row["effect"], row["movement"], row["insensitive"])

    def _model_rows(self, architecture: str, data: str, tracer: str) -> pd.DataFrame:
        """The aggregated rows of one measured model traced with ``tracer``."""
        table = self.table
        return table[(table["architecture"] == architecture) & (table["data"] == data) & (table["tracer"] == tracer)]

    def layers(self, architecture: str, data: str, tracer: str, task: str, metric: str) -> list[str]:
        """The layers that have this score, in layer order (``layer10`` after ``layer9``)."""
        rows = self._model_rows(architecture, data, tracer)
        rows = rows[(rows["task"] == task) & (rows["metric"] == metric) & (rows["layer"] != "")]
        return sorted(rows["layer"].unique(), key=_layer_order)

    def measured(self) -> list[tuple[str, str, str]]:
        """Every (architecture, data, default tracer) with scores, in table order (variants aside)."""
        frame = self.table[self.table["default_tracer"]][["architecture", "data", "tracer"]].drop_duplicates()
        return [tuple(row) for row in frame.itertuples(index=False)]

    def unit(self, architecture: str, data: str, tracer: str) -> Path | None:
        """The run folder of the model's first seed (for its figures), or None."""
        rows = self._model_rows(architecture, data, tracer)
        return Path(rows.sort_values("first_unit")["first_unit"].iloc[0]) if len(rows) else None

    def psnr(self, architecture: str, data: str, tracer: str) -> float:
        """Mean PSNR over the seeds of a measured model (NaN if unknown)."""
        rows = self._model_rows(architecture, data, tracer)
        return float(rows["psnr"].mean()) if len(rows) else math.nan


def _layer_order(name: str) -> tuple[str, int]:
    """``layer10`` after ``layer9``: names split into a text prefix and a trailing number."""
    stripped = name.rstrip("0123456789")
    suffix = name[len(stripped):]
    return stripped, int(suffix) if suffix else -1
