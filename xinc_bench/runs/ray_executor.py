"""The ``ray`` executor: every unit a Ray task on a Ray cluster (the ``ray`` extra: ``pip install -e ".[ray]"``).

Each unit asks the cluster for what it uses (:func:`unit_resources`): one CPU (it runs one torch
thread), one GPU when its device is ``cuda``, and its memory budget when it states one (else it
plans against its share of the node's default budget, one per CPU Ray has there). Workers
need not share a filesystem with the driver: the driver sends the files of the unit's run folder
that it already has (a resumed unit skips its finished stages on the worker as it would here), the
task runs the unit in a scratch folder on the worker and sends back what changed, and the driver
puts that into the results folder in one step (:func:`apply_changes`). The canvas files travel
only when the unit keeps them (``save_canvas``).

A Ray worker that dies under a unit (killed, out of memory, its node lost) is retried by Ray up to
``retries`` times; then the unit is reported failed and the others go on. Without ``address`` the
executor joins the cluster ``ray start --head`` started on this machine, or else starts a private
one for the suite; a Ray connection this process already has is used as it is.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from ..errors import XincError
from ..files import TEMP_MARK, remove_orphans, replaced_dir, scratch_dir
from ..training.fit import quiet_lightning
from .budget import default_memory_budget
from .executors import DEFAULT_RETRIES, UnitOutcome
from .progress import Progress
from .rundir import CANVAS_NAME, INIT_DIR, LOCK_NAME, RunDir
from .spec import UnitSpec
from .unit import UnitResult, run_unit

#: the fix named when Ray is not installed
INSTALL_HINT = 'pip install -e ".[ray]"'
#: CPUs a unit asks for (it runs one torch thread)
UNIT_CPUS = 1
#: seconds to wait for the cluster at ``--address`` to answer
CONNECT_TIMEOUT_S = 30.0

#: path (relative to the run folder) -> contents
Files = dict[str, bytes]


class RayExecutor:
    """Runs every unit as a Ray task; see the module docstring.

    Args:
        quiet: print no stage lines (the workers' lines reach the driver through Ray's log).
        address: the cluster (``HOST:PORT`` of its head, ``ray://HOST:PORT`` for Ray Client, or
            ``auto``); ``None``: the local one (``ray start --head``), else a private one.
        retries: runs of a unit after its worker died (default :data:`~xinc_bench.runs.executors.DEFAULT_RETRIES`).
        connect_timeout: seconds to wait for the cluster at ``address``.

    Raises:
        XincError: Ray is not installed.
    """

    def __init__(self, quiet: bool = False, address: str | None = None, retries: int = DEFAULT_RETRIES,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.ray = import_ray()
        self.quiet = quiet
        self.address = address
        self.retries = retries
        self.connect_timeout = connect_timeout

    def map(self, jobs: Sequence[tuple[UnitSpec, Path]],
            on_result: Callable[[UnitOutcome], None] | None = None) -> list[UnitOutcome]:
        """Submit every job as a task; outcomes reach ``on_result`` as units finish, in job order at the end.

        A unit counts as finished once its files are in its run folder here.

        Raises:
            XincError: the cluster at ``address`` cannot be reached within ``connect_timeout`` seconds.
        """
        ray = self.ray
        connected_here = self._connect()
        try:
            task = ray.remote(_run_remote)
            pending = {}
            for index, (spec, run_dir) in enumerate(jobs):
                options = {**unit_resources(spec), "max_retries": self.retries, "retry_exceptions": False}
                pending[task.options(**options).remote(spec, carried_files(run_dir, spec), self.quiet)] = index
            outcomes: list[UnitOutcome | None] = [None] * len(jobs)
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready)
                outcome = self._outcome(ready, *jobs[index])
                outcomes[index] = outcome
                if on_result is not None:
                    on_result(outcome)
        finally:
            if connected_here:
                ray.shutdown()
        return [outcome for outcome in outcomes if outcome is not None]

    def _connect(self) -> bool:
        """Join the cluster (or start a private one); ``True`` when this call made the connection."""
        ray = self.ray
        if ray.is_initialized():
            self._check_same_cluster()
            return False
        if self.address in (None, "local"):  # this machine's cluster, joined or started: nothing to reach
            ray.init(address=self.address, include_dashboard=False)
            return True
        _check_reachable(self.address, self.connect_timeout)
        _check_answers(self.address, self.connect_timeout)
        ray.init(address=self.address)
        return True

    def _check_same_cluster(self) -> None:
        """This process is connected already (library use): ``address``, when it names a ``HOST:PORT``,
        must be that cluster's, or the units would silently run elsewhere than asked.

        Raises:
            XincError: nothing answers at ``address``, or it is another cluster than the connected one.
        """
        if self.address in (None, "local", "auto") or self.address.startswith("ray://"):
            return
        _check_reachable(self.address, self.connect_timeout)
        connected = self.ray.get_runtime_context().gcs_address
        if _endpoint(self.address) != _endpoint(connected):
            raise XincError(f"this process is connected to the Ray cluster at {connected} already, not to --address "
                            f"{self.address}; call ray.shutdown() first, or leave --address out to use that cluster")

    def _outcome(self, ref: Any, spec: UnitSpec, run_dir: Path) -> UnitOutcome:
        """The outcome of a finished task, its changes put into ``run_dir`` first. A unit that raised
        anything but :class:`XincError` raises it here (a bug stops the suite, as with ``local``)."""
        exceptions = self.ray.exceptions
        try:
            result, changed, removed = self.ray.get(ref)
        except exceptions.RayTaskError:
            raise
        except exceptions.RayError as exc:  # the worker or its node died, more often than the retries allow
            runs = self.retries + 1
            return UnitOutcome(spec, run_dir, error=(
                f"its Ray worker died under it {runs} time{'s' if runs != 1 else ''} (last: {_first_line(exc)}); "
                "if it was out of memory, give each unit more (--memory-budget; Ray then places it where that much "
                "is free)"))
        try:
            apply_changes(run_dir, changed, removed)
        except XincError as exc:
            return UnitOutcome(spec, run_dir, error=str(exc))
        if isinstance(result, str):
            return UnitOutcome(spec, run_dir, error=result)
        return UnitOutcome(spec, run_dir, result=replace(result, run_dir=run_dir))


def import_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        XincError: Ray is not installed (the message names the extra).
    """
    try:
        import ray
    except ImportError:
        raise XincError(f"--executor ray needs Ray, which is not installed; install the extra: {INSTALL_HINT}") from None
    return ray


def unit_resources(spec: UnitSpec) -> dict[str, Any]:
    """What a unit asks the cluster for: ``num_cpus``, ``num_gpus`` (1 for ``device: cuda``; ``auto`` asks
    for none, and Ray hides the GPUs from a task without one, so it runs on the CPU) and, when the unit
    states a memory budget, ``memory`` in bytes."""
    resources: dict[str, Any] = {"num_cpus": UNIT_CPUS, "num_gpus": 1 if spec.device == "cuda" else 0}
    if spec.memory_budget is not None:
        resources["memory"] = spec.memory_budget
    return resources


def carried_files(run_dir: Path, spec: UnitSpec) -> Files:
    """The files of a run folder that travel between driver and worker: everything but its lock, the
    temporary files of killed runs and, unless the unit keeps them, the canvas files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    left_out = set() if spec.save_canvas else {CANVAS_NAME, f"{INIT_DIR}/{CANVAS_NAME}"}
    return {
        name: path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and (name := path.relative_to(run_dir).as_posix()) != LOCK_NAME
        and name not in left_out and TEMP_MARK not in name
    }


def apply_changes(run_dir: Path, changed: Files, removed: Sequence[str]) -> None:
    """Write ``changed`` files into ``run_dir`` and delete ``removed`` ones, all in one step: the new
    folder (the files kept hard-linked, not copied) replaces the old one as a whole, under its lock.

    Raises:
        XincError: another process holds the run folder.
    """
    if not changed and not removed:
        return
    run = RunDir(run_dir)
    with run.open(), replaced_dir(run.path) as stage:
        for path in sorted(run.path.rglob("*")):
            name = path.relative_to(run.path).as_posix()
            if path.is_file() and name not in changed and name not in removed and name != LOCK_NAME:
                _link(path, stage / name)
        for name, contents in changed.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(contents)


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` at ``target`` (a copy where the filesystem has no hard links)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def _run_remote(spec: UnitSpec, files: Files, quiet: bool) -> tuple[UnitResult | str, Files, list[str]]:
    """The Ray task: run the unit in a scratch folder on this worker, starting from the driver's ``files``.

    Returns its result (or the :class:`XincError` message that stopped it), the files that are new or
    changed, and the names of those removed; what a stopped unit finished (its fit) comes back too.
    """
    import torch

    torch.set_num_threads(UNIT_CPUS)
    quiet_lightning()
    if spec.memory_budget is None:  # the units that fit on this node at once share its default budget
        spec = replace(spec, memory_budget=default_memory_budget() * UNIT_CPUS // _node_cpus())
    parent = Path(tempfile.gettempdir()) / "xinc-bench-ray"
    remove_orphans(parent)  # scratch folders of tasks whose worker was killed
    with scratch_dir(parent, spec.unit_id) as scratch:
        run_dir = scratch / spec.unit_id
        for name, contents in files.items():
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / name).write_bytes(contents)
        try:
            result: UnitResult | str = run_unit(spec, run_dir, progress=Progress(spec.unit_id, quiet=quiet))
        except XincError as exc:
            result = str(exc)
        now = carried_files(run_dir, spec)
    changed = {name: contents for name, contents in now.items() if files.get(name) != contents}
    return result, changed, sorted(set(files) - set(now))


def _node_cpus() -> int:
    """The CPUs Ray has on the node this task runs on."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return max(1, int(next(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node)))


def _check_reachable(address: str, timeout: float) -> None:
    """Fail at once when nothing listens at ``HOST:PORT`` (ray.init would keep retrying).

    Raises:
        XincError: the host is unknown or refuses the connection.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address == "auto":
            return
        raise XincError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto; give the address "
                        "that `ray start --head` printed, e.g. 10.0.0.1:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise XincError(f"cannot connect to the Ray cluster at --address {address} ({exc}); give the address "
                        "that `ray start --head` printed on the head node, or start one there") from None


def _endpoint(address: str) -> tuple[str, int]:
    """``(IP, port)`` of a ``HOST:PORT`` address, its host resolved (``localhost`` and ``127.0.0.1`` are one)."""
    host, _, port = address.rpartition(":")
    try:
        host = socket.gethostbyname(host)
    except OSError:
        pass
    return host, int(port)


def _check_answers(address: str, timeout: float) -> None:
    """Connect to the cluster once from a child process, which is killed after ``timeout`` seconds: ray.init
    keeps waiting for an address where something listens but no Ray answers, and cannot be stopped here.

    Raises:
        XincError: the child did not connect within ``timeout`` seconds, or failed.
    """
    script = "import sys, ray\nray.init(address=sys.argv[1], log_to_driver=False)\nray.shutdown()\n"
    try:
        probe = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        why = f"no answer within {timeout:.0f} s"
    else:
        if probe.returncode == 0:
            return
        lines = [line for line in probe.stderr.splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit code {probe.returncode}"
    raise XincError(f"cannot connect to the Ray cluster at --address {address} ({why}); give the address that "
                    "`ray start --head` printed on the head node, or start one there")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
