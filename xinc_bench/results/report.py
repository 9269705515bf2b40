"""The static report of one run directory (SPEC 6): ``RUN_DIR/report.html`` + ``RUN_DIR/report_assets/``.

The page shows the run's model, fidelity and tracer checks; frame 0 of the target beside the
reconstruction; per canvas layer a grid of the neurons with the largest total |C| (their frame-0
maps); and per probe record its headline scores with the control scores and chance value beside
each, all scores, and the probe's figures. Every picture is copied or rendered into
``report_assets/`` and linked relatively, so the run folder can be moved or served as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..canvas import Canvas, read_canvas
from ..errors import XincError
from ..probes.base import Task
from .html import (
    copy_file,
    escape,
    format_number,
    image,
    page,
    save_map_png,
    save_rgb_png,
    slug,
)
from ..files import replaced_dir, write_text_atomic
from ..runs.record import RecordFile, read_records
from ..runs.preview import PREVIEW_NEURONS, LayerPreview, run_preview
from ..runs.rundir import PREVIEW_NAME, RECORDS_DIR, RunDir
from .leaderboard import ARROWS, record_figures

REPORT_NAME = "report.html"
ASSETS_DIR = "report_assets"
FRAME_WIDTH = 384
NEURON_WIDTH = 160
FIGURE_WIDTH = 480


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/report_assets/``) and return its path.

    ``run_dir`` is a run directory as ``xinc-bench run`` writes it: ``signal.safetensors`` (the signal
    and the canvas's metadata), ``preview.safetensors`` (the neuron maps) and optionally
    ``records/<task>.json`` with their figures; or a folder with a canvas file (``canvas.safetensors``),
    from which the neuron maps are computed (one pass over it).

    Raises:
        XincError: ``run_dir`` is not a directory, has neither a signal nor a canvas file, or holds an
            unreadable record or preview.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XincError(f"run directory {run_dir} does not exist; make one with `xinc-bench run --out {run_dir}`")
    run = RunDir(run_dir)
    signal = read_canvas(run.signal_file())
    preview = run_preview(run_dir)
    if preview is None:
        raise XincError(f"{run_dir} has no {PREVIEW_NAME} (nor a canvas file); finish its run with "
                        f"`xinc-bench run ... --out {run_dir}`")
    records_dir = run_dir / RECORDS_DIR
    records = sorted(read_records(records_dir), key=lambda r: (r.task, str(r.path))) if records_dir.is_dir() else []
    with replaced_dir(run_dir / ASSETS_DIR) as stage:
        frames_html = _frames_section(signal, stage)
        neurons_html = _neurons_section(preview, stage)
        probes_html = _probes_section(records, stage)
    title = f"xinc-bench run report: {signal.metadata.get('model', 'model')} on {_data_label(signal.metadata)}"
    body = f"<h1>{escape(title)}</h1>\n{_summary(signal, list(preview))}\n{frames_html}\n{neurons_html}\n{probes_html}"
    return write_text_atomic(run_dir / REPORT_NAME, page(title, body))


def _link(path: Path, stage: Path) -> str:
    """The page-relative link of a file rendered into the staging copy of ``report_assets/``."""
    return f"{ASSETS_DIR}/{path.relative_to(stage).as_posix()}"


def _data_label(metadata: dict[str, Any]) -> str:
    data = metadata.get("data") or {}
    name = data.get("name") or data.get("data") or data.get("source") or "signal"
    return f"{name} {data.get('height', '?')}x{data.get('width', '?')}"


def _summary(canvas: Canvas, layers: list[str]) -> str:
    """A table of the run's model, data, training, fidelity and tracer checks (``canvas``: the run's
    signal file, whose metadata is its canvas's; ``layers``: the canvas's layers)."""
    meta = canvas.metadata
    training = meta.get("training") or {}
    fidelity = meta.get("fidelity") or {}
    t, h, w = canvas.shape
    rows = [
        ("model", meta.get("model")),
        ("family", meta.get("family")),
        ("model overrides", json.dumps(meta.get("model_config") or {}, sort_keys=True)),
        ("parameters", meta.get("num_parameters")),
        ("bits per pixel", meta.get("bits_per_pixel")),
        ("data", _data_label(meta)),
        ("signal shape (T, H, W)", f"{t}, {h}, {w}"),
        ("seed", meta.get("seed")),
        ("training steps", training.get("steps")),
        ("learning rate", training.get("lr")),
        ("PSNR (dB)", fidelity.get("psnr")),
        ("SSIM", fidelity.get("ssim")),
        ("tracer", meta.get("tracer")),
        ("canvas layers", ", ".join(layers)),
    ]
    rows += [(f"check: {name}", value) for name, value in sorted((meta.get("checks") or {}).items())]
    cells = "".join(
        f'<tr><th class="text" scope="row">{escape(k)}</th><td class="text">{escape(format_number(v))}</td></tr>'
        for k, v in rows if v not in (None, "{}")
    )
    return f'<h2>Run</h2>\n<table class="summary">{cells}</table>'


def _frames_section(canvas: Canvas, stage: Path) -> str:
    """Frame 0 of the target signal beside the model's reconstruction."""
    shown = [image(_link(save_rgb_png(canvas.frames[0], stage / "target.png"), stage), "target, frame 0",
                   caption="target, frame 0", width=FRAME_WIDTH, pixelated=True)]
    if canvas.recon is not None:
        shown.append(image(_link(save_rgb_png(canvas.recon[0], stage / "recon.png"), stage), "reconstruction, frame 0",
                           caption="reconstruction, frame 0", width=FRAME_WIDTH, pixelated=True))
    return f'<h2>Signal and reconstruction</h2>\n<div class="pictures">{"".join(shown)}</div>'


def _neurons_section(preview: dict[str, LayerPreview], stage: Path) -> str:
    """Per layer: the frame-0 maps of the ``PREVIEW_NEURONS`` neurons with the largest total |C|."""
    parts = [
        "<h2>Neuron maps</h2>",
        f'<p class="note">Per layer the {PREVIEW_NEURONS} neurons with the largest total |C| over the whole '
        "signal, largest first; each map is |C| of frame 0 scaled to its own maximum; the percentage is the "
        "neuron's share of the layer's total |C|.</p>",
    ]
    for name, layer in preview.items():
        zero = int((layer.mass == 0).sum())
        cells = []
        for neuron, share, neuron_map in zip(layer.indices.tolist(), layer.shares.tolist(), layer.maps):
            path = save_map_png(neuron_map, stage / "neurons" / slug(name) / f"n{neuron}.png")
            caption = f"n{neuron}: {100 * share:.1f}%"
            cells.append(image(_link(path, stage), f"{name} {caption}", caption=caption, width=NEURON_WIDTH,
                               pixelated=True))
        parts.append(f"<h3>{escape(name)}: {layer.mass.shape[0]} neurons, {zero} all-zero maps</h3>")
        parts.append(f'<div class="grid">{"".join(cells)}</div>')
    return "\n".join(parts)


def _probes_section(records: list[RecordFile], stage: Path) -> str:
    """Per record: scores with their nulls, controls and chance, all scores, and the probe's figures."""
    if not records:
        return '<h2>Probes</h2>\n<p class="note">No probe records in this run; add some with `xinc-bench probe`.</p>'
    parts = ["<h2>Probes</h2>"]
    for item in records:
        task = _current_task(item.task)
        parts.append(_record_header(item, task))
        parts.append(_scores_table(item, task))
        parts.append(_all_scores(item, task))
        figures = [copy_file(p, stage / "probes" / slug(item.task) / p.name) for p in record_figures(item)]
        shown = "".join(image(_link(p, stage), f"{item.task}: {p.stem}", caption=f"{item.task}: {p.stem}",
                              width=FIGURE_WIDTH) for p in figures)
        parts.append(f'<div class="pictures">{shown}</div>')
    return "\n".join(parts)


def _current_task(name: str) -> Task | None:
    """The task as ``tasks/<name>.yaml`` defines it now, or None when it cannot be loaded."""
    from ..probes import load_task

    try:
        return load_task(name)
    except XincError:
        return None


def _record_header(item: RecordFile, task: Task | None) -> str:
    header = f'<h3 id="probe-{slug(item.task)}">{escape(item.task)} (task version {item.version})</h3>'
    if task is None:
        return header + '\n<p class="note">This task cannot be loaded now: no directions or chance values.</p>'
    note = f'\n<p class="note">{escape(task.description)}</p>' if task.description else ""
    if task.version != item.version:
        note += (f'\n<p class="note"><strong>Stale:</strong> recorded with version {item.version}, the current task is '
                 f"version {task.version}; re-run the probe for comparable numbers.</p>")
    return header + note


def _scores_table(item: RecordFile, task: Task | None) -> str:
    """Metric | direction | score | null mean | null sd | effect size | p | one column per control | chance."""
    scores = item.record.get("scores", {})
    metrics = list(task.metrics) if task is not None else sorted(m for m in scores if "/" not in m)
    return _evidence_table(item, metrics, task)


def _evidence_table(item: RecordFile, names: list[str], task: Task | None) -> str:
    """One row per score name: its value, its null summary, the controls' values and the chance value."""
    scores = item.record.get("scores", {})
    nulls = item.record.get("nulls", {})
    absent = item.record.get("absent", {})
    controls = item.record.get("controls", {})
    control_names = sorted(controls)
    columns = ["score", "direction", "value", "null mean", "null sd", "effect size", "p", *control_names, "chance"]
    header = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = []
    for name in names:
        spec = task.metrics.get(name.rsplit("/", 1)[-1]) if task is not None else None
        direction = ARROWS.get(spec.higher_is_better, "") if spec is not None else ""
        null = nulls.get(name) or {}
        values = [scores.get(name), null.get("mean"), null.get("sd"), null.get("effect_size"), null.get("p_value"),
                  *(controls[c].get(name) for c in control_names), spec.chance if spec else None]
        tip = absent.get(name) or null.get("reason") or (spec.description if spec is not None else "")
        title = f' title="{escape(tip)}"' if tip else ""
        rows.append(
            f'<tr><td class="text"{title}>{escape(name)}</td><td class="text">{direction}</td>'
            + "".join(f"<td>{escape(format_number(v))}</td>" for v in values) + "</tr>"
        )
    return f'<table class="scores"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _all_scores(item: RecordFile, task: Task | None) -> str:
    """Every score of the record (per-layer ones included) with its null and controls, folded away."""
    names = sorted(item.record.get("scores", {}))
    return f"<details><summary>all {len(names)} scores</summary>{_evidence_table(item, names, task)}</details>"
