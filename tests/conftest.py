"""Shared fixtures: the paper's reference artefacts and a headless Chromium for page tests."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from browser import HeadlessChromium, find_chromium

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ffn_cityscapes_0005"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference/ffn_cityscapes_0005`` (CI always has it)."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference artefacts not found at {REFERENCE_DIR} (../shared is absent)")
    return REFERENCE_DIR


@pytest.fixture(scope="module")
def browser() -> Iterator[HeadlessChromium]:
    """One headless Chromium for a module's page tests (skipped where none is installed)."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (CI installs it: apt-get install -y chromium)")
    with HeadlessChromium(chromium) as driver:
        yield driver
