"""Image sources: the real images shipped inside scikit-image, and any image file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import XincError
from ..registry import DATA_SOURCES
from .filetype import not_decodable
from .signal import FrameRange, Signal
from .transforms import crop_and_resize, to_float_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}

#: Built-in scikit-image pictures and the ``skimage.data`` function that returns each.
SKIMAGE_IMAGES = {
    "astronaut": "astronaut",
    "camera": "camera",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
}


def _image_signal(array: np.ndarray, name: str, size: tuple[int, int], source: dict) -> Signal:
    frames = crop_and_resize(to_float_rgb(array)[None], size)
    return Signal(frames=frames, name=name, source={**source, "size": list(size)})


def _register_skimage(name: str, function: str) -> None:
    def load(size: tuple[int, int], frames: FrameRange | None = None) -> Signal:
        import skimage.data

        array = getattr(skimage.data, function)()
        return _image_signal(array, name, size, {"source": name, "package": "scikit-image"})

    load.__doc__ = f"The real image ``skimage.data.{function}()``, centre-cropped and resized."
    DATA_SOURCES.add(name, load, kind="image", origin="scikit-image")


for _name, _function in SKIMAGE_IMAGES.items():
    _register_skimage(_name, _function)


def load_image_file(path: Path, size: tuple[int, int]) -> Signal:
    """Read an image file into a one-frame signal of ``size``; unreadable files raise XincError."""
    import imageio.v3 as iio

    try:
        array = iio.imread(path)
    except Exception as exc:
        raise XincError(f"cannot read image file {path}: {not_decodable(path, exc, 'image')}") from exc
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise XincError(f"image file {path} has unsupported shape {array.shape}; give an RGB or grey image")
    try:
        return _image_signal(array, path.stem, size, {"source": "file", "path": str(path)})
    except XincError as exc:  # a picture too small for the requested size
        raise XincError(f"image file {path}: {exc}") from None
