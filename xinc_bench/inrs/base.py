"""How INRs are registered, created and described.

An INR is a plain ``torch.nn.Module`` that knows nothing about this library. The contract:

* coordinate INRs (``input_kind = "coords"``): ``forward(coords[P, D]) -> rgb[P, 3]`` with
  ``D = 2`` for images (``[y, x]``, see :func:`image_coordinates`) or ``D = 3`` for videos
  (``[t, y, x]``);
* frame INRs (``input_kind = "frame"``, the NeRV family): ``forward(t[B]) -> rgb[B, 3, H, W]``
  with ``t`` the frame indices.

Optional class attributes describe it: ``signal_kind`` (``"image"`` or ``"video"``),
``input_kind``, ``family`` and ``tracer`` (the default canvas tracer). A constructor may take
any of the keyword arguments ``height``, ``width`` and ``num_frames``; they are passed when
the signal is known.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import XincError
from ..registry import INRS

SHAPE_ARGUMENTS = ("num_frames", "height", "width")


@dataclass(frozen=True)
class INRInfo:
    """What the library needs to know about a registered INR."""

    name: str
    family: str
    signal_kind: str
    input_kind: str
    tracer: str
    description: str = ""


def register_inr(
    name: str,
    *,
    family: str | None = None,
    signal_kind: str | None = None,
    input_kind: str | None = None,
    tracer: str | None = None,
    description: str = "",
) -> Callable[[Any], Any]:
    """Register an INR class or preset factory under ``name`` (timm-style decorator).

    Metadata given here wins over the class attributes of the same name.

    Example::

        @xinc_bench.register_inr("my-siren", family="siren")
        class MySiren(nn.Module): ...
    """

    def decorator(obj: Any) -> Any:
        INRS.add(
            name,
            obj,
            family=family,
            signal_kind=signal_kind,
            input_kind=input_kind,
            tracer=tracer,
            description=description,
        )
        return obj

    return decorator


def inr_info(name: str) -> INRInfo:
    """Metadata of a registered INR, filled from class attributes where not registered."""
    entry = INRS.entry(name)
    meta = entry.metadata

    def pick(key: str, attribute: str, default: str) -> str:
        return meta.get(key) or getattr(entry.obj, attribute, None) or default

    signal_kind = pick("signal_kind", "signal_kind", "image")
    input_kind = pick("input_kind", "input_kind", "coords")
    return INRInfo(
        name=name,
        family=pick("family", "family", "user"),
        signal_kind=signal_kind,
        input_kind=input_kind,
        tracer=pick("tracer", "tracer", "linear"),
        description=meta.get("description") or (inspect.getdoc(entry.obj) or "").split("\n")[0],
    )


def default_tracer(name: str) -> str | None:
    """The default tracer of the INR registered as ``name``, or None when no INR of that name is registered
    in this process (a user INR's file is never imported just to read its tracer)."""
    try:
        return inr_info(name).tracer
    except XincError:
        return None


def create_inr(
    name: str,
    *,
    num_frames: int = 1,
    height: int | None = None,
    width: int | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the INR registered as ``name`` (the single way in, like ``timm.create_model``).

    The signal shape is passed only to constructors that declare those arguments.
    """
    factory = INRS.get(name)
    shape = {"num_frames": num_frames, "height": height, "width": width}
    accepted = _accepted_arguments(factory)
    kwargs = {k: v for k, v in shape.items() if v is not None and (k in accepted or "**" in accepted)}
    kwargs.update(overrides)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise XincError(f"cannot build INR {name!r} with arguments {sorted(kwargs)}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise XincError(
            f"INR {name!r} built a {type(model).__name__}, not a torch.nn.Module; "
            "register an nn.Module subclass or a function returning one"
        )
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as fixed Fourier matrices excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bits_per_pixel(num_parameters: int, num_pixels: int, bits_per_parameter: int = 8) -> float:
    """Model size per represented pixel, with 8-bit quantised weights as in NeRV-family papers."""
    return num_parameters * bits_per_parameter / num_pixels


def image_coordinates(height: int, width: int) -> torch.Tensor:
    """Pixel coordinates ``[H * W, 2]`` in the reference convention, row-major.

    Pixel (row y, column x) maps to ``[y, x]``, both divided by ``max(H, W) - 1`` and sent through
    ``v -> 2 (v - 0.5)``: the longer side spans [-1, 1]; the shorter starts at -1 with the same step.
    """
    scale = max(height, width) - 1
    ys = torch.arange(height, dtype=torch.float32) / scale
    xs = torch.arange(width, dtype=torch.float32) / scale
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
    return 2.0 * (grid - 0.5)


def _accepted_arguments(factory: Any) -> set[str]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return set()
    names = {p.name for p in params}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        names.add("**")
    return names


def video_coordinates(
    num_frames: int, height: int, width: int, frames: tuple[int, int] | None = None
) -> torch.Tensor:
    """``[T * H * W, 3]`` coordinates ``[t, y, x]``: y, x as :func:`image_coordinates`, t in [-1, 1].

    With ``frames = (a, b)`` only the rows of frames ``a .. b - 1`` are built, ``[(b - a) * H * W, 3]``
    (t still spaced over all ``T`` frames).
    """
    first, stop = frames if frames is not None else (0, num_frames)
    spatial = image_coordinates(height, width)
    ts = torch.linspace(-1.0, 1.0, num_frames) if num_frames > 1 else torch.zeros(1)
    t_column = ts[first:stop].repeat_interleave(spatial.shape[0])[:, None]
    return torch.cat([t_column, spatial.repeat(stop - first, 1)], dim=1)


def signal_coordinates(
    num_frames: int, height: int, width: int, frames: tuple[int, int] | None = None
) -> torch.Tensor:
    """Inputs of a coordinate INR for a ``T x H x W`` signal: 2-D for images, 3-D for videos.

    ``frames = (a, b)`` builds only the rows of frames ``a .. b - 1`` (an image's one frame is ``(0, 1)``).
    """
    if num_frames == 1:
        return image_coordinates(height, width)
    return video_coordinates(num_frames, height, width, frames)


@torch.no_grad()
def render_output(model: nn.Module, shape: tuple[int, int, int], chunk_size: int = 65536) -> torch.Tensor:
    """The model's output ``[T, H, W, 3]`` on a ``T x H x W`` grid (unclipped).

    Frame INRs render one frame per forward pass; coordinate INRs ``chunk_size`` pixels at a time.
    """
    if getattr(model, "input_kind", "coords") == "frame":
        frames = [model(torch.arange(t, t + 1)) for t in range(shape[0])]
        return torch.cat(frames).permute(0, 2, 3, 1).contiguous()
    coords = signal_coordinates(*shape)
    out = torch.cat([model(coords[i : i + chunk_size]) for i in range(0, coords.shape[0], chunk_size)])
    return out.reshape(*shape, 3)
