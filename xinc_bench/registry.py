"""One registry mechanism for everything that is looked up by name.

INRs, data sources, tracers, probes, mask and flow sources all live in a :class:`Registry`.
An entry is registered with a decorator and looked up by name; an unknown name raises a
:class:`~xinc_bench.errors.XincError` that lists the known names and the closest matches.
A registry may also read an entry-point group so that installed packages add entries
without editing this library (lm-evaluation-harness style).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import XincError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and free-form metadata."""

    name: str
    obj: T
    metadata: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name -> object table with a decorator to fill it.

    Args:
        kind: what the entries are, used in messages ("INR", "probe", ...).
        entry_point_group: optional ``importlib.metadata`` group read on first look-up;
            each entry point's name is the registry name and it loads to the object.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, **metadata: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` with ``metadata``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, **metadata)
            return obj

        return decorator

    def add(self, name: str, obj: T, **metadata: Any) -> None:
        """Register ``obj`` under ``name``; re-registering the same object is a no-op."""
        existing = self._entries.get(name)
        if existing is not None and existing.obj is not obj:
            raise XincError(
                f"{self.kind} name {name!r} is already registered (by {_describe(existing.obj)}); "
                "choose another name"
            )
        self._entries[name] = Entry(name, obj, dict(metadata))

    def entry(self, name: str) -> Entry[T]:
        """Look up an entry; unknown names raise an error listing the known ones."""
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise XincError(self._unknown_message(name)) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style pattern."""
        self._load_entry_points()
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load_entry_points()
        return iter([self._entries[n] for n in sorted(self._entries)])

    def _unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {listing}"

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not hide the others
                raise XincError(
                    f"entry point {ep.name!r} ({ep.value}) in group {self.entry_point_group!r} "
                    f"failed to load: {exc}; fix or uninstall the package that provides it"
                ) from exc
            self.add(ep.name, obj, source=f"entry point {ep.value}")


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{module}.{qualname}"


INRS: Registry[Any] = Registry("INR", entry_point_group="xinc_bench.inrs")
DATA_SOURCES: Registry[Any] = Registry("data source")
TRACERS: Registry[Any] = Registry("tracer")
PROBES: Registry[Any] = Registry("probe")
MASK_SOURCES: Registry[Any] = Registry("mask source")
FLOW_SOURCES: Registry[Any] = Registry("flow source")
#: null models (name -> description), see :mod:`xinc_bench.probes.nulls`
NULL_MODELS: Registry[str] = Registry("null model")
#: how the units of a suite are run (local, processes, ray), see :mod:`xinc_bench.runs.executors`
EXECUTORS: Registry[Any] = Registry("executor")
