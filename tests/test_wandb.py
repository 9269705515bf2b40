"""Weights & Biases logging with the real wandb package in offline mode, read back from its run file."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from xinc_bench.data import load_signal
from xinc_bench.errors import XincError
from xinc_bench.inrs import create_inr
from xinc_bench.runs import UnitSpec, run_unit
from xinc_bench.results.wandb_logging import canvas_thumbnail, check_mode, log_run, make_logger
from xinc_bench.training import fit

UNIT = UnitSpec(model="ffn-paper", data="astronaut", seed=0, size=(16, 32), steps=20, tasks=("distribution",))
_BLOCK = 32768  # the .wandb file is a LevelDB-style log of 32 KiB blocks holding protobuf records


def _wandb_records(path: Path) -> list[Any]:
    """Every protobuf record of a ``.wandb`` file written so far."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    payloads, pending, position = [], b"", 7
    while position + 7 <= len(data):
        if _BLOCK - position % _BLOCK < 7:  # block trailer padding
            position += _BLOCK - position % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if position + 7 + length > len(data):  # the writer is part-way through this record
            break
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full record, or last fragment
            payloads.append(pending + chunk)
            pending = b""
        elif kind in (2, 3):  # first or middle fragment
            pending += chunk
    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def read_wandb_file(path: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Config, history rows and final summary of an offline run's ``run-<id>.wandb`` file.

    W&B's service process writes the file asynchronously; it is read once it holds the run's
    ``exit`` record (waiting up to ``timeout`` seconds), so a slow writer is not mistaken for
    missing data.
    """
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            records = _wandb_records(path)
        except DecodeError:  # a record caught mid-write; the finished file parses
            if time.monotonic() >= deadline:
                raise
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                keys = list(item.nested_key) or [item.key]
                target = summary
                for key in keys[:-1]:
                    target = target.setdefault(key, {})
                target[keys[-1]] = json.loads(item.value_json)
    return {"config": config, "history": history, "summary": summary}


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B in offline mode writing below ``tmp_path/wandb_home`` (nothing leaves the machine)."""
    home = tmp_path / "wandb_home"
    home.mkdir()
    for name, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(home), "WANDB_SILENT": "true",
                        "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_CACHE_DIR": str(home / "cache"),
                        "WANDB_DISABLE_GIT": "true"}.items():
        monkeypatch.setenv(name, value)
    return home


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: checkpoint, canvases, the distribution record and its figure."""
    folder = tmp_path_factory.mktemp("wandb_run") / UNIT.unit_id
    run_unit(UNIT, folder)
    return folder


def test_training_curves_and_scores_land_in_one_offline_run(run_dir: Path, offline: Path) -> None:
    logger = make_logger("offline", project="xinc-test", run_name="ffn-astronaut", save_dir=offline / "runs")
    signal = load_signal("astronaut", (16, 32))
    fit(create_inr("ffn-paper"), signal, steps=100, progress_bar=False, logger=logger)
    folder = log_run(run_dir, "offline", logger=logger)

    assert folder is not None and folder.parent == offline / "runs" / "wandb" and folder.name.startswith("offline-run-")
    logged = read_wandb_file(next(folder.glob("run-*.wandb")))
    curve = [row for row in logged["history"] if "loss" in row]
    assert [row["trainer/global_step"] for row in curve] == [49, 99]
    assert curve[-1]["loss"] < curve[0]["loss"]
    record = json.loads((run_dir / "records" / "distribution.json").read_text())
    summary = logged["summary"]
    assert summary["distribution/gini"] == pytest.approx(record["scores"]["gini"])
    assert summary["distribution/layer2/gini"] == pytest.approx(record["scores"]["layer2/gini"])
    assert summary["distribution/random_init/gini"] == pytest.approx(record["controls"]["random_init"]["gini"])
    assert summary["fidelity/psnr"] == pytest.approx(record["fidelity"]["psnr"])
    assert summary["num_parameters"] == 32971
    assert summary["records/distribution"]["task"]["name"] == "distribution"
    assert logged["config"]["model"] == "ffn-paper"
    images = {key for key, value in summary.items() if isinstance(value, dict) and value.get("_type") == "image-file"}
    assert images == {"recon", "canvas/layer1", "canvas/layer2", "canvas/layer3", "figures/distribution/neurons_per_pixel"}
    assert len(list((folder / "files" / "media" / "images").rglob("*.png"))) == len(images)


def test_log_run_alone_makes_its_own_run(run_dir: Path, offline: Path) -> None:
    folder = log_run(run_dir, "offline", project="xinc-test", name="alone", save_dir=offline / "alone")
    logged = read_wandb_file(next(folder.glob("run-*.wandb")))
    assert logged["summary"]["distribution/gini"] == pytest.approx(
        json.loads((run_dir / "records" / "distribution.json").read_text())["scores"]["gini"])
    assert not [row for row in logged["history"] if "loss" in row]


def test_disabled_logs_nothing(run_dir: Path, offline: Path) -> None:
    assert make_logger("disabled") is False
    assert log_run(run_dir, "disabled", save_dir=offline / "none") is None
    assert not (offline / "none").exists()


def test_bad_mode_and_bad_run_dir_are_refused(tmp_path: Path) -> None:
    with pytest.raises(XincError, match="unknown W&B mode 'offlin'"):
        check_mode("offlin")
    with pytest.raises(XincError, match="not a run directory"):
        log_run(tmp_path, "offline")


def test_canvas_thumbnail_tiles_the_largest_neurons() -> None:
    import numpy as np

    layer = np.zeros((10, 4, 6), dtype=np.float32)
    for n in range(10):
        layer[n, n % 4, n % 6] = n + 1.0  # neuron n has mass n + 1 in one pixel
    tile = canvas_thumbnail(layer, neurons=4)
    assert tile.shape == (8, 12, 3) and tile.dtype == np.uint8
    # neurons 9, 8, 7, 6 in reading order: each tile's bright pixel sits at (n % 4, n % 6)
    bright = [np.unravel_index(tile[r * 4:(r + 1) * 4, c * 6:(c + 1) * 6].sum(-1).argmax(), (4, 6))
              for r in range(2) for c in range(2)]
    assert bright == [(9 % 4, 9 % 6), (8 % 4, 8 % 6), (7 % 4, 7 % 6), (6 % 4, 6 % 6)]


def test_suite_logs_each_new_unit(tmp_path: Path, offline: Path) -> None:
    from xinc_bench import cli

    command = ["suite", "run", "smoke", "--out", str(tmp_path / "out"), "--shard", "1/2", "--wandb", "offline",
               "--no-progress"]
    assert cli.main([*command, "--wandb-project", "xinc-test"]) == 0
    (folder,) = (tmp_path / "out" / "wandb").glob("offline-run-*")
    logged = read_wandb_file(next(folder.glob("run-*.wandb")))
    (record,) = (tmp_path / "out").glob("*/records/distribution.json")
    assert logged["summary"]["distribution/gini"] == pytest.approx(json.loads(record.read_text())["scores"]["gini"])
    assert cli.main(command) == 0  # complete: nothing new to log
    assert len(list((tmp_path / "out" / "wandb").glob("offline-run-*"))) == 1


def test_fit_command_logs_an_offline_run(tmp_path: Path, offline: Path) -> None:
    import subprocess
    import sys

    script = Path(sys.executable).with_name("xinc-bench")
    out = tmp_path / "run"
    result = subprocess.run([str(script), "fit", "--model", "ffn-paper", "--data", "astronaut", "--size", "16x32",
                             "--steps", "20", "--out", str(out), "--no-progress", "--wandb", "offline"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (folder,) = (out / "wandb").glob("offline-run-*")
    assert f"W&B run -> {folder}" in result.stdout
    logged = read_wandb_file(next(folder.glob("run-*.wandb")))
    config = json.loads((out / "model.json").read_text())
    assert logged["config"]["model"] == "ffn-paper" and logged["config"]["training"]["steps"] == 20
    assert [row["trainer/global_step"] for row in logged["history"] if "loss" in row] == [19]
    assert logged["summary"]["fidelity/psnr"] == pytest.approx(config["fidelity"]["psnr"])
    assert logged["summary"]["recon"]["_type"] == "image-file"
