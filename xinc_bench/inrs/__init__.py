"""The INR zoo. Each family lives in one module and registers its presets on import."""

from . import hashgrid, known, mfn, mlp, nerv
from .user import resolve_inr
from .base import (INRInfo, bits_per_pixel, count_parameters, create_inr, default_tracer, image_coordinates, inr_info,
                   register_inr)

__all__ = [
    "INRInfo",
    "bits_per_pixel",
    "count_parameters",
    "create_inr",
    "default_tracer",
    "image_coordinates",
    "inr_info",
    "mlp",
    "register_inr",
    "resolve_inr",
]
