"""Shared fixtures: the paper's reference artefacts and small signals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ffn_cityscapes_0005"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference/ffn_cityscapes_0005`` (CI always has it)."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference artefacts not found at {REFERENCE_DIR} (../shared is absent)")
    return REFERENCE_DIR
