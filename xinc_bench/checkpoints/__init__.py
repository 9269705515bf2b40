"""Checkpoints: the library's own (safetensors + JSON) and the XINC paper's release format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import XincError
from ..inrs.base import create_inr
from ..inrs.user import resolve_stored_inr
from .native import CONFIG_NAME, WEIGHTS_NAME, config_file, load_state, read_checkpoint, save_checkpoint
from .release import ffn_from_release_state, read_release_state_dict

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "load_checkpoint", "save_checkpoint"]


def load_checkpoint(
    path: Path,
    height: int | None = None,
    width: int | None = None,
    *,
    trust_code: bool = False,
    trusted_spec: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model from a run directory, its ``model.safetensors``, or a paper release ``.ckpt``.

    A checkpoint is data: when its ``model.json`` names a file or module
    (``path/to/file.py:Class``), that code is imported only if ``trust_code`` (``--trust-code``)
    or if ``trusted_spec`` (the user's ``--model``) is that same spec, and only while the file
    has the sha256 recorded at fit time. Registered INR names load without either.

    Returns:
        ``(model, config)``; ``config`` has at least ``model`` (registered name) and ``model_args``.

    Raises:
        XincError: missing or corrupt files, untrusted or changed code, weights that do not fit.
    """
    path = Path(path)
    if not path.exists():
        raise XincError(f"checkpoint {path} does not exist; check the path")
    if path.is_file() and path.suffix == ".ckpt":
        config_args, state = ffn_from_release_state(read_release_state_dict(path), path)
        model = create_inr("ffn-paper", height=height, width=width, **config_args)
        config = {"model": "ffn-paper", "model_args": config_args, "source": "xinc-release", "checkpoint": str(path)}
        return load_state(model, state, path), config
    config, state = read_checkpoint(path)
    name = resolve_stored_inr(config["model"], config.get("code"), source=str(config_file(path)),
                              trust_code=trust_code, trusted_spec=trusted_spec)
    signal = config.get("signal", {})
    model = create_inr(
        name,
        num_frames=signal.get("num_frames", 1),
        height=height or signal.get("height"),
        width=width or signal.get("width"),
        **config.get("model_args", {}),
    )
    return load_state(model, state, path), config
