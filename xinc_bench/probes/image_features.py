"""Pixel features of a signal ``frames[T, H, W, 3]``, returned as maps over ``(T, H, W)``.

* :func:`intensity` (SPEC 5: ``I(p)`` = sum of min-max normalised RGB), :func:`luminance` and
  :func:`sobel_magnitude`.
* The Gabor bank (SPEC 5.4: 4 orientations x 2 sigmas x 3 frequencies = 24 real filters, float
  responses). ``bank="reference"`` reproduces the XINC reference exactly: its loop returns after
  the first orientation (6 filters, SPEC 8.2) and it filters a uint8 image into a uint8 output, so
  negative responses wrap around (SPEC 8.8).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .inputs import check_choice
from .numerics import minmax

#: Gabor bank of SPEC 5.4 (ref): orientations k * pi / 4, Gaussian sigmas and frequencies
GABOR_ORIENTATIONS = 4
GABOR_SIGMAS = (1.0, 3.0)
GABOR_FREQUENCIES = (0.05, 0.25, 0.5)
GABOR_BANKS = ("full", "reference")


def intensity(frames: torch.Tensor) -> torch.Tensor:
    """``I(p)``: sum over RGB of each channel min-max normalised over the signal, ``[T, H, W]``."""
    return sum(minmax(frames[..., c]) for c in range(3))


def luminance(frames: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B`` of ``[T, H, W, 3]`` frames: ``[T, H, W]``."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
    return frames.float() @ weights


def sobel_magnitude(frames: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of each frame's luma, ``[T, H, W]`` (scikit-image ``sobel``)."""
    from skimage.filters import sobel

    luma = luminance(frames).numpy()
    return torch.from_numpy(np.stack([sobel(frame) for frame in luma]).astype(np.float32))


def gabor_kernels(bank: str = "full") -> list[np.ndarray]:
    """Real Gabor kernels: all 24 (``full``) or the reference's first orientation only (6)."""
    from skimage.filters import gabor_kernel

    check_choice("gabor_bank", bank, GABOR_BANKS)
    orientations = 1 if bank == "reference" else GABOR_ORIENTATIONS
    return [
        np.real(gabor_kernel(frequency, theta=k / GABOR_ORIENTATIONS * np.pi, sigma_x=sigma, sigma_y=sigma))
        for k in range(orientations)
        for sigma in GABOR_SIGMAS
        for frequency in GABOR_FREQUENCIES
    ]


def gabor_responses(frames: torch.Tensor, bank: str = "full") -> np.ndarray:
    """Gabor filter responses of each frame's grey image: ``[T, H, W, F]`` float32.

    ``full``: float luma in [0, 1], 24 filters. ``reference``: the XINC code path, a uint8 grey
    image (PIL ``convert("L")`` of the 0..255 frame) filtered into uint8 (wrap-around) by 6 filters.
    Filters wrap around the image borders, as in the reference.
    """
    kernels = gabor_kernels(bank)
    if bank == "reference":
        from PIL import Image

        rgb8 = (frames.clamp(0, 1) * 255).numpy().astype(np.uint8)
        grey = [np.asarray(Image.fromarray(frame).convert("L")) for frame in rgb8]
    else:
        grey = list(luminance(frames).numpy().astype(np.float64))
    responses = [np.stack([ndimage.convolve(g, k, mode="wrap") for k in kernels], axis=-1) for g in grey]
    return np.stack(responses).astype(np.float32)
