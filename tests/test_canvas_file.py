"""The canvas file: streaming writer, lazy reader, atomicity and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from xinc_bench.canvas import FORMAT, Canvas, compute_canvas, read_canvas, write_canvas
from xinc_bench.data import Signal
from xinc_bench.errors import XincError
from xinc_bench.inrs import create_inr


def _canvas() -> Canvas:
    g = torch.Generator().manual_seed(0)
    return Canvas(
        layers={"a": torch.randn(4, 2, 8, 16, generator=g), "b": torch.randn(3, 2, 8, 16, generator=g)},
        frames=torch.rand(2, 8, 16, 3, generator=g),
        recon=torch.rand(2, 8, 16, 3, generator=g),
        masks=torch.randint(0, 5, (2, 8, 16), generator=g, dtype=torch.int32),
        flow=torch.randn(2, 8, 16, 2, generator=g),
        metadata={"model": "toy", "fidelity": {"psnr": 30.0}},
    )


def test_round_trip_and_header(tmp_path: Path) -> None:
    canvas = _canvas()
    path = write_canvas(canvas, tmp_path / "c.safetensors")
    loaded = read_canvas(path)
    assert loaded.layer_names == ["a", "b"]
    for name in ("a", "b"):
        assert torch.equal(loaded.layer(name), canvas.layer(name))
    for name in ("frames", "recon", "masks", "flow"):
        assert torch.equal(getattr(loaded, name), getattr(canvas, name))
    assert loaded.metadata["fidelity"] == {"psnr": 30.0}
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        assert meta["format"] == FORMAT and json.loads(meta["layers"]) == ["a", "b"]
        assert set(handle.keys()) == {"canvas.a", "canvas.b", "frames", "recon", "masks", "flow"}
    assert list(tmp_path.iterdir()) == [path]


def test_float16_storage(tmp_path: Path) -> None:
    canvas = _canvas()
    loaded = read_canvas(write_canvas(canvas, tmp_path / "c.safetensors", dtype=torch.float16))
    assert torch.allclose(loaded.layer("a"), canvas.layer("a"), atol=2e-3)


def test_streamed_canvas_equals_in_memory(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_inr("ffn-paper", height=16, width=32)
    signal = Signal(torch.rand(1, 16, 32, 3), "noise")
    in_memory = compute_canvas(model, signal, "mlp", chunk_size=100)
    streamed = compute_canvas(model, signal, "mlp", out=tmp_path / "c.safetensors", chunk_size=77)
    for name in in_memory.layer_names:
        assert torch.equal(in_memory.layer(name), streamed.layer(name))
    assert streamed.metadata["checks"]["output_sum_max_rel_error"] < 1e-5
    assert streamed.metadata["tracer"] == "mlp"


def test_failed_trace_leaves_no_file(tmp_path: Path) -> None:
    class Broken(torch.nn.Module):
        linears = torch.nn.ModuleList([torch.nn.Linear(2, 3)])

        def trace(self, coords):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        compute_canvas(Broken(), Signal(torch.rand(1, 4, 4, 3), "x"), "mlp", out=tmp_path / "c.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(XincError, match="does not exist"):
        read_canvas(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 20)
    with pytest.raises(XincError, match="not a valid safetensors file"):
        read_canvas(garbage)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "something"})
    with pytest.raises(XincError, match="is not a canvas file"):
        read_canvas(tmp_path / "other.safetensors")


def test_a_canvas_the_disk_cannot_hold_is_refused_before_writing(tmp_path) -> None:
    import numpy as np

    from xinc_bench.canvas.compute import check_disk_space
    from xinc_bench.errors import XincError

    huge_layer = {"canvas.block1": ((2**20, 30, 1024, 2048), np.dtype(np.float32))}
    with pytest.raises(XincError, match=r"the canvas needs 245760\.0 GiB but .* GiB free.*--float16"):
        check_disk_space(tmp_path / "runs" / "canvas.safetensors", huge_layer)
    half = {"canvas.block1": ((2**20, 30, 1024, 2048), np.dtype(np.float16))}
    with pytest.raises(XincError, match=r"two canvases need 245760\.0 GiB") as error:
        check_disk_space(tmp_path / "canvas.safetensors", half, what="two canvases", copies=2)
    assert "--float16" not in str(error.value)
    assert list(tmp_path.iterdir()) == []
    check_disk_space(tmp_path / "canvas.safetensors", {"canvas.l": ((4, 1, 8, 8), np.dtype(np.float32))})
