"""Weights & Biases logging (SPEC 6): training curves, fidelity, probe scores, canvas images.

Off by default. ``mode`` is ``"disabled"``, ``"offline"`` (written under ``save_dir/wandb/``,
upload later with ``wandb sync``; never touches the network) or ``"online"``.

Typical use, one W&B run per run directory::

    logger = make_logger("offline", run_name="ffn-paper-astronaut", save_dir=out)
    ...train with ``fit(..., logger=logger)`` and write canvases and records into ``out``...
    log_run(out, "offline", logger=logger)   # same W&B run: adds scores, images, summary; finishes it
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XincError

MODES = ("disabled", "offline", "online")

#: neurons shown per layer in a canvas thumbnail (the layer's largest by contribution mass)
THUMBNAIL_NEURONS = 8


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`; else raise :class:`XincError`."""
    if mode not in MODES:
        raise XincError(f"unknown W&B mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def make_logger(
    mode: str,
    project: str = "xinc-bench",
    run_name: str | None = None,
    save_dir: Path | str = ".",
    *,
    group: str | None = None,
    config: dict[str, Any] | None = None,
) -> Any:
    """A Lightning ``WandbLogger`` for training curves, or ``False`` when ``mode`` is ``"disabled"``.

    Pass the result as ``logger=`` to :func:`xinc_bench.training.fit` (Lightning's ``Trainer``);
    the training step logs ``loss`` and ``psnr`` every ``log_every_n_steps`` steps.
    """
    if check_mode(mode) == "disabled":
        return False
    from lightning.pytorch.loggers import WandbLogger

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=run_name, save_dir=str(save_dir), offline=mode == "offline",
                       group=group, config=config, log_model=False, reinit="finish_previous")


def log_run(
    run_dir: Path | str,
    mode: str,
    *,
    project: str = "xinc-bench",
    name: str | None = None,
    group: str | None = None,
    save_dir: Path | str | None = None,
    logger: Any = None,
) -> Path | None:
    """Log a run directory (checkpoint config, records, images) to W&B and finish the W&B run.

    Logged: the checkpoint's ``model.json`` as the run config; as the run summary, fidelity
    (``fidelity/psnr``, ``fidelity/ssim``), ``num_parameters``, ``bits_per_pixel``, every numeric
    score as ``<task>/<metric>``, control scores as ``<task>/<control>/<metric>`` and each whole
    record under ``records/<task>``; as images, the reconstruction (``recon``), one thumbnail per
    canvas layer (``canvas/<layer>``: its :data:`THUMBNAIL_NEURONS` largest neurons on frame 0) and
    every probe figure (``figures/<task>/<name>``).

    Args:
        run_dir: a run directory (``model.json``, ``preview.safetensors`` or a canvas file, ``records/*.json``).
        mode: ``"disabled"`` (does nothing, returns ``None``), ``"offline"`` or ``"online"``.
        name, group, project: W&B run name (default: the run directory's name), group and project.
        save_dir: W&B writes under ``save_dir/wandb/`` (default: ``run_dir``).
        logger: the ``WandbLogger`` from :func:`make_logger` that logged the training curves; its
            W&B run receives everything, so one run holds curves and scores.

    Returns:
        the local folder of the W&B run (``.../wandb/<offline-run-...>``), or ``None`` if disabled.

    A run directory without records yet (after ``xinc-bench fit``) logs its config, fidelity and
    reconstruction.

    Raises:
        XincError: ``run_dir`` has no ``model.json``.
    """
    if check_mode(mode) == "disabled":
        return None
    import wandb

    run_dir = Path(run_dir)
    config, records = _read_run(run_dir)
    if logger is not None:
        run = logger.experiment
        run.config.update(config, allow_val_change=True)
    else:
        save_dir = Path(save_dir) if save_dir is not None else run_dir
        save_dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=project, name=name or run_dir.name, group=group, dir=str(save_dir), mode=mode,
                         config=config, reinit="finish_previous")
    run.log(_images(run_dir, records, wandb.Image))
    run.summary.update(summary_values(config, records))
    folder = Path(run.dir).parent
    run.finish()
    return folder


def summary_values(config: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The W&B run summary of a run: fidelity, size, ``<task>/<metric>`` scores, controls and records."""
    fidelity = next(iter(records.values())).get("fidelity") if records else config.get("fidelity", {})
    summary: dict[str, Any] = {f"fidelity/{key}": value for key, value in (fidelity or {}).items()}
    summary["num_parameters"] = config.get("num_parameters")
    summary["bits_per_pixel"] = config.get("bits_per_pixel")
    for task, record in records.items():
        summary.update({f"{task}/{metric}": value for metric, value in record["scores"].items() if _is_number(value)})
        for control, scores in record.get("controls", {}).items():
            summary.update({f"{task}/{control}/{metric}": value
                            for metric, value in scores.items() if _is_number(value)})
        summary[f"records/{task}"] = record
    return summary


def canvas_thumbnail(layer: np.ndarray, neurons: int = THUMBNAIL_NEURONS) -> np.ndarray:
    """A uint8 RGB tile ``[2h, (k/2)w, 3]`` of a layer's ``k`` largest neurons on one frame.

    Args:
        layer: ``[N, H, W]`` contributions of one layer on one frame.
        neurons: how many neurons to show (the largest by total ``|C|``), each scaled to its own max.
    """
    from matplotlib import colormaps

    magnitude = np.abs(layer)
    count = min(neurons, magnitude.shape[0])
    top = np.argsort(-magnitude.sum(axis=(1, 2)), kind="stable")[:count]
    maps = magnitude[top] / np.maximum(magnitude[top].max(axis=(1, 2), keepdims=True), 1e-12)
    rows = 2 if count > 1 else 1
    columns = -(-count // rows)
    padded = np.zeros((rows * columns, *maps.shape[1:]), dtype=maps.dtype)
    padded[:count] = maps
    tiled = padded.reshape(rows, columns, *maps.shape[1:]).transpose(0, 2, 1, 3).reshape(rows * maps.shape[1], -1)
    return (colormaps["magma"](tiled)[..., :3] * 255 + 0.5).astype(np.uint8)


def _images(run_dir: Path, records: dict[str, dict[str, Any]], image: Any) -> dict[str, Any]:
    """Key -> ``wandb.Image``: the reconstruction, canvas thumbnails and the probe figures saved
    beside the records (``records/<task>_figures/*.png``)."""
    from ..runs.preview import run_preview

    images: dict[str, Any] = {}
    if (run_dir / "recon.png").is_file():
        images["recon"] = image(str(run_dir / "recon.png"), caption="reconstruction")
    for layer, preview in (run_preview(run_dir) or {}).items():
        thumbnail = canvas_thumbnail(preview.maps.numpy())
        caption = f"{layer}: largest {THUMBNAIL_NEURONS} neurons, frame 0"
        images[f"canvas/{layer}"] = image(thumbnail, caption=caption)
    for task in records:
        for figure in sorted((run_dir / "records" / f"{task}_figures").glob("*.png")):
            images[f"figures/{task}/{figure.stem}"] = image(str(figure), caption=f"{task}: {figure.stem}")
    return images


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(model.json, {task: record})`` of a run directory."""
    config_path = run_dir / "model.json"
    if not config_path.is_file():
        raise XincError(f"{run_dir} is not a run directory (no model.json); give a RUN_DIR written by `xinc-bench run`")
    record_paths = sorted((run_dir / "records").glob("*.json"))
    try:
        config = json.loads(config_path.read_text())
        records = {path.stem: json.loads(path.read_text()) for path in record_paths}
    except json.JSONDecodeError as exc:
        raise XincError(f"a JSON file in {run_dir} is corrupt ({exc}); rerun that step") from exc
    return config, records


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
