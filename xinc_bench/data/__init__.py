"""Signals and where they come from: built-in images, files, (later) videos and synthetic scenes."""

from __future__ import annotations

from pathlib import Path

from ..errors import XincError
from ..registry import DATA_SOURCES
from . import datasets, images, synthetic, video
from .signal import FrameRange, Signal, parse_frames, parse_size

__all__ = ["FrameRange", "Signal", "load_signal", "parse_frames", "parse_size"]


def load_signal(spec: str, size: tuple[int, int], frames: FrameRange | None = None) -> Signal:
    """Load a signal by registered source name or by path (image file, video file, frame folder).

    Args:
        spec: a registered data source (``xinc-bench list data``), an image or video file, or a
            folder of frames.
        size: target ``(H, W)``.
        frames: frame range for video sources.
    """
    path = Path(spec)
    if spec not in DATA_SOURCES and (path.exists() or any(sep in spec for sep in "/\\") or path.suffix):
        if not path.exists():
            raise XincError(f"data file {spec} does not exist; check the path")
        if path.is_dir():
            return video.load_frame_folder(path, size, frames)
        if path.suffix.lower() in images.IMAGE_SUFFIXES:
            return images.load_image_file(path, size)
        return video.load_video_file(path, size, frames)
    return DATA_SOURCES.get(spec)(size=size, frames=frames)
