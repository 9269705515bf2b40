"""Large temporaries reused from the C heap while a canvas is probed, instead of mapped afresh each time.

The tracer and the probes allocate and free temporaries all the time: block-sized copies (``|C|``
of a block: 2.4 GB for the paper NeRV's block 1 at 128x256) and chunked
float64 scratch of 32 MiB and more. glibc's ``malloc`` serves every allocation of at least its
mmap threshold (at most 32 MiB, whatever ``mallopt`` is told) with a fresh ``mmap`` and returns it
on ``free``, so the kernel faults in and zeroes each of them again: on a 2-core machine that took
more system CPU than the probes' own arithmetic (``python -m benchmarks.allocator``).

:func:`reused_heap` serves every allocation from the heap while a canvas is driven through its
probes (:func:`~xinc_bench.probes.accumulator.accumulate`), where freed memory is reused without
being zeroed, and returns what is free to the kernel (``malloc_trim``) after each block, so the
peak stays that of the live data rather than of the heap's fragments. Between two blocks ``free``
keeps what it frees: glibc would otherwise hand the top of the heap back to the kernel on every
``free`` of more than its trim threshold (128 KiB once ``mmap`` is off), so each chunked float64
temporary of a probe (32 MiB) was faulted in and zeroed again: 35 % of a paper-size run's CPU
samples in ``perf``, though the wall time did not move measurably (``python -m benchmarks.allocator
--compare trim``: 3x fewer page faults, no faster). It changes nothing but where memory comes
from (the scores are the same) and is a no-op off glibc; a setting the user gave glibc
(``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_`` or their ``GLIBC_TUNABLES``) wins: with the first,
nothing is changed, with the second, the heap is still used but trimmed as the user said.
"""

from __future__ import annotations

import ctypes
import os
import platform
from contextlib import contextmanager
from typing import Callable, Iterator

#: ``mallopt``'s parameter for the most allocations served by ``mmap`` at once
_M_MMAP_MAX = -4
#: glibc's default of that parameter (``DEFAULT_MMAP_MAX``)
_DEFAULT_MMAP_MAX = 65536
#: ``mallopt``'s parameter for the free memory at the top of the heap that ``free`` returns to the kernel
_M_TRIM_THRESHOLD = -1
#: glibc's default of that parameter (``DEFAULT_TRIM_THRESHOLD``)
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
#: the trim threshold inside :func:`reused_heap`: the largest ``mallopt`` takes (an ``int``), so ``free``
#: trims only a top of more than 2 GiB (what ``release()`` would return after the block anyway)
_NEVER_TRIM = (1 << 31) - 1

_depth = 0


def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None off glibc or where the user chose glibc's mmap limit."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if "MALLOC_MMAP_MAX_" in os.environ or "glibc.malloc.mmap_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _user_trims() -> bool:
    """Whether the user gave glibc its trim threshold (then ``free`` trims as they said)."""
    return "MALLOC_TRIM_THRESHOLD_" in os.environ or "glibc.malloc.trim_threshold" in os.environ.get("GLIBC_TUNABLES", "")


def _nothing() -> None:
    """What ``release`` is where the heap is not managed."""


@contextmanager
def reused_heap() -> Iterator[Callable[[], None]]:
    """Serve allocations from the heap inside the block; yields ``release()``, which returns the
    heap's free memory to the kernel (call it when the large temporaries of a step are freed).

    Nested uses share the outermost one's setting; on leaving the outermost, ``mmap`` is allowed
    again (glibc's default) and the free memory released.
    """
    global _depth
    libc = _glibc()
    if libc is None:
        yield _nothing
        return

    def release() -> None:
        libc.malloc_trim(0)

    keep_freed = not _user_trims()
    if _depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
        if keep_freed:
            libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
    _depth += 1
    try:
        yield release
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            if keep_freed:  # glibc's default value; set explicitly, it is no longer raised as mapped chunks are freed
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            release()
