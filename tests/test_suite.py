"""Suites: matrix expansion, sharding, validation, and resuming after a real interrupt."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xinc_bench.errors import XincError
from xinc_bench import cli
from xinc_bench.runs.executors import LocalExecutor
from xinc_bench.runs.suite import load_suite, parse_shard, run_suite, shard_units
from xinc_bench.runs.unit import run_unit

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "suites" / "smoke.yaml"

# the zoo, data sources and probes the committed suites name (they register on import)
for _module in ("inrs.nerv", "inrs.hashgrid", "data.video", "data.synthetic", "canvas.cnn", "probes.clustering",
                "probes.color", "probes.edges", "probes.faithfulness", "probes.motion", "probes.objects",
                "probes.partitions"):
    importlib.import_module(f"xinc_bench.{_module}")


def _files(root: Path) -> dict[str, int]:
    """Relative path -> mtime (ns) of every file below ``root``, staging leftovers of killed runs excluded."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def _run_until_first_record_then_kill(out: Path, first_record: Path) -> int:
    """Run the smoke suite in a subprocess and SIGKILL it once ``first_record`` exists."""
    script = "import torch; torch.set_num_threads(1)\nfrom xinc_bench.runs.suite import run_suite\n" \
             f"run_suite({str(SMOKE)!r}, {str(out)!r})\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not first_record.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert first_record.is_file(), f"the suite never wrote its first record:\n{stderr.decode()[-3000:]}"
    return process.returncode


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The smoke suite killed after its first unit's record, then resumed in this process."""
    out = tmp_path_factory.mktemp("smoke")
    first, second = load_suite(SMOKE).units
    returncode = _run_until_first_record_then_kill(out, out / first.unit_id / "records" / "distribution.json")
    before = _files(out)
    summary = run_suite(SMOKE, out)
    return {"out": out, "units": (first, second), "returncode": returncode, "before": before, "summary": summary}


def test_smoke_suite_expands_to_its_two_units() -> None:
    suite = load_suite("smoke")
    assert [u.unit_id for u in suite.units] == ["ffn-paper__astronaut__16x32__seed0", "siren-33k__astronaut__16x32__seed0"]
    ffn, siren = suite.units
    assert (ffn.steps, ffn.lr, siren.lr, ffn.size, ffn.tasks) == (20, None, 1e-4, (16, 32), ("distribution",))


def test_interrupted_suite_resumes_without_redoing_or_losing_anything(resumed: dict) -> None:
    out, (first, second) = resumed["out"], resumed["units"]
    assert resumed["returncode"] == -signal.SIGKILL  # it was killed, not finished
    assert f"{second.unit_id}/records/distribution.json" not in resumed["before"]  # ... before the second unit's record
    after = _files(out)
    assert {path: after[path] for path in resumed["before"]} == resumed["before"]  # nothing there was rewritten
    first_result, second_result = (outcome.result for outcome in resumed["summary"].units)
    assert first_result.untouched and first_result.records_kept == ["distribution"]
    assert second_result.fitted and second_result.records_written == ["distribution"]
    for unit in (first, second):
        record = json.loads((out / unit.unit_id / "records" / "distribution.json").read_text())
        assert record["model"]["name"] == unit.model and record["seed"] == 0
        assert set(record["scores"]) >= {"gini", "neurons_per_pixel_a0.1"}
    assert sorted(map(str, resumed["summary"].records)) == sorted(
        str(out / u.unit_id / "records" / "distribution.json") for u in (first, second))


def test_rerun_rewrites_only_a_missing_record(resumed: dict, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(resumed["out"], out, copy_function=shutil.copy2)
    _, second = resumed["units"]
    record = out / second.unit_id / "records" / "distribution.json"
    old_scores = json.loads(record.read_text())["scores"]
    record.unlink()
    before = _files(out)
    first_result, second_result = (outcome.result for outcome in run_suite(SMOKE, out).units)
    assert first_result.untouched
    assert (second_result.fitted, second_result.canvases, second_result.records_written) == (False, [], ["distribution"])
    figures = f"{second.unit_id}/records/distribution_figures/"  # rewritten with their record
    assert {k: v for k, v in _files(out).items() if k in before and not k.startswith(figures)} == \
        {k: v for k, v in before.items() if not k.startswith(figures)}
    assert json.loads(record.read_text())["scores"] == old_scores  # same canvas, same probe: same numbers


class _RecordingExecutor:
    """The local executor, noting the units handed to it (the driver's choice is under test here)."""

    def __init__(self) -> None:
        self.handed: list[str] = []

    def map(self, jobs, on_result=None):  # noqa: ANN001, ANN201 - the Executor protocol's signature
        self.handed += [spec.unit_id for spec, _ in jobs]
        return LocalExecutor(quiet=True).map(jobs, on_result)


def test_a_rerun_hands_only_unfinished_units_to_the_executor(resumed: dict, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(resumed["out"], out, copy_function=shutil.copy2)
    first, second = resumed["units"]
    executor = _RecordingExecutor()
    before = _files(out)
    kept = run_suite(SMOKE, out, executor=executor).units
    assert executor.handed == [] and _files(out) == before  # complete: no worker, nothing written
    assert [o.spec.unit_id for o in kept] == [first.unit_id, second.unit_id]
    again = run_unit(first, out / first.unit_id)  # what running the finished unit itself reports
    assert kept[0].result.untouched and again.untouched
    assert (kept[0].result.records_kept, kept[0].result.skipped, kept[0].result.fidelity) == \
        (again.records_kept, again.skipped, again.fidelity)
    assert kept[0].result.fidelity["psnr"] > 0
    (out / second.unit_id / "records" / "distribution.json").unlink()
    outcomes = run_suite(SMOKE, out, executor=executor).units
    assert executor.handed == [second.unit_id]  # only the unit with work left
    assert [o.spec.unit_id for o in outcomes] == [first.unit_id, second.unit_id]  # in the suite's order
    assert outcomes[1].result.records_written == ["distribution"]


def test_rerun_with_other_settings_in_the_same_folder_is_refused(resumed: dict, tmp_path: Path) -> None:
    changed = tmp_path / "smoke-25.yaml"
    changed.write_text(SMOKE.read_text().replace("steps: 20", "steps: 25"))
    with pytest.raises(XincError, match="other settings"):
        run_suite(changed, resumed["out"])


def test_a_shard_runs_only_its_units(tmp_path: Path) -> None:
    summary = run_suite(SMOKE, tmp_path, shard=(2, 2))
    assert [r.spec.model for r in summary.units] == ["siren-33k"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["siren-33k__astronaut__16x32__seed0"]


@pytest.mark.parametrize("name", ["quick", "paper"])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_partition_the_matrix(name: str, count: int) -> None:
    units = load_suite(name).units
    shards = [shard_units(units, (index, count)) for index in range(1, count + 1)]
    assert sorted(u.unit_id for shard in shards for u in shard) == sorted(u.unit_id for u in units)
    assert sum(len(shard) for shard in shards) == len(units)
    assert [u.unit_id for u in shards[0]] == [u.unit_id for u in units[::count]]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_quick_suite_covers_the_matched_budget_zoo_over_three_seeds() -> None:
    from xinc_bench.inrs import inr_info
    from xinc_bench.registry import INRS

    units = load_suite("quick").units
    family = {u.model: inr_info(u.model).family for u in units}
    zoo = [u for u in units if family[u.model] != "known-answer"]
    images = {u.model for u in zoo if u.frames is None}
    expected = {n for n in INRS.names() if inr_info(n).signal_kind == "image" and (n == "ffn-paper" or n.endswith("-33k"))}
    assert images == expected
    assert {u.data for u in zoo if u.frames is None} == {"astronaut", "camera"}
    assert {u.size for u in zoo if u.frames is None} == {(64, 128)}
    videos = {u.model for u in zoo if u.frames is not None}
    assert videos == {n for n in INRS.names() if inr_info(n).signal_kind == "video" and inr_info(n).family != "known-answer"}
    assert {u.data for u in zoo if u.frames is not None} == {"synthetic-moving", "bikes"}
    assert len(zoo) == 3 * (2 * len(expected) + 2 * len(videos))
    assert {u.seed for u in units} == {0, 1, 2} and {u.seed for u in units if u.sanity} == {0}
    # every known-answer preset is there as a reference row
    assert {m for m, f in family.items() if f == "known-answer"} == {
        n for n in INRS.names() if inr_info(n).family == "known-answer"}


def test_paper_suite_uses_the_paper_settings() -> None:
    units = load_suite("paper").units
    ffn = [u for u in units if u.model == "ffn-paper"]
    assert ffn and all((u.steps, u.size) == (1000, (128, 256)) for u in ffn)
    nerv = [u for u in units if u.model == "nerv-paper" and u.seed == 0]
    assert [(u.data, str(u.frames), u.size) for u in nerv] == [("bikes", "0:30", (128, 256)),
                                                                ("synthetic-moving", "0:30", (128, 256))]
    # the released XINC NeRV run: 1,000 epochs of 2-frame batches, lr 1e-3, warm-up then cosine
    assert (nerv[0].steps, nerv[0].batch_frames, nerv[0].schedule, nerv[0].lr) == (15000, 2, "warmup-cosine", 1e-3)


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ("{size: 16x32, data: [astronaut], models: [no-such-inr]}", "no-such-inr"),
        ("{size: 16x32, data: [bikes], models: [ffn-paper]}", "image INR but bikes is a video"),
        ("{size: 16x32, data: [no-such-data], models: [ffn-paper]}", "unknown data source"),
        ("{size: 16x32, data: [astronaut], models: [ffn-paper], stepz: 3}", "unknown keys \\['stepz'\\]"),
        ("{size: 16x32, data: [astronaut], models: {ffn-paper: {steps: 0}}}", "steps must be a positive integer"),
        ("{size: 16x32, data: [astronaut], models: [ffn-paper], tasks: [no-such-task]}", "unknown task"),
        ("{size: sixteen, data: [astronaut], models: [ffn-paper]}", "invalid size"),
        ("{size: 16x32, data: [astronaut], models: [ffn-paper], schedule: linear}", "schedule must be one of"),
        ("{size: 16x32, data: [bikes], models: {nerv-paper: {batch_frames: 0}}}", "batch_frames must be a positive"),
        ("{size: 16x32, data: [astronaut], models: [ffn-paper], device: gpu}", "device 'gpu' is not one of cpu, cuda"),
    ],
)
def test_bad_suite_files_are_refused_with_the_fix(tmp_path: Path, group: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ngroups:\n  - {group}\n")
    with pytest.raises(XincError, match=message):
        load_suite(path)


def test_sanity_seeds_must_be_suite_seeds(tmp_path: Path) -> None:
    path = tmp_path / "sanity.yaml"
    path.write_text("name: s\nseeds: [0, 1]\nsanity_seeds: [2]\ngroups:\n  - {size: 16x32, data: [astronaut], models: [ffn-paper]}\n")
    with pytest.raises(XincError, match="'sanity_seeds' must be a list of seeds from 'seeds'"):
        load_suite(path)


def test_an_image_inr_takes_one_frame_of_a_video_and_no_more(tmp_path: Path) -> None:
    path = tmp_path / "frame.yaml"
    group = "  - {size: 16x32, frames: '%s', data: [synthetic-static], models: [known-objects]}\n"
    path.write_text("name: f\ngroups:\n" + group % "0:1")
    assert [u.unit_id for u in load_suite(path).units] == ["known-objects__synthetic-static__16x32__f0-1__seed0"]
    path.write_text("name: f\ngroups:\n" + group % "0:2")
    with pytest.raises(XincError, match="an image INR takes one frame of a video"):
        load_suite(path)


def test_units_of_the_sanity_seeds_run_the_sanity_check_once(tmp_path: Path) -> None:
    path = tmp_path / "sanity.yaml"
    path.write_text(SMOKE.read_text().replace("seeds: [0]", "seeds: [0, 1]\nsanity_seeds: [1]")
                    .replace("      siren-33k: {lr: 1.0e-4}\n", ""))
    summary = run_suite(path, tmp_path / "out")
    assert [(r.spec.seed, r.result.sanity) for r in summary.units] == [(0, False), (1, True)]
    unsane, checked = (r.run_dir / "records" for r in summary.units)
    assert not (unsane / "sanity.json").exists()
    sanity = json.loads((checked / "sanity.json").read_text())
    assert sanity["kind"] == "sanity" and sanity["seed"] == 1 and set(sanity["tasks"]) == {"distribution"}
    assert all(r.result.untouched for r in run_suite(path, tmp_path / "out").units)  # complete: nothing is redone


def test_a_unit_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    group = "  - {size: 16x32, data: [astronaut], models: [ffn-paper]}\n"
    path.write_text("name: twice\ngroups:\n" + group + group)
    with pytest.raises(XincError, match="same unit twice: ffn-paper__astronaut__16x32__seed0"):
        load_suite(path)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(XincError, match="invalid shard"):
        parse_shard(text)


def test_shard_text_is_one_based() -> None:
    assert parse_shard("1/2") == (1, 2) and parse_shard(" 2 / 2 ") == (2, 2)


def test_a_failing_task_is_skipped_with_its_reason_and_the_rest_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xinc_bench.probes.base import ProbeAccumulator
    from xinc_bench.registry import PROBES

    class NeedsDepth(ProbeAccumulator):  # a probe asking for what the signal lacks
        def update(self, layer, start, chunk, pass_index=0):
            raise XincError("the needs-depth probe needs depth maps; give a signal with depth")

        def compute(self):
            raise AssertionError("never reached")

    if "test-needs-depth" not in PROBES:
        PROBES.add("test-needs-depth", NeedsDepth)
    task = tmp_path / "depth.yaml"
    task.write_text("name: depth\nversion: 1\nprobe: test-needs-depth\nmetrics: {score: {higher_is_better: true}}\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: failing\ntasks: [{task}, distribution]\n"
                     "groups:\n  - {size: 16x32, steps: 5, data: [astronaut], models: [ffn-paper]}\n")
    summary = run_suite(suite, tmp_path / "out")
    (outcome,) = summary.units
    result = outcome.result
    reason = "the needs-depth probe needs depth maps; give a signal with depth"
    assert result.records_written == ["distribution"] and result.skipped == {str(task): reason}
    assert summary.failed == {}  # a skipped task does not fail the unit
    assert not (result.run_dir / "records" / "depth.json").exists()
    skipped = json.loads((result.run_dir / "records" / "skipped.json").read_text())
    assert skipped == {"kind": "skipped", "tasks": {str(task): reason}}
    again = run_suite(suite, tmp_path / "out").units[0].result  # a rerun retries only the skipped task
    assert (again.records_kept, again.records_written, list(again.skipped)) == (["distribution"], [], [str(task)])
    capsys.readouterr()
    assert cli.main(["suite", "run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert f"warning: task {task} skipped: {reason}" in capsys.readouterr().err


def test_suite_command_resumes_a_complete_suite(resumed: dict, capsys: pytest.CaptureFixture[str]) -> None:
    before = _files(resumed["out"])
    assert cli.main(["suite", "run", "smoke", "--out", str(resumed["out"]), "--shard", "1/2", "--no-progress"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"suite smoke: 1 of 2 units -> {resumed['out']}",
        f"unit 1/1 {resumed['units'][0].unit_id}: complete, kept",
    ]
    assert _files(resumed["out"]) == before


def test_a_group_or_the_command_line_chooses_the_units_device(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("name: d\ngroups:\n  - {size: 16x32, data: [astronaut], models: [ffn-paper], device: auto}\n"
                    "  - {size: 16x32, data: [camera], models: [ffn-paper]}\n")
    assert [unit.device for unit in load_suite(path).units] == ["auto", "cpu"]
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: a cuda unit would run")
    # --device overrides every group's; a cuda unit on a machine without CUDA fails alone, with the fix
    out = tmp_path / "out"
    assert cli.main(["suite", "run", str(path), "--out", str(out), "--device", "cuda", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("this machine has no CUDA device") == 2 and "use --device cpu or auto" in err
