"""Atomic writing: the one way xinc-bench puts a file or a folder on disk.

Everything is written into a temporary sibling and renamed into place, so a reader (or a rerun
after ``kill -9``) only ever sees the complete old or the complete new contents. Every temporary
name has the form ``.<name>.tmp-<pid>-<token>`` (:data:`TEMP_MARK`), which is how
:func:`remove_orphans` recognises what a killed process left behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

#: the marker in the name of every temporary file or folder xinc-bench writes
TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"^\..*\.tmp-(\d+)-[0-9a-f]+(\.[A-Za-z0-9]+)?$")
#: the process's umask, read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.tmp-<pid>-<token><suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


@contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    ``suffix`` is appended to the temporary name, for writers that infer a format from it
    (``".png"`` for matplotlib, say). The file gets the mode a plain ``open`` would give it
    (``0o666`` less the umask), whatever mode its writer created it with (safetensors: ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write ``payload`` as strict JSON (NaN and inf become ``null``) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@contextmanager
def scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    """A temporary folder ``parent/.<name>.tmp-...`` for intermediate files, removed afterwards."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{name}{TEMP_MARK}{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def merged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder whose files, on success, move into ``target`` one by one.

    Files already in ``target`` that are not rewritten are kept (a run folder gains its canvas
    and records over several steps); each file arrives whole. On failure nothing moves.
    """
    target = Path(target)
    with scratch_dir(target.parent, target.name) as stage:
        yield stage
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(stage.rglob("*")):
            if item.is_file():
                destination = target / item.relative_to(stage)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, destination)


@contextmanager
def replaced_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder that, on success, replaces ``target`` as a whole.

    The old folder is renamed aside before the new one moves in, so ``target`` is at every moment
    either the complete old or the complete new contents; on failure ``target`` is untouched.
    """
    target = Path(target)
    with scratch_dir(target.parent, target.name) as stage:
        yield stage
        retired = temp_sibling(target)
        if target.exists():
            os.replace(target, retired)
        os.replace(stage, target)
        shutil.rmtree(retired, ignore_errors=True)


def remove_orphans(folder: Path) -> list[Path]:
    """Remove the temporary files and folders below ``folder`` that dead processes left behind.

    A temporary entry (named by :func:`temp_sibling` or :func:`scratch_dir`) is an orphan when
    the process whose id it carries is no longer running on this machine. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    # os.walk, not rglob: other live processes create and remove their temporary folders meanwhile,
    # and a folder that vanishes during the walk is skipped instead of failing it
    for root, folders, files in os.walk(folder, onerror=lambda error: None):
        found += [Path(root) / name for name in (*folders, *files) if TEMP_MARK in name]
    removed = []
    for entry in sorted(found, key=lambda p: len(p.parts)):
        match = _TEMP_NAME.match(entry.name) or re.match(rf"^\..*{re.escape(TEMP_MARK)}(\d+)-", entry.name)
        if match is None or not entry.exists() or process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
