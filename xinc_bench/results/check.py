"""Regression check (SPEC 7): compare a model's scores with a stored baseline, within tolerances.

Both sides are leaderboards (:func:`xinc_bench.results.leaderboard.build_leaderboard`): the
current records are tabulated, and the baseline is either a leaderboard CSV written by
``xinc-bench leaderboard`` or a folder of records tabulated the same way. Rows are matched on
(model, family, data, size); every baseline row without a current row is ignored, so a model's
CI job checks that model against a leaderboard of many. Compared per matched row: PSNR
(``psnr_db``), SSIM and every task's headline metric (``<task>/<metric>`` columns).

Tolerance of a value: ``max(absolute, relative * |baseline|)``. Written as a number (absolute,
``0.05``), a percentage string (relative, ``"5%"``), or a mapping from metric names or
``fnmatch`` patterns to either, with ``"default"`` for the rest, e.g.
``{"default": 0.02, "psnr_db": 0.5, "clustering/*": "10%"}`` (an exact name beats a pattern;
patterns are tried in the mapping's order).

Statuses: ``ok`` (within tolerance), ``improved`` or ``regressed`` (beyond it, in the better or
worse direction), ``changed`` (beyond it, for a metric without a preferred direction), ``missing``
(the baseline has a value, the records do not) and ``new`` (no baseline value). A check fails on
``regressed``, ``changed`` and ``missing``, and with ``strict`` also on ``improved``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import pandas as pd

from ..errors import XincError

ToleranceValue = Union[float, int, str]
ToleranceSpec = Union[ToleranceValue, Mapping[str, ToleranceValue]]

#: key columns of a leaderboard row
ROW_KEYS = ["model", "family", "data", "size"]
#: fidelity columns compared (higher is better)
FIDELITY = {"psnr_db": True, "ssim": True}
#: a leaderboard CSV keeps 6 significant digits: differences below that are never counted
CSV_PRECISION = 5e-6
FAILING = ("regressed", "changed", "missing")

_METRIC_COLUMN = re.compile(r"^(?P<name>[^/\s]+/\S+?)(?: (?P<arrow>[↑↓]))?$")
_ARROWS = {"↑": True, "↓": False, None: None}


@dataclass(frozen=True)
class Tolerance:
    """How far a value may move: ``max(absolute, relative * |baseline|)``."""

    absolute: float = 0.0
    relative: float = 0.0

    def allowed(self, baseline: float) -> float:
        """The largest allowed ``|current - baseline|``."""
        return max(self.absolute, self.relative * abs(baseline))

    def __str__(self) -> str:
        parts = ([f"{self.absolute:g}"] if self.absolute or not self.relative else []) + (
            [f"{100 * self.relative:g}%"] if self.relative else [])
        return " or ".join(parts)


@dataclass
class CheckResult:
    """Outcome of :func:`check`.

    Attributes:
        table: one row per compared value: ``model, family, data, size, metric, baseline,
            current, delta, tolerance`` (the allowed move), ``status`` and ``fails``.
        baseline: the baseline's path.
        strict: whether improvements beyond tolerance count as failures.
    """

    table: pd.DataFrame
    baseline: str
    strict: bool

    @property
    def passed(self) -> bool:
        """True when no value failed."""
        return not bool(self.table["fails"].any())

    @property
    def failures(self) -> pd.DataFrame:
        """The rows of :attr:`table` that failed."""
        return self.table[self.table["fails"]]

    def report(self, show_all: bool = False) -> str:
        """A readable summary line plus the table of every value that moved (or of all values)."""
        counts = self.table["status"].value_counts()
        summary = ", ".join(f"{counts[s]} {s}" for s in ("ok", "improved", "regressed", "changed", "missing", "new")
                            if s in counts)
        verdict = "PASSED" if self.passed else f"FAILED: {int(self.table['fails'].sum())} failing"
        rows = len(self.table[ROW_KEYS].drop_duplicates())
        header = (f"xinc-bench check {verdict} ({len(self.table)} values in {rows} rows against "
                  f"{self.baseline}{', strict' if self.strict else ''}: {summary})")
        shown = self.table if show_all else self.table[self.table["status"] != "ok"]
        if shown.empty:
            return header
        columns = ["model", "data", "size", "metric", "baseline", "current", "delta", "tolerance", "status"]
        text = shown[columns].to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.6g}")
        return f"{header}\n{text}"

    def __str__(self) -> str:
        return self.report()


def check(
    records_dir: Path | str,
    baseline: Path | str,
    tolerance: ToleranceSpec = 0.0,
    *,
    strict: bool = False,
) -> CheckResult:
    """Compare the records below ``records_dir`` with ``baseline`` (a leaderboard CSV or a records folder).

    Raises:
        XincError: missing or unreadable inputs, a malformed tolerance, or no row of the records
            present in the baseline.
    """
    from .leaderboard import build_leaderboard

    tolerances = parse_tolerance(tolerance)
    baseline = Path(baseline)
    current = _normalise(build_leaderboard(Path(records_dir)))
    reference = _normalise(_read_baseline(baseline))
    slack = CSV_PRECISION if baseline.is_file() else 0.0
    merged = current[ROW_KEYS].merge(reference[ROW_KEYS], on=ROW_KEYS)
    if merged.empty:
        rows = "; ".join(" ".join(map(str, row)) for row in current[ROW_KEYS].itertuples(index=False))
        raise XincError(f"none of the records' rows ({rows}) is in the baseline {baseline}; check the model, data and "
                        "size, or build a baseline from these records with `xinc-bench leaderboard`")
    metrics = _metric_directions(reference.columns)
    table = _compare(current, reference, merged, metrics, tolerances, slack, strict)
    return CheckResult(table, str(baseline), strict)


def parse_tolerance(spec: ToleranceSpec | list[str]) -> dict[str, Tolerance]:
    """Metric name or pattern -> :class:`Tolerance` (``"default"`` for unnamed metrics).

    Accepts a number, a ``"5%"`` string, a mapping of names to those, or CLI strings
    ``["0.05", "psnr_db=0.5", "clustering/*=10%"]``.
    """
    if isinstance(spec, list):
        mapping: dict[str, ToleranceValue] = {}
        for item in spec:
            name, separator, value = str(item).rpartition("=")
            mapping[name.strip() if separator else "default"] = value.strip()
        spec = mapping
    if not isinstance(spec, Mapping):
        spec = {"default": spec}
    parsed = {str(name): _tolerance(value, str(name)) for name, value in spec.items()}
    parsed.setdefault("default", Tolerance())
    return parsed


def tolerance_for(metric: str, tolerances: dict[str, Tolerance]) -> Tolerance:
    """The tolerance of ``metric``: its exact entry, else the first matching pattern, else ``default``."""
    if metric in tolerances:
        return tolerances[metric]
    for pattern, tolerance in tolerances.items():
        if pattern != "default" and fnmatch.fnmatchcase(metric, pattern):
            return tolerance
    return tolerances["default"]


def _tolerance(value: ToleranceValue, name: str) -> Tolerance:
    text = str(value).strip()
    try:
        if text.endswith("%"):
            tolerance = Tolerance(relative=float(text[:-1]) / 100.0)
        else:
            tolerance = Tolerance(absolute=float(text))
    except ValueError:
        tolerance = Tolerance(absolute=math.nan)
    if not (tolerance.absolute >= 0 and tolerance.relative >= 0) or math.isinf(tolerance.absolute + tolerance.relative):
        raise XincError(f"invalid tolerance {value!r} for {name}: give a non-negative number (absolute, e.g. 0.05) "
                        "or a percentage (relative, e.g. 5%)")
    return tolerance


def _read_baseline(path: Path) -> pd.DataFrame:
    """A baseline leaderboard: the CSV itself, or the leaderboard of a records folder."""
    from .leaderboard import build_leaderboard

    if path.is_dir():
        return build_leaderboard(path)
    if not path.is_file():
        raise XincError(f"baseline {path} does not exist; give a leaderboard CSV or a folder of records")
    if path.suffix.lower() != ".csv":
        raise XincError(f"baseline {path} is neither a leaderboard .csv nor a folder of records")
    try:
        table = pd.read_csv(path, dtype={key: str for key in ROW_KEYS})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise XincError(f"cannot read baseline {path} ({exc}); give a CSV written by `xinc-bench leaderboard`") from exc
    missing = [key for key in ROW_KEYS if key not in table.columns]
    if missing:
        raise XincError(f"baseline {path} lacks the leaderboard columns {missing}; "
                        "give a CSV written by `xinc-bench leaderboard`")
    return table


def _normalise(table: pd.DataFrame) -> pd.DataFrame:
    """Key columns as strings and compared columns as floats (CSV empties and ``<NA>`` become NaN)."""
    table = table.copy()
    for key in ROW_KEYS:
        table[key] = table[key].fillna("").astype(str)
    for column in _metric_directions(table.columns):
        table[column] = pd.to_numeric(table[column].replace("", math.nan), errors="coerce").astype(float)
    return table.drop_duplicates(ROW_KEYS, keep="last")


def _metric_directions(columns: pd.Index) -> dict[str, bool | None]:
    """Compared column -> higher is better (``None``: no preferred direction)."""
    directions: dict[str, bool | None] = {c: d for c, d in FIDELITY.items() if c in columns}
    for column in columns:
        match = _METRIC_COLUMN.match(str(column))
        if match:
            directions[str(column)] = _ARROWS[match["arrow"]]
    return directions


def _compare(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    rows: pd.DataFrame,
    metrics: dict[str, bool | None],
    tolerances: dict[str, Tolerance],
    slack: float,
    strict: bool,
) -> pd.DataFrame:
    """Long table of every compared value of the matched rows."""
    now = current.set_index(ROW_KEYS)
    then = reference.set_index(ROW_KEYS)
    records = []
    for key in rows.itertuples(index=False, name=None):
        for column, higher_is_better in metrics.items():
            old = float(then.at[key, column])
            new = float(now.at[key, column]) if column in now.columns else math.nan
            if math.isnan(old) and math.isnan(new):
                continue
            name = _METRIC_COLUMN.match(column)["name"] if "/" in column else column
            tolerance = tolerance_for(name, tolerances)
            allowed = tolerance.allowed(old) if not math.isnan(old) else math.nan
            status = _status(old, new, allowed + slack * abs(old), higher_is_better)
            fails = status in FAILING or (strict and status == "improved")
            records.append((*key, name, old, new, new - old, allowed, status, fails))
    columns = ROW_KEYS + ["metric", "baseline", "current", "delta", "tolerance", "status", "fails"]
    return pd.DataFrame(records, columns=columns)


def _status(old: float, new: float, allowed: float, higher_is_better: bool | None) -> str:
    if math.isnan(old):
        return "new"
    if math.isnan(new):
        return "missing"
    delta = new - old
    if abs(delta) <= allowed:
        return "ok"
    if higher_is_better is None:
        return "changed"
    return "improved" if (delta > 0) == higher_is_better else "regressed"
