"""``import xinc_bench`` puts large CPU tensors on transparent huge pages, unless the user says no.

Each case runs in a fresh interpreter (PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once) and reads the
kernel's own count of huge pages backing the process (``AnonHugePages`` in smaps_rollup) before
and after filling a 64 MiB tensor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
SMAPS = Path("/proc/self/smaps_rollup")

PROBE = """
import os
from pathlib import Path

def huge_kib():
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])

import xinc_bench
import torch

before = huge_kib()
tensor = torch.empty(64 << 20, dtype=torch.uint8)
tensor.fill_(1)
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), huge_kib() - before)
"""


def _mode() -> str:
    """The kernel's transparent huge page mode (always, madvise or never), or "" if unknown."""
    if not THP_MODE.exists() or not SMAPS.exists():
        return ""
    text = THP_MODE.read_text()
    return text[text.index("[") + 1:text.index("]")] if "[" in text else ""


def _fill(setting: str | None) -> tuple[str, int]:
    env = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    if setting is not None:
        env["THP_MEM_ALLOC_ENABLE"] = setting
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                          check=True)
    value, huge = done.stdout.split()
    return value, int(huge)


needs_thp = pytest.mark.skipif(_mode() not in ("always", "madvise"),
                               reason="this kernel offers no transparent huge pages")


@needs_thp
def test_importing_xinc_bench_backs_a_large_tensor_with_huge_pages():
    value, huge_kib = _fill(None)
    assert value == "1"
    assert huge_kib >= 32 * 1024, f"only {huge_kib} KiB of the 64 MiB tensor on huge pages"


@pytest.mark.skipif(_mode() != "madvise", reason="only the kernel's madvise mode leaves the choice to torch")
def test_a_user_s_own_setting_wins():
    value, huge_kib = _fill("0")
    assert value == "0"
    assert huge_kib == 0
