"""Bad input measured on main, each refused with one line naming the problem and the fix.

Pictures too small for the requested size, files that are no image or video given as ``--data``,
and canvases holding NaN or inf (which used to score 0.0 without a word): real files written
here, real models, the real probe stage.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from xinc_bench.canvas import Canvas, compute_canvas, read_canvas, write_canvas
from xinc_bench.data import Signal, load_signal
from xinc_bench.data.filetype import describe_file
from xinc_bench.errors import XincError
from xinc_bench.inrs import create_inr
from xinc_bench.probes.base import load_task

SIZE = (16, 32)
ACCEPTED = r"--data takes an image \(PNG, JPEG, TIFF, \.\.\.\), a video \(mp4, mkv, webm, \.\.\.\), a folder of frames"


def one_line_error(call: Callable[[], object], pattern: str) -> str:
    """Run ``call``; it must raise XincError matching ``pattern`` on one line. Returns the message."""
    with pytest.raises(XincError, match=pattern) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Pictures too small for the requested size


def test_one_pixel_image_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    iio.imwrite(path, np.full((1, 1, 3), 200, np.uint8))
    one_line_error(
        lambda: load_signal(str(path), SIZE),
        r"image file .*dot\.png: its 1x1 pixels are too few for --size 16x32: the centre crop to that aspect "
        r"would be 0x1 pixels; give a larger picture or a --size closer to 1x1",
    )
    assert load_signal(str(path), (4, 4)).frames.shape == (1, 4, 4, 3)  # a square crop of it exists


def test_frames_too_small_name_the_frame_and_the_video(tmp_path: Path) -> None:
    folder = tmp_path / "thin"
    folder.mkdir()
    for t in range(2):
        iio.imwrite(folder / f"{t}.png", np.zeros((3, 1, 3), np.uint8))
    one_line_error(lambda: load_signal(str(folder), SIZE), r"frame .*thin/0\.png: its 3x1 pixels are too few for --size 16x32")
    one_line_error(lambda: load_signal("carphone", (1000, 1)),
                   r"video file .*carphone_pristine\.mp4: its 144x176 pixels are too few for --size 1000x1")


# ---------------------------------------------------------------------------------------------
# Files that are no image or video


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("notes.png", b"a shopping list\n", rf"cannot read image file .*notes\.png: it holds text, not an image; {ACCEPTED}"),
        ("notes.txt", b"a shopping list\n", rf"cannot decode video file .*notes\.txt: it holds text, not a video; {ACCEPTED}"),
        ("empty.jpg", b"", rf"empty\.jpg: it holds nothing \(an empty file\), not an image; {ACCEPTED}"),
        ("weights.mp4", b"PK\x03\x04" + bytes(60), r"weights\.mp4: it holds a zip archive \(or a PyTorch checkpoint\), not a video"),
        ("noise.mkv", bytes(range(7, 250)) * 4, rf"noise\.mkv: it holds binary data of an unknown format that does not decode as a video \(.*\); {ACCEPTED}"),
        ("cut.png", b"\x89PNG\r\n\x1a\n" + bytes(20), r"cut\.png: it is a PNG image that cannot be decoded .*truncated or corrupt, replace it"),
    ],
)
def test_non_image_data_says_what_the_file_is(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    message = one_line_error(lambda: load_signal(str(path), SIZE), pattern)
    assert "need at least one array to stack" not in message


def test_numpy_array_and_frame_folder_with_a_stray_file(tmp_path: Path) -> None:
    np.save(tmp_path / "frames.npy", np.zeros((2, 16, 32, 3), np.float32))
    one_line_error(lambda: load_signal(str(tmp_path / "frames.npy"), SIZE), r"frames\.npy: it holds a NumPy array \(\.npy\), not a video")
    folder = tmp_path / "clip"
    folder.mkdir()
    iio.imwrite(folder / "000.png", np.zeros((16, 32, 3), np.uint8))
    (folder / "001.png").write_text('{"not": "a frame"}')
    one_line_error(lambda: load_signal(str(folder), SIZE), r"cannot read image file .*001\.png: it holds text, not an image")


def test_describe_file_recognises_real_media(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    iio.imwrite(tmp_path / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    iio.imwrite(tmp_path / "a.tif", np.zeros((4, 4), np.uint16))
    (tmp_path / "utf8.txt").write_text("température, 温度\n" * 300)  # the sniffed prefix ends mid-character
    kinds = {name: describe_file(tmp_path / name) for name in ("a.png", "a.jpg", "a.tif", "utf8.txt")}
    assert [(k.description, k.medium) for k in kinds.values()] == [
        ("a PNG image", "image"), ("a JPEG image", "image"), ("a TIFF image", "image"), ("text", "")
    ]


# ---------------------------------------------------------------------------------------------
# Canvases holding NaN or inf


def finite_canvas() -> Canvas:
    g = torch.Generator().manual_seed(0)
    return Canvas(
        layers={"a": torch.rand(4, 3, 8, 16, generator=g), "b": torch.rand(3, 3, 8, 16, generator=g)},
        frames=torch.rand(3, 8, 16, 3, generator=g),
        metadata={"model": "toy"},
    )


def poke(path: Path, key: str, index: tuple[int, ...], value: float) -> None:
    """Overwrite one element of tensor ``key`` in a safetensors file in place (a corrupt canvas file)."""
    with open(path, "r+b") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        entry = json.loads(handle.read(length))[key]
        dtype = {"F32": np.float32, "F16": np.float16}[entry["dtype"]]
        flat = int(np.ravel_multi_index(index, entry["shape"]))
        handle.seek(8 + length + entry["data_offsets"][0] + flat * np.dtype(dtype).itemsize)
        handle.write(np.array(value, dtype).tobytes())


def test_nan_canvas_file_is_refused_by_a_task(tmp_path: Path) -> None:
    path = write_canvas(finite_canvas(), tmp_path / "canvas.safetensors")
    poke(path, "canvas.b", (2, 1, 3, 5), float("nan"))
    poke(path, "canvas.b", (0, 2, 0, 0), float("-inf"))
    one_line_error(
        lambda: load_task("distribution").run(read_canvas(path)),
        r"canvas layer 'b' holds NaN and inf values in frames 1-2 \(2 of its 3 neurons\); the model diverged or the "
        r"canvas file is corrupt: refit the model \(e\.g\. with a lower --lr\) and recompute the canvas",
    )


def test_inf_in_a_float16_canvas_names_the_overflow(tmp_path: Path) -> None:
    path = write_canvas(finite_canvas(), tmp_path / "canvas.safetensors", dtype=torch.float16)
    poke(path, "canvas.a", (1, 0, 2, 2), float("inf"))
    one_line_error(lambda: read_canvas(path).layer("a"),
                   r"canvas layer 'a' holds inf values in frame 0 \(1 of its 4 neurons\); the contributions overflow "
                   r"float16: recompute the canvas without --float16")


def test_probe_stage_writes_no_record_for_a_nan_canvas(tmp_path: Path) -> None:
    from xinc_bench.runs.stages import probe_run

    path = write_canvas(finite_canvas(), tmp_path / "canvas.safetensors")
    poke(path, "canvas.a", (0, 0, 0, 0), float("nan"))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    one_line_error(lambda: probe_run(path, "distribution", out=tmp_path / "records" / "distribution.json"),
                   r"canvas layer 'a' holds NaN values in frame 0 \(1 of its 4 neurons\)")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no record, no figures, no temporary file


def test_writing_a_non_finite_canvas_is_refused(tmp_path: Path) -> None:
    canvas = finite_canvas()
    canvas.layers["a"][3, 2, 7, 15] = float("nan")
    one_line_error(lambda: write_canvas(canvas, tmp_path / "canvas.safetensors"), r"canvas layer 'a' holds NaN values in frame 2")
    assert list(tmp_path.iterdir()) == []


def test_overflowing_sum_is_not_mistaken_for_inf() -> None:
    canvas = Canvas(layers={"big": torch.full((2, 1, 4, 4), 3e37)}, frames=torch.zeros(1, 4, 4, 3))
    assert torch.equal(canvas.layer("big"), torch.full((2, 1, 4, 4), 3e37))


def broken_model(layer: int, scale: float) -> torch.nn.Module:
    """ffn-paper whose ``linears.<layer>`` weights are multiplied by ``scale`` (NaN: a diverged fit)."""
    torch.manual_seed(0)
    model = create_inr("ffn-paper", height=SIZE[0], width=SIZE[1])
    with torch.no_grad():
        model.linears[layer].weight.mul_(scale)
    return model


def test_computing_a_canvas_of_a_diverged_model_is_refused(tmp_path: Path) -> None:
    signal = Signal(torch.rand(1, *SIZE, 3), "noise")
    model = broken_model(layer=1, scale=float("nan"))
    one_line_error(lambda: compute_canvas(model, signal, "mlp"),
                   r"the model's layer 'layer2' gives NaN values in frame 0 \(104 of its 104 neurons\); the canvas is not "
                   r"stored: the model's weights are broken \(a diverged fit\?\): refit it")
    one_line_error(lambda: compute_canvas(model, signal, "mlp", out=tmp_path / "canvas.safetensors"), r"layer 'layer2' gives NaN")
    assert list(tmp_path.iterdir()) == []  # the writer removed its temporary file


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float16_overflow_while_computing_names_float32(tmp_path: Path) -> None:
    signal = Signal(torch.rand(1, *SIZE, 3), "noise")
    model = broken_model(layer=2, scale=1e6)
    one_line_error(lambda: compute_canvas(model, signal, "mlp", out=tmp_path / "c.safetensors", dtype=torch.float16),
                   r"the model's layer 'layer3' gives inf values in frame 0 .*overflow float16: trace in float32 \(without --float16\)")
    assert list(tmp_path.iterdir()) == []
    assert compute_canvas(model, signal, "mlp", out=tmp_path / "c.safetensors").layer_names == ["layer1", "layer2", "layer3"]
