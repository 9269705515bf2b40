"""The command line, end to end through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(sys.executable).with_name("xinc-bench")


def xinc(*args: str | Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "xinc_bench.cli"]
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def cli_main(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201 - returns the runner below
    """``xinc-bench ARGS`` through :func:`xinc_bench.cli.main` in this process (no interpreter start-up per
    call), as a :class:`subprocess.CompletedProcess` like :func:`xinc`'s."""
    from xinc_bench import cli

    def run(*args: str | Path) -> subprocess.CompletedProcess:
        try:
            code = cli.main([str(arg) for arg in args])
        except SystemExit as exc:  # argparse's refusals
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = xinc("run", "--model", "ffn-paper", "--data", "astronaut", "--size", "32x64", "--steps", "40",
                  "--out", out, "--no-progress", "--save-canvas")
    assert result.returncode == 0, result.stderr
    assert "PSNR" in result.stdout and "distribution" in result.stdout
    return out


def test_run_writes_every_artefact(run_dir: Path) -> None:
    for name in ("model.safetensors", "model.json", "recon.png", "signal.safetensors", "preview.safetensors",
                 "canvas.safetensors", "init/model.safetensors", "init/canvas.safetensors", "records/distribution.json"):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "records/distribution.json").read_text())
    assert record["schema_version"] == 2
    assert record["task"]["name"] == "distribution" and record["task"]["version"] == 2
    assert record["model"]["name"] == "ffn-paper" and record["model"]["num_parameters"] == 32_971
    assert record["model"]["bits_per_pixel"] == pytest.approx(32_971 * 8 / (32 * 64))
    assert record["data"]["data"] == "astronaut" and len(record["data"]["content_hash"]) == 16
    assert record["fidelity"]["psnr"] > 10 and 0 < record["fidelity"]["ssim"] <= 1
    headline = {"neurons_per_pixel_a0.1", "neurons_per_pixel_a0.5", "pixels_per_neuron", "top_neuron_share", "gini"}
    assert headline <= set(record["controls"]["random_init"])  # controls hold every score, per layer too
    assert {"layer1/gini", "layer3/gini"} <= set(record["controls"]["shuffled"])
    # every score stands beside its null: spatial-shuffle draws, effect size and p-value
    gini = record["nulls"]["gini"]
    assert gini["model"] == "spatial_shuffle" and gini["draws"] == 20
    assert gini["effect_size"] == pytest.approx((record["scores"]["gini"] - gini["mean"]) / gini["sd"])
    assert 1 / 21 <= gini["p_value"] <= 1
    assert record["environment"]["torch"]
    for artifact in record["artifacts"]:
        assert Path(artifact).is_file()
    assert not list(run_dir.rglob("*.tmp-*"))


def test_fit_canvas_probe_as_separate_commands(run_dir: Path, tmp_path: Path) -> None:
    canvas = tmp_path / "c.safetensors"
    result = xinc("canvas", "--checkpoint", run_dir, "--size", "16x32", "--out", canvas)
    assert result.returncode == 0, result.stderr
    assert "layer1 [208], layer2 [104], layer3 [104]" in result.stdout
    record_path = tmp_path / "r.json"
    result = xinc("probe", "--canvas", canvas, "--task", "distribution", "--out", record_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(record_path.read_text())["data"]["height"] == 16


@pytest.mark.slow
def test_run_of_the_paper_nerv_on_a_video_end_to_end(tmp_path: Path) -> None:
    """`xinc-bench run --model nerv-paper` on a short clip: every video task, float16 canvases saved and
    read back one frame at a time (the memory budget holds one frame), kernel ablation for faithfulness."""
    out = tmp_path / "nerv"
    result = xinc("run", "--model", "nerv-paper", "--data", "synthetic-moving", "--size", "16x32",
                  "--frames", "0:4", "--steps", "40", "--float16", "--save-canvas", "--memory-budget", "2.8GB",
                  "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    records = {path.stem: json.loads(path.read_text()) for path in (out / "records").glob("*.json")}
    assert set(records) == {"clustering", "color", "distribution", "edges", "faithfulness", "motion", "objects",
                            "partitions"}
    from safetensors import safe_open

    with safe_open(str(out / "canvas.safetensors"), framework="pt") as handle:
        assert handle.get_slice("canvas.block1").get_dtype() == "F16"
        assert handle.get_slice("canvas.block1").get_shape() == [18_352, 4, 16, 32]
    faithfulness = records["faithfulness"]["scores"]
    assert faithfulness["head/ablation_correlation"] > 0.9  # the head canvas is exact up to the output map
    for name, record in records.items():
        assert set(record["controls"]) == {"shuffled", "random_init"}, name
    assert records["motion"]["scores"]["flow_spearman"] == records["motion"]["scores"]["flow_spearman"]  # not NaN


def test_a_run_the_memory_or_disk_cannot_hold_is_refused_before_training(tmp_path: Path) -> None:
    command = ("run", "--model", "nerv-paper", "--data", "bikes", "--size", "512x1024", "--frames", "0:30",
               "--out", tmp_path / "huge")
    result = xinc(*command, "--memory-budget", "8GiB")
    _assert_bad_input(result, "--memory-budget 8.6 GB cannot hold one frame of the canvas: tracing and probing one "
                              "frame of every layer takes about")
    assert "(50.2 GB traced, 2 copies of the largest layer's 38.5 GB, the probes' samples" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = xinc(*command, "--save-canvas", "--memory-budget", "1TB")  # 94 GB of canvases: more than the disk
    _assert_bad_input(result, "free; free some space, write elsewhere, drop --save-canvas")
    assert len(result.stderr.splitlines()) == 1 and "--float16" in result.stderr
    assert not (tmp_path / "huge").exists()


def test_list_commands(cli_main) -> None:  # noqa: ANN001
    result = xinc("list", "models")  # the console script itself
    assert result.returncode == 0 and "ffn-paper" in result.stdout
    assert "distribution" in cli_main("list", "tasks").stdout
    assert "astronaut" in cli_main("list", "data").stdout
    assert "mlp" in cli_main("list", "tracers").stdout


def _assert_bad_input(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert pattern in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_inputs_give_one_clear_line(run_dir: Path, tmp_path: Path, reference_dir: Path, cli_main) -> None:  # noqa: ANN001
    out = tmp_path / "out.safetensors"
    # the console script once, then the same entry point in this process (no interpreter start-up per case)
    _assert_bad_input(xinc("canvas", "--checkpoint", tmp_path / "nope.ckpt", "--out", out), "does not exist")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((reference_dir / "best_model.ckpt").read_bytes()[:100_000])
    _assert_bad_input(cli_main("canvas", "--checkpoint", truncated, "--out", out), "corrupt or truncated")
    broken_run = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken_run, ignore=shutil.ignore_patterns("*canvas*", "records", "init"))
    (broken_run / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes()[:5000])
    _assert_bad_input(cli_main("canvas", "--checkpoint", broken_run, "--out", out), "corrupt or truncated")
    misfit = tmp_path / "misfit_run"
    shutil.copytree(run_dir, misfit, ignore=shutil.ignore_patterns("*canvas*", "records", "init"))
    config = json.loads((misfit / "model.json").read_text())
    config["model_args"] = {"hidden_width": 64}
    (misfit / "model.json").write_text(json.dumps(config))
    _assert_bad_input(cli_main("canvas", "--checkpoint", misfit, "--out", out), "does not fit the model")
    _assert_bad_input(cli_main("fit", "--model", "ffn-papr", "--data", "astronaut", "--out", tmp_path / "r"),
                      "unknown INR 'ffn-papr'")
    _assert_bad_input(cli_main("probe", "--canvas", run_dir / "canvas.safetensors", "--task", "colour",
                               "--out", tmp_path / "r.json"), "unknown task 'colour'")
    _assert_bad_input(cli_main("fit", "--model", "nerv-paper", "--data", "bikes", "--frames", "0:1",
                               "--out", tmp_path / "r"), "--frames of at least 2 frames")
    for size in ("12x", "0x5"):
        _assert_bad_input(cli_main("fit", "--model", "ffn-paper", "--data", "astronaut", "--size", size,
                                   "--out", tmp_path / "r"), "invalid size")
    for draws in ("0", "-3"):
        _assert_bad_input(cli_main("probe", "--canvas", run_dir / "canvas.safetensors", "--task", "color",
                                   "--null-draws", draws, "--out", tmp_path / "r.json"), "expected a positive integer")
    assert not out.exists() and not (tmp_path / "r").exists() and not (tmp_path / "r.json").exists()


def test_suite_run_then_check_against_its_leaderboard(tmp_path: Path) -> None:
    out = tmp_path / "records"
    result = xinc("suite", "run", "smoke", "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "unit 1/2 ffn-paper__astronaut__16x32__seed0: 1 records written" in result.stderr  # progress: stderr
    resumed = xinc("suite", "run", "smoke", "--out", out, "--shard", "2/2", "--no-progress")
    assert resumed.returncode == 0 and "siren-33k__astronaut__16x32__seed0: complete, kept" in resumed.stderr
    board = xinc("leaderboard", out, "--out", tmp_path / "boards", "--name", "smoke")
    assert board.returncode == 0, board.stderr
    baseline = tmp_path / "boards" / "smoke.csv"
    passed = xinc("check", "--records", out, "--baseline", baseline)
    assert passed.returncode == 0 and "xinc-bench check PASSED" in passed.stdout
    table = pd.read_csv(baseline)
    table["psnr_db"] += 3.0  # the baseline was 3 dB better: a regression
    table.to_csv(baseline, index=False)
    failed = xinc("check", "--records", out, "--baseline", baseline, "--tolerance", "psnr_db=0.5")
    assert failed.returncode == 1, failed.stderr
    assert "FAILED: 2 failing" in failed.stdout and "regressed" in failed.stdout
    _assert_bad_input(xinc("suite", "run", "quik", "--out", out), "unknown suite 'quik'")
    _assert_bad_input(xinc("suite", "run", "smoke", "--out", out, "--shard", "3/2"), "invalid shard")
