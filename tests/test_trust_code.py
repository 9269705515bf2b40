"""A run folder is data, never code (issue 14, item 8).

A run folder fitted from a user INR file (``path/to/inr.py:TinyINR``) is made hostile for real:
the file is replaced by code that writes a marker file when imported, or ``model.json`` is
pointed at another file or module. Loading it must refuse without running anything unless the
user trusts the folder (``trust_code``) or names the same spec (``trusted_spec``), and even then
the sha256 recorded at fit time must match.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

from xinc_bench import cli
from xinc_bench.checkpoints import load_checkpoint
from xinc_bench.errors import XincError
from xinc_bench.files import write_json_atomic
from xinc_bench.inrs.base import render_output
from xinc_bench.probes.base import load_task
from xinc_bench.registry import INRS
from xinc_bench.results.leaderboard import DegenerateColumnWarning, build_leaderboard
from xinc_bench.runs.record import build_record
from xinc_bench.runs.stages import fit_run

SIZE = (16, 32)
INR_SOURCE = """\
import torch
from torch import nn


class TinyINR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)
"""


def hostile_source(marker: Path) -> str:
    """The same INR, plus top-level code that writes ``marker`` when the file is imported."""
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\n" + INR_SOURCE


@pytest.fixture
def inrs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are dropped after it."""
    monkeypatch.setattr(INRS, "_entries", dict(INRS._entries))


def fit_forgetting(spec: str, out: Path) -> None:
    """Fit ``spec`` for 2 steps into ``out``, then forget its registration, as a new process would."""
    entries = dict(INRS._entries)
    fit_run(spec, "astronaut", SIZE, out=out, steps=2, progress_bar=False)
    INRS._entries = entries


def fit_user_run(tmp_path: Path) -> tuple[Path, str]:
    """A run folder fitted from ``RUN/code/inr.py:TinyINR``, and that spec."""
    code = tmp_path / "run" / "code" / "inr.py"
    code.parent.mkdir(parents=True)
    code.write_text(INR_SOURCE)
    spec = f"{code}:TinyINR"
    fit_forgetting(spec, tmp_path / "run")
    return tmp_path / "run", spec


def edit_config(run_dir: Path, **changes: object) -> None:
    config = json.loads((run_dir / "model.json").read_text())
    config.update(changes)
    write_json_atomic(run_dir / "model.json", {k: v for k, v in config.items() if v is not None})


def test_fit_records_the_code_file_and_its_sha256(inrs: None, tmp_path: Path) -> None:
    run_dir, spec = fit_user_run(tmp_path)
    digest = hashlib.sha256(INR_SOURCE.encode()).hexdigest()
    for folder in (run_dir, run_dir / "init"):
        config = json.loads((folder / "model.json").read_text())
        assert config["model"] == spec
        assert config["code"] == {"file": str(run_dir / "code" / "inr.py"), "sha256": digest}


def test_a_folder_naming_code_is_refused_and_nothing_runs(inrs: None, tmp_path: Path) -> None:
    run_dir, spec = fit_user_run(tmp_path)
    marker = tmp_path / "marker"
    (run_dir / "code" / "inr.py").write_text(hostile_source(marker))
    message = (f"{run_dir / 'model.json'} names code file {run_dir / 'code' / 'inr.py'} \\({spec}\\); loading it "
               f"would run it: pass --trust-code if you trust this folder \\(with `xinc-bench run`, giving --model "
               f"{spec} is the same\\)$")
    with pytest.raises(XincError, match=message):
        load_checkpoint(run_dir, *SIZE)
    with pytest.raises(XincError, match="loading it would run it"):
        load_checkpoint(run_dir, *SIZE, trusted_spec="ffn-paper")  # another --model is no trust
    for command in (["canvas", "--checkpoint", str(run_dir), "--size", "16x32", "--out", str(tmp_path / "c.safetensors")],
                    ["sanity", str(run_dir)]):
        assert cli.main(command) == 2  # the commands refuse it with the same one line
    assert not marker.exists() and not (tmp_path / "c.safetensors").exists()
    assert spec not in INRS


def test_a_folder_naming_a_module_is_refused_and_nothing_imports(
    inrs: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, _ = fit_user_run(tmp_path)
    marker = tmp_path / "marker"
    (tmp_path / "hostile_inr_module.py").write_text(hostile_source(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_config(run_dir, model="hostile_inr_module:TinyINR", code=None)
    with pytest.raises(XincError, match="names module hostile_inr_module .*pass --trust-code"):
        load_checkpoint(run_dir, *SIZE)
    assert not marker.exists() and "hostile_inr_module" not in sys.modules


@pytest.mark.parametrize("route", ["trust_code", "trusted_spec"])
def test_trusted_but_changed_file_is_refused_by_its_sha256(inrs: None, tmp_path: Path, route: str) -> None:
    run_dir, spec = fit_user_run(tmp_path)
    marker = tmp_path / "marker"
    (run_dir / "code" / "inr.py").write_text(hostile_source(marker))
    trust = {"trust_code": True} if route == "trust_code" else {"trusted_spec": spec}
    message = "model.json: code file .*inr.py has changed since the model was fitted .*restore the file"
    with pytest.raises(XincError, match=message):
        load_checkpoint(run_dir, *SIZE, **trust)
    assert not marker.exists()


def test_a_module_spec_records_its_file_and_is_checked_too(
    inrs: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "trust_tiny_module.py"
    module.write_text(INR_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "trust_tiny_module:TinyINR"
    try:
        fit_forgetting(spec, tmp_path / "run")
        config = json.loads((tmp_path / "run" / "model.json").read_text())
        digest = hashlib.sha256(INR_SOURCE.encode()).hexdigest()
        assert config["code"] == {"module": "trust_tiny_module", "file": str(module), "sha256": digest}
        with pytest.raises(XincError, match="names module trust_tiny_module .*pass --trust-code"):
            load_checkpoint(tmp_path / "run", *SIZE)
        model, _ = load_checkpoint(tmp_path / "run", *SIZE, trusted_spec=spec)
        assert type(model).__name__ == "TinyINR"
        INRS._entries.pop(spec)
        marker = tmp_path / "marker"
        module.write_text(hostile_source(marker))
        with pytest.raises(XincError, match="module trust_tiny_module has changed since the model was fitted"):
            load_checkpoint(tmp_path / "run", *SIZE, trust_code=True)
        assert not marker.exists()
    finally:
        sys.modules.pop("trust_tiny_module", None)


def test_model_json_pointed_at_another_file_is_refused(inrs: None, tmp_path: Path) -> None:
    run_dir, _ = fit_user_run(tmp_path)
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.py"
    evil.write_text(hostile_source(marker))
    edit_config(run_dir, model=f"{evil}:TinyINR")  # keeps the sha256 of the fitted file
    with pytest.raises(XincError, match=f"names code file {evil} .*pass --trust-code"):
        load_checkpoint(run_dir, *SIZE)
    with pytest.raises(XincError, match=f"code file {evil} has changed since the model was fitted"):
        load_checkpoint(run_dir, *SIZE, trust_code=True)
    assert not marker.exists()


def test_the_same_spec_given_explicitly_or_trust_loads_the_model(inrs: None, tmp_path: Path) -> None:
    run_dir, spec = fit_user_run(tmp_path)
    loaded = [load_checkpoint(run_dir, *SIZE, trusted_spec=spec), load_checkpoint(run_dir, *SIZE, trust_code=True)]
    outputs = [render_output(model.eval(), (1, *SIZE)) for model, _ in loaded]
    assert type(loaded[0][0]).__name__ == "TinyINR" and loaded[0][1]["model"] == spec
    assert torch.equal(outputs[0], outputs[1])


def test_trust_without_a_recorded_sha256_runs_the_code(inrs: None, tmp_path: Path) -> None:
    """The hostile file really runs once trusted: the refusals above are what stops it."""
    run_dir, spec = fit_user_run(tmp_path)
    marker = tmp_path / "marker"
    (run_dir / "code" / "inr.py").write_text(hostile_source(marker))
    edit_config(run_dir, code=None)  # a folder written before sha256s were recorded
    with pytest.raises(XincError, match="loading it would run it"):
        load_checkpoint(run_dir, *SIZE)
    assert not marker.exists()
    model, _ = load_checkpoint(run_dir, *SIZE, trust_code=True)
    assert marker.read_text() == "ran" and type(model).__name__ == "TinyINR"


def test_malformed_code_entry_is_refused(inrs: None, tmp_path: Path) -> None:
    run_dir, _ = fit_user_run(tmp_path)
    edit_config(run_dir, code=["not", "a", "mapping"])
    with pytest.raises(XincError, match="model.json: its 'code' entry is malformed .*fit the model again"):
        load_checkpoint(run_dir, *SIZE, trust_code=True)


def test_registered_names_load_without_trust(tmp_path: Path) -> None:
    fit_run("ffn-paper", "astronaut", SIZE, out=tmp_path / "run", steps=2, progress_bar=False)
    assert "code" not in json.loads((tmp_path / "run" / "model.json").read_text())
    model, config = load_checkpoint(tmp_path / "run", *SIZE)
    assert config["model"] == "ffn-paper" and type(model).__name__ == "FourierFeatureMLP"


def test_leaderboard_takes_the_family_from_the_record_and_imports_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.py"
    evil.write_text(hostile_source(marker))
    task = load_task("partitions")
    for family, run in (("user", "a"), (None, "b")):
        metadata = {"model": f"{evil}:TinyINR{run}", "family": family, "seed": 0,
                    "data": {"data": "astronaut", "name": "astronaut", "num_frames": 1, "height": 16, "width": 32},
                    "fidelity": {"psnr": 20.0, "ssim": 0.5}}
        write_json_atomic(tmp_path / "records" / run / "records" / "partitions.json", build_record(task, {}, metadata))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateColumnWarning)  # empty scores: every column is empty
        board = build_leaderboard(tmp_path / "records")
    assert sorted(board["family"]) == ["", "user"]
    assert not marker.exists()
