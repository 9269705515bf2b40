"""While a canvas is probed, large temporaries come from the C heap and what is freed goes back to the kernel.

The process's own view is read: the mapping a numpy array's memory lies in (``/proc/self/maps``:
``[heap]`` or an anonymous mapping of its own), in a fresh interpreter whose heap holds no large
free chunk, and the resident size (``VmRSS``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
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


MAPPINGS = """
import sys
from pathlib import Path

import numpy as np

from xinc_bench.heap import reused_heap


def mapping_of(array):
    address = array.ctypes.data
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        low, high = (int(value, 16) for value in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) > 5 else "anonymous"
    raise AssertionError("the array's memory is in no mapping")


# every array is kept alive: a large free chunk left in the heap would serve the next one, mmap or not
size = int(sys.argv[1])
kept = [np.empty(size, np.uint8)]
with reused_heap():
    kept.append(np.empty(size, np.uint8))
    with reused_heap():  # nested: the outer setting holds until the outermost ends
        pass
    kept.append(np.empty(size, np.uint8))
kept.append(np.empty(size, np.uint8))
print(" ".join(mapping_of(array) for array in kept))
"""


KEPT = """
import sys
from pathlib import Path

import numpy as np

from xinc_bench.heap import reused_heap


def resident():
    return next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmRSS:"))


with reused_heap() as release:
    release()
    before = resident()
    array = np.ones(int(sys.argv[1]), np.uint8)  # at the top of the heap, touched
    del array
    freed = resident() - before
    release()
    print(freed, resident() - before)
"""


def _kept_after_free(env: dict[str, str]) -> tuple[int, int]:
    """Resident bytes a freed array of 4 LARGE leaves inside ``reused_heap()`` in a fresh interpreter, after
    its ``free`` and after ``release()``."""
    done = subprocess.run([sys.executable, "-c", KEPT, str(4 * LARGE)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, check=True)
    freed, released = (int(value) for value in done.stdout.split())
    return freed, released


def _mappings(env: dict[str, str]) -> list[str]:
    """Where four arrays of LARGE bytes lie, made in a fresh interpreter (no free chunk in its heap):
    before ``reused_heap()``, inside it, inside after a nested use, and after it."""
    done = subprocess.run([sys.executable, "-c", MAPPINGS, str(LARGE)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.split()


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_large_temporary_comes_from_the_heap_only_inside() -> None:
    before, inside, nested, after = _mappings({})
    assert (inside, nested) == ("[heap]", "[heap]")
    assert before != "[heap]" and after != "[heap]"


def test_release_gives_freed_memory_back_to_the_kernel() -> None:
    with reused_heap() as release:
        release()
        before = _resident_bytes()
        array = np.ones(4 * LARGE, np.uint8)  # 256 MiB, touched
        assert _resident_bytes() - before >= 3 * LARGE
        del array
        release()
        assert _resident_bytes() - before < LARGE // 2


def test_freed_memory_stays_for_the_next_temporary_until_release() -> None:
    """``free`` does not hand the top of the heap back at once (each temporary would be faulted in and
    zeroed again); ``release()`` does. A trim threshold the user gave glibc wins."""
    freed, released = _kept_after_free({})
    assert freed >= 3 * LARGE and released < LARGE // 2
    freed, released = _kept_after_free({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert freed < LARGE // 2 and released < LARGE // 2


def test_the_users_own_mmap_limit_wins() -> None:
    assert "[heap]" not in _mappings({"MALLOC_MMAP_MAX_": "65536"})


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
