"""The model-randomisation sanity check (Adebayo et al. 2018) on a real tiny run, and its parts on
constructed cases whose answer is known: a probe that reads only the frames cannot move."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from xinc_bench import cli
from xinc_bench.runs import RunDir
from xinc_bench.runs.stages import canvas_run, fit_run, probe_run
from xinc_bench.inrs import create_inr
from xinc_bench.probes.base import ProbeAccumulator, ProbeResult
from xinc_bench.registry import PROBES
from xinc_bench.runs.sanity import NULL_SD_THRESHOLD, cascade_layers, reinitialise, sanity_check, score_movement

SIZE = (32, 64)
FRAMES_ONLY = "test-frames-only"


class FramesOnly(ProbeAccumulator):
    """A probe that ignores the model: the mean of the signal's frames (per layer and headline) and
    the number of canvas layers; the brightness has a null with a known spread (sd > 0)."""

    def update(self, layer, start, chunk, pass_index=0) -> None:
        pass  # the canvas's blocks do not matter

    def compute(self) -> ProbeResult:
        canvas = self.canvas
        value = float(canvas.frames.mean())
        scores = {f"{name}/brightness": value for name in canvas.layer_names}
        scores.update(brightness=value, layers=float(len(canvas.layer_names)))
        draws = int(self.params["null_draws"])
        spread = [value + 0.01 * (i - (draws - 1) / 2) for i in range(draws)]
        nulls = {"pixel_permutation": {name: spread for name in scores if name.endswith("brightness")}} if draws else {}
        return ProbeResult(scores, nulls=nulls)


if FRAMES_ONLY not in PROBES:
    PROBES.add(FRAMES_ONLY, FramesOnly)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """ffn-paper fitted 30 steps on astronaut at 32x64, its canvas, a color record and a frames-only record."""
    root = tmp_path_factory.mktemp("sanity")
    task = root / "frames_only.yaml"
    task.write_text(f"name: frames_only\nversion: 1\nprobe: {FRAMES_ONLY}\nheadline: brightness\n"
                    "metrics:\n  brightness: {null_model: pixel_permutation, higher_is_better: null}\n"
                    "  layers: {higher_is_better: null}\n")
    out = root / "run"
    fit_run("ffn-paper", "astronaut", SIZE, out=out, steps=30, seed=0, progress_bar=False)
    canvas = RunDir(out).canvas
    canvas_run(out, SIZE, out=canvas)
    for name in ("color", str(task)):
        stem = Path(name).stem
        probe_run(canvas, name, out=RunDir(out).record(stem), null_draws=5)
    record = sanity_check(out, ["color", str(task)])
    return {"dir": out, "task": task, "record": record}


def test_the_sanity_record_of_a_real_run(run: dict) -> None:
    out, record = run["dir"], run["record"]
    assert json.loads((out / "records" / "sanity.json").read_text()) == record
    assert record["kind"] == "sanity" and record["schema_version"] == 1
    color = json.loads((out / "records" / "color.json").read_text())
    for key in ("package", "model", "data", "seed", "fidelity"):
        assert record[key] == color[key], key
    # one stage per parameterised layer of ffn-paper (3 Linears; the Fourier matrix is a buffer), output first
    assert record["cascade"] == ["linears.2", "linears.1", "linears.0"]
    assert set(record["tasks"]) == {"color", "frames_only"}
    assert set(record["tasks"]["color"]) == set(color["scores"])
    for scores in record["tasks"].values():
        assert all(len(entry["randomised"]) == 3 for entry in scores.values())
    # colour follows the trained model: destroyed, its correlation leaves the null's spread
    pearson = record["tasks"]["color"]["intensity_pearson"]
    assert pearson["trained"] == color["scores"]["intensity_pearson"]
    assert pearson["movement_unit"] == "null_sd" and pearson["null_sd"] == color["nulls"]["intensity_pearson"]["sd"]
    assert pearson["movement"] > NULL_SD_THRESHOLD and not pearson["insensitive"]
    assert abs(pearson["randomised"][-1]) < abs(pearson["trained"]) / 2
    # a probe that reads only the frames cannot move, in null sds or (no null) relative change
    frames = record["tasks"]["frames_only"]
    assert frames["brightness"]["movement_unit"] == "null_sd" and frames["brightness"]["movement"] == 0.0
    assert frames["layers"]["movement_unit"] == "relative" and frames["layers"]["relative_change"] == 0.0
    assert all(entry["insensitive"] for entry in frames.values())
    assert record["headlines"] == {"color": "intensity_pearson", "frames_only": "brightness"}
    assert (out / "records" / "sanity_figures" / "sanity.png").stat().st_size > 10_000
    assert not list(out.glob(".sanity.tmp-*")) and not list(out.rglob("*.tmp-*"))


def test_the_command_prints_the_table_and_flags_what_cannot_move(
    run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = shutil.copytree(run["dir"], tmp_path / "run")
    assert cli.main(["sanity", str(copy), "--tasks", str(run["task"]), "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["frames_only", "brightness"] and line.endswith("INSENSITIVE") for line in lines)
    assert "5 of 5 scores (per layer included) insensitive after re-initialising 3 layers" in lines[-2]
    record = json.loads((copy / "records" / "sanity.json").read_text())
    assert record["method"]["reinit_seed"] == 3 and set(record["tasks"]) == {"frames_only"}


def test_bad_inputs_exit_2_with_one_line(run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def fails(argv: list[str], pattern: str) -> None:
        assert cli.main(["sanity", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert pattern in err and len(err.splitlines()) == 1, err

    fails([str(tmp_path / "nope")], "is not a run folder")
    bare = tmp_path / "bare"
    shutil.copytree(run["dir"], bare, ignore=shutil.ignore_patterns("records", "*canvas*"))
    fails([str(bare)], "has neither signal.safetensors nor canvas.safetensors; finish its run with `xinc-bench run")
    shutil.copy(run["dir"] / "canvas.safetensors", bare)
    fails([str(bare)], "has no probe records")
    fails([str(run["dir"]), "--tasks", "distribution"], "no record of task 'distribution'")


def test_score_movement_in_null_sds_or_relative() -> None:
    moved = score_movement(1.0, [0.8, 0.5], null_sd=0.1)
    assert (moved["movement"], moved["movement_unit"], moved["insensitive"]) == (pytest.approx(5.0), "null_sd", False)
    within = score_movement(1.0, [1.5, 1.15], null_sd=0.1)  # 1.5 sds: within the null's spread
    assert within["insensitive"] and within["relative_change"] == pytest.approx(0.15)
    still = score_movement(2.0, [2.5, 2.06], null_sd=None)
    assert (still["movement"], still["movement_unit"], still["insensitive"]) == (pytest.approx(0.03), "relative", True)
    assert not score_movement(2.0, [2.0, 2.2], null_sd=None)["insensitive"]
    undefined = score_movement(2.0, [2.0, None], null_sd=None)
    assert undefined["movement"] is None and not undefined["insensitive"] and "undefined" in undefined["note"]


class Backwards(nn.Module):
    """Registers its output layer first, an unused layer in between, and owns a parameter itself."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 4)
        self.body = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4))
        self.scale = nn.Parameter(torch.ones(2))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(coords * self.scale))


def test_the_cascade_follows_the_forward_pass_not_registration() -> None:
    assert cascade_layers(Backwards(), (1, 8, 8)) == ["head", "body.2", "body.0", "(top level)"]
    siren = create_inr("siren-33k", height=8, width=8)
    assert cascade_layers(siren, (1, 8, 8)) == [f"linears.{i}" for i in range(4, -1, -1)]


def test_reinitialise_takes_the_fresh_inrs_parameters_and_keeps_buffers() -> None:
    torch.manual_seed(0)
    trained = create_inr("ffn-paper", height=8, width=8)
    torch.manual_seed(1)
    fresh = create_inr("ffn-paper", height=8, width=8)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    reinitialise(trained, fresh, "linears.1")
    state = trained.state_dict()
    for key in ("linears.1.weight", "linears.1.bias"):
        assert torch.equal(state[key], fresh.state_dict()[key]) and not torch.equal(state[key], before[key])
    for key in ("encoding.B", "linears.0.weight", "linears.2.weight"):
        assert torch.equal(state[key], before[key]), key
