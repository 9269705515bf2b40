"""What a probe is given, checked: its parameters and the canvas annotations it needs.

Each check raises :class:`~xinc_bench.errors.XincError` with one line naming the fix.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..errors import XincError


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Error unless parameter ``name``'s ``value`` is one of ``choices``."""
    if value not in choices:
        raise XincError(f"parameter {name}={value!r} is not one of {', '.join(choices)}; choose one of them")


def choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    """``params[name]`` (default ``choices[0]``), checked against ``choices``."""
    value = params.get(name, choices[0])
    check_choice(name, value, choices)
    return str(value)


def _annotation(value: torch.Tensor | None, probe: str, need: str, supply: str) -> torch.Tensor:
    """``value``, or an error saying that ``probe`` needs ``need`` and how to ``supply`` it."""
    if value is None:
        raise XincError(
            f"the {probe} probe needs {need} but this canvas has none; compute the canvas on a signal with {supply}"
        )
    return value


def require_masks(canvas: Any, probe: str) -> torch.Tensor:
    """The canvas masks ``[T, H, W]`` int64, or an error naming how to supply them."""
    supply = "masks or give a mask source (gt, sam, felzenszwalb, slic)"
    return _annotation(canvas.masks, probe, "segment masks", supply).long()


def require_flow(canvas: Any, probe: str) -> torch.Tensor:
    """The canvas flow ``[T, H, W, 2]`` float32, or an error naming how to supply it."""
    supply = "flow or give a flow source (gt, dis, farneback, raft)"
    return _annotation(canvas.flow, probe, "optical flow", supply).float()


def require_video(canvas: Any, probe: str) -> None:
    """Error unless the canvas has at least two frames."""
    if canvas.shape[0] < 2:
        raise XincError(f"the {probe} probe needs a video canvas (2 or more frames); this canvas has 1 frame")
