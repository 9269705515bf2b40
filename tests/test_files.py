"""Atomic writing and the clean-up of what killed processes leave behind."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xinc_bench.files import (
    atomic_file,
    merged_dir,
    remove_orphans,
    replaced_dir,
    scratch_dir,
    temp_sibling,
    write_json_atomic,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"score": 1.0, "absent": math.nan})
    assert json.loads(path.read_text()) == {"score": 1.0, "absent": None}
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text())["score"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_merged_dir_keeps_other_files_and_replaced_dir_swaps_the_whole_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "kept.txt").write_text("kept")
    with merged_dir(run) as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "new.txt").write_text("new")
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*.txt")) == ["kept.txt", "sub/new.txt"]
    with replaced_dir(run) as stage:
        (stage / "only.txt").write_text("only")
    assert [p.name for p in run.iterdir()] == ["only.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left


def test_orphans_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    records = tmp_path / "records"
    records.mkdir()
    orphans = [tmp_path / f".canvas.safetensors.tmp-{dead}-0a1b2c3d", records / f".distribution.json.tmp-{dead}-ff00ff00",
               tmp_path / f".shuffled.tmp-{dead}-x1y2z3"]
    orphans[0].write_bytes(b"half a canvas")
    orphans[1].write_text("{")
    orphans[2].mkdir()
    (orphans[2] / "canvas.safetensors").write_bytes(b"half")
    live = temp_sibling(tmp_path / "model.safetensors")  # this process: still being written
    live.write_bytes(b"in progress")
    (tmp_path / "canvas.safetensors").write_bytes(b"a finished file")
    assert sorted(remove_orphans(tmp_path)) == sorted(orphans)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "canvas.safetensors", "records"])
    assert list(records.iterdir()) == []


def test_scratch_dir_names_carry_the_process_id(tmp_path: Path) -> None:
    with scratch_dir(tmp_path, "sanity") as folder:
        assert folder.name.startswith(f".sanity.tmp-{os.getpid()}-")
        assert remove_orphans(tmp_path) == []  # ours, alive
    assert list(tmp_path.iterdir()) == []


def test_a_file_gets_the_mode_of_a_plain_open_whatever_its_writer_made(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = plain.stat().st_mode & 0o777
    with atomic_file(tmp_path / "tensors.safetensors") as tmp:
        save_file({"x": torch.zeros(2)}, str(tmp))
        os.chmod(tmp, 0o600)  # as safetensors leaves some files
    assert (tmp_path / "tensors.safetensors").stat().st_mode & 0o777 == expected
