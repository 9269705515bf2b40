"""Executors on real suites: a process pool and a local Ray cluster give the local executor's records; a
worker killed under a unit is retried, one that keeps dying fails alone; an interrupted driver resumes
without redoing a finished unit; bad executor options exit 2 with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from xinc_bench import cli
from xinc_bench.registry import EXECUTORS
from xinc_bench.runs.executors import ProcessExecutor
from xinc_bench.runs.suite import load_suite, run_suite

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "suites" / "smoke.yaml"
#: the smoke suite's fastest unit over three seeds: a third unit waits for a free CPU on two
THREE_SEEDS = """name: three-seeds
seeds: [0, 1, 2]
tasks: [distribution]
groups:
  - {size: 16x32, steps: 20, data: [astronaut], models: [ffn-paper]}
"""


def _env() -> dict[str, str]:
    """This process's environment (with Ray's, once a test cluster runs) for a subprocess run from the checkout."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _results(out: Path) -> dict[str, dict[str, Any]]:
    """Unit id -> the values of its record that the run computed (scores, nulls, controls, fidelity)."""
    results = {}
    for record in sorted(out.glob("*/records/distribution.json")):
        values = json.loads(record.read_text())
        results[record.parents[1].name] = {key: values[key] for key in ("scores", "nulls", "controls", "fidelity")}
    return results


def _files(root: Path) -> dict[str, int]:
    """Relative path -> mtime (ns) of every file below ``root`` but the staging leftovers of killed runs."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def _kill(find: Callable[[set[int]], int | None], times: int, deadline_s: float = 120.0) -> tuple[threading.Thread, list[int]]:
    """A thread that SIGKILLs ``times`` processes, each the first pid ``find(already killed)`` gives."""
    killed: list[int] = []

    def kill() -> None:
        deadline = time.monotonic() + deadline_s
        while len(killed) < times and time.monotonic() < deadline:
            pid = find(set(killed))
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread, killed


def _lock_holder(lock: Path) -> Callable[[set[int]], int | None]:
    """The process holding a run folder's lock (the worker running the unit), once it is a new one."""

    def find(killed: set[int]) -> int | None:
        try:
            pid = int(lock.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid not in killed and pid != os.getpid() else None

    return find


def _ray_task_process(killed: set[int]) -> int | None:
    """A Ray worker running a unit now: its process title is ``ray::_run_remote`` (``ray::IDLE`` between tasks)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in killed:
            continue
        try:
            if (entry / "cmdline").read_bytes().startswith(b"ray::_run_remote"):
                return int(entry.name)
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The smoke suite's records with the local executor."""
    out = tmp_path_factory.mktemp("local")
    assert not run_suite(SMOKE, out).failed
    return _results(out)


def test_the_executors_are_registered() -> None:
    assert {"local", "processes", "ray"} <= set(EXECUTORS.names())


# --- processes ----------------------------------------------------------------------------------

def test_processes_with_two_jobs_give_the_local_records_and_retry_a_killed_worker(
        local_results: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = load_suite(SMOKE).units[0]
    killer, killed = _kill(_lock_holder(tmp_path / first.unit_id / ".lock"), times=1)
    assert cli.main(["suite", "run", "smoke", "--out", str(tmp_path), "--executor", "processes", "--jobs", "2",
                     "--no-progress"]) == 0
    killer.join()
    assert len(killed) == 1  # the worker running the first unit was killed under it, and the unit ran again
    assert _results(tmp_path) == local_results  # scores, nulls, controls and fidelity equal, not only present
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("unit ")]
    assert [line.split(" ")[1] for line in lines] == ["1/2", "2/2"]
    assert "; ETA " in lines[0] and "ETA" not in lines[1]


@pytest.mark.slow
def test_processes_fail_only_a_unit_that_keeps_dying_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    first, second = load_suite(SMOKE).units
    killer, killed = _kill(_lock_holder(tmp_path / first.unit_id / ".lock"), times=2)
    summary = run_suite(SMOKE, tmp_path, executor=ProcessExecutor(jobs=2, retries=1, quiet=True))
    killer.join()
    assert len(killed) == 2  # the retry ran in a new worker, which was killed too
    assert list(summary.failed) == [first.unit_id]
    assert "worker process died under it 2 times (last: killed by SIGKILL)" in summary.failed[first.unit_id]
    assert [o.spec for o in summary.units if o.result is not None] == [second]  # the suite went on
    again = run_suite(SMOKE, tmp_path, executor="processes")  # a rerun runs the failed unit, keeps the other
    assert not again.failed
    results = {o.spec.unit_id: o.result for o in again.units}
    assert results[first.unit_id].records_written == ["distribution"] and results[second.unit_id].untouched


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    (["--executor", "processes", "--jobs", "0"], "--jobs must be a positive number of worker processes, got 0"),
    (["--executor", "processes", "--jobs", "-3"], "--jobs must be a positive number of worker processes, got -3"),
    (["--jobs", "2"], "--executor local does not take it (add --executor processes, or drop --jobs)"),
    (["--executor", "ray", "--jobs", "2"], "--executor ray does not take it"),
    (["--address", "127.0.0.1:6379"], "--address names the Ray cluster of --executor ray"),
])
def test_bad_executor_options_exit_2_with_one_line(options: list[str], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["suite", "run", "smoke", "--out", str(tmp_path / "out"), *options]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("xinc-bench: error: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_ray_missing_exits_2_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    assert cli.main(["suite", "run", "smoke", "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        'xinc-bench: error: --executor ray needs Ray, which is not installed; install the extra: pip install -e ".[ray]"']
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ray_address_where_nothing_listens_exits_2_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    assert cli.main(["suite", "run", "smoke", "--out", str(tmp_path), "--executor", "ray", "--address", address,
                     "--no-progress"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xinc-bench: error:")]
    assert f"cannot connect to the Ray cluster at --address {address} (" in line and "refused" in line
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_ray_address_that_never_answers_gives_up_after_the_timeout(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = "127.0.0.1:%d" % silent.getsockname()[1]
        script = ("import sys, time\nfrom xinc_bench.errors import XincError\n"
                  "from xinc_bench.runs.ray_executor import RayExecutor\nfrom xinc_bench.runs.suite import load_suite\n"
                  f"unit = load_suite({str(SMOKE)!r}).units[0]\nstarted = time.monotonic()\n"
                  f"try:\n    RayExecutor(address={address!r}, connect_timeout=3).map([(unit, {str(tmp_path)!r})])\n"
                  "except XincError as exc:\n    print(f'{time.monotonic() - started:.1f}', exc)\n    sys.exit(2)\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(), capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 2, done.stderr
    seconds, message = done.stdout.strip().split(" ", 1)
    assert message == (f"cannot connect to the Ray cluster at --address {address} (no answer within 3 s); give "
                       "the address that `ray start --head` printed on the head node, or start one there")
    assert 3 <= float(seconds) < 10


# --- ray ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster of two CPUs, its address; this process is its driver."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_gives_the_local_records_retries_a_killed_worker_and_a_rerun_keeps_them(
        ray_cluster: str, local_results: dict, tmp_path: Path) -> None:
    killer, killed = _kill(_ray_task_process, times=1)
    summary = run_suite(SMOKE, tmp_path, executor="ray")
    killer.join()
    assert len(killed) == 1 and not summary.failed  # a unit's worker was killed under it, and the unit ran again
    assert _results(tmp_path) == local_results
    assert all(o.run_dir == tmp_path / o.spec.unit_id for o in summary.units)  # the driver's folders, not the worker's
    assert not list(tmp_path.glob("*/canvas.safetensors"))  # not asked for: not carried back
    before = _files(tmp_path)
    assert all(o.result.untouched for o in run_suite(SMOKE, tmp_path, executor="ray").units)
    assert _files(tmp_path) == before  # nothing rewritten


def test_an_address_other_than_the_connected_cluster_is_refused(ray_cluster: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    refused = f"127.0.0.1:{_free_port()}"
    assert cli.main(["suite", "run", "smoke", "--out", str(tmp_path), "--executor", "ray", "--address", refused,
                     "--no-progress"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xinc-bench: error:")]
    assert f"cannot connect to the Ray cluster at --address {refused} (" in line
    with socket.socket() as other:  # something else that answers: not the cluster this process is connected to
        other.bind(("127.0.0.1", 0))
        other.listen()
        address = "127.0.0.1:%d" % other.getsockname()[1]
        assert cli.main(["suite", "run", "smoke", "--out", str(tmp_path), "--executor", "ray", "--address", address,
                         "--no-progress"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xinc-bench: error:")]
    assert f"connected to the Ray cluster at {ray_cluster} already, not to --address {address}" in line
    assert not any((tmp_path / unit.unit_id).exists() for unit in load_suite(SMOKE).units)


def test_ray_fails_only_the_unit_whose_worker_keeps_dying(ray_cluster: str, tmp_path: Path) -> None:
    from xinc_bench.runs.ray_executor import RayExecutor

    killer, killed = _kill(_ray_task_process, times=1)
    summary = run_suite(SMOKE, tmp_path, executor=RayExecutor(retries=0, quiet=True))
    killer.join()
    assert len(killed) == 1
    ((failed, message),) = summary.failed.items()
    assert message.startswith("its Ray worker died under it 1 time (last: ")
    (finished,) = [o for o in summary.units if o.result is not None]  # the suite went on
    assert finished.spec.unit_id != failed and finished.result.records_written == ["distribution"]
    assert not (tmp_path / failed / "records").exists()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_a_killed_driver_reruns_without_redoing_a_finished_unit(executor: str, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    options = ["--jobs", "2"] if executor == "processes" else ["--address", request.getfixturevalue("ray_cluster")]
    suite = tmp_path / "three.yaml"
    suite.write_text(THREE_SEEDS)
    out = tmp_path / "out"
    units = load_suite(suite).units
    driver = subprocess.Popen([sys.executable, "-m", "xinc_bench.cli", "suite", "run", str(suite), "--out", str(out),
                               "--executor", executor, *options, "--no-progress"],
                              cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = [out / unit.unit_id / "records" / "distribution.json" for unit in units]
    deadline = time.monotonic() + 300
    while not any(r.is_file() for r in records) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    driver.kill()
    _, stderr = driver.communicate()
    finished = {unit.unit_id for unit, record in zip(units, records) if record.is_file()}
    assert driver.returncode == -signal.SIGKILL and 1 <= len(finished) < len(units), stderr.decode()[-3000:]
    before = _files(out)
    summary = run_suite(suite, out, executor=executor)  # (the driver's workers went with it: no folder is held)
    assert not summary.failed
    for outcome in summary.units:  # a unit whose files reached the driver is complete: nothing redone
        assert outcome.result.untouched == (outcome.spec.unit_id in finished)
    assert {path: mtime for path, mtime in _files(out).items() if path in before} == before
