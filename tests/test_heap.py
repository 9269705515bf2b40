"""While a canvas is probed, large temporaries come from the C heap and what is freed goes back to the kernel.

The process's own view is read: the mapping a numpy array's memory lies in (``/proc/self/maps``:
``[heap]`` or an anonymous mapping of its own) and the resident size (``VmRSS``).
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.heap import reused_heap
from xinc_bench.probes.accumulator import AccumulatorGroup, accumulate
from xinc_bench.probes.base import load_task

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the heap is managed on glibc only"
)

LARGE = 64 << 20  # above glibc's largest mmap threshold (32 MiB): mapped on its own unless the heap serves it


def _mapping_of(array: np.ndarray) -> str:
    """The name of the mapping holding ``array``'s first byte ("" for an anonymous mapping)."""
    address = array.ctypes.data
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        low, high = (int(value, 16) for value in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) > 5 else ""
    raise AssertionError("the array's memory is in no mapping")


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_large_temporary_comes_from_the_heap_only_inside() -> None:
    assert _mapping_of(np.empty(LARGE, np.uint8)) != "[heap]"
    with reused_heap():
        assert _mapping_of(np.empty(LARGE, np.uint8)) == "[heap]"
        with reused_heap():  # nested: the outer setting holds until the outermost ends
            pass
        assert _mapping_of(np.empty(LARGE, np.uint8)) == "[heap]"
    assert _mapping_of(np.empty(LARGE, np.uint8)) != "[heap]"


def test_release_gives_freed_memory_back_to_the_kernel() -> None:
    with reused_heap() as release:
        release()
        before = _resident_bytes()
        array = np.ones(4 * LARGE, np.uint8)  # 256 MiB, touched
        assert _resident_bytes() - before >= 3 * LARGE
        del array
        release()
        assert _resident_bytes() - before < LARGE // 2


def test_the_users_own_mmap_limit_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    with reused_heap():
        assert _mapping_of(np.empty(LARGE, np.uint8)) != "[heap]"


def test_probing_gives_the_same_scores_with_and_without_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    layer = torch.randn(40, 3, 16, 24, generator=generator)
    canvas = Canvas(
        layers={"layer": layer},
        frames=torch.rand(3, 16, 24, 3, generator=generator),
        masks=torch.randint(0, 3, (3, 16, 24), generator=generator),
    )
    results = []
    for user_limit in (None, "65536"):
        if user_limit is not None:
            monkeypatch.setenv("MALLOC_MMAP_MAX_", user_limit)
        tasks = [load_task(name) for name in ("distribution", "objects", "color")]
        group = AccumulatorGroup([task.accumulator(canvas, null_draws=3) for task in tasks])
        results.append([(run.result.scores, run.result.nulls) for run in accumulate(canvas, [group])[0]])
    assert results[0] == results[1]
