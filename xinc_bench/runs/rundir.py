"""``RunDir``: the one place that knows the layout of a run folder.

::

    RUN/
      model.safetensors, model.json     trained model (checkpoints/)
      recon.png                         its reconstruction
      init/model.safetensors, ...       the random-init twin (a control)
      signal.safetensors                the annotated signal: frames, masks, flow, reconstruction and the
                                        canvas's metadata, without layers (the canvases are traced from it)
      preview.safetensors               per layer, every neuron's total |C| and its largest neurons'
                                        frame-0 maps (runs/preview.py), for the report and thumbnails
      canvas.safetensors                the model's canvas (only with --save-canvas)
      init/canvas.safetensors           the twin's canvas (only with --save-canvas)
      records/<task>.json               one record per task (runs/record.py)
      records/<task>_figures/           its figures
      records/sanity.json               the sanity check (model randomisation)
      records/skipped.json              tasks that could not run on this unit, with the reason
      report.html, report_assets/       the run report
      .lock                             held while a process writes the folder

Every file arrives whole (:mod:`xinc_bench.files`); a stage is done when its output exists.
Opening a run folder for writing takes its lock (a second writer is refused with the holder's
process id) and removes what killed runs left behind.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..checkpoints.native import CHECKPOINT_FORMAT
from ..errors import XincError
from ..files import process_alive, remove_orphans, write_json_atomic

INIT_DIR = "init"
CANVAS_NAME = "canvas.safetensors"
SIGNAL_NAME = "signal.safetensors"
PREVIEW_NAME = "preview.safetensors"
RECORDS_DIR = "records"
MODEL_NAME = "model.safetensors"
CONFIG_NAME = "model.json"
RECON_NAME = "recon.png"
SANITY_NAME = "sanity.json"
SKIPPED_NAME = "skipped.json"
LOCK_NAME = ".lock"
#: the files a finished fit leaves in a run folder
FIT_OUTPUTS = (MODEL_NAME, CONFIG_NAME, f"{INIT_DIR}/{MODEL_NAME}", f"{INIT_DIR}/{CONFIG_NAME}", RECON_NAME)


class RunDir:
    """A run folder: the paths of its parts, its lock and its clean-up."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise XincError(f"{self.path} is a file, not a run folder; give --out a folder path")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def init(self) -> Path:
        """Folder of the random-init twin."""
        return self.path / INIT_DIR

    @property
    def config(self) -> Path:
        """The trained model's ``model.json``."""
        return self.path / CONFIG_NAME

    @property
    def canvas(self) -> Path:
        """The trained model's canvas file."""
        return self.path / CANVAS_NAME

    @property
    def init_canvas(self) -> Path:
        """The random-init twin's canvas file."""
        return self.init / CANVAS_NAME

    @property
    def signal(self) -> Path:
        """The annotated signal (a canvas file without layers)."""
        return self.path / SIGNAL_NAME

    @property
    def preview(self) -> Path:
        """The canvas preview (:mod:`xinc_bench.runs.preview`)."""
        return self.path / PREVIEW_NAME

    def signal_file(self) -> Path:
        """The file of the run's signal and its canvas's metadata: ``signal.safetensors``, or the canvas
        file of a run folder whose canvas was computed with ``xinc-bench canvas``.

        Raises:
            XincError: neither is there.
        """
        for path in (self.signal, self.canvas):
            if path.is_file():
                return path
        raise XincError(f"{self.path} has neither {SIGNAL_NAME} nor {CANVAS_NAME}; finish its run with "
                        f"`xinc-bench run ... --out {self.path}`, or compute its canvas with "
                        f"`xinc-bench canvas --checkpoint {self.path} --out {self.canvas}`")

    @property
    def saved_canvases(self) -> bool:
        """Whether both canvas files (the model's and the twin's) are there."""
        return self.canvas.is_file() and self.init_canvas.is_file()

    @property
    def records(self) -> Path:
        """Folder of the records."""
        return self.path / RECORDS_DIR

    def record(self, task: str) -> Path:
        """Record file of a task (a name, or a task YAML path whose stem names it)."""
        stem = Path(task).stem if Path(task).suffix in (".yaml", ".yml") else task
        return self.records / f"{stem}.json"

    @property
    def sanity(self) -> Path:
        """The sanity record."""
        return self.records / SANITY_NAME

    @property
    def skipped(self) -> Path:
        """Tasks skipped on this unit, with their reasons."""
        return self.records / SKIPPED_NAME

    @property
    def fitted(self) -> bool:
        """Whether the fit stage is complete (the model, its twin and the reconstruction are there)."""
        return all((self.path / name).is_file() for name in FIT_OUTPUTS)

    def read_config(self) -> dict[str, Any]:
        """The trained model's ``model.json``.

        Raises:
            XincError: unreadable, or written in another checkpoint format (an older xinc-bench).
        """
        try:
            config = json.loads(self.config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise XincError(f"cannot read {self.config} ({exc}); delete {self.path} and run again") from exc
        if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
            found = config.get("format") if isinstance(config, dict) else None
            raise XincError(f"{self.config} has format {found!r}, but this xinc-bench reads {CHECKPOINT_FORMAT!r}; "
                            "fit the model again with this version (or use the version that wrote it)")
        return config

    def read_skipped(self) -> dict[str, str]:
        """Task -> reason of the tasks recorded as skipped."""
        if not self.skipped.is_file():
            return {}
        return dict(json.loads(self.skipped.read_text()).get("tasks", {}))

    def write_skipped(self, skipped: dict[str, str]) -> None:
        """Record the tasks that could not run on this unit (an empty mapping removes the file)."""
        if skipped:
            write_json_atomic(self.skipped, {"kind": "skipped", "tasks": dict(sorted(skipped.items()))})
        else:
            self.skipped.unlink(missing_ok=True)

    @contextmanager
    def open(self) -> Iterator["RunDir"]:
        """Hold the folder's lock while writing; first remove what killed runs left behind.

        A folder this call created is removed again when nothing was written into it (bad input).

        Raises:
            XincError: another live process holds the lock.
        """
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_NAME
        try:
            self._acquire(lock)
        except XincError:
            if created:
                self.path.rmdir()
            raise
        try:
            remove_orphans(self.path)
            yield self
        finally:
            lock.unlink(missing_ok=True)
            if created and not any(self.path.iterdir()):  # refused before writing anything: leave no trace
                self.path.rmdir()

    def _acquire(self, lock: Path) -> None:
        for _ in range(2):
            try:
                descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _lock_holder(lock)
                if holder is None and _age(lock) < 5.0:  # just created, its pid not yet written
                    holder = -1
                if holder is not None and (holder == -1 or process_alive(holder)):
                    who = "another process" if holder == -1 else f"process {holder}"
                    raise XincError(f"{self.path} is in use by {who} (lock file {lock}); wait for it to finish, "
                                    "or give another --out") from None
                lock.unlink(missing_ok=True)  # a killed run's lock: take it over
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(str(os.getpid()))
            return
        raise XincError(f"cannot take the lock {lock}; another process keeps taking it, give another --out")


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None
