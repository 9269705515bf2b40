"""A researcher's INR gets a canvas without editing the library, through each registration route."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import xinc_bench.canvas.hooks  # noqa: F401  (registers the linear tracer)
from xinc_bench.canvas.compute import compute_canvas
from xinc_bench.data.signal import Signal
from xinc_bench.errors import XincError
from xinc_bench.inrs.base import create_inr, image_coordinates, inr_info, register_inr
from xinc_bench.inrs.user import resolve_inr
from xinc_bench.registry import INRS

REPO_ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 8, 16


class TinyINR(nn.Module):
    """Two Linear layers on image coordinates; exists only in this test file."""

    def __init__(self, height: int | None = None, width: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)


class NotAnINR:
    """A plain class, for the error message."""


@pytest.fixture
def inrs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are dropped after it."""
    monkeypatch.setattr(INRS, "_entries", dict(INRS._entries))


def assert_tiny_canvas(name: str) -> None:
    """``create_inr(name)`` builds a TinyINR whose linear canvas has the known values."""
    torch.manual_seed(0)
    model = create_inr(name, height=HEIGHT, width=WIDTH).eval()
    assert type(model).__name__ == "TinyINR"
    assert inr_info(name).tracer == "linear"
    signal = Signal(frames=torch.rand(1, HEIGHT, WIDTH, 3), name="noise")
    canvas = compute_canvas(model, signal, inr_info(name).tracer)
    assert canvas.layer_names == ["net.0", "net.2"]
    coords = image_coordinates(HEIGHT, WIDTH)
    first = model.net[0]
    with torch.no_grad():
        expected_recon = model(coords).reshape(1, HEIGHT, WIDTH, 3)
        # earlier layer: ReLU(a_j sum_k W[k, j] + sum_k b[k] / N), the coordinates being a_j
        expected_first = torch.relu(coords * first.weight.sum(dim=0) + first.bias.sum() / 2)
    assert torch.allclose(canvas.recon, expected_recon, atol=1e-6)
    assert torch.allclose(canvas.layer("net.0"), expected_first.T.reshape(2, 1, HEIGHT, WIDTH), atol=1e-6)
    # last layer: signed contributions that add up to the output, summed over RGB
    assert canvas.layer("net.2").shape == (8, 1, HEIGHT, WIDTH)
    assert torch.allclose(canvas.layer("net.2").sum(dim=0), expected_recon.sum(dim=-1), atol=1e-5)


def test_decorator_route(inrs: None) -> None:
    register_inr("user-decorated-tiny", family="user", signal_kind="image")(TinyINR)
    assert resolve_inr("user-decorated-tiny") == "user-decorated-tiny"
    assert_tiny_canvas("user-decorated-tiny")


def test_file_spec_route(inrs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    spec = "tests/test_user_inr.py:TinyINR"
    assert resolve_inr(spec) == spec
    loaded = INRS.get(spec)
    assert loaded is not TinyINR and loaded.__module__.startswith("xinc_bench_user_test_user_inr_")
    assert resolve_inr(spec) == spec and INRS.get(spec) is loaded  # resolved once
    assert_tiny_canvas(spec)


def test_module_spec_route(inrs: None) -> None:
    spec = f"{TinyINR.__module__}:TinyINR"
    assert resolve_inr(spec) == spec
    assert INRS.get(spec) is TinyINR
    assert_tiny_canvas(spec)


def test_entry_point_route(inrs: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real installed distribution: a dist-info folder on sys.path declaring the entry point.
    dist_info = tmp_path / "xinc_user_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: xinc-user-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[xinc_bench.inrs]\nuser-plugin-tiny = {TinyINR.__module__}:TinyINR\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(INRS, "_entry_points_loaded", False)
    assert "user-plugin-tiny" in importlib.metadata.entry_points(group="xinc_bench.inrs").names
    assert resolve_inr("user-plugin-tiny") == "user-plugin-tiny"
    assert INRS.get("user-plugin-tiny") is TinyINR
    assert INRS.entry("user-plugin-tiny").metadata["source"] == f"entry point {TinyINR.__module__}:TinyINR"
    assert_tiny_canvas("user-plugin-tiny")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ffn-papr", "unknown INR 'ffn-papr'.* Did you mean ffn-paper.*Or name a class: path/to/file.py:ClassName"),
        ("tests/no_such_file.py:TinyINR", "INR file tests/no_such_file.py does not exist"),
        ("tests/test_user_inr.py:Missing", "no class 'Missing' there; nn.Module classes defined there: TinyINR$"),
        ("tests/test_user_inr.py:NotAnINR", "is class NotAnINR, not a torch.nn.Module subclass"),
        ("tests/test_user_inr.py:HEIGHT", "is an object of type int, not a torch.nn.Module subclass"),
        ("no_such_package.models:TinyINR", "cannot import module 'no_such_package.models'"),
    ],
)
def test_bad_specs_give_clear_errors(inrs: None, monkeypatch: pytest.MonkeyPatch, spec: str, message: str) -> None:
    import xinc_bench.inrs.mlp  # noqa: F401  (ffn-paper, for the close match)

    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(XincError, match=message):
        resolve_inr(spec)


def test_file_that_fails_to_import_shows_the_exception(inrs: None, tmp_path: Path) -> None:
    broken = tmp_path / "broken_inr.py"
    broken.write_text("import torch\nraise RuntimeError('weights folder not set')\n")
    for _ in range(2):  # the half-executed module is not cached: the second try fails the same way
        message = "importing INR file .*broken_inr.py failed: RuntimeError: weights folder not set"
        with pytest.raises(XincError, match=message):
            resolve_inr(f"{broken}:Broken")
    assert not [name for name in sys.modules if name.startswith("xinc_bench_user_broken_inr_")]
