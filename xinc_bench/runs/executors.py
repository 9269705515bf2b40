"""Executors: how a list of units is run. Each maps :func:`~xinc_bench.runs.unit.run_unit` over jobs.

An executor is registered in :data:`~xinc_bench.registry.EXECUTORS` and called as
``executor.map(jobs, on_result)``: ``jobs`` are ``(UnitSpec, run folder)`` pairs, and every job
gives one :class:`UnitOutcome` (its result, or the message that stopped it), passed to
``on_result`` as soon as it is known and returned in job order. Only the driver writes anything
outside the run folders (the suite manifest, W&B runs), so a process pool or a cluster engine
can take the local executor's place without changing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from ..errors import XincError
from ..registry import EXECUTORS
from .progress import Progress
from .spec import UnitSpec
from .unit import UnitResult, run_unit


@dataclass
class UnitOutcome:
    """One job's outcome: its result, or ``error`` (the :class:`XincError` message that stopped it)."""

    spec: UnitSpec
    run_dir: Path
    result: UnitResult | None = None
    error: str | None = None


class Executor(Protocol):
    """Runs units; see the module docstring."""

    def map(self, jobs: Sequence[tuple[UnitSpec, Path]],
            on_result: Callable[[UnitOutcome], None] | None = None) -> list[UnitOutcome]:
        """Run every job; one outcome per job, in job order."""
        ...


@EXECUTORS.register("local", description="one unit after the other in this process")
class LocalExecutor:
    """Runs the units one after the other in this process, each reported with its own stage lines."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def map(self, jobs: Sequence[tuple[UnitSpec, Path]],
            on_result: Callable[[UnitOutcome], None] | None = None) -> list[UnitOutcome]:
        """Run every job in order; a unit that raises :class:`XincError` is reported and the rest go on."""
        outcomes = []
        for spec, run_dir in jobs:
            try:
                outcome = UnitOutcome(spec, run_dir, result=run_unit(
                    spec, run_dir, progress=Progress(spec.unit_id, quiet=self.quiet)))
            except XincError as exc:
                outcome = UnitOutcome(spec, run_dir, error=str(exc))
            outcomes.append(outcome)
            if on_result is not None:
                on_result(outcome)
        return outcomes
