"""Annotations computed from a signal: segmentation masks and optical flow (registered sources)."""

from . import flow, masks
from .flow import flow_for
from .masks import masks_for

__all__ = ["flow", "flow_for", "masks", "masks_for"]
