"""Cache of computed annotations (masks, flow) per signal, in memory and optionally on disk.

An annotation is keyed by what determines it: the signal's content hash, the source name and
the source's options. Entries live in a process-wide least-recently-used memory store bounded
in bytes; with a cache folder they are also written there as ``.npz`` files (no pickle), each
written to a temporary file and renamed into place so a crash never leaves half a file.
The mask and flow front doors also share :func:`check_options`, which vets a source's options
before anything runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.signal import Signal
from ..errors import XincError
from ..files import atomic_file

#: Upper bound on the bytes the in-memory store keeps before evicting the oldest entries.
MEMORY_LIMIT_BYTES = 1 << 30


class MemoryStore:
    """Least-recently-used ``key -> array`` store holding at most ``limit_bytes`` of arrays."""

    def __init__(self, limit_bytes: int = MEMORY_LIMIT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> np.ndarray | None:
        """The array stored under ``key`` (marked most recently used), or None."""
        array = self._arrays.get(key)
        if array is not None:
            self._arrays.move_to_end(key)
        return array

    def put(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` under ``key``, evicting least recently used entries beyond the limit."""
        self.discard(key)
        self._arrays[key] = array
        self._bytes += array.nbytes
        while self._bytes > self.limit_bytes and len(self._arrays) > 1:
            _, evicted = self._arrays.popitem(last=False)
            self._bytes -= evicted.nbytes

    def discard(self, key: str) -> None:
        """Remove ``key`` if present."""
        array = self._arrays.pop(key, None)
        if array is not None:
            self._bytes -= array.nbytes

    def clear(self) -> None:
        """Remove every entry."""
        self._arrays.clear()
        self._bytes = 0


#: The process-wide memory store shared by the mask and flow front doors.
MEMORY = MemoryStore()


def annotation_key(kind: str, signal: Signal, source: str, options: dict[str, Any]) -> str:
    """A file-name-safe key: ``kind-source-<content hash>-<options digest>``.

    Options are serialised as sorted JSON (non-JSON values such as paths by ``str``), so the
    same options in any order give the same key.
    """
    encoded = json.dumps(options, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return f"{kind}-{source}-{signal.content_hash()}-{digest}"


def check_options(what: str, source: Callable[..., Any], options: dict[str, Any]) -> None:
    """Raise XincError listing the accepted options if ``source`` does not take every one of ``options``.

    ``what`` names the source in the message (e.g. ``"mask source 'slic'"``). Sources that take
    ``**kwargs`` vet their extra options themselves.
    """
    parameters = list(inspect.signature(source).parameters.values())[1:]  # after frames
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise XincError(f"{what} has no option(s) {', '.join(unknown)}; its options are: {', '.join(accepted)}")


def cached_annotation(
    key: str, compute: Callable[[], np.ndarray], cache_dir: Path | str | None = None
) -> np.ndarray:
    """The array for ``key`` from memory, else from ``cache_dir``, else ``compute()`` (then stored).

    Returns the stored array itself; callers hand out copies. An unreadable cache file is
    treated as a miss and overwritten.
    """
    array = MEMORY.get(key)
    if array is not None:
        return array
    path = Path(cache_dir) / f"{key}.npz" if cache_dir is not None else None
    array = _read_npz(path) if path is not None else None
    if array is None:
        array = np.ascontiguousarray(compute())
        if path is not None:
            write_npz_atomic(path, array)
    MEMORY.put(key, array)
    return array


def write_npz_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as the single entry ``annotation`` of a compressed ``.npz`` at ``path``."""
    with atomic_file(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, annotation=array)


def _read_npz(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive["annotation"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
