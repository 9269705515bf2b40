"""Geometric preparation of frames: centre crop to an aspect ratio, then resize."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import XincError


def to_float_rgb(array: np.ndarray) -> torch.Tensor:
    """An image array (``[H, W]``, ``[H, W, 1|3|4]``; uint8/uint16/float) as ``[H, W, 3]`` in [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if np.issubdtype(array.dtype, np.integer):
        scale = float(np.iinfo(array.dtype).max)
        out = array.astype(np.float32) / scale
    else:
        out = np.clip(array.astype(np.float32), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(out))


def centre_crop_box(source: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, crop_h, crop_w)`` of the centred crop of a ``source`` (H, W) to the aspect of ``size``.

    Raises:
        XincError: the crop would be empty (a 1x1 picture has no 1:2 crop); callers add the file.
    """
    src_h, src_w = source
    height, width = size
    target_aspect = width / height
    if src_w / src_h > target_aspect:
        crop_h, crop_w = src_h, round(src_h * target_aspect)
    else:
        crop_h, crop_w = round(src_w / target_aspect), src_w
    if min(crop_h, crop_w) < 1:
        raise XincError(
            f"its {src_h}x{src_w} pixels are too few for --size {height}x{width}: the centre crop to that aspect "
            f"would be {crop_h}x{crop_w} pixels; give a larger picture or a --size closer to {src_h}x{src_w}"
        )
    return (src_h - crop_h) // 2, (src_w - crop_w) // 2, crop_h, crop_w


def crop_and_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop ``frames[T, H, W, C]`` to the aspect of ``size`` and resize to it.

    Resizing uses antialiased bilinear interpolation, so downscaling does not alias.
    Returns ``[T, h, w, C]`` float32 clipped to [0, 1].
    """
    height, width = size
    top, left, crop_h, crop_w = centre_crop_box(tuple(frames.shape[1:3]), size)
    cropped = frames[:, top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return cropped.contiguous().float()
    chw = cropped.permute(0, 3, 1, 2).float()
    resized = F.interpolate(chw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp_(0.0, 1.0).permute(0, 2, 3, 1).contiguous()
