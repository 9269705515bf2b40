"""Progress of runs: bars with an ETA on a terminal, one line per finished stage otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO


class Progress:
    """Reports the stages of a unit (or the units of a suite).

    On a terminal each stage shows a bar (with an ETA when its size is known) that disappears when
    the stage ends; everywhere, a finished stage prints one line with its time. ``quiet`` prints
    nothing (library use, tests).
    """

    def __init__(self, label: str = "", stream: TextIO | None = None, quiet: bool = False) -> None:
        self.label = f"[{label}] " if label else ""
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.terminal = not quiet and bool(getattr(self.stream, "isatty", lambda: False)())

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


def _ignore(_: int = 1) -> None:
    """``advance`` where no bar is shown."""
