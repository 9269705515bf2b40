"""Large temporaries reused from the C heap while a canvas is probed, instead of mapped afresh each time.

The tracer and the probes allocate and free temporaries all the time: block-sized copies (``|C|``
of a block, its shuffled control: 2.4 GB for the paper NeRV's block 1 at 128x256) and chunked
float64 scratch of 32 MiB and more. glibc's ``malloc`` serves every allocation of at least its
mmap threshold (at most 32 MiB, whatever ``mallopt`` is told) with a fresh ``mmap`` and returns it
on ``free``, so the kernel faults in and zeroes each of them again: on a 2-core machine that took
more system CPU than the probes' own arithmetic (``python -m benchmarks.allocator``).

:func:`reused_heap` serves every allocation from the heap while a canvas is driven through its
probes (:func:`~xinc_bench.probes.accumulator.accumulate`), where freed memory is reused without
being zeroed, and returns what is free to the kernel (``malloc_trim``) after each block, so the
peak stays that of the live data rather than of the heap's fragments. It changes nothing but
where memory comes from (the scores are the same) and is a no-op off glibc, or when the user set
glibc's own ``MALLOC_MMAP_MAX_`` (or the ``glibc.malloc.mmap_max`` tunable): their setting wins.
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

    if _depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
    _depth += 1
    try:
        yield release
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            release()
