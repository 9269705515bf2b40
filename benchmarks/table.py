"""Rows of ``python -m benchmarks`` and the Markdown table they make (no torch: the parent process only).

A row is one measured stage: its time, its peak memory above the process's resident size when the
measurement began, and what it is compared with, each measured side by side in the same process: a
baseline (one forward pass, one forward+backward, the pass's reads, the canvas's own probing, the
sum of a run's stage lines) and, for canvases, a floor (a warm ``fill_`` of as many float32 values).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

#: the probes stage's rows: ``probes: <task>`` per task, and its shared pass
PROBE_ROW = "probes: "
SHARED_PASS = f"{PROBE_ROW}shared pass"


@dataclass
class Reference:
    """What a stage's time is divided by: a label (``one forward pass``) and its time in seconds."""

    label: str
    seconds: float

    def ratio_text(self, seconds: float) -> str:
        """``"3.12x one forward pass (0.163 s)"``: ``seconds`` over this reference."""
        return f"{ratio_text(seconds / self.seconds)} {self.label} ({seconds_text(self.seconds)})"


@dataclass
class Row:
    """One line of the table.

    Attributes:
        stage: the stage id (a ``--stages`` name, ``probes: <task>``, ``run: <stage line>`` ...).
        what: what was measured, in words (model, tracer, sizes, repeats).
        seconds: its wall time.
        peak_mb: peak resident memory above the resident size when the measurement began, MiB
            (``None``: not measured on its own, e.g. a stage line of a run).
        baseline: the time it is compared with.
        floor: the hardware floor it is compared with (canvases).
    """

    stage: str
    what: str
    seconds: float
    peak_mb: float | None = None
    baseline: Reference | None = None
    floor: Reference | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-serialisable values (:meth:`from_json` reads them back)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """A row from :meth:`to_json`'s values."""
        references = {key: None if data[key] is None else Reference(**data[key]) for key in ("baseline", "floor")}
        return cls(**{**data, **references})


def seconds_text(seconds: float) -> str:
    """``41 µs``, ``41.2 ms``, ``4.1 s``, ``412 s``: three significant digits below a second, tenths below 100 s."""
    if not math.isfinite(seconds):
        return f"{seconds} s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:,.0f} s"


def ratio_text(ratio: float) -> str:
    """``4.12x``, ``97.3x``, ``1,234x``."""
    return f"{ratio:,.0f}x" if math.isfinite(ratio) and ratio >= 100 else f"{ratio:.3g}x"


def memory_text(mb: float | None) -> str:
    """``+412 MiB``, ``+1.4 GiB``; ``-`` when not measured on its own."""
    if mb is None:
        return "-"
    return f"+{mb / 1024:.1f} GiB" if mb >= 1024 else f"+{mb:.0f} MiB"


def markdown(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table: stage, what, time, peak memory, vs baseline, vs floor."""
    lines = ["| stage | what | time | peak memory | vs baseline | vs floor |", "|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row.stage, row.what, seconds_text(row.seconds), memory_text(row.peak_mb),
                 "" if row.baseline is None else row.baseline.ratio_text(row.seconds),
                 "" if row.floor is None else row.floor.ratio_text(row.seconds)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)
