"""Built-in images, image files, size parsing and registry look-ups."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from xinc_bench.data import load_signal, parse_frames, parse_size
from xinc_bench.errors import XincError
from xinc_bench.registry import INRS, Registry


@pytest.mark.parametrize("name", ["astronaut", "camera", "chelsea", "coffee"])
def test_builtin_images_resize_to_requested_size(name: str) -> None:
    signal = load_signal(name, (32, 64))
    assert signal.frames.shape == (1, 32, 64, 3)
    assert signal.frames.dtype.is_floating_point
    assert 0.0 <= float(signal.frames.min()) and float(signal.frames.max()) <= 1.0
    assert float(signal.frames.std()) > 0.05  # a real picture, not a constant


def test_grey_image_becomes_rgb() -> None:
    frames = load_signal("camera", (16, 16)).frames
    assert np.allclose(frames[..., 0], frames[..., 1]) and np.allclose(frames[..., 1], frames[..., 2])


def test_image_file_round_trip(tmp_path: Path) -> None:
    image = (np.random.default_rng(0).random((40, 80, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "pic.png", image)
    signal = load_signal(str(tmp_path / "pic.png"), (40, 80))
    assert signal.name == "pic"
    assert np.abs(signal.frames[0].numpy() * 255 - image).max() < 0.51


def test_unreadable_image_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(XincError, match="cannot read image file .*broken.png"):
        load_signal(str(bad), (16, 16))


def test_missing_file_and_unknown_source() -> None:
    with pytest.raises(XincError, match="does not exist"):
        load_signal("no/such/file.png", (16, 16))
    with pytest.raises(XincError, match="unknown data source 'astronot'.*Did you mean astronaut"):
        load_signal("astronot", (16, 16))


@pytest.mark.parametrize("text", ["12x", "0x5", "x5", "5x-3", "abc", ""])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(XincError, match="invalid size"):
        parse_size(text)


def test_sizes_and_frames_parse() -> None:
    assert parse_size("128x256") == (128, 256)
    assert parse_frames("0:30").indices(250) == list(range(30))
    assert parse_frames("10:20:5").indices(250) == [10, 15]
    with pytest.raises(XincError, match="out of range"):
        parse_frames("0:300").indices(250)


def test_registry_lists_known_names_on_unknown_lookup() -> None:
    registry: Registry[int] = Registry("widget")
    registry.add("alpha", 1)
    registry.add("beta", 2)
    with pytest.raises(XincError, match="unknown widget 'gamma'. Known widgets: alpha, beta"):
        registry.get("gamma")
    with pytest.raises(XincError, match="already registered"):
        registry.add("alpha", 3)
    assert registry.names("a*") == ["alpha"]
    assert "ffn-paper" in INRS
