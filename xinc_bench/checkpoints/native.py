"""xinc-bench checkpoints: ``model.safetensors`` (weights) beside ``model.json`` (config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import XincError
from ..files import atomic_file, write_json_atomic
from ..inrs.user import code_provenance

CHECKPOINT_FORMAT = "xinc-checkpoint/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "model.json"


def save_checkpoint(model: nn.Module, config: dict[str, Any], run_dir: Path) -> Path:
    """Write the model's state dict and ``config`` into ``run_dir`` (each file atomically).

    When ``config["model"]`` names a file or module (``path/to/file.py:Class``), the code's
    provenance (file and sha256, see :func:`~xinc_bench.inrs.user.code_provenance`) is stored
    as ``code`` in ``model.json``: loading refuses that code once the file has changed.
    """
    code = code_provenance(config["model"])
    if code is not None:
        config = {**config, "code": code}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = run_dir / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_file(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    write_json_atomic(run_dir / CONFIG_NAME, {"format": CHECKPOINT_FORMAT, **config})
    return weights


def config_file(path: Path) -> Path:
    """The ``model.json`` of a run directory or of its ``model.safetensors``."""
    path = Path(path)
    return (path / CONFIG_NAME) if path.is_dir() else path.with_name(CONFIG_NAME)


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``(config, state_dict)`` from a run directory or its ``model.safetensors``."""
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    config_path = config_file(path)
    if not weights.is_file():
        raise XincError(f"checkpoint {weights} does not exist; pass a RUN_DIR written by `xinc-bench fit`")
    if not config_path.is_file():
        raise XincError(f"checkpoint {weights} has no {CONFIG_NAME} beside it; it was not written by `xinc-bench fit`")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise XincError(f"checkpoint config {config_path} is not valid JSON ({exc})") from exc
    if config.get("format") != CHECKPOINT_FORMAT:
        raise XincError(f"{config_path} has format {config.get('format')!r}, but this xinc-bench reads "
                        f"{CHECKPOINT_FORMAT!r}; fit the model again with this version (or use the version that "
                        "wrote it)")
    if not isinstance(config.get("model"), str):
        raise XincError(f"{config_path} names no model (a string in 'model'); "
                        "pass a RUN_DIR written by `xinc-bench fit`")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise XincError(f"cannot read checkpoint {weights}: the file is corrupt or truncated ({exc})") from exc
    return config, state


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> nn.Module:
    """Load ``state`` into ``model``; missing, extra or mis-shaped tensors raise XincError."""
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} in file, {tuple(v.shape)} in model"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        raise XincError(f"checkpoint {source} does not fit the model: {'; '.join(problems[:5])}")
    model.load_state_dict(state)
    return model
