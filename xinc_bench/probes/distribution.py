"""The ``distribution`` probe (SPEC 5.1, paper section 4.2): how distributed is the canvas?

For each layer, with ``|C|[N, P]`` over the ``P = T * H * W`` pixels, ``S(p) = sum_n |C_n(p)|`` and
shares ``f_n(p) = |C_n(p)| / S(p)``:

(a) ``neurons_per_pixel_a{a}``: sort every entry of ``|C|`` in decreasing order; ``tau_a`` is the entry
    at which the cumulative sum first reaches ``(1 - a)`` of the total (so entries above ``tau_a`` hold
    ``1 - a`` of all contribution mass). Per pixel, the fraction of neurons with ``|C| > tau_a``;
    median over pixels.
(b) ``pixels_per_neuron``: per neuron, the fraction of pixels where ``f_n(p) > 1 / N``; median over
    neurons.
(c) ``top_neuron_share``: the mean over pixels of the largest share ``max_n f_n(p)``, in ``[1/N, 1]``
    (``1/N``: every neuron holds the same share; 1: one neuron holds the whole pixel). It replaces
    SPEC (c)'s fraction of pixels whose top neuron holds more than half of S(p), which is 0 on
    every distributed canvas (11 of the 18 rows of the quick leaderboard): it asks the same
    question, how much of a pixel its strongest neuron owns, without the cliff at 1/2. A mean,
    not a median: on sparse canvases many pixels have a single active neuron (share exactly 1),
    and a median of such an atom is constant again.
(d) ``gini``: the mean over pixels of the Gini coefficient of ``f(p)``.

Pixels with ``S(p) = 0`` (no neuron contributes) have no shares and are left out of (b)-(d); a layer
whose canvas is all zero scores 0 everywhere. ``zero_maps`` counts neurons whose map is all zero
(SPEC 8.7: the reference ReLU rule zeroes active neurons whose outgoing weights sum below 0).
Headline scores are the means over layers.

**Null: spatial shuffle.** A pixel permutation shared by all neurons changes none of these scores,
so the null permutes every neuron's map independently, within each frame as the shuffled control
(:func:`~xinc_bench.probes.controls.shuffle_canvas`) does: which neurons share a pixel is
destroyed, each neuron's values (and ``tau_a``, a statistic of the multiset of entries) are kept.
Shuffling the whole canvas per draw would cost ``D`` canvas passes, so each draw is scored on ``m
= min(P, null_pixels)`` pixels (default 8192): a seeded uniform sample of ``m`` pixel positions
(it fixes how many fall in each frame) and, for every neuron independently, a uniformly drawn
source pixel of the same frame per position, i.e. that position in the neuron's shuffled map
(drawn with replacement, an approximation of a permutation that is negligible for ``m << P``).
The values are gathered in the same frame-chunk pass as the layer's own scores, ``[D, N, m]`` in
bounded blocks, so the draws cost ``D * N * m`` reads instead of ``D`` passes. The scores of a
draw are those of ``m`` pixels, not ``P``: the null's standard deviation includes that sampling
error, which only makes effect sizes smaller (conservative) when ``m < P``. A draw whose ``m``
pixels happen to have no contribution at all scores NaN (left out of the null).

Layers are read in frame chunks. (b)-(d) and the per-pixel counts of (a) are per pixel; ``tau_a``
is a statistic of the whole layer: a layer that fits in one chunk is sorted, a larger one is
searched in two streaming passes (:func:`streamed_thresholds`: the entry the sort gives, barring
float64 rounding of the cumulative mass at a boundary between entries). The null draws depend on
the seed, not on the chunk size (each frame has its own random stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..registry import PROBES
from .base import ProbeResult
from .canvas_reading import magnitude_chunks, magnitudes
from .nulls import generator
from .stats import collect_null_draws

#: entries of ``|C|`` scored at once per pixel, and histogrammed at once by :func:`streamed_thresholds`
_BLOCK_ELEMENTS = 1 << 22

#: the radix levels of :func:`streamed_thresholds`: (shift, bits) of the 31 bits of a float32 >= 0
_RADIX_LEVELS = ((15, 16), (0, 15))

#: default ``m``: shuffled pixels scored per null draw
NULL_PIXELS = 8192

#: the scores computed from the shares (b)-(d), as opposed to the threshold counts (a)
SHARE_METRICS = ("pixels_per_neuron", "top_neuron_share", "gini")


def contribution_threshold(magnitudes: np.ndarray, alpha: float) -> float:
    """``tau_a``: the entry at which the decreasing cumulative sum of ``magnitudes`` reaches ``1 - alpha``."""
    values = np.sort(magnitudes, axis=None)[::-1]
    cumulative = np.cumsum(values, dtype=np.float64)
    if cumulative[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(cumulative, (1.0 - alpha) * cumulative[-1]))
    return float(values[min(index, values.size - 1)])


def layer_thresholds(canvas: Canvas, name: str, alphas: list[float]) -> dict[float, float]:
    """``tau_a`` of layer ``name`` for every ``a``: sorted when the layer fits in one chunk, else streamed."""
    num_frames = canvas.layer_shape(name)[1]
    if canvas.frames_per_chunk(name) >= num_frames:
        values = magnitudes(canvas.layer_frames(name, 0, num_frames)).numpy()
        return {a: contribution_threshold(values, a) for a in alphas}
    return streamed_thresholds(canvas, name, alphas)


def streamed_thresholds(canvas: Canvas, name: str, alphas: list[float]) -> dict[float, float]:
    """:func:`contribution_threshold` of every ``a`` over layer ``name``, in two passes of frame chunks.

    ``tau_a`` is the largest entry ``x`` whose mass ``M(>= x)`` (sum of the entries ``>= x``) reaches
    ``(1 - a)`` of the total. A float32 ``>= 0`` orders as its 31-bit pattern, so ``x`` is found by
    radix selection: pass 1 histograms the entries' mass and count over their top 16 bits (and
    gives the total); pass 2 histograms, inside the bin where the mass from the top crosses the
    target, the low 15 bits, which pins ``x`` down exactly. Masses are float64 as in the sort; they
    are summed in another order, so a target within rounding of a boundary between two distinct
    entries could pick the neighbouring entry.
    """
    prefixes = {a: 0 for a in alphas}
    above = {a: 0.0 for a in alphas}
    targets: dict[float, float] = {}
    previous_shift = 31
    for shift, bits in _RADIX_LEVELS:
        histograms = _radix_histograms(canvas, name, set(prefixes.values()), previous_shift, shift, bits)
        if not targets:
            mass, _ = histograms[0]
            total = float(torch.cumsum(mass.flip(0), dim=0)[-1])  # summed as _crossing_bin sums it
            if total <= 0:
                return {a: 0.0 for a in alphas}
            targets = {a: (1.0 - a) * total for a in alphas}
        for a in alphas:
            mass, count = histograms[prefixes[a]]
            chosen, above[a] = _crossing_bin(mass, count, above[a], targets[a])
            prefixes[a] = (prefixes[a] << bits) | chosen
        previous_shift = shift
    return {a: float(np.array(prefix, dtype=np.int32).view(np.float32)) for a, prefix in prefixes.items()}


def _radix_histograms(
    canvas: Canvas, name: str, prefixes: set[int], previous_shift: int, shift: int, bits: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per prefix, the float64 mass and int64 count ``[2 ** bits]`` of the entries of ``|C|`` whose
    bit pattern ``>> previous_shift`` equals the prefix, binned by bits ``shift .. shift + bits - 1``."""
    size = 1 << bits
    out = {p: (torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.int64)) for p in prefixes}
    for _, mags in magnitude_chunks(canvas, name):
        flat = mags.reshape(-1)
        for start in range(0, flat.numel(), _BLOCK_ELEMENTS):
            values = flat[start : start + _BLOCK_ELEMENTS]
            pattern = values.view(torch.int32)
            for prefix, (mass, count) in out.items():
                kept_values, kept_pattern = values, pattern
                if previous_shift < 31:
                    keep = (pattern >> previous_shift) == prefix
                    kept_values, kept_pattern = values[keep], pattern[keep]
                index = ((kept_pattern >> shift) & (size - 1)).long()
                mass += torch.bincount(index, weights=kept_values.double(), minlength=size)
                count += torch.bincount(index, minlength=size)
    return out


def _crossing_bin(mass: torch.Tensor, count: torch.Tensor, above: float, target: float) -> tuple[int, float]:
    """The highest non-empty bin where ``above`` plus the mass from the top bin down reaches
    ``target`` (the lowest non-empty bin when none does), and the mass above that bin."""
    from_top = torch.cumsum(mass.flip(0), dim=0)
    filled = count.flip(0) > 0
    reached = filled & (above + from_top >= target)
    position = int(torch.nonzero(reached)[0]) if bool(reached.any()) else int(torch.nonzero(filled)[-1])
    before = float(from_top[position - 1]) if position > 0 else 0.0
    return mass.numel() - 1 - position, above + before


def sorted_columns(values: torch.Tensor) -> torch.Tensor:
    """Each column of ``values[..., N, P]`` sorted increasingly along ``N``, as float64.

    The sort runs in the input's dtype (exact: only the order matters) with numpy, several times
    faster than torch's sort along a short axis.
    """
    return torch.from_numpy(np.sort(values.numpy(), axis=-2)).double()


def gini(ordered: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of each increasingly sorted column of non-negative ``ordered[..., N, P]``: ``[..., P]``.

    ``G = 2 sum_i i x_(i) / (N sum_i x_i) - (N + 1) / N``: scale-free, so the Gini of ``|C|(p)`` is
    that of the shares ``f(p)``. An all-zero column has no Gini (NaN).
    """
    n = ordered.shape[-2]
    ranks = torch.arange(1, n + 1, dtype=ordered.dtype, device=ordered.device)
    weighted = torch.einsum("n,...np->...p", ranks, ordered)
    return 2.0 * weighted / (n * ordered.sum(dim=-2)) - (n + 1.0) / n


class PixelTally:
    """Per-pixel statistics of (a)-(d) accumulated over pixel columns, for ``S`` sets of pixels at once.

    The observed canvas is one set (its ``P`` pixels); the null draws are ``D`` sets of ``m``
    shuffled pixels each. Columns are added with :meth:`update` in any grouping; :meth:`scores`
    gives each set's scores.
    """

    def __init__(self, sets: int, pixels: int, num_neurons: int, thresholds: dict[float, float]) -> None:
        self.thresholds = thresholds
        self.num_neurons = num_neurons
        #: per ``a``, per set and pixel: the fraction of neurons above ``tau_a``
        self.counts = {a: torch.zeros(sets, pixels) for a in thresholds}
        self.covered = torch.zeros(sets, dtype=torch.float64)
        self.above_mean_share = torch.zeros(sets, num_neurons, dtype=torch.float64)
        self.top_share = torch.zeros(sets, dtype=torch.float64)
        self.gini = torch.zeros(sets, dtype=torch.float64)

    def update(self, values: torch.Tensor, sets: slice, columns: slice) -> None:
        """Add the pixels ``values[s, N, c]`` (``|C|``) as columns ``columns`` of the sets ``sets``."""
        for a, tau in self.thresholds.items():
            self.counts[a][sets, columns] = (values > tau).float().mean(dim=1)
        ordered = sorted_columns(values)  # [s, N, c]
        # float64, summed in sorted order: float32 sums over the neurons round differently with
        # the width of the block
        total = ordered.sum(dim=1)  # [s, c]
        active = total > 0
        # a pixel without contribution gets all-zero shares and is left out below
        safe = torch.where(active, total, 1.0)
        shares = values.double() / safe[:, None, :]
        self.covered[sets] += active.sum(dim=1)
        self.above_mean_share[sets] += (shares > 1.0 / self.num_neurons).sum(dim=2)
        self.top_share[sets] += (ordered[:, -1] / safe).sum(dim=1)
        self.gini[sets] += torch.where(active, gini(ordered), 0.0).sum(dim=1)

    def scores(self, empty: float) -> list[dict[str, float]]:
        """Scores (a)-(d) of every set; a set without any covered pixel scores ``empty`` in (b)-(d)."""
        covered = self.covered.clamp(min=1.0)
        per_set = {f"neurons_per_pixel_a{a:g}": counts.median(dim=1).values for a, counts in self.counts.items()}
        per_set["pixels_per_neuron"] = (self.above_mean_share / covered[:, None]).median(dim=1).values
        per_set["top_neuron_share"] = self.top_share / covered
        per_set["gini"] = self.gini / covered
        none = self.covered == 0
        for metric in SHARE_METRICS:
            per_set[metric] = torch.where(none, empty, per_set[metric].double())
        return [{metric: float(values[s]) for metric, values in per_set.items()} for s in range(self.covered.numel())]


@dataclass(frozen=True)
class ShuffleNull:
    """How the ``spatial_shuffle`` null of one layer is drawn.

    Attributes:
        draws: number of null draws ``D`` (0: none).
        seed: the task's null seed.
        pixels: ``m``, the null pixels scored per draw (at most the canvas's ``P``).
        stream: separates the layers' random streams (the layer's index).
    """

    draws: int = 0
    seed: int = 0
    pixels: int = NULL_PIXELS
    stream: int = 0


def null_frame_counts(num_frames: int, frame_pixels: int, pixels: int, seed: int, stream: int) -> np.ndarray:
    """How many of a seeded uniform sample of ``pixels`` canvas pixels (without replacement) fall in each frame."""
    if num_frames == 1:
        return np.array([pixels], dtype=np.int64)
    rng = np.random.default_rng([seed, stream])
    return rng.multivariate_hypergeometric(np.full(num_frames, frame_pixels), pixels).astype(np.int64)


def _add_null_frame(
    tally: PixelTally, frame: torch.Tensor, count: int, offset: int, gen: torch.Generator
) -> None:
    """Score ``count`` null pixels of one frame ``|C|[N, H * W]`` in every draw of ``tally``.

    Each null pixel takes, for every neuron independently, the neuron's value at a uniformly drawn
    pixel of the frame: a pixel of that neuron's shuffled map. Draws and pixels are generated in
    blocks whose size depends only on ``N`` and ``count``, so the values do not depend on chunking.
    """
    num_neurons, frame_pixels = frame.shape
    draws = tally.covered.numel()
    draw_block = max(1, _BLOCK_ELEMENTS // (num_neurons * count))
    column_block = min(count, max(1, _BLOCK_ELEMENTS // num_neurons))
    for first_draw in range(0, draws, draw_block):
        block_draws = min(draw_block, draws - first_draw)
        for first in range(0, count, column_block):
            columns = min(column_block, count - first)
            sources = torch.randint(frame_pixels, (num_neurons, block_draws * columns), generator=gen)
            values = frame.gather(1, sources).view(num_neurons, block_draws, columns).transpose(0, 1)
            tally.update(
                values,
                slice(first_draw, first_draw + block_draws),
                slice(offset + first, offset + first + columns),
            )


def layer_distribution(
    canvas: Canvas, name: str, alphas: list[float], null: ShuffleNull = ShuffleNull()
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Distribution scores (a)-(d) of layer ``name`` and of each of its null draws, in one pass of frame chunks.

    Returns ``(scores, draws)``: the layer's scores (with ``zero_maps``) and, per null draw, the
    scores (a)-(d) on ``m`` pixels of the spatially shuffled layer (see the module doc).
    """
    num_neurons, num_frames, height, width = canvas.layer_shape(name)
    frame_pixels = height * width
    columns = max(1, _BLOCK_ELEMENTS // num_neurons)
    thresholds = layer_thresholds(canvas, name, alphas)
    observed = PixelTally(1, num_frames * frame_pixels, num_neurons, thresholds)
    pixels = min(num_frames * frame_pixels, null.pixels)
    shuffled = PixelTally(null.draws, pixels, num_neurons, thresholds)
    counts = null_frame_counts(num_frames, frame_pixels, pixels, null.seed, null.stream) if null.draws else None
    offsets = None if counts is None else np.cumsum(counts) - counts
    nonzero = torch.zeros(num_neurons, dtype=torch.bool)
    for start, mags in magnitude_chunks(canvas, name):
        nonzero |= mags.amax(dim=1) > 0
        for first in range(0, mags.shape[1], columns):
            chunk = mags[:, first : first + columns]
            pixel = start * frame_pixels + first
            observed.update(chunk[None], slice(0, 1), slice(pixel, pixel + chunk.shape[1]))
        if counts is None:
            continue
        for index in range(mags.shape[1] // frame_pixels):
            frame = start + index
            if counts[frame]:
                gen = generator(null.seed, null.stream * num_frames + frame)
                frame_mags = mags[:, index * frame_pixels : (index + 1) * frame_pixels]
                _add_null_frame(shuffled, frame_mags, int(counts[frame]), int(offsets[frame]), gen)
    scores = {"zero_maps": float((~nonzero).sum()), **observed.scores(empty=0.0)[0]}
    # an all-zero layer stays all zero when shuffled: its draws score 0 like the layer itself
    draws = shuffled.scores(empty=0.0 if not bool(nonzero.any()) else math.nan) if null.draws else []
    return scores, draws


@PROBES.register("distribution")
def distribution(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.1 (a)-(d) of every layer and their ``spatial_shuffle`` null draws; headlines are means over layers.

    Params:
        alphas ([0.1, 0.5]): the mass thresholds of (a).
        null_draws (0), null_seed (0): the task's null draws and their seed.
        null_pixels (8192): ``m``, the shuffled pixels scored per null draw.
    """
    alphas = [float(a) for a in params.get("alphas", [0.1, 0.5])]
    draws = int(params.get("null_draws", 0))
    seed = int(params.get("null_seed", 0))
    null_pixels = int(params.get("null_pixels", NULL_PIXELS))
    if null_pixels < 1:
        raise XincError(f"parameter null_pixels={null_pixels} must be a positive number of pixels")
    scores: dict[str, float] = {}
    per_layer: dict[str, dict[str, float]] = {}
    null_layers: dict[str, list[dict[str, float]]] = {}
    for index, name in enumerate(canvas.layer_names):
        null = ShuffleNull(draws, seed, null_pixels, stream=index)
        per_layer[name], null_layers[name] = layer_distribution(canvas, name, alphas, null)
        scores.update({f"{name}/{metric}": value for metric, value in per_layer[name].items()})
    for metric in next(iter(per_layer.values())):
        if metric != "zero_maps":
            scores[metric] = float(np.mean([values[metric] for values in per_layer.values()]))
    nulls = {}
    if draws:
        per_draw = [{name: null_layers[name][d] for name in canvas.layer_names} for d in range(draws)]
        nulls["spatial_shuffle"] = collect_null_draws(per_draw)
    figures = {"neurons_per_pixel": _neurons_per_pixel_figure(canvas, alphas[0])}
    return ProbeResult(scores=scores, figures=figures, nulls=nulls)


def _neurons_per_pixel_figure(canvas: Canvas, alpha: float) -> Any:
    """Per layer, the map of the fraction of neurons above ``tau_alpha`` of frame 0 at each pixel of frame 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = canvas.layer_names
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 2.6), squeeze=False)
    for axis, name in zip(axes[0], names):
        frame = canvas.layer_frames(name, 0, 1)[:, 0].abs()
        tau = contribution_threshold(frame.numpy(), alpha)
        image = axis.imshow((frame > tau).float().mean(dim=0).numpy(), cmap="magma", vmin=0)
        axis.set_title(f"{name}: neurons per pixel (a={alpha:g})", fontsize=9)
        axis.axis("off")
        fig.colorbar(image, ax=axis, fraction=0.03)
    fig.tight_layout()
    return fig
