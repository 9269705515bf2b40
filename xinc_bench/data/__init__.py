"""Signals and where they come from: built-in images and clips, files, frame folders, datasets."""

from __future__ import annotations

from pathlib import Path

from ..errors import XincError
from ..registry import DATA_SOURCES
from . import datasets, images, synthetic, video
from .datasets import LAYOUTS
from .signal import FrameRange, Signal, parse_frames, parse_size

__all__ = ["LAYOUTS", "FrameRange", "Signal", "load_signal", "parse_frames", "parse_size"]


def load_signal(
    spec: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
    *,
    layout: str | None = None,
    sequence: str | None = None,
) -> Signal:
    """Load a signal: a registered source, an image or video file, a frame folder, or a dataset sequence.

    Args:
        spec: a registered data source (``xinc-bench list data``), an image or video file, a
            folder of frames, or (with ``layout``) the root folder of a dataset.
        size: target ``(H, W)``.
        frames: frame range for videos and dataset sequences.
        layout: the dataset layout of ``spec`` (a name in :data:`~xinc_bench.data.datasets.LAYOUTS`:
            ``cityscapes-vps``, ``davis``, ``vipseg``); the signal then carries the layout's
            ground-truth ``masks`` and, where the layout has them, ``categories``.
        sequence: the sequence of the dataset to load (with ``layout``).

    Raises:
        XincError: one line naming the problem and the fix: a missing path, an unknown source or
            layout, a ``layout`` without ``sequence`` (the sequences found are listed) or the
            reverse, a dataset root given without ``layout``, a file that is no image or video,
            a picture too small for ``size``, frames out of range.
    """
    if layout is not None or sequence is not None:
        return _load_sequence(spec, size, frames, layout, sequence)
    path = Path(spec)
    if spec not in DATA_SOURCES and (path.exists() or any(sep in spec for sep in "/\\") or path.suffix):
        if not path.exists():
            raise XincError(f"data file {spec} does not exist; check the path")
        if path.is_dir():
            _refuse_dataset_root(path)
            return video.load_frame_folder(path, size, frames)
        if path.suffix.lower() in images.IMAGE_SUFFIXES:
            return images.load_image_file(path, size)
        return video.load_video_file(path, size, frames)
    return DATA_SOURCES.get(spec)(size=size, frames=frames)


def _load_sequence(
    root: str, size: tuple[int, int], frames: FrameRange | None, layout: str | None, sequence: str | None
) -> Signal:
    """``sequence`` of the dataset at ``root`` in ``layout``; either one missing names the fix."""
    if layout is None:
        found = datasets.detect_layouts(root)
        hint = found[0] if found else "|".join(LAYOUTS.names())
        raise XincError(f"--sequence {sequence} needs the dataset's layout: add --layout {hint}")
    if sequence is None:
        names = datasets.names_text(datasets.list_sequences(root, layout))
        raise XincError(f"--layout {layout} needs --sequence NAME; the sequences in {root}: {names}")
    return datasets.load_dataset(root, layout, sequence, size, frames)


def _refuse_dataset_root(folder: Path) -> None:
    """A folder without frames that is a dataset root: say which ``--layout`` reads it."""
    if video.list_image_files(folder):
        return
    found = datasets.detect_layouts(folder)
    if found:
        title = LAYOUTS.get(found[0]).title
        raise XincError(
            f"{folder} is a {title} dataset root, not a folder of frames; add --layout {found[0]} --sequence NAME "
            "(--layout alone lists its sequences)"
        )
