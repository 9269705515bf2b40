"""Progress of runs: bars with an ETA on a terminal, one line per finished stage otherwise (CI logs);
a suite's units done out of its total with an ETA (:class:`UnitCounter`)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO


class Progress:
    """Reports the stages of a unit (or the units of a suite).

    On a terminal each stage shows a bar (with an ETA when its size is known) that disappears when
    the stage ends; everywhere, a finished stage prints one line with its time. ``quiet`` prints
    nothing (library use, tests); ``bars=False`` prints lines on a terminal too (several processes
    sharing one terminal, whose bars would overwrite each other).
    """

    def __init__(self, label: str = "", stream: TextIO | None = None, quiet: bool = False, bars: bool = True) -> None:
        self.label = f"[{label}] " if label else ""
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.terminal = not quiet and bars and bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, text: str) -> None:
        """Print one line (unless quiet)."""
        if not self.quiet:
            print(f"{self.label}{text}", file=self.stream, flush=True)

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "it") -> Iterator[Callable[[int], None]]:
        """Run a stage: yields ``advance(n)``; prints ``<name> (<seconds> s)`` when the stage ends without error."""
        started = time.perf_counter()
        bar = None
        if self.terminal:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=f"{self.label}{name}", unit=unit, file=self.stream, leave=False,
                       dynamic_ncols=True)
        try:
            yield (bar.update if bar is not None else _ignore)
        finally:
            if bar is not None:
                bar.close()
        self.line(f"{name} ({time.perf_counter() - started:.1f} s)")


class UnitCounter:
    """The units of a suite done out of its total, with an ETA while some remain.

    The pace is the wall time since the counter was made over the units that did work now (a unit
    kept complete from an earlier run costs nothing and says nothing about the others); finished
    units are counted as they come, so an executor that runs several at once shows in the pace.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._worked = 0
        self._started = time.perf_counter()

    def count(self, worked: bool) -> float | None:
        """Count one finished unit (``worked``: it ran now); the seconds the remaining units should take,
        or ``None`` when none remain or no unit has set a pace yet."""
        self.done += 1
        self._worked += worked
        remaining = self.total - self.done
        if remaining <= 0 or not self._worked:
            return None
        return (time.perf_counter() - self._started) / self._worked * remaining


def duration_text(seconds: float) -> str:
    """``seconds`` for people: ``42 s``, ``12 min``, ``3.1 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _ignore(_: int = 1) -> None:
    """``advance`` where no bar is shown."""
