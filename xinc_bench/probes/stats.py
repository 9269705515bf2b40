"""Statistics that turn a score into evidence: its null, effect size, p-value and seed interval.

A *null model* destroys the structure a score asks about (see :mod:`xinc_bench.probes.nulls`);
a probe evaluates the score on ``D`` draws of it. From the observed value ``v`` and the draws
``d_1..d_D``:

* null mean ``m`` and standard deviation ``s`` (sample sd, ``ddof=1``);
* effect size ``(v - m) / s`` (absent when ``s = 0`` or ``D < 2``);
* empirical two-sided p-value ``(1 + #{i : |d_i - m| >= |v - m|}) / (D + 1)`` (Phipson and
  Smyth 2010: never 0, so with 20 draws the smallest p-value is 1/21 ~ 0.048).

Seed intervals are percentile bootstrap intervals of the mean over seeds
(:func:`scipy.stats.bootstrap`, ``method="percentile"``, 9,999 resamples, seeded), so a
leaderboard rebuilt from the same records gives the same intervals. With fewer than two seeds
there is no interval (``None``), never a zero-width one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .scores import collect_scores

#: confidence level of seed intervals
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
#: a null sd at or below this fraction of max(1, |null mean|) counts as no spread
_RELATIVE_NO_SPREAD = 1e-12


@dataclass(frozen=True)
class NullSummary:
    """A score against one null model (what a record stores per score).

    Attributes:
        model: the null model's name (``label_permutation``, ``spatial_shuffle``, ...).
        draws: how many finite draws the summary is built from.
        mean, sd: the null draws' mean and sample standard deviation.
        effect_size: ``(value - mean) / sd``; None when the null has no spread.
        p_value: empirical two-sided p-value; None with fewer than 2 draws.
    """

    model: str
    draws: int
    mean: float | None
    sd: float | None
    effect_size: float | None
    p_value: float | None
    #: why there is no summary (no finite draw), None when there is one
    reason: str | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def summarise_null(value: float, draws: Sequence[float], model: str) -> NullSummary:
    """Summarise the null ``draws`` of a score whose observed value is ``value``.

    Non-finite draws (a draw on which the score is undefined) are left out; with none left (or a
    value that is not finite) the summary carries only its ``reason``.
    """
    finite = _finite(draws)
    if not math.isfinite(value) or finite.size == 0:
        reason = "the score is undefined" if not math.isfinite(value) else "no null draw gave a finite value"
        return NullSummary(model, 0, None, None, None, None, reason)
    mean = float(finite.mean())
    if finite.size < 2:
        return NullSummary(model, int(finite.size), mean, None, None, None)
    sd = float(finite.std(ddof=1))
    # a spread at rounding level (draws equal up to float error) is no spread: no effect size
    effect = (value - mean) / sd if sd > _RELATIVE_NO_SPREAD * max(1.0, abs(mean)) else None
    extreme = int(np.sum(np.abs(finite - mean) >= abs(value - mean) - 1e-12 * max(1.0, abs(value))))
    p_value = (1 + extreme) / (finite.size + 1)
    return NullSummary(model, int(finite.size), mean, sd, effect, p_value)


def score_evidence(
    scores: Mapping[str, float],
    nulls: Mapping[str, Mapping[str, Sequence[float]]],
    absent: Mapping[str, str],
    null_of: Mapping[str, str | None],
) -> tuple[dict[str, float], dict[str, dict[str, object]], dict[str, str]]:
    """Split a probe's output into what a record stores: finite scores, null summaries, absences.

    Args:
        scores: score name (``metric`` or ``layer/metric``) -> value, as the probe returned them.
        nulls: null model -> score name -> draws (``ProbeResult.nulls``).
        absent: score name -> reason the probe gave for leaving it out.
        null_of: metric name -> its null model (from the task YAML), None for none.

    Returns:
        ``(values, summaries, absent)``: the finite values; per score with a null, its
        :class:`NullSummary` as a dict; and every score left out with its reason. A NaN or
        infinite score is never stored as a value: it moves to ``absent``.
    """
    values: dict[str, float] = {}
    summaries: dict[str, dict[str, object]] = {}
    reasons = dict(absent)
    for name, value in scores.items():
        value = float(value)
        if not math.isfinite(value):
            reasons.setdefault(name, "undefined on this canvas (the probe's value was not a finite number)")
            continue
        values[name] = value
        model = null_of.get(name.rsplit("/", 1)[-1])
        if model is None:
            continue
        draws = nulls.get(model, {}).get(name)
        if draws is None:
            summary = NullSummary(model, 0, None, None, None, None, f"the probe made no {model} draws")
        else:
            summary = summarise_null(value, draws, model)
        summaries[name] = summary.as_dict()
    return values, summaries, reasons


def collect_null_draws(draws: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, list[float]]:
    """Per-layer scores of each null draw -> ``{score: [draw_1, ..., draw_D]}``.

    Each draw is aggregated exactly like the observed scores (:func:`collect_scores`: per-layer
    ``"<layer>/<metric>"`` and the headline mean over layers), so a headline's null is the null
    of the headline itself.
    """
    out: dict[str, list[float]] = {}
    for per_layer in draws:
        for name, value in collect_scores(per_layer).items():
            out.setdefault(name, []).append(value)
    return out


def bootstrap_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (seeds); None with fewer than 2 finite values."""
    finite = _finite(values)
    if finite.size < 2:
        return None
    if np.all(finite == finite[0]):
        return float(finite[0]), float(finite[0])
    from scipy.stats import bootstrap

    result = bootstrap(
        (finite,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def intervals_overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Whether two intervals overlap; a missing interval overlaps nothing (no evidence to tie on)."""
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]
