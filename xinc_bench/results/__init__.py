"""Records of probe runs (and, built from them, leaderboards and reports)."""

from .record import SCHEMA_VERSION, build_record, write_json_atomic

__all__ = ["SCHEMA_VERSION", "build_record", "write_json_atomic"]
