"""Mask sources: segment ids per pixel for signals without (or besides) dataset annotations.

Every source is registered in :data:`~xinc_bench.registry.MASK_SOURCES` as a callable
``source(frames[T, H, W, 3] float32 in [0, 1], **options) -> masks[T, H, W] int32`` with
0 = unlabelled and segment ids from 1. Frames are segmented one at a time, so ids of
different frames are unrelated. :func:`masks_for` is the front door: it serves ``gt`` from
the signal's own annotations and caches every computed source per signal and options.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data.signal import Signal
from ..errors import XincError
from ..registry import MASK_SOURCES
from .cache import annotation_key, cached_annotation, check_options

#: SAM backbones accepted as ``model_type``.
SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")

SAM_HOW_TO = (
    "download a segment-anything checkpoint (e.g. sam_vit_b_01ec64.pth) and pass "
    "`--masks sam --sam-checkpoint PATH --sam-model-type vit_b` (in Python: "
    "masks_for(signal, 'sam', checkpoint=PATH, model_type='vit_b'))"
)


def masks_for(
    signal: Signal,
    source_name: str | None = None,
    *,
    cache_dir: Path | str | None = None,
    **options: Any,
) -> torch.Tensor:
    """The masks ``[T, H, W]`` int32 (0 = unlabelled) of ``signal`` from a mask source.

    Args:
        signal: the signal to segment.
        source_name: ``gt`` (the signal's annotations) or a name in ``MASK_SOURCES``; None
            picks ``gt`` when the signal has masks and ``felzenszwalb`` otherwise.
        cache_dir: optional folder where computed masks are also kept as ``.npz`` files.
        **options: passed to the source (e.g. ``n_segments=50`` for ``slic``).

    Computed masks are cached by signal content, source and options; each call returns a
    fresh tensor.
    """
    if source_name is None:
        source_name = "gt" if signal.masks is not None else "felzenszwalb"
    if source_name == "gt":
        return _ground_truth_masks(signal, options)
    source = _lookup(source_name)
    check_options(f"mask source {source_name!r}", source, options)
    key = annotation_key("masks", signal, source_name, options)

    def compute() -> np.ndarray:
        return _checked_masks(source(signal.frames, **options), signal, source_name)

    return torch.from_numpy(cached_annotation(key, compute, cache_dir).copy())


def _ground_truth_masks(signal: Signal, options: dict[str, Any]) -> torch.Tensor:
    if options:
        raise XincError(f"mask source 'gt' takes no options (got {sorted(options)}); remove them")
    if signal.masks is None:
        raise XincError(
            f"signal {signal.name!r} has no ground-truth masks; choose a computed mask source "
            f"instead: {', '.join(MASK_SOURCES.names())}"
        )
    return signal.masks.to(torch.int32).clone()


def _lookup(source_name: str) -> Callable[..., torch.Tensor]:
    if source_name not in MASK_SOURCES:
        known = ", ".join(["gt", *MASK_SOURCES.names()])
        raise XincError(f"unknown mask source {source_name!r}; known mask sources: {known}")
    return MASK_SOURCES.get(source_name)


def _checked_masks(masks: torch.Tensor, signal: Signal, source_name: str) -> np.ndarray:
    expected = (signal.num_frames, signal.height, signal.width)
    array = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if array.shape != expected or array.dtype != np.int32 or (array.size and array.min() < 0):
        raise XincError(
            f"mask source {source_name!r} returned {array.dtype} {array.shape} "
            f"(min {array.min() if array.size else 'n/a'}); a mask source must return int32 "
            f"{list(expected)} with ids >= 0; fix the source"
        )
    return array


def _frames_uint8(frames: torch.Tensor) -> np.ndarray:
    """``frames[T, H, W, 3]`` float in [0, 1] as uint8 ``[T, H, W, 3]``."""
    scaled = frames.detach().cpu().float().clamp(0.0, 1.0).mul(255.0).round()
    return scaled.to(torch.uint8).numpy()


def _per_frame(frames: torch.Tensor, segment: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Apply ``segment(frame[H, W, 3] float64) -> ids[H, W]`` to each frame; ``[T, H, W]`` int32."""
    array = frames.detach().cpu().double().numpy()
    return torch.from_numpy(np.stack([segment(frame) for frame in array]).astype(np.int32))


@MASK_SOURCES.register("felzenszwalb", package="scikit-image")
def felzenszwalb_masks(
    frames: torch.Tensor, scale: float = 100.0, sigma: float = 0.5, min_size: int = 50
) -> torch.Tensor:
    """Felzenszwalb graph segmentation of each frame: ``[T, H, W, 3]`` -> ``[T, H, W]`` int32, ids from 1.

    ``scale`` (larger = fewer, larger segments), ``sigma`` (pre-smoothing) and ``min_size``
    (smallest segment in pixels) are ``skimage.segmentation.felzenszwalb``'s parameters.
    """
    from skimage.segmentation import felzenszwalb

    def segment(frame: np.ndarray) -> np.ndarray:
        return felzenszwalb(frame, scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1) + 1

    return _per_frame(frames, segment)


@MASK_SOURCES.register("slic", package="scikit-image")
def slic_masks(
    frames: torch.Tensor, n_segments: int = 100, compactness: float = 10.0, sigma: float = 1.0
) -> torch.Tensor:
    """SLIC superpixels of each frame: ``[T, H, W, 3]`` -> ``[T, H, W]`` int32, ids from 1.

    ``n_segments`` (approximate count), ``compactness`` (colour vs space trade-off) and
    ``sigma`` (pre-smoothing) are ``skimage.segmentation.slic``'s parameters.
    """
    from skimage.segmentation import slic

    def segment(frame: np.ndarray) -> np.ndarray:
        return slic(
            frame, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=1, channel_axis=-1
        )

    return _per_frame(frames, segment)


@MASK_SOURCES.register("sam", package="segment-anything", needs="checkpoint")
def sam_masks(
    frames: torch.Tensor,
    checkpoint: str | Path | None = None,
    model_type: str = "vit_b",
    device: str = "cpu",
    **generator_options: Any,
) -> torch.Tensor:
    """Segment-anything automatic masks of each frame: ``[T, H, W, 3]`` -> ``[T, H, W]`` int32.

    Args:
        frames: ``[T, H, W, 3]`` float in [0, 1].
        checkpoint: path to a SAM checkpoint (a state dict, as the official ``.pth`` files).
        model_type: ``vit_b``, ``vit_l`` or ``vit_h``, matching the checkpoint.
        device: torch device to run on.
        **generator_options: ``SamAutomaticMaskGenerator`` options (``points_per_side``,
            ``pred_iou_thresh``, ``stability_score_thresh``, ``min_mask_region_area``, ...).

    Each frame's masks become one id map: larger masks first, smaller ones painted over,
    ids renumbered 1..K by first appearance in that order, 0 where no mask covers a pixel.
    """
    generator = _sam_generator(checkpoint, model_type, device, generator_options)
    maps = [sam_id_map(generator.generate(image), image.shape[:2]) for image in _frames_uint8(frames)]
    return torch.from_numpy(np.stack(maps))


def sam_id_map(records: list[dict[str, Any]], shape: tuple[int, int]) -> np.ndarray:
    """SAM's mask records (``segmentation`` bool ``[H, W]``, ``area``) as one id map ``[H, W]`` int32.

    Masks are painted from largest to smallest so small masks stay visible on top of the
    large ones they overlap; surviving ids are renumbered 1..K in painting order; 0 = no mask.
    """
    if not records:
        return np.zeros(shape, dtype=np.int32)
    ordered = sorted(records, key=lambda record: -int(record["area"]))
    stack = np.stack([np.asarray(record["segmentation"], dtype=bool) for record in ordered])
    last_painter = len(ordered) - 1 - np.argmax(stack[::-1], axis=0)
    painted = np.where(stack.any(axis=0), last_painter + 1, 0)
    _, compact = np.unique(painted, return_inverse=True)
    offset = 0 if (painted == 0).any() else 1
    return (compact.reshape(shape) + offset).astype(np.int32)


def _sam_generator(
    checkpoint: str | Path | None, model_type: str, device: str, options: dict[str, Any]
) -> Any:
    if checkpoint is None:
        raise XincError(f"mask source 'sam' needs a checkpoint file: {SAM_HOW_TO}")
    if model_type not in SAM_MODEL_TYPES:
        raise XincError(f"unknown SAM model type {model_type!r}; choose one of {', '.join(SAM_MODEL_TYPES)}")
    try:
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
    except ImportError as exc:
        raise XincError("mask source 'sam' needs the segment-anything package: pip install segment-anything") from exc
    accepted = set(inspect.signature(SamAutomaticMaskGenerator.__init__).parameters) - {"self", "model"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise XincError(
            f"mask source 'sam' has no option(s) {', '.join(unknown)}; its options are checkpoint, model_type, "
            f"device and SamAutomaticMaskGenerator's: {', '.join(sorted(accepted))}"
        )
    state = _read_sam_checkpoint(Path(checkpoint))
    model = sam_model_registry[model_type](checkpoint=None)
    if set(state) != set(model.state_dict()):
        raise XincError(
            f"SAM checkpoint {checkpoint} does not hold a {model_type} model's weights; pass the "
            f"model type it was trained as (one of {', '.join(SAM_MODEL_TYPES)})"
        )
    model.load_state_dict(state)
    return SamAutomaticMaskGenerator(model.to(device).eval(), **options)


def _read_sam_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Load a SAM checkpoint as tensors only (``weights_only=True``: no code is unpickled)."""
    if not path.is_file():
        raise XincError(f"SAM checkpoint {path} does not exist; {SAM_HOW_TO}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise XincError(
            f"cannot read SAM checkpoint {path} ({exc}); it is corrupt or not a PyTorch state dict: "
            "download it again"
        ) from exc
    if not isinstance(state, dict):
        raise XincError(f"SAM checkpoint {path} holds a {type(state).__name__}, not a state dict; {SAM_HOW_TO}")
    return state
