"""The paper report: ``OUT/report.md`` and ``OUT/report.html`` (one document, two renderings), their figures
in ``OUT/report_assets/``, the aggregated numbers in ``OUT/evidence.csv`` and a summary in ``OUT/paper.json``.

The document is built once as a list of blocks (headings, paragraphs, tables, figures) and rendered
to Markdown and to a self-contained HTML page; both link the same relative figure files, so the
folder can be moved, committed or served as it is.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

from .. import __version__
from ..files import replaced_dir, write_json_atomic, write_text_atomic
from ..results.html import escape, page, short_number, slug
from ..runs.record import git_commit
from .build import MARKER, RELEASE_LABEL, RUNS_DIR
from .claims import CLAIMS, MIN_EFFECT, VARIANTS, VERDICTS, Claim, ClaimVerdict, judge
from .evidence import Aggregate, Evidence, aggregate, evidence_table
from .figures import claim_figure, label, layer_figure, neuron_maps, probe_figure

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
ASSETS_DIR = "report_assets"
EVIDENCE_CSV = "evidence.csv"
TITLE = "The XINC paper's findings, re-measured"
#: the paper's data for its released FFN (its records name the reconstruction they were traced on)
RELEASE_DATA = "Cityscapes-VPS 0005 frame"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Picture:
    path: str
    caption: str


@dataclass
class Document:
    blocks: list[Union[Heading, Paragraph, Table, Picture]] = field(default_factory=list)

    def add(self, *blocks: Union[Heading, Paragraph, Table, Picture, None]) -> None:
        self.blocks.extend(block for block in blocks if block is not None)


def write_paper_report(out: Path, *, mode: str, seconds: float | None = None, failed: dict[str, str] | None = None,
                       release_psnr: float | None = None) -> Path:
    """Build the report of the paper folder ``out`` from the records below ``out/runs/``; returns the HTML's path.

    ``seconds``: the wall time of the run, stated in the report; ``failed``: unit id -> error of the units
    missing from it; ``release_psnr``: the released FFN's PSNR on its own (unshipped) training frame, as
    its release notes give it."""
    out = Path(out)
    runs = out / RUNS_DIR
    folders = {folder: (RELEASE_LABEL if folder.name.startswith("release-ffn") else None)
               for folder in sorted(runs.iterdir()) if folder.is_dir()} if runs.is_dir() else {}
    table = evidence_table(folders)
    table.loc[table["architecture"] == RELEASE_LABEL, "data"] = RELEASE_DATA
    evidence = Evidence(aggregate(table))
    rows = _ordered(evidence.measured(), evidence)
    verdicts = {row: {claim.key: judge(claim, evidence, *row) for claim in _claims_for(row, evidence)} for row in rows}
    with replaced_dir(out / ASSETS_DIR) as assets:
        document = _document(evidence, rows, verdicts, assets, mode, seconds, failed or {}, release_psnr)
    write_text_atomic(out / REPORT_MD, render_markdown(document))
    write_text_atomic(out / REPORT_HTML, render_html(document))
    evidence.table.drop(columns=["first_unit"]).to_csv(out / EVIDENCE_CSV, index=False, float_format="%.6g")
    write_json_atomic(out / MARKER, {
        "mode": mode, "state": "complete", "seconds": seconds, "failed_units": failed or {},
        "verdicts": {label(row): {key: verdict.verdict for key, verdict in claims.items()}
                     for row, claims in verdicts.items()},
    })
    return out / REPORT_HTML


def _ordered(rows: list[tuple[str, str, str]], evidence: Evidence) -> list[tuple[str, str, str]]:
    """The release first, then the paper's FFN, the other image models and the video models (each by name)."""
    video_claims = [claim for claim in CLAIMS if claim.video_only]
    return sorted(rows, key=lambda row: (row[0] != RELEASE_LABEL, row[0] != "ffn-paper",
                                         any(_measures(claim, row, evidence) for claim in video_claims), row))


def _claims_for(row: tuple[str, str, str], evidence: Evidence) -> list[Claim]:
    """The claims that apply to a measured model (the motion claim only where motion was measured)."""
    return [claim for claim in CLAIMS if not claim.video_only or _measures(claim, row, evidence)]


def _measures(claim: Claim, row: tuple[str, str, str], evidence: Evidence) -> bool:
    """Whether the model has the claim's first score (a video claim's scores exist only on videos)."""
    return evidence.get(*row, claim.parts[0].task, claim.parts[0].metric) is not None


def _document(evidence: Evidence, rows: list, verdicts: dict, assets: Path, mode: str, seconds: float | None,
              failed: dict[str, str], release_psnr: float | None) -> Document:
    doc = Document()
    commit = git_commit()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    cost = "" if seconds is None else f" Wall time of the run: {_duration(seconds)} on this machine."
    doc.add(Heading(1, TITLE), Paragraph(
        "Each claim of \"Explaining the Implicit Neural Canvas\" (XINC, CVPR 2024), tested on the paper's released "
        "FFN and on models trained here, with every score beside its null, its interval over seeds and the "
        "sanity check, and the reference code's method choices (SPEC 8) side by side with the corrected ones. "
        f"xinc-bench {__version__}{f' ({commit[:10]})' if commit else ''}, `--{mode}` mode, {when}.{cost} "
        f"Rebuild: `xinc-bench paper --{mode} --out DIR`."))
    if failed:
        doc.add(Paragraph(f"**Incomplete**: {len(failed)} units failed and are missing from the evidence: "
                          + "; ".join(f"{unit}: {error}" for unit, error in failed.items())))
    doc.add(Heading(2, "Verdicts"), _summary_table(evidence, rows, verdicts, release_psnr), Paragraph(_rule_text()))
    for claim in CLAIMS:
        judged = [(row, verdicts[row][claim.key]) for row in rows if claim.key in verdicts[row]]
        _claim_section(doc, claim, judged, evidence, assets)
    doc.add(Heading(2, "Canvases"), Paragraph(
        "The neurons with the largest total |C| of each layer on frame 0 (first seed), and the per-pixel "
        "count of neurons above the 90 %-mass threshold (distribution probe)."))
    for row in rows:
        unit = evidence.unit(*row)
        if unit is None:
            continue
        name = slug(label(row))
        maps = neuron_maps(unit, label(row), assets / f"maps_{name}")
        counts = probe_figure(unit, "distribution", "neurons_per_pixel.png", assets / f"counts_{name}")
        doc.add(Heading(3, label(row)),
                _picture(maps, assets, f"{label(row)}: neuron maps"),
                _picture(counts, assets, f"{label(row)}: neurons per pixel (a = 0.1)"))
    return doc


def _summary_table(evidence: Evidence, rows: list, verdicts: dict, release_psnr: float | None) -> Table:
    header = ["model · data", "PSNR (dB)"] + [f"{claim.number}. {claim.title}" for claim in CLAIMS]
    body = []
    for row in rows:
        psnr = evidence.psnr(*row)
        if row[0] == RELEASE_LABEL:  # traced on its own reconstruction: the frame it fits is not shipped
            psnr_text = "-" if release_psnr is None else f"{_number(release_psnr)} (release notes)"
        else:
            psnr_text = _number(psnr, 3)
        cells = [label(row), psnr_text]
        for claim in CLAIMS:
            verdict = verdicts[row].get(claim.key)
            cells.append("n/a (no motion)" if verdict is None else _verdict_cell(verdict))
        body.append(cells)
    return Table(header, body)


def _verdict_cell(verdict: ClaimVerdict) -> str:
    """The verdict; where a variant answers otherwise, the default's answer and each differing variant's."""
    if not verdict.deciding_variants:
        return verdict.verdict
    others = "; ".join(f"{VARIANTS[key].alternative}: {verdict.variants[key].verdict}"
                       for key in verdict.deciding_variants)
    return f"{verdict.verdict} (default: {verdict.default.verdict}; {others})"


def _rule_text() -> str:
    return (
        "**How a verdict is decided** (a reader who prefers another rule can apply it to the numbers below and to "
        "`evidence.csv`). Each claim rests on one or more scores (headline: the mean over layers). A score "
        "*supports* the claim when its whole 95 % bootstrap interval over seeds lies on the claim's side of the "
        f"threshold and, where the rule asks for it, its mean effect size over its null is at least {MIN_EFFECT:g} null "
        "sds on that side; it *contradicts* the claim when the same holds on the other side; otherwise it is "
        "unclear. The released FFN is one checkpoint: its value stands in for the interval. Verdict: "
        "*supported* when every score supports the claim, *not supported* when every one contradicts it, "
        "*inconclusive* otherwise, and *inconclusive* too when the sanity check (cascading model randomisation, "
        "first seed) finds every score of the claim insensitive. A method variant (the reference code's choice, "
        "or the signed tracer rule) is run beside the default; when its verdict differs from the default's and "
        "one of the two is definite, the verdict is *depends on the method variant*. Verdicts: "
        + ", ".join(VERDICTS) + ".")


def _claim_section(doc: Document, claim: Claim, judged: list, evidence: Evidence, assets: Path) -> None:
    doc.add(Heading(2, f"{claim.number}. {claim.title}"), Paragraph(f"**Claim.** {claim.sentence}"),
            Paragraph("**Rule.** Supported when " + "; and ".join(part.rule_text() for part in claim.parts) + ". "
                      + " ".join(f"`{part.metric}`: {part.meaning}." for part in claim.parts)))
    if not judged:
        doc.add(Paragraph("Not measured in this run."))
        return
    header = ["model · data", "method", "verdict"] + [f"{part.metric} [95 % seeds]" for part in claim.parts] \
        + [f"{part.metric} null (mean ± sd, d = effect)" for part in claim.parts] + ["sanity (first seed)"] \
        + [f"{part.metric} per layer" for part in claim.parts]
    body = []
    for row, verdict in judged:
        methods = [("default", verdict.default, row[2], {})] + [
            (VARIANTS[key].alternative, other, VARIANTS[key].tracer or row[2], VARIANTS[key].tasks)
            for key, other in verdict.variants.items()]
        for name, method, tracer, tasks in methods:
            layers = [_layers_text(evidence, row, tracer, tasks.get(part.task, part.task), part.metric)
                      for part in claim.parts]
            body.append([label(row), name, method.explained]
                        + [_score_text(score) for score in method.scores]
                        + [_null_text(score) for score in method.scores]
                        + [_sanity_text(method.scores)] + layers)
    doc.add(Table(header, body))
    depends = [(row, verdict) for row, verdict in judged if verdict.verdict == "depends on the method variant"]
    if depends:
        lines = []
        for row, verdict in depends:
            for key in verdict.deciding_variants:
                numbers = ", ".join(
                    f"`{part.metric}` {_score_text(a)} vs {_score_text(b)}"
                    for part, a, b in zip(claim.parts, verdict.default.scores, verdict.variants[key].scores))
                lines.append(f"{label(row)}: {VARIANTS[key].title}: {VARIANTS[key].default} gives "
                             f"*{verdict.default.explained}*, {VARIANTS[key].alternative} gives "
                             f"*{verdict.variants[key].explained}* ({numbers}).")
        doc.add(Paragraph("**Where the method decides.** " + " ".join(lines)))
    if claim.context:
        header = ["model · data", "tracer"] + [f"{task}/{metric} [95 % seeds] (null, d)"
                                               for task, metric in claim.context]
        body = []
        for row, _ in judged:
            for tracer in dict.fromkeys((row[2], VARIANTS["tracer"].tracer)):
                scores = [evidence.get(row[0], row[1], tracer, task, metric) for task, metric in claim.context]
                if any(scores):
                    body.append([label(row), tracer] + [f"{_score_text(s)} ({_null_text(s)})" if s else "-"
                                                        for s in scores])
        doc.add(Paragraph("**Context** (shown, not part of the rule):"), Table(header, body))
    rows = [row for row, _ in judged]
    name = f"claim{claim.number}"
    doc.add(_picture(claim_figure(claim, evidence, rows, assets / name), assets,
                     f"Claim {claim.number}: seed means with 95 % intervals, null means (black ticks) and the "
                     "threshold (dashed); hatched bars are method variants"))
    for index, part in enumerate(claim.parts):
        doc.add(_picture(layer_figure(claim, part, evidence, rows, assets / f"{name}_layers{index}"), assets,
                         f"Claim {claim.number}: {part.metric} per layer"))
    if claim.video_only:
        for row in rows:
            unit = evidence.unit(*row)
            if unit is not None:
                doc.add(_picture(probe_figure(unit, "motion", "change_vs_flow.png",
                                              assets / f"motion_{slug(label(row))}"), assets,
                                 f"{label(row)}: canvas change vs flow (first seed)"))


def _picture(path: Path | None, assets: Path, caption: str) -> Picture | None:
    return None if path is None else Picture(f"{ASSETS_DIR}/{path.relative_to(assets).as_posix()}", caption)


def _score_text(score: Aggregate | None) -> str:
    """``mean [low, high]``, or ``-`` when not measured."""
    if score is None:
        return "-"
    if score.seeds < 2 or math.isnan(score.low):
        return f"{_number(score.mean)} (1 seed)"
    return f"{_number(score.mean)} [{_number(score.low)}, {_number(score.high)}]"


def _layers_text(evidence: Evidence, row: tuple[str, str, str], tracer: str, task: str, metric: str) -> str:
    """``layer: mean [low, high]`` for every layer of the score, ``;``-separated."""
    layers = evidence.layers(row[0], row[1], tracer, task, metric)
    return "; ".join(f"{layer}: {_score_text(evidence.get(row[0], row[1], tracer, task, metric, layer))}"
                     for layer in layers) or "-"


def _null_text(score: Aggregate | None) -> str:
    """``null mean ± sd, d = effect`` or ``-``."""
    if score is None or math.isnan(score.null_mean):
        return "-"
    effect = "" if math.isnan(score.effect) else f", d = {score.effect:+.1f}"
    return f"{_number(score.null_mean)} ± {_number(score.null_sd)}{effect}"


def _sanity_text(scores: Sequence[Aggregate | None]) -> str:
    checked = [score for score in scores if score is not None and score.insensitive is not None]
    if not checked:
        return "not run"
    moved = [score.movement for score in checked]
    state = "insensitive" if all(score.insensitive for score in checked) else "moves"
    return f"{state} ({', '.join(_number(m, 2) for m in moved)})"


def _number(value: float, digits: int = 3) -> str:
    return short_number(value, digits) or "nan"


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def render_markdown(document: Document) -> str:
    """The document as GitHub-flavoured Markdown."""
    lines: list[str] = []
    for block in document.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"  # noqa: E731
            lines += [cells(block.header), "|" + "---|" * len(block.header)]
            lines += [cells(row) for row in block.rows] + [""]
        else:
            lines += [f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def render_html(document: Document) -> str:
    """The document as one static HTML page (figures linked relatively)."""
    parts: list[str] = []
    for block in document.blocks:
        if isinstance(block, Heading):
            parts.append(f'<h{block.level} id="{slug(block.text).lower()}">{escape(block.text)}</h{block.level}>')
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{escape(cell)}</th>" for cell in block.header)
            body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in block.rows)
            parts.append(f'<table class="paper"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        else:
            parts.append(f'<figure><a href="{escape(block.path)}"><img src="{escape(block.path)}" '
                         f'alt="{escape(block.caption)}"></a><figcaption>{escape(block.caption)}</figcaption></figure>')
    style = ("<style>table.paper td, table.paper th { white-space: normal; text-align: left; "
             "overflow-wrap: anywhere; } img { max-width: 100%; } "
             "td.supported { background: #d9f2d9; } td.not-supported { background: #f8d7d7; } "
             "td.inconclusive { background: #eeeeee; } td.depends { background: #fff1c2; }</style>")
    return page(TITLE, style + "\n".join(parts))


def _cell(text: str) -> str:
    cls = next((name for verdict, name in (("depends on the method variant", "depends"),
                                           ("not supported", "not-supported"), ("supported", "supported"),
                                           ("inconclusive", "inconclusive")) if text.startswith(verdict)), "")
    return (f'<td class="{cls}">' if cls else "<td>") + f"{_inline(text)}</td>"


def _inline(text: str) -> str:
    """Escape ``text`` and render its Markdown emphasis and code spans (``**b**``, ``*i*``, `` `c` ``)."""
    out = []
    for index, piece in enumerate(text.split("`")):
        if index % 2 == 1:
            out.append(f"<code>{html.escape(piece)}</code>")
            continue
        piece = html.escape(piece)
        for marker, tag in (("**", "strong"), ("*", "em")):
            chunks = piece.split(marker)
            piece = "".join(chunk if i % 2 == 0 else f"<{tag}>{chunk}</{tag}>" for i, chunk in enumerate(chunks)) \
                if len(chunks) % 2 == 1 else piece
        out.append(piece)
    return "".join(out)
