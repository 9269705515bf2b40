"""Executors: how a list of units is run. Each maps :func:`~xinc_bench.runs.unit.run_unit` over jobs.

An executor is registered in :data:`~xinc_bench.registry.EXECUTORS`, made as
``EXECUTORS.get(name)(quiet=..., **options)`` and called as ``executor.map(jobs, on_result)``:
``jobs`` are ``(UnitSpec, run folder)`` pairs, and every job gives one :class:`UnitOutcome` (its
result, or the message that stopped it), passed to ``on_result`` as soon as it is known and
returned in job order. Only the driver writes anything outside the run folders (the suite
manifest, W&B runs), so a process pool or a cluster engine takes the local executor's place
without changing the runner.

* ``local``: one unit after the other in this process;
* ``processes``: a pool of ``jobs`` worker processes on this machine (:class:`ProcessExecutor`);
* ``ray``: one Ray task per unit on a Ray cluster (:mod:`xinc_bench.runs.ray_executor`, the
  ``ray`` extra).

A unit that raises :class:`XincError` is reported and the others go on, everywhere; any other
exception is a bug and stops the suite, as it does when the unit runs alone.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..errors import XincError
from ..registry import EXECUTORS
from ..training.fit import quiet_lightning
from .budget import default_memory_budget
from .progress import Progress
from .spec import UnitSpec
from .unit import UnitResult, run_unit

#: how many times a unit whose worker died under it (killed, out of memory) runs again before it is
#: reported as failed (``processes`` and ``ray``)
DEFAULT_RETRIES = 2
_SPAWN = multiprocessing.get_context("spawn")


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


@EXECUTORS.register("processes", description="a pool of worker processes on this machine (--jobs N), "
                                             "one torch thread each")
class ProcessExecutor:
    """Runs up to ``jobs`` units at once, each in a worker process with one torch thread.

    Workers are spawned, not forked (torch's threads do not survive a fork), and run one unit after
    the other. A worker that dies under a unit (killed, out of memory) is replaced and the unit
    runs again, up to ``retries`` times; then the unit is reported failed and the others go on.
    A unit without a memory budget gets ``1/jobs`` of the default one
    (:func:`~xinc_bench.runs.budget.default_memory_budget`), so the units running at once share the
    machine. Workers import xinc-bench afresh: an entry added to a registry at run time in this
    process (rather than on import) is not there.

    Args:
        quiet: print no stage lines.
        jobs: worker processes (default: this process's CPUs).
        retries: runs of a unit after its worker died (default :data:`DEFAULT_RETRIES`).

    Raises:
        XincError: ``jobs`` below 1.
    """

    def __init__(self, quiet: bool = False, jobs: int | None = None, retries: int = DEFAULT_RETRIES) -> None:
        jobs = available_cpus() if jobs is None else jobs
        if jobs < 1:
            raise XincError(f"--jobs must be a positive number of worker processes, got {jobs}")
        self.quiet = quiet
        self.jobs = jobs
        self.retries = retries

    def map(self, jobs: Sequence[tuple[UnitSpec, Path]],
            on_result: Callable[[UnitOutcome], None] | None = None) -> list[UnitOutcome]:
        """Run every job in the pool; outcomes reach ``on_result`` as units finish, in job order at the end."""
        budget = default_memory_budget() // self.jobs
        jobs = [(spec if spec.memory_budget is not None else replace(spec, memory_budget=budget), run_dir)
                for spec, run_dir in jobs]
        outcomes: list[UnitOutcome | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        deaths = [0] * len(jobs)
        idle: list[_Worker] = []
        busy: dict[_Worker, int] = {}
        try:
            while pending or busy:
                while pending and len(busy) < self.jobs:
                    worker = idle.pop() if idle else _Worker(self.quiet)
                    if not worker.process.is_alive():  # died between units: nothing lost, take another
                        worker.stop()
                        continue
                    busy[worker] = pending.popleft()
                    worker.connection.send(jobs[busy[worker]])
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
                for worker, index in list(busy.items()):
                    if worker.connection not in ready and worker.process.sentinel not in ready:
                        continue
                    del busy[worker]
                    spec, run_dir = jobs[index]
                    try:
                        kind, payload = worker.connection.recv()
                    except (EOFError, OSError):  # the worker died under the unit
                        deaths[index] += 1
                        cause = worker.stop(grace=5.0)
                        if deaths[index] <= self.retries:
                            pending.appendleft(index)
                            continue
                        outcome = UnitOutcome(spec, run_dir, error=(
                            f"its worker process died under it {_times(deaths[index])} (last: {cause}); if it was "
                            "out of memory, give each unit more (--memory-budget) or run fewer at once (--jobs)"))
                    else:
                        idle.append(worker)
                        if kind == "raised":
                            exception, remote = payload
                            raise exception from _RemoteTraceback(remote)
                        outcome = (UnitOutcome(spec, run_dir, result=payload) if kind == "result"
                                   else UnitOutcome(spec, run_dir, error=payload))
                    outcomes[index] = outcome
                    if on_result is not None:
                        on_result(outcome)
        finally:
            for worker in idle:
                with suppress(OSError):
                    worker.connection.send(None)
                worker.stop(grace=5.0)
            for worker in busy:  # interrupted: their units resume on the next run
                worker.stop()
        return [outcome for outcome in outcomes if outcome is not None]


def _times(count: int) -> str:
    """``1 time``, ``2 times``."""
    return f"{count} time{'s' if count != 1 else ''}"


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as text (chained to the re-raised one)."""

    def __str__(self) -> str:
        return self.args[0]


class _Worker:
    """A spawned worker process running units sent through its end of a pipe (:func:`_serve`)."""

    def __init__(self, quiet: bool) -> None:
        self.connection, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(target=_serve, args=(child, quiet), name="xinc-bench worker", daemon=True)
        self.process.start()
        child.close()  # only the worker holds its end: the driver reads EOF when the worker dies

    def stop(self, grace: float = 0.0) -> str:
        """Wait up to ``grace`` seconds for the worker to end, then end it; how it ended, for messages."""
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()
        code = self.process.exitcode
        return f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"


def _serve(connection: Connection, quiet: bool) -> None:
    """A worker's loop: one torch thread; run each ``(spec, run folder)`` received until ``None``.

    Replies ``("result", UnitResult)``, ``("error", message)`` for :class:`XincError`, or
    ``("raised", (exception, traceback text))`` for anything else. Ctrl-C is the driver's to handle:
    it stops the workers; a driver killed outright takes them with it.
    """
    import torch

    torch.set_num_threads(1)
    quiet_lightning()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_the_driver, name="driver watch", daemon=True).start()
    while True:
        try:
            job = connection.recv()
        except EOFError:  # the driver is gone
            return
        if job is None:
            return
        spec, run_dir = job
        try:
            reply: tuple[str, Any] = ("result", run_unit(
                spec, run_dir, progress=Progress(spec.unit_id, quiet=quiet, bars=False)))
        except XincError as exc:
            reply = ("error", str(exc))
        except Exception as exc:  # a bug: the driver re-raises it, with this traceback
            reply = ("raised", (_picklable(exc), traceback.format_exc()))
        connection.send(reply)


def _exit_with_the_driver() -> None:
    """End this worker as soon as the driver is gone (killed with ``-9``): its unit resumes on the next run
    instead of holding the run folder's lock against it."""
    wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


def _picklable(exc: Exception) -> Exception:
    """``exc``, or a :class:`RuntimeError` with its type and message when it cannot be pickled."""
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _ray_executor(quiet: bool = False, **options: Any) -> Any:
    """The ``ray`` executor (:class:`~xinc_bench.runs.ray_executor.RayExecutor`), its module imported on use."""
    from .ray_executor import RayExecutor

    return RayExecutor(quiet=quiet, **options)


EXECUTORS.add("ray", _ray_executor, description='one Ray task per unit on a Ray cluster (--address); needs the '
                                               'ray extra: pip install -e ".[ray]"')
