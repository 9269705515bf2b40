"""``run`` streams its canvases: nothing is written unless ``--save-canvas``, and the scores are the same.

A unit is run twice, once streamed (its canvases traced window by window as the probes read them,
with a memory budget that holds one frame at a time) and once with ``--save-canvas`` (canvas files
written, then read back in blocks): every score, null draw, control and preview must agree, and
``xinc-bench probe`` on the saved file must give the streamed run's record. The memory and disk
plan is checked on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xinc_bench import cli
from xinc_bench.canvas.compute import traced_layers
from xinc_bench.data import parse_frames
from xinc_bench.errors import XincError
from xinc_bench.inrs import create_inr
from xinc_bench.probes.base import load_task
from xinc_bench.registry import TRACERS
from xinc_bench.runs import RunDir, UnitSpec, run_unit
from xinc_bench.runs.budget import RESERVE, block_copies, parse_bytes, plan_unit
from xinc_bench.runs.preview import read_preview

SIZE = (16, 32)
FRAMES = 4
TASKS = ("distribution", "clustering", "motion")  # 3, 2 and 1 passes (faithfulness: tests/test_accumulate.py)


def _one_frame_budget(save_canvas: bool = False) -> int:
    """A memory budget that holds exactly one frame of every layer of ffn-video at SIZE (and the probes' samples),
    streamed or read from saved canvas files."""
    model = create_inr("ffn-video", num_frames=FRAMES, height=SIZE[0], width=SIZE[1])
    counts = traced_layers(TRACERS.get("mlp").layers(model, (FRAMES, *SIZE)), None, "mlp")
    pixels = SIZE[0] * SIZE[1]
    held = 2 * sum(load_task(task).held_bytes(counts, (FRAMES, *SIZE)) for task in TASKS)
    copies = block_copies(np.dtype(np.float32), save_canvas)
    return RESERVE + held + 4 * pixels * (sum(counts.values()) + copies * max(counts.values())) + 1


def _record(run: Path, task: str) -> dict:
    return json.loads(RunDir(run).record(task).read_text())


def _assert_same_evidence(streamed: dict, saved: dict) -> None:
    assert streamed["scores"].keys() == saved["scores"].keys() and streamed["absent"] == saved["absent"]
    for name, value in saved["scores"].items():
        assert streamed["scores"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    for name, summary in saved["nulls"].items():
        for key in ("mean", "sd"):
            assert streamed["nulls"][name][key] == pytest.approx(summary[key], rel=1e-6, abs=1e-9), (name, key)
    assert streamed["controls"].keys() == saved["controls"].keys()
    for control, scores in saved["controls"].items():
        assert streamed["controls"][control] == pytest.approx(scores, rel=1e-6, abs=1e-9), control


def test_a_streamed_run_writes_no_canvas_and_scores_what_a_saved_canvas_scores(tmp_path: Path) -> None:
    spec = UnitSpec(model="ffn-video", data="synthetic-moving", size=SIZE, frames=parse_frames(f"0:{FRAMES}"),
                    steps=10, tasks=TASKS, null_draws=3, memory_budget=_one_frame_budget())
    streamed, saved = tmp_path / "streamed", tmp_path / "saved"
    first = run_unit(spec, streamed)
    run_unit(UnitSpec(**{**spec.__dict__, "save_canvas": True, "memory_budget": _one_frame_budget(save_canvas=True)}),
             saved)
    assert first.records_written == list(TASKS) and not first.skipped
    files = {path.name for path in streamed.rglob("*.safetensors")}
    assert files == {"model.safetensors", "signal.safetensors", "preview.safetensors"}  # no canvas file
    assert RunDir(saved).saved_canvases
    for task in TASKS:
        _assert_same_evidence(_record(streamed, task), _record(saved, task))
    for (name, a), (other, b) in zip(read_preview(RunDir(streamed).preview).items(),
                                     read_preview(RunDir(saved).preview).items()):
        assert name == other and torch.equal(a.indices, b.indices)
        torch.testing.assert_close(a.mass, b.mass, rtol=1e-9, atol=0)
        torch.testing.assert_close(a.maps, b.maps)
    # the file-based path: `xinc-bench probe` on the saved canvas gives the streamed run's record
    out = tmp_path / "probed.json"
    assert cli.main(["probe", "--canvas", str(RunDir(saved).canvas), "--task", "motion", "--null-draws", "3",
                     "--control-canvas", str(RunDir(saved).init_canvas), "--out", str(out)]) == 0
    _assert_same_evidence(_record(streamed, "motion"), json.loads(out.read_text()))
    # a lost record is probed again from the traced canvases, with the same result
    RunDir(streamed).record("clustering").unlink()
    again = run_unit(spec, streamed)
    assert (again.canvases, again.records_written) == ([], ["clustering"])
    _assert_same_evidence(_record(streamed, "clustering"), _record(saved, "clustering"))


@pytest.mark.parametrize(("text", "expected"), [("12GiB", 12 * 2**30), ("8G", 8 * 10**9), ("512 MB", 512 * 10**6),
                                                ("1073741824", 2**30), ("1.5gb", 1_500_000_000)])
def test_memory_budgets_are_read_with_their_units(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "-1G", "0", "12 apples", "G"])
def test_a_budget_that_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(XincError, match="is not a positive size; give e.g. 12GiB"):
        parse_bytes(text)


def test_a_block_read_as_a_copy_or_shuffled_as_one_counts_one_more() -> None:
    """|C| and the probes' temporaries; the float32 read of a float16 window or of a file; a file's shuffled copy."""
    assert block_copies(np.dtype(np.float32), save_canvas=False) == 2
    assert block_copies(np.dtype(np.float16), save_canvas=False) == 3
    assert block_copies(np.dtype(np.float32), save_canvas=True) == 4
    assert block_copies(np.dtype(np.float16), save_canvas=True) == 4


def test_the_plan_fits_the_budget_and_refuses_one_that_cannot_hold_a_frame(tmp_path: Path) -> None:
    counts, shape = {"a": 10, "b": 30}, (8, 16, 16)
    per_frame = 4 * 256 * (40 + block_copies(np.dtype(np.float32), save_canvas=False) * 30)
    plan = plan_unit(counts, shape, np.dtype(np.float32), budget=RESERVE + 3 * per_frame, save_canvas=False,
                     out=tmp_path, signal_bytes=1000)
    assert (plan.frames_per_window, plan.window_bytes, plan.block_bytes) == (3, 3 * 4 * 256 * 40, 3 * 4 * 256 * 30)
    assert plan.peak_bytes <= plan.budget and plan.disk_bytes == 1000
    assert "3 frames of every layer traced at once" in plan.statement()
    saved = plan_unit(counts, shape, np.dtype(np.float16), budget=10 * RESERVE, save_canvas=True, out=tmp_path,
                      signal_bytes=1000)
    assert saved.frames_per_window == 8 and saved.saved_canvas_bytes == 2 * 8 * 2 * 256 * 40
    with pytest.raises(XincError, match="cannot hold one frame of the canvas"):
        plan_unit(counts, shape, np.dtype(np.float32), budget=RESERVE + per_frame - 1, save_canvas=False,
                  out=tmp_path, signal_bytes=0)


def test_a_bad_memory_budget_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--model", "ffn-paper", "--data", "astronaut", "--size", "16x32", "--out",
                     str(tmp_path / "run"), "--memory-budget", "lots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a positive size" in err[0] and not (tmp_path / "run").exists()
    assert cli.main(["run", "--model", "ffn-paper", "--data", "astronaut", "--size", "16x32", "--out",
                     str(tmp_path / "run"), "--memory-budget", "1MB"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--memory-budget 1.0 MB cannot hold one frame" in err[0]
    assert not (tmp_path / "run").exists()


def test_the_plan_counts_what_the_probes_hold_and_refuses_when_it_does_not_fit(tmp_path: Path) -> None:
    counts, shape = {"a": 10, "b": 30}, (8, 16, 16)
    per_frame = 4 * 256 * (40 + block_copies(np.dtype(np.float32), save_canvas=False) * 30)
    held = 5 * per_frame
    plan = plan_unit(counts, shape, np.dtype(np.float32), budget=RESERVE + held + 3 * per_frame, save_canvas=False,
                     out=tmp_path, signal_bytes=0, held_bytes=held)
    assert plan.frames_per_window == 3 and plan.peak_bytes == RESERVE + held + 3 * per_frame
    assert "the probes' samples" in plan.statement()
    with pytest.raises(XincError, match="the probes' samples .*--tasks"):
        plan_unit(counts, shape, np.dtype(np.float32), budget=RESERVE + held, save_canvas=False, out=tmp_path,
                  signal_bytes=0, held_bytes=held)


def test_what_the_probes_say_they_hold_is_what_they_hold() -> None:
    # clustering's share samples, motion's carried frame and faithfulness's ablation maps, against the
    # built accumulators
    from xinc_bench.canvas.compute import compute_canvas
    from xinc_bench.data import load_signal
    from xinc_bench.inrs.nerv import NeRV
    from xinc_bench.probes.accumulator import run_accumulator

    signal = load_signal("synthetic-moving", (16, 32), parse_frames("0:10"))
    torch.manual_seed(0)
    model = NeRV(10, 16, 32, stem_width=8, widths=(6, 5, 4)).eval()
    canvas = compute_canvas(model, signal, "cnn")
    counts = {name: canvas.layer_shape(name)[0] for name in canvas.layer_names}
    small = {"max_pixels": 500, "max_share_values": 20_000, "pixel_clusters": 4}
    clustering = load_task("clustering")
    accumulator = clustering.accumulator(canvas, 0, **small)
    run_accumulator(accumulator, canvas)
    held = sum(4 * sample.shares.numel() for sample in accumulator.samples.values())
    assert held > 0 and clustering.held_bytes(counts, canvas.shape) == 4 * sum(
        count * min(9 * 16 * 32, 65536, 2**26 // count) for count in counts.values())  # the task's own caps
    stated = type(accumulator).held_bytes(counts, canvas.shape, {**clustering.params, **small})
    assert stated == held
    motion = load_task("motion").accumulator(canvas, 0)
    for name in canvas.layer_names:  # one frame of each layer: the carried frame is allocated
        motion.update(name, 0, canvas.layer_frames(name, 0, 1))
    carried = sum(4 * change.previous.numel() for change in motion.changes.values())
    assert load_task("motion").held_bytes(counts, canvas.shape) == carried
    faithfulness = load_task("faithfulness")
    built = faithfulness.accumulator(canvas, 0, model=model, max_neurons=7, max_frames=4)
    maps = 4 * (sum(truth.numel() for truth in built.truth.values()) + built.base.numel())
    assert type(built).held_bytes(counts, canvas.shape, {**faithfulness.params, "max_neurons": 7, "max_frames": 4}) == maps
