"""The paper report's figures: scores with their seed intervals and nulls, per claim, and the canvas pictures.

Summary figures are drawn from the aggregated evidence (one bar per model and method, the 95 %
seed interval as an error bar, the null mean as a tick, the claim's threshold as a line); the
pictures like the paper's (neuron maps, per-pixel neuron counts, change vs flow) come from the
first seed's run folder: its preview and its probes' own figures, copied as small WebP previews.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..files import atomic_file
from ..results.html import save_preview
from ..runs.preview import run_preview
from .claims import VARIANTS, Claim, Part
from .evidence import Evidence

#: dots per inch and WebP quality of the figures (small files for a committed report)
DPI = 80
WEBP_QUALITY = 80
#: longest side of a copied probe figure
PREVIEW_SIDE = 760
#: neuron maps shown per layer
MAPS_PER_LAYER = 6

Measured = tuple[str, str, str]
#: one colour per method in every figure: the default, then each variant in the order of ``VARIANTS``
COLOURS = {name: f"C{index}" for index, name in
           enumerate(["default"] + [variant.alternative for variant in VARIANTS.values()])}


def label(row: Measured) -> str:
    """``architecture · data`` of a measured model."""
    return f"{row[0]} · {row[1]}"


def _save(figure, path: Path) -> Path:  # noqa: ANN001 (a matplotlib Figure)
    """Save as ``<path>.webp`` (a tenth of a PNG's size, for a committed report)."""
    path = path.with_name(f"{path.name}.webp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, path.suffix) as tmp:
        figure.savefig(tmp, dpi=DPI, pil_kwargs={"quality": WEBP_QUALITY})
    return path


def _methods(claim: Claim, part: Part, evidence: Evidence, rows: Sequence[Measured]) -> list[tuple[str, dict]]:
    """(legend label, {tracer, task}) of the default method and each variant of ``claim`` that touches ``part``
    and was measured for some row."""
    methods = [("default", {"tracer": None, "task": part.task})]
    for key in claim.variants:
        variant = VARIANTS[key]
        task = variant.tasks.get(part.task, part.task)
        if variant.tracer is None and task == part.task:
            continue
        if any(evidence.get(a, d, variant.tracer or t, task, part.metric) is not None for a, d, t in rows):
            methods.append((variant.alternative, {"tracer": variant.tracer, "task": task}))
    return methods


def claim_figure(claim: Claim, evidence: Evidence, rows: Sequence[Measured], path: Path) -> Path | None:
    """Per part of the claim (side by side), one horizontal bar per model and method: the seed mean, its
    interval, the null mean (black tick) and the part's threshold (dashed line). None when nothing was measured."""
    from matplotlib.figure import Figure

    rows = [row for row in rows if any(evidence.get(*row, part.task, part.metric) for part in claim.parts)]
    if not rows:
        return None
    methods = {part: _methods(claim, part, evidence, rows) for part in claim.parts}
    bars = max(len(found) for found in methods.values())
    figure = Figure(figsize=(2.4 + 3.6 * len(claim.parts), 0.9 + 0.22 * len(rows) * bars), layout="constrained")
    panels = figure.subplots(1, len(claim.parts), squeeze=False, sharey=True)[0]
    positions = np.arange(len(rows))[::-1].astype(float)
    for panel, part in zip(panels, claim.parts):
        height = 0.8 / len(methods[part])
        for index, (name, method) in enumerate(methods[part]):
            scores = [evidence.get(a, d, method["tracer"] or t, method["task"], part.metric) for a, d, t in rows]
            y = positions + ((len(methods[part]) - 1) / 2 - index) * height
            means = np.array([s.mean if s else math.nan for s in scores])
            lows = np.array([s.bounds[0] if s else math.nan for s in scores])
            highs = np.array([s.bounds[1] if s else math.nan for s in scores])
            panel.barh(y, means, height * 0.9, label=name, hatch=None if index == 0 else "//", alpha=0.85,
                       color=COLOURS[name])
            panel.errorbar(means, y, xerr=[means - lows, highs - means], fmt="none", ecolor="black", capsize=2,
                           linewidth=0.8)
            nulls = np.array([s.null_mean if s else math.nan for s in scores])
            panel.scatter(nulls, y, marker="|", color="black", s=60, linewidths=1.5, zorder=3,
                          label="null mean" if index == 0 else None)
        panel.axvline(part.threshold, color="grey", linestyle="--", linewidth=1)
        panel.set_title(f"{part.metric}\n({part.side} {part.threshold:g} supports the claim)", fontsize=8)
        panel.tick_params(labelsize=7)
    panels[0].set_yticks(positions, [label(row) for row in rows], fontsize=7)
    _legend(figure, panels)
    return _save(figure, path)


def layer_figure(claim: Claim, part: Part, evidence: Evidence, rows: Sequence[Measured], path: Path) -> Path | None:
    """The part's score per layer (one panel per model), default method and each variant, with seed intervals."""
    from matplotlib.figure import Figure

    rows = [row for row in rows if evidence.layers(*row, part.task, part.metric)]
    if not rows:
        return None
    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure = Figure(figsize=(3.0 * columns, 2.4 * lines), layout="constrained")
    panels = figure.subplots(lines, columns, squeeze=False).ravel()
    for panel, row in zip(panels, rows):
        layers = evidence.layers(*row, part.task, part.metric)
        for name, method in _methods(claim, part, evidence, [row]):
            scores = [evidence.get(row[0], row[1], method["tracer"] or row[2], method["task"], part.metric, layer)
                      for layer in layers]
            means = np.array([s.mean if s else math.nan for s in scores])
            lows = np.array([s.bounds[0] if s else math.nan for s in scores])
            highs = np.array([s.bounds[1] if s else math.nan for s in scores])
            panel.errorbar(np.arange(len(layers)), means, yerr=[means - lows, highs - means], marker="o",
                           capsize=2, linewidth=1, markersize=3, label=name, color=COLOURS[name])
        panel.axhline(part.threshold, color="grey", linestyle="--", linewidth=1)
        panel.set_title(label(row), fontsize=8)
        panel.set_xticks(np.arange(len(layers)), layers, rotation=30, fontsize=6)
        panel.tick_params(axis="y", labelsize=6)
    for panel in panels[len(rows):]:
        panel.set_visible(False)
    _legend(figure, panels)
    figure.suptitle(f"{part.task}/{part.metric} per layer", fontsize=9)
    return _save(figure, path)


def _legend(figure, panels) -> None:  # noqa: ANN001 (matplotlib Figure and Axes)
    """One legend below the panels: every labelled line or bar once."""
    entries: dict[str, object] = {}
    for panel in panels:
        for handle, text in zip(*panel.get_legend_handles_labels()):
            entries.setdefault(text.replace("`", ""), handle)
    figure.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(4, len(entries)),
                  fontsize=7, frameon=False)


def neuron_maps(unit: Path, title: str, path: Path) -> Path | None:
    """The frame-0 maps of the neurons with the largest total |C|, :data:`MAPS_PER_LAYER` per layer, from the
    run folder's preview (None without one)."""
    from matplotlib.figure import Figure

    preview = run_preview(unit)
    if not preview:
        return None
    figure = Figure(figsize=(1.4 * MAPS_PER_LAYER, 0.9 * len(preview) + 0.4), layout="constrained")
    panels = figure.subplots(len(preview), MAPS_PER_LAYER, squeeze=False)
    for line, (layer, maps) in zip(panels, preview.items()):
        shares = maps.shares
        for column, panel in enumerate(line):
            panel.set_xticks([])
            panel.set_yticks([])
            if column >= len(maps.indices):
                panel.set_visible(False)
                continue
            panel.imshow(maps.maps[column].abs().numpy(), cmap="magma", interpolation="nearest")
            panel.set_title(f"#{int(maps.indices[column])} {100 * float(shares[column]):.1f}%", fontsize=6)
        line[0].set_ylabel(layer, fontsize=7)
    figure.suptitle(f"{title}: largest neurons per layer (|C|, frame 0; share of the layer's total)", fontsize=8)
    return _save(figure, path)


def probe_figure(unit: Path, task: str, name: str, path: Path) -> Path | None:
    """A small WebP copy of the probe figure ``name`` of the run folder's ``task`` record (None if absent)."""
    source = unit / "records" / f"{task}_figures" / name
    if not source.is_file():
        return None
    return save_preview(source, path, max_side=PREVIEW_SIDE)
