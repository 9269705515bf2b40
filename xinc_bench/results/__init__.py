"""Records of probe runs (and, built from them, leaderboards and reports)."""

from .record import SCHEMA_VERSION, build_record

__all__ = ["SCHEMA_VERSION", "build_record"]
