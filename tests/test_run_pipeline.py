"""One run pipeline: ``run_unit`` resumes after ``kill -9``, cleans what a killed run left, locks its folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xinc_bench import cli
from xinc_bench.errors import XincError
from xinc_bench.files import TEMP_MARK
from xinc_bench.runs import RunDir, UnitSpec, run_unit
from xinc_bench.runs.progress import Progress

REPO = Path(__file__).resolve().parents[1]
SPEC = UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32), steps=20, tasks=("distribution", "color"))
COMMAND = ["run", "--model", "ffn-paper", "--data", "astronaut", "--size", "16x32", "--steps", "20",
           "--tasks", "distribution", "color", "--null-draws", "5"]


def _files(root: Path) -> dict[str, int]:
    """Relative path -> mtime (ns) of every file below ``root``."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _run_and_kill_when(out: Path, marker: str, extra: list[str]) -> None:
    """Start ``xinc-bench run`` (with ``extra`` arguments) in a subprocess and SIGKILL it as soon as
    ``out/marker`` exists."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    script = "import sys, torch; torch.set_num_threads(1)\nfrom xinc_bench.cli import main\nsys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen([sys.executable, "-c", script, *COMMAND, *extra, "--out", str(out), "--no-progress"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out / marker).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert (out / marker).exists(), f"the run never wrote {marker}:\n{stderr.decode()[-3000:]}"


@pytest.mark.parametrize(("marker", "extra"), [
    pytest.param("model.safetensors", [], marks=pytest.mark.slow),
    ("signal.safetensors", []),
    pytest.param("canvas.safetensors", ["--save-canvas"], marks=pytest.mark.slow),
    pytest.param("records/distribution.json", [], marks=pytest.mark.slow),
])
def test_a_run_killed_at_any_stage_resumes_without_redoing_finished_stages(
        tmp_path: Path, marker: str, extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    _run_and_kill_when(out, marker, extra)
    before = {k: v for k, v in _files(out).items() if TEMP_MARK not in k and k != ".lock"}
    assert cli.main([*COMMAND, *extra, "--out", str(out), "--no-progress"]) == 0
    after = _files(out)
    assert not [name for name in after if TEMP_MARK in name or name == ".lock"]  # orphans and lock are gone
    finished = [name for name in ("model.safetensors", "signal.safetensors", "canvas.safetensors",
                                  "init/canvas.safetensors", "records/distribution.json") if name in before]
    assert marker in finished
    # what the killed run finished is kept as it was, unless an earlier stage had to be redone
    if marker in ("signal.safetensors", "records/distribution.json"):
        assert all(after[name] == before[name] for name in finished if name != "records/distribution.json")
    if marker == "records/distribution.json":
        assert after[marker] == before[marker]
    saved = {"canvas.safetensors", "init/canvas.safetensors"}
    assert saved <= set(after) if extra else not saved & set(after)  # canvas files only when asked for
    assert {"signal.safetensors", "preview.safetensors", "records/distribution.json", "records/color.json",
            "report.html"} <= set(after)
    for task in ("distribution", "color"):
        record = json.loads((out / "records" / f"{task}.json").read_text())
        assert record["task"]["name"] == task and record["null_draws"]["draws"] == 5
    printed = capsys.readouterr().out
    assert f"records -> {out / 'records'}" in printed and f"report -> {out / 'report.html'}" in printed


def test_a_complete_run_is_kept_and_a_rerun_only_reprobes_a_missing_record(tmp_path: Path) -> None:
    result = run_unit(SPEC, tmp_path)
    assert result.fitted and result.records_written == ["distribution", "color"]
    (tmp_path / "records" / "color.json").unlink()
    before = _files(tmp_path)
    again = run_unit(SPEC, tmp_path)
    assert (again.fitted, again.canvases, again.records_written, again.records_kept) == (
        False, [], ["color"], ["distribution"])
    assert {k: v for k, v in _files(tmp_path).items() if k in before and "color" not in k} == {
        k: v for k, v in before.items() if "color" not in k}
    assert run_unit(SPEC, tmp_path).untouched


def test_a_folder_locked_by_a_live_process_is_refused_and_a_dead_lock_taken_over(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(str(os.getpid()))  # this very process holds it
    with pytest.raises(XincError, match=f"in use by process {os.getpid()}"):
        run_unit(SPEC, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # nothing was written
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(str(dead.pid))
    assert run_unit(SPEC, tmp_path).records_written == ["distribution", "color"]
    assert not (tmp_path / ".lock").exists()


def test_another_run_in_the_folder_is_refused(tmp_path: Path) -> None:
    run_unit(SPEC, tmp_path)
    with pytest.raises(XincError, match="other settings"):
        run_unit(UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32), steps=21), tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layers", "no-such-layer"], "--layers names no-such-layer, which the mlp tracer does not trace"),
        (["--device", "cuda"], "no CUDA device"),
        (["--layout", "kitti", "--sequence", "0001"], "unknown dataset layout 'kitti'"),
        (["--tasks", "no-such-task"], "unknown task"),
    ],
)
def test_bad_run_arguments_exit_2_with_one_line_and_write_nothing(
        tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    assert cli.main([*COMMAND, "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists() or list(out.iterdir()) == []


def test_out_naming_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file.txt"
    out.write_text("not a folder")
    assert cli.main([*COMMAND, "--out", str(out)]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err


def test_layers_restrict_the_traced_and_probed_layers(tmp_path: Path) -> None:
    from xinc_bench.runs.preview import read_preview

    spec = UnitSpec(model="ffn-paper", data="astronaut", size=(16, 32), steps=5, tasks=("distribution",),
                    layers=("layer2",), null_draws=2)
    run_unit(spec, tmp_path)
    assert list(read_preview(RunDir(tmp_path).preview)) == ["layer2"]
    scores = json.loads(RunDir(tmp_path).record("distribution").read_text())["scores"]
    assert {name.split("/")[0] for name in scores if "/" in name} == {"layer2"}


def test_progress_prints_one_line_per_stage_without_a_terminal(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run_unit(SPEC, tmp_path, progress=Progress("unit"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[unit] memory: about ") and "the canvases are streamed, not written" in lines[0]
    stages = [line.split(" (")[0] for line in lines[1:]]
    assert stages == ["[unit] fit ffn-paper on astronaut, 20 steps", "[unit] annotate the signal",
                      "[unit] canvas set up",
                      "[unit] canvas of the random-init twin set up",
                      "[unit] prepare 2 tasks",
                      "[unit] probe 2 tasks",
                      "[unit] probe 2 tasks on the shuffled control",
                      "[unit] probe 2 tasks on the random-init control"]
    assert all(line.endswith(" s)") for line in lines[1:]) and "\r" not in "".join(lines)


def test_a_run_on_a_davis_layout_folder_uses_its_ground_truth_masks(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from test_datasets import davis_tree

    root = davis_tree(tmp_path / "DAVIS")
    out = tmp_path / "run"
    assert cli.main(["run", "--model", "ffn-video", "--data", str(root), "--layout", "davis", "--sequence", "bear",
                     "--size", "16x32", "--frames", "0:2", "--steps", "5", "--tasks", "objects",
                     "--null-draws", "2", "--out", str(out), "--no-progress"]) == 0
    from xinc_bench.canvas import read_canvas

    assert read_canvas(RunDir(out).signal).metadata["annotations"]["masks"] == "gt"
    assert "object_selectivity" in json.loads(RunDir(out).record("objects").read_text())["scores"]
    config = json.loads((out / "model.json").read_text())["signal"]
    assert (config["data"], config["layout"], config["sequence"]) == (str(root), "davis", "bear")
    assert f"records -> {out / 'records'}" in capsys.readouterr().out
    with pytest.raises(XincError, match="sequence 'dog' not found"):
        run_unit(UnitSpec(model="ffn-video", data=str(root), layout="davis", sequence="dog", size=(16, 32),
                          frames=None, steps=5), tmp_path / "dog")
    assert not (tmp_path / "dog").exists()


def test_a_record_of_an_older_task_version_is_redone_and_an_older_checkpoint_format_refused(tmp_path: Path) -> None:
    run_unit(SPEC, tmp_path)
    record_path = RunDir(tmp_path).record("color")
    record = json.loads(record_path.read_text())
    record["task"]["version"] -= 1
    record_path.write_text(json.dumps(record))
    again = run_unit(SPEC, tmp_path)
    assert (again.records_written, again.records_kept) == (["color"], ["distribution"])
    config = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**config, "format": "xinc-checkpoint/0"}))
    (tmp_path / "records" / "color.json").unlink()
    with pytest.raises(XincError, match="has format 'xinc-checkpoint/0', but this xinc-bench reads"):
        run_unit(SPEC, tmp_path)
