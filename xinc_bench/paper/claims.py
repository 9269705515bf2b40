"""The XINC paper's claims, the scores that test each, and the rule that turns them into a verdict.

A claim is tested by one or more :class:`Part`: a score (task, metric; headline, the mean over
layers) that must lie on one side of a threshold. A part *supports* the claim when the whole 95 %
interval over seeds lies on the claim's side and, where the part asks for it, the mean effect size
over its null is at least :data:`MIN_EFFECT` null sds in that direction; it *contradicts* the claim
when the same holds on the other side; otherwise it is *unclear*. A single released checkpoint has
no seed interval: its value stands in for it.

Verdict of a claim for one measured model and one method (tracer and task variants):

* ``supported``: every measured part supports it; ``not supported``: every one contradicts it;
  ``inconclusive``: anything else (a part unclear, or parts disagreeing);
* a claim whose every measured score stays put when the model is destroyed (the sanity check marks
  it insensitive) is ``inconclusive`` whatever the values: the score does not measure the model.

Across methods: the verdict under the default method, unless a method variant of the claim (the
reference code's choice where SPEC 8 corrects it, or the signed tracer rule) reaches another
verdict where at least one of the two is definite (``supported`` or ``not supported``): then
``depends on the method variant``, with both numbers in the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .evidence import Aggregate, Evidence

#: how far beyond its null (in null sds, mean over seeds) a part's score must lie when it asks for it
MIN_EFFECT = 2.0

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
DEPENDS = "depends on the method variant"
NOT_MEASURED = "not measured"
#: every verdict, in the order a legend lists them
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, DEPENDS, NOT_MEASURED)


@dataclass(frozen=True)
class Part:
    """One score a claim rests on: ``task/metric`` must lie ``side`` (``above``/``below``) ``threshold``."""

    task: str
    metric: str
    side: str
    threshold: float
    needs_effect: bool = True
    meaning: str = ""

    def rule_text(self) -> str:
        """The part's rule, in words."""
        relation = ">" if self.side == "above" else "<"
        effect = (f" and its mean effect size {'>=' if self.side == 'above' else '<='} "
                  f"{'' if self.side == 'above' else '-'}{MIN_EFFECT:g} null sds") if self.needs_effect else ""
        return f"`{self.task}/{self.metric}` {relation} {self.threshold:g} over the whole seed interval{effect}"


@dataclass(frozen=True)
class Variant:
    """A method choice that may change a claim's answer: a task swapped for its variant, or another tracer."""

    key: str
    title: str
    default: str
    alternative: str
    tasks: dict[str, str] = field(default_factory=dict)
    tracer: str | None = None


@dataclass(frozen=True)
class Claim:
    """A finding of the paper, the parts that test it and the method variants that may change it."""

    number: int
    key: str
    title: str
    sentence: str
    parts: tuple[Part, ...]
    variants: tuple[str, ...]
    context: tuple[tuple[str, str], ...] = ()
    video_only: bool = False


#: the reference code's choices (SPEC 8) that a claim's verdict is checked against
VARIANTS: dict[str, Variant] = {
    "tracer": Variant("tracer", "layer-1/2 rule (SPEC 8.7)", "ReLU of the summed contribution (reference, `mlp`)",
                      "signed sum (`mlp-signed`)", tracer="mlp-signed"),
    "grid": Variant("grid", "grid cells (SPEC 8.1)", "contiguous cells", "strided lattice (y mod 4, x mod 8; reference)",
                    tasks={"partitions": "partitions-strided-grid"}),
    "gabor": Variant("gabor", "Gabor bank (SPEC 8.2)", "24 filters", "6 filters (reference)",
                     tasks={"partitions": "partitions-gabor6"}),
    "other": Variant("other", "\"other\" instance (SPEC 8.3)", "unlabelled remainder",
                     "union of the segments (reference)", tasks={"partitions": "partitions-reference-other"}),
}

CLAIMS: tuple[Claim, ...] = (
    Claim(1, "distributed", "Representations are distributed",
          "Many neurons contribute to each pixel, and each neuron contributes to many pixels.",
          (Part("distribution", "neurons_per_pixel_a0.1", "above", 0.10, needs_effect=False,
                meaning="median fraction of a layer's neurons above the 90 %-mass threshold at a pixel"),
           Part("distribution", "pixels_per_neuron", "above", 0.10, needs_effect=False,
                meaning="median fraction of pixels where a neuron's share exceeds 1/N")),
          ("tracer",),
          context=(("distribution", "gini"), ("distribution", "top_neuron_share"),
                   ("faithfulness", "ablation_correlation"))),
    Claim(2, "colour-edges", "Neurons are biased towards colour and edges",
          "A neuron's contribution follows colour (RGB clusters) and texture edges (Gabor clusters) more than "
          "it follows position in the image.",
          (Part("partitions", "color_bias", "above", 0.5,
                meaning="r_rgb / (r_rgb + r_grid): colour clusters vs grid cells, each against chance"),
           Part("partitions", "edge_bias", "above", 0.5,
                meaning="r_gabor / (r_gabor + r_grid): texture clusters vs grid cells, each against chance")),
          ("tracer", "grid", "gabor"),
          context=(("color", "intensity_pearson"), ("edges", "edge_contribution_ratio"))),
    Claim(3, "objects", "Neurons do not align with objects",
          "Neurons follow colours more than object instances.",
          (Part("partitions", "object_vs_color", "below", 0.5,
                meaning="r_instances / (r_instances + r_rgb): object instances vs colour clusters, each against chance"),),
          ("tracer", "other"),
          context=(("objects", "object_selectivity"), ("objects", "semantic_consistency"))),
    Claim(4, "space-agnostic", "Neurons are largely space-agnostic",
          "Where a pixel lies matters less to a neuron than its content (colour, texture, object).",
          (Part("partitions", "spatial_agnosticism", "above", 0.5,
                meaning="m / (m + r_grid), m = the strongest content factor, each against chance"),),
          ("tracer", "grid", "gabor", "other")),
    Claim(5, "motion", "In video INRs, contributions change most where there is motion",
          "The frame-to-frame change of the canvas follows the optical flow.",
          (Part("motion", "flow_spearman", "above", 0.0,
                meaning="Spearman correlation of the canvas change dS_t with the flow magnitude"),
           Part("motion", "flow_top_bottom_ratio", "above", 1.0,
                meaning="mean dS_t on the top 10 % flow pixels over the bottom 50 %")),
          (),
          context=(("clustering", "motion_dominance"), ("motion", "moving_static_cov_ratio")),
          video_only=True),
)


def part_outcome(part: Part, score: Aggregate | None) -> str:
    """``supports``, ``contradicts``, ``unclear`` or ``missing`` (see the module docstring)."""
    if score is None or math.isnan(score.mean):
        return "missing"
    low, high = score.bounds
    above = low > part.threshold and (not part.needs_effect or score.effect >= MIN_EFFECT)
    below = high < part.threshold and (not part.needs_effect or score.effect <= -MIN_EFFECT)
    if not (above or below):
        return "unclear"
    return "supports" if above == (part.side == "above") else "contradicts"


@dataclass(frozen=True)
class MethodVerdict:
    """A claim's verdict for one model under one method, with the scores behind it."""

    verdict: str
    scores: tuple[Aggregate | None, ...]
    insensitive: bool

    @property
    def explained(self) -> str:
        """The verdict, with why where the sanity check decided it."""
        if self.insensitive and self.verdict == INCONCLUSIVE:
            return f"{self.verdict} (every score insensitive to model randomisation)"
        return self.verdict


def method_verdict(claim: Claim, evidence: Evidence, architecture: str, data: str, tracer: str,
                   tasks: dict[str, str] | None = None) -> MethodVerdict:
    """The claim's verdict for one measured model under one method (``tasks``: task -> the variant run instead)."""
    tasks = tasks or {}
    scores = tuple(evidence.get(architecture, data, tracer, tasks.get(part.task, part.task), part.metric)
                   for part in claim.parts)
    outcomes = tuple(part_outcome(part, score) for part, score in zip(claim.parts, scores))
    measured = [outcome for outcome in outcomes if outcome != "missing"]
    flags = [score.insensitive for score in scores if score is not None and score.insensitive is not None]
    insensitive = bool(flags) and all(flags)
    if not measured:
        verdict = NOT_MEASURED
    elif insensitive:
        verdict = INCONCLUSIVE
    elif all(outcome == "supports" for outcome in measured):
        verdict = SUPPORTED
    elif all(outcome == "contradicts" for outcome in measured):
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE
    return MethodVerdict(verdict, scores, insensitive)


@dataclass(frozen=True)
class ClaimVerdict:
    """A claim's verdict for one measured model: under the default method and under each variant it has."""

    default: MethodVerdict
    variants: dict[str, MethodVerdict]

    @property
    def verdict(self) -> str:
        """The combined verdict (module docstring)."""
        definite = (SUPPORTED, NOT_SUPPORTED)
        for other in self.variants.values():
            if other.verdict == NOT_MEASURED:
                continue
            if other.verdict != self.default.verdict and (self.default.verdict in definite or other.verdict in definite):
                return DEPENDS
        return self.default.verdict

    @property
    def deciding_variants(self) -> list[str]:
        """The variants whose verdict differs from the default method's."""
        return [key for key, other in self.variants.items()
                if other.verdict not in (NOT_MEASURED, self.default.verdict)]


def judge(claim: Claim, evidence: Evidence, architecture: str, data: str, tracer: str) -> ClaimVerdict:
    """The claim's verdict for one measured model (default tracer ``tracer``), with every variant measured."""
    default = method_verdict(claim, evidence, architecture, data, tracer)
    variants = {}
    for key in claim.variants:
        variant = VARIANTS[key]
        other = method_verdict(claim, evidence, architecture, data, variant.tracer or tracer, variant.tasks)
        if other.verdict != NOT_MEASURED and variant.tracer != tracer:
            variants[key] = other
    return ClaimVerdict(default, variants)
