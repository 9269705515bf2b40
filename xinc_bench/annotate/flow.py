"""Flow sources: optical flow between consecutive frames for signals without exact flow.

Every source is registered in :data:`~xinc_bench.registry.FLOW_SOURCES` as a callable
``source(frames[T, H, W, 3] float32 in [0, 1], **options) -> flow[T, H, W, 2] float32``.

Convention (SPEC section 2, made precise): ``flow[t, y, x] = (dx, dy)`` is the motion from
frame t-1 to frame t of the content seen at pixel p = (x, y) of frame t, so that

    frame_t(p) ~ frame_{t-1}(p - flow_t(p)),

i.e. the flow lives on frame t's pixel grid and points from where the content was to where
it is. Frame 0 has no predecessor and is all zeros. An object moving 2 px right has
``dx = +2`` on the pixels it covers in frame t. :func:`flow_for` is the front door: it serves
``gt`` from the signal's exact flow and caches every computed source per signal and options.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.signal import Signal
from ..errors import XincError
from ..registry import FLOW_SOURCES
from .cache import annotation_key, cached_annotation, check_options

#: ``estimate(current[H, W], previous[H, W]) -> [H, W, 2]`` with current(p) ~ previous(p - flow(p)).
PairEstimator = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: DIS presets by name -> the OpenCV constant's name.
DIS_PRESETS = {
    "ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST",
    "fast": "DISOPTICAL_FLOW_PRESET_FAST",
    "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM",
}
RAFT_MODELS = ("small", "large")
#: RAFT's correlation pyramid needs feature maps of at least 16 px at 1/8 resolution.
RAFT_MIN_SIDE = 128

RAFT_HOW_TO = (
    "download torchvision's RAFT weights (e.g. raft_small_C_T_V2-01064c6d.pth from "
    "Raft_Small_Weights.C_T_V2.url) and pass `--flow raft --raft-weights PATH --raft-model small` "
    "(in Python: flow_for(signal, 'raft', weights=PATH, model='small'))"
)


def flow_for(
    signal: Signal,
    source_name: str | None = None,
    *,
    cache_dir: Path | str | None = None,
    **options: Any,
) -> torch.Tensor:
    """The flow ``[T, H, W, 2]`` float32 (dx, dy) of ``signal`` from a flow source.

    Args:
        signal: the video (a one-frame signal gets one zero frame).
        source_name: ``gt`` (the signal's exact flow) or a name in ``FLOW_SOURCES``; None
            picks ``gt`` when the signal has flow and ``dis`` otherwise.
        cache_dir: optional folder where computed flow is also kept as ``.npz`` files.
        **options: passed to the source (e.g. ``preset="fast"`` for ``dis``).

    Computed flow is cached by signal content, source and options; each call returns a
    fresh tensor.
    """
    if source_name is None:
        source_name = "gt" if signal.flow is not None else "dis"
    if source_name == "gt":
        return _ground_truth_flow(signal, options)
    source = _lookup(source_name)
    check_options(f"flow source {source_name!r}", source, options)
    key = annotation_key("flow", signal, source_name, options)

    def compute() -> np.ndarray:
        return _checked_flow(source(signal.frames, **options), signal, source_name)

    return torch.from_numpy(cached_annotation(key, compute, cache_dir).copy())


def _ground_truth_flow(signal: Signal, options: dict[str, Any]) -> torch.Tensor:
    if options:
        raise XincError(f"flow source 'gt' takes no options (got {sorted(options)}); remove them")
    if signal.flow is None:
        raise XincError(
            f"signal {signal.name!r} has no exact flow (only synthetic scenes have it); choose a "
            f"computed flow source instead: {', '.join(FLOW_SOURCES.names())}"
        )
    return signal.flow.to(torch.float32).clone()


def _lookup(source_name: str) -> Callable[..., torch.Tensor]:
    if source_name not in FLOW_SOURCES:
        known = ", ".join(["gt", *FLOW_SOURCES.names()])
        raise XincError(f"unknown flow source {source_name!r}; known flow sources: {known}")
    return FLOW_SOURCES.get(source_name)


def _checked_flow(flow: torch.Tensor, signal: Signal, source_name: str) -> np.ndarray:
    expected = (signal.num_frames, signal.height, signal.width, 2)
    array = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    if array.shape != expected or array.dtype != np.float32 or not np.isfinite(array).all():
        raise XincError(
            f"flow source {source_name!r} returned {array.dtype} {array.shape}; a flow source must "
            f"return finite float32 {list(expected)}; fix the source"
        )
    return array


def _grey_uint8(frames: torch.Tensor) -> np.ndarray:
    """``frames[T, H, W, 3]`` float in [0, 1] as grey uint8 ``[T, H, W]`` (ITU-R 601 luma, as OpenCV)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)
    luma = frames.detach().cpu().float().clamp(0.0, 1.0) @ weights
    return luma.mul(255.0).round().to(torch.uint8).numpy()


def _pairwise(frames: torch.Tensor, estimate: PairEstimator) -> torch.Tensor:
    """Flow ``[T, H, W, 2]`` from ``estimate`` on each (frame t, frame t-1) grey pair; frame 0 zeros."""
    grey = _grey_uint8(frames)
    flow = np.zeros((*grey.shape, 2), dtype=np.float32)
    for t in range(1, len(grey)):
        flow[t] = estimate(grey[t], grey[t - 1])
    return torch.from_numpy(flow)


def _opencv() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise XincError("OpenCV flow sources need OpenCV: pip install opencv-python-headless") from exc
    return cv2


@FLOW_SOURCES.register("dis", package="opencv-python-headless")
def dis_flow(frames: torch.Tensor, preset: str = "medium") -> torch.Tensor:
    """OpenCV DIS optical flow: ``[T, H, W, 3]`` -> ``[T, H, W, 2]`` float32 (see module convention).

    ``preset`` is DIS's speed/quality preset: ``ultrafast``, ``fast`` or ``medium``.
    """
    cv2 = _opencv()
    if preset not in DIS_PRESETS:
        raise XincError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(getattr(cv2, DIS_PRESETS[preset]))

    # OpenCV's flow from I0 to I1 satisfies I0(p) ~ I1(p + f(p)) on I0's grid; with I0 = frame t
    # and I1 = frame t-1 that is -flow_t of the module convention.
    def estimate(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        return -dis.calc(current, previous, None)

    return _pairwise(frames, estimate)


@FLOW_SOURCES.register("farneback", package="opencv-python-headless")
def farneback_flow(
    frames: torch.Tensor,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
) -> torch.Tensor:
    """OpenCV Farneback optical flow: ``[T, H, W, 3]`` -> ``[T, H, W, 2]`` float32 (see module convention).

    The options are ``cv2.calcOpticalFlowFarneback``'s parameters.
    """
    cv2 = _opencv()

    # as for DIS: flow from frame t to frame t-1, negated
    def estimate(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        backward = cv2.calcOpticalFlowFarneback(
            current, previous, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, 0
        )
        return -backward

    return _pairwise(frames, estimate)


@FLOW_SOURCES.register("raft", package="torchvision", needs="weights")
def raft_flow(
    frames: torch.Tensor,
    weights: str | Path | None = None,
    model: str = "small",
    device: str = "cpu",
    num_flow_updates: int = 12,
    batch_size: int = 4,
) -> torch.Tensor:
    """torchvision RAFT optical flow: ``[T, H, W, 3]`` -> ``[T, H, W, 2]`` float32 (see module convention).

    Args:
        frames: ``[T, H, W, 3]`` float in [0, 1]; resized for RAFT by :func:`raft_input_size`
            and the flow resized and rescaled back to ``H x W`` pixels.
        weights: path to a ``raft_small`` / ``raft_large`` state dict (torchvision's ``.pth``).
        model: ``small`` or ``large``, matching the weights.
        device: torch device to run on.
        num_flow_updates: RAFT's recurrent refinement steps.
        batch_size: frame pairs per forward pass.
    """
    network = _raft_model(weights, model).to(device)
    height, width = frames.shape[1:3]
    size = raft_input_size(height, width)
    images = _raft_images(frames, size).to(device)
    pieces = [torch.zeros(1, 2, height, width)]
    with torch.inference_mode():
        for start in range(1, images.shape[0], batch_size):
            stop = min(start + batch_size, images.shape[0])
            # RAFT(a, b) satisfies a(p) ~ b(p + f(p)); with a = frame t, b = frame t-1 it is -flow_t.
            backward = network(images[start:stop], images[start - 1 : stop - 1], num_flow_updates=num_flow_updates)[-1]
            pieces.append(_rescale_flow(-backward.float().cpu(), (height, width)))
    return torch.cat(pieces).permute(0, 2, 3, 1).contiguous()


def raft_input_size(height: int, width: int) -> tuple[int, int]:
    """The size RAFT runs at: sides multiples of 8 and at least 128 (its correlation pyramid's
    minimum), scaled up isotropically when the frame is smaller."""
    scale = max(1.0, RAFT_MIN_SIDE / min(height, width))
    return 8 * math.ceil(height * scale / 8), 8 * math.ceil(width * scale / 8)


def _raft_images(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``frames[T, H, W, 3]`` in [0, 1] as RAFT input ``[T, 3, *size]`` in [-1, 1]."""
    images = frames.detach().float().clamp(0.0, 1.0).permute(0, 3, 1, 2).mul(2.0).sub(1.0)
    if tuple(images.shape[2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _rescale_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow ``[B, 2, h, w]`` in pixels of ``h x w`` as ``[B, 2, *size]`` in pixels of ``size``."""
    if tuple(flow.shape[2:]) == size:
        return flow
    scale = torch.tensor([size[1] / flow.shape[3], size[0] / flow.shape[2]]).view(1, 2, 1, 1)
    return F.interpolate(flow, size=size, mode="bilinear", align_corners=False, antialias=True) * scale


def _raft_model(weights: str | Path | None, model: str) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    if weights is None:
        raise XincError(f"flow source 'raft' needs a weights file: {RAFT_HOW_TO}")
    if model not in RAFT_MODELS:
        raise XincError(f"unknown RAFT model {model!r}; choose one of {', '.join(RAFT_MODELS)}")
    state = _read_raft_weights(Path(weights))
    network = {"small": raft_small, "large": raft_large}[model](weights=None)
    if set(state) != set(network.state_dict()):
        raise XincError(
            f"RAFT weights {weights} do not belong to raft_{model}; pass the model they were trained as "
            f"(one of {', '.join(RAFT_MODELS)})"
        )
    network.load_state_dict(state)
    return network.eval()


def _read_raft_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load RAFT weights as tensors only (``weights_only=True``: no code is unpickled)."""
    if not path.is_file():
        raise XincError(f"RAFT weights file {path} does not exist; {RAFT_HOW_TO}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise XincError(
            f"cannot read RAFT weights {path} ({exc}); it is corrupt or not a PyTorch state dict: download it again"
        ) from exc
    if not isinstance(state, dict):
        raise XincError(f"RAFT weights {path} hold a {type(state).__name__}, not a state dict; {RAFT_HOW_TO}")
    return state
