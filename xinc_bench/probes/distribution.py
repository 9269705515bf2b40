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
The values are gathered in the same pass over the blocks as the layer's own scores, ``[D, N, m]`` in
bounded blocks, so the draws cost ``D * N * m`` reads instead of ``D`` passes. The scores of a
draw are those of ``m`` pixels, not ``P``: the null's standard deviation includes that sampling
error, which only makes effect sizes smaller (conservative) when ``m < P``. A draw whose ``m``
pixels happen to have no contribution at all scores NaN (left out of the null).

The probe is an accumulator (:class:`DistributionProbe`). (b)-(d) and the per-pixel counts of (a)
are per pixel; ``tau_a`` is a statistic of the whole layer: a layer that comes whole in one block
(every layer fits in one chunk of the canvas, :meth:`~xinc_bench.canvas.Canvas.frames_per_chunk`)
or is small (:func:`sorted_layers`, gathered from its blocks) is sorted, exactly; any other is
found by radix selection over two passes (:class:`RadixThresholds`: the entry the sort gives,
barring float64 rounding of the cumulative mass at a boundary between entries) and scored in a
third. (a)-(c) are reductions over the neuron axis of each block as it comes; (d) needs every
pixel's ``N`` values in order, sorted in a row of their own (numpy) and weighted by their ranks:
at 20-40 ns a value it is most of the probe's cost, so on a layer of more than ``gini_pixels``
pixels (default 2^17) (d) is the mean over a seeded uniform sample of that many pixels (without
replacement; the same for every block size). A pixel's Gini coefficient is in ``[0, 1]``, so the
sampled mean's standard error is at most ``0.5 / sqrt(gini_pixels)`` (0.0014 at 2^17; smaller by
the finite-population factor); every canvas of at most ``gini_pixels`` pixels (all but the paper
NeRV's 30 frames at 128x256 among the built-in suites) is scored on all of them. The null draws
and the sample depend on the seed, not on the block size (each frame has its own random stream).
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
from .accumulator import ProbeAccumulator, ProbeResult, window_frames
from .numerics import block_magnitudes, magnitudes
from .nulls import generator
from .plotting import subplots
from .stats import collect_null_draws

#: entries of ``|C|`` scored at once per pixel, and histogrammed at once by :class:`RadixThresholds`
_BLOCK_ELEMENTS = 1 << 22

#: float32 steps :func:`share_floors` takes from ``S(p) / N`` at most, up and then down (one suffices)
_FLOOR_STEPS = 3

#: the radix levels of :class:`RadixThresholds`: (shift, bits) of the 31 bits of a float32 >= 0
_RADIX_LEVELS = ((15, 16), (0, 15))

#: default ``m``: shuffled pixels scored per null draw
NULL_PIXELS = 8192

#: default pixels (d) is averaged over on a larger layer (every pixel of a smaller one): the standard
#: error of the sampled mean of a score in [0, 1] is at most 0.5 / sqrt(2^17) = 0.0014
GINI_PIXELS = 1 << 17

#: the random stream of (d)'s pixel sample, apart from the null draws' streams
_GINI_STREAM = 0x6717

#: the layers gathered from smaller blocks to be sorted whole take at most this share of the chunk budget
GATHERED_SHARE = 0.25

#: entries of frame 0 of a layer the figure's ``tau_alpha`` is found from (an even stride over the
#: frame when it has more): the figure is a picture, not a score, and a sort of frame 0 of the paper
#: NeRV's block 1 (601 M entries) would take a 2.4 GB copy and a minute
FIGURE_ENTRIES = 1 << 24

#: the scores computed from the shares (b)-(d), as opposed to the threshold counts (a)
SHARE_METRICS = ("pixels_per_neuron", "top_neuron_share", "gini")


def contribution_threshold(magnitudes: np.ndarray, alpha: float) -> float:
    """``tau_a``: the entry at which the decreasing cumulative sum of ``magnitudes`` reaches ``1 - alpha``."""
    return contribution_thresholds(magnitudes, [alpha])[alpha]


def contribution_thresholds(magnitudes: np.ndarray, alphas: list[float]) -> dict[float, float]:
    """:func:`contribution_threshold` of every ``a`` in ``alphas``, from one sort of ``magnitudes``.

    The cumulative sum is the sequential float64 sum of the decreasing entries, taken a block at a
    time (each block's first entry carries the sum before it, so every partial sum is that of one
    running sum): memory one sorted float32 copy and a float64 block, not a float64 copy of all.
    """
    values = np.sort(magnitudes, axis=None)[::-1]
    block = _BLOCK_ELEMENTS
    ends = []  # the running sum at the end of each block
    carry = 0.0
    for start in range(0, values.size, block):
        carry = float(_running_sum(values[start : start + block], carry)[-1])
        ends.append(carry)
    if not ends or carry <= 0:
        return {a: 0.0 for a in alphas}
    thresholds = {}
    for a in alphas:
        target = (1.0 - a) * carry
        chosen = int(np.searchsorted(ends, target))  # the first block whose running sum reaches the target
        if chosen == len(ends):
            thresholds[a] = float(values[-1])
            continue
        start = chosen * block
        before = ends[chosen - 1] if chosen else 0.0
        index = start + int(np.searchsorted(_running_sum(values[start : start + block], before), target))
        thresholds[a] = float(values[min(index, values.size - 1)])
    return thresholds


def _running_sum(values: np.ndarray, before: float) -> np.ndarray:
    """``before + cumsum(values)`` as the sequential float64 sum that began before ``values`` goes on."""
    sums = values.astype(np.float64)
    sums[0] += before
    return np.cumsum(sums, out=sums)


def sorted_exactly(canvas: Canvas, name: str) -> bool:
    """Whether ``tau_a`` of layer ``name`` is found by sorting it whole: the layer fits in one chunk of ``canvas``."""
    return canvas.frames_per_chunk(name) >= canvas.layer_shape(name)[1]


def sorted_layers(canvas: Canvas) -> set[str]:
    """The layers :class:`DistributionProbe` sorts whole (exact ``tau_a`` in one pass): every layer
    when each block of the driver holds a whole layer (every layer fits in one chunk, see
    :func:`~xinc_bench.probes.accumulator.window_frames`); else, in network order, the layers that
    fit together (float32) in :data:`GATHERED_SHARE` of the chunk budget, since each is gathered
    from its blocks and held until its last one. The others take the radix passes."""
    if window_frames(canvas) >= canvas.shape[0]:
        return set(canvas.layer_names)
    budget = GATHERED_SHARE * canvas.chunk_bytes
    chosen = set()
    for name in canvas.layer_names:
        size = 4 * math.prod(canvas.layer_shape(name))
        if size <= budget:
            chosen.add(name)
            budget -= size
    return chosen


def layer_thresholds(canvas: Canvas, name: str, alphas: list[float]) -> dict[float, float]:
    """``tau_a`` of layer ``name`` for every ``a``: sorted when the layer fits in one chunk, else streamed.

    Reads the layer from ``canvas`` (for use outside an accumulator; :class:`DistributionProbe`
    finds the same thresholds from its blocks).
    """
    if sorted_exactly(canvas, name):
        return contribution_thresholds(magnitudes(canvas.layer(name)).numpy(), alphas)
    return streamed_thresholds(canvas, name, alphas)


def streamed_thresholds(canvas: Canvas, name: str, alphas: list[float]) -> dict[float, float]:
    """:func:`contribution_threshold` of every ``a`` over layer ``name``, read in frame chunks of ``canvas``
    once per level of :class:`RadixThresholds` (two passes)."""
    radix = RadixThresholds(alphas)
    while radix.thresholds is None:
        for _, chunk in canvas.frame_chunks(name):
            radix.update(magnitudes(chunk))
        radix.end_level()
    return radix.thresholds


class RadixThresholds:
    """:func:`contribution_threshold` of every ``a`` from the entries of ``|C|`` given once per level.

    ``tau_a`` is the largest entry ``x`` whose mass ``M(>= x)`` (sum of the entries ``>= x``) reaches
    ``(1 - a)`` of the total. A float32 ``>= 0`` orders as its 31-bit pattern, so ``x`` is found by
    radix selection: level 0 histograms the entries' mass over their top 16 bits (and gives the
    total); level 1 histograms, inside the bin where the mass from the top crosses the target, the
    low 15 bits, which pins ``x`` down exactly. A bin holds entries when its mass is positive, or
    when it is bin 0 of prefix 0 (patterns starting with zeros) and some entry is exactly 0, which
    has no mass: only those zeros are counted, not every bin's entries. Masses are float64 as in the sort; they
    are summed in another order, so a target within rounding of a boundary between two distinct
    entries could pick the neighbouring entry.

    Give every entry of the layer to :meth:`update` (in any grouping), then call :meth:`end_level`;
    repeat until :attr:`thresholds` is set (after level 1, or after level 0 for an all-zero layer).

    Args:
        alphas: the mass thresholds ``a``.
    """

    def __init__(self, alphas: list[float]) -> None:
        self.alphas = list(alphas)
        #: ``a -> tau_a`` once found, else None
        self.thresholds: dict[float, float] | None = None
        self._level = 0
        self._prefixes = {a: 0 for a in self.alphas}
        self._above = {a: 0.0 for a in self.alphas}
        self._targets: dict[float, float] = {}
        self._histograms = self._empty_histograms()
        self._zeros = 0  # entries exactly 0 given at this level (all in prefix 0's bin 0)

    def _empty_histograms(self) -> dict[int, torch.Tensor]:
        """Per prefix of this level, the float64 mass ``[2 ** bits]``, zero."""
        size = 1 << _RADIX_LEVELS[self._level][1]
        return {p: torch.zeros(size, dtype=torch.float64) for p in set(self._prefixes.values())}

    def update(self, mags: torch.Tensor) -> None:
        """Add entries of ``|C|`` (float32 ``>= 0``, any shape) to this level's histograms: per prefix,
        the entries whose bit pattern ``>>`` the previous level's shift equals it, binned by this level's bits."""
        if self.thresholds is not None:
            return
        shift, bits = _RADIX_LEVELS[self._level]
        previous_shift = 31 if self._level == 0 else _RADIX_LEVELS[self._level - 1][0]
        size = 1 << bits
        flat = mags.reshape(-1).numpy()
        for start in range(0, flat.size, _BLOCK_ELEMENTS):
            values = flat[start : start + _BLOCK_ELEMENTS]
            pattern = values.view(np.int32)
            for prefix, mass in self._histograms.items():
                kept_values, kept_pattern = values, pattern
                if previous_shift < 31:
                    keep = (pattern >> previous_shift) == prefix
                    kept_values, kept_pattern = values[keep], pattern[keep]
                index = (kept_pattern >> shift) & (size - 1)
                # numpy sums the float32 weights in float64, one entry after another, as torch does
                mass += torch.from_numpy(np.bincount(index, weights=kept_values, minlength=size))
                if prefix == 0:
                    self._zeros += int(kept_values.size - np.count_nonzero(kept_values))

    def end_level(self) -> None:
        """Every entry was given for this level: choose each ``a``'s bin and go to the next level (or finish)."""
        if self.thresholds is not None:
            return
        if not self._targets:
            mass = self._histograms[0]
            total = float(torch.cumsum(mass.flip(0), dim=0)[-1])  # summed as _crossing_bin sums it
            if total <= 0:
                self.thresholds = {a: 0.0 for a in self.alphas}
                return
            self._targets = {a: (1.0 - a) * total for a in self.alphas}
        bits = _RADIX_LEVELS[self._level][1]
        for a in self.alphas:
            prefix = self._prefixes[a]
            zeros = self._zeros if prefix == 0 else 0
            chosen, self._above[a] = _crossing_bin(self._histograms[prefix], zeros, self._above[a], self._targets[a])
            self._prefixes[a] = (self._prefixes[a] << bits) | chosen
        self._level += 1
        if self._level == len(_RADIX_LEVELS):
            self.thresholds = {
                a: float(np.array(prefix, dtype=np.int32).view(np.float32)) for a, prefix in self._prefixes.items()
            }
            self._histograms = {}
        else:
            self._histograms = self._empty_histograms()
        self._zeros = 0


def _crossing_bin(mass: torch.Tensor, zeros: int, above: float, target: float) -> tuple[int, float]:
    """The highest non-empty bin where ``above`` plus the mass from the top bin down reaches
    ``target`` (the lowest non-empty bin when none does), and the mass above that bin. A bin is
    non-empty when it has mass, bin 0 also when it holds ``zeros`` entries equal to 0."""
    from_top = torch.cumsum(mass.flip(0), dim=0)
    filled = mass.flip(0) > 0
    if zeros:
        filled[-1] = True
    reached = filled & (above + from_top >= target)
    position = int(torch.nonzero(reached)[0]) if bool(reached.any()) else int(torch.nonzero(filled)[-1])
    before = float(from_top[position - 1]) if position > 0 else 0.0
    return mass.numel() - 1 - position, above + before


def gini(ordered: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """Gini coefficient of each increasingly sorted row of non-negative float32 ``ordered[..., N]``: ``[...]`` float64.

    ``G = 2 sum_i i x_(i) / (N sum_i x_i) - (N + 1) / N``: scale-free, so the Gini of ``|C|(p)`` is
    that of the shares ``f(p)``. ``total`` gives the rows' sums (float64) when they are known. An
    all-zero row has no Gini (NaN).
    """
    n = ordered.shape[-1]
    rows = ordered.numpy()
    weighted = torch.from_numpy(np.asarray(rows @ np.arange(1, n + 1, dtype=np.float64)))
    if total is None:
        total = torch.from_numpy(np.asarray(np.add.reduce(rows, axis=-1, dtype=np.float64)))
    return 2.0 * weighted / (n * total) - (n + 1.0) / n


def share_floors(totals: np.ndarray, num_neurons: int) -> np.ndarray:
    """Per pixel of ``S(p)`` (``totals``, float64 > 0, any shape), the least float32 ``x`` whose share
    ``x / S(p)`` (a float64 division) exceeds ``1 / N``: float32 entries with ``|C| / S(p) > 1 / N`` are
    exactly those ``>= x``, so (b) compares float32 entries with their pixel's floor instead of
    dividing each in float64 (4x faster, the same answer).

    A share grows with ``x`` (a correctly rounded division is monotone), so the floor is the float32
    nearest ``S(p) / N`` moved by at most a step (float64's rounding is far finer than float32's
    steps); ``inf`` where ``S(p) / N`` is beyond float32 (no finite entry is above). Each floor is
    checked (the float32 below it is not above), so a floor not found within :data:`_FLOOR_STEPS`
    steps either way raises rather than miscounts.
    """
    mean_share = 1.0 / num_neurons

    def above(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64) / totals > mean_share

    with np.errstate(over="ignore"):
        floor = (totals * mean_share).astype(np.float32)
    for _ in range(_FLOOR_STEPS):  # up to the first float32 above
        floor = np.where(above(floor), floor, np.nextafter(floor, np.float32(np.inf)))
    for _ in range(_FLOOR_STEPS):  # down to the least float32 above
        lower = np.nextafter(floor, np.float32(-np.inf))
        floor = np.where(above(lower), lower, floor)
    if not (above(floor).all() and not above(np.nextafter(floor, np.float32(-np.inf))).any()):
        raise RuntimeError(f"no float32 share floor within {_FLOOR_STEPS} steps of S(p) / N")
    return floor


class PixelTally:
    """Per-pixel statistics of (a)-(d) accumulated over pixel columns, for ``S`` sets of pixels at once.

    The observed canvas is one set (its ``P`` pixels); the null draws are ``D`` sets of ``m``
    shuffled pixels each. Columns are added with :meth:`update` in any grouping; :meth:`scores`
    gives each set's scores. (a)-(c) are taken over every column; (d) over the columns
    :meth:`update` is told to sort (every column unless told otherwise).
    """

    def __init__(self, sets: int, pixels: int, num_neurons: int, thresholds: dict[float, float]) -> None:
        self.thresholds = thresholds
        self.num_neurons = num_neurons
        #: per ``a``, per set and pixel: the fraction of neurons above ``tau_a``
        self.counts = {a: torch.zeros(sets, pixels) for a in thresholds}
        self.covered = torch.zeros(sets, dtype=torch.float64)
        self.above_mean_share = torch.zeros(sets, num_neurons, dtype=torch.float64)
        self.top_share = torch.zeros(sets, dtype=torch.float64)
        #: the covered pixels whose Gini coefficient is summed in ``gini``
        self.gini_covered = torch.zeros(sets, dtype=torch.float64)
        self.gini = torch.zeros(sets, dtype=torch.float64)

    def update(self, values: torch.Tensor, sets: slice, columns: slice,
               sorted_columns: np.ndarray | None = None) -> None:
        """Add the pixels ``values[s, N, c]`` (``|C|``, any strides) as columns ``columns`` of the sets ``sets``.

        ``S(p)``, the thresholds' counts, the shares above ``1/N`` and the top share are reductions
        over the neuron axis in place. The columns ``sorted_columns`` (indices into ``c``; default
        all) are copied into a row of their own per pixel and sorted there (numpy) for the Gini
        coefficient: the one statistic that needs every pixel's order, and the one that costs.
        """
        num_neurons = self.num_neurons
        array = values.numpy()
        total = np.add.reduce(array, axis=1, dtype=np.float64)  # [s, c]
        active = total > 0
        # a pixel without contribution gets all-zero shares and is left out below
        safe = np.where(active, total, 1.0)
        self.covered[sets] += torch.from_numpy(active.sum(axis=1).astype(np.float64))
        above = array >= share_floors(safe, num_neurons)[:, None, :]
        self.above_mean_share[sets] += torch.from_numpy(np.add.reduce(above, axis=2, dtype=np.int64))
        for a, tau in self.thresholds.items():
            count = np.add.reduce(array > tau, axis=1, dtype=np.int64)
            self.counts[a][sets, columns] = torch.from_numpy(count).float() / num_neurons
        # torch's max over the neuron axis walks the rows in memory order; numpy's strides down it (3x slower)
        self.top_share[sets] += torch.from_numpy(values.amax(dim=1).numpy() / safe).sum(dim=1)
        if sorted_columns is None:
            rows = values.transpose(1, 2).contiguous()  # [s, c, N]: one pixel per row
        elif sorted_columns.size:
            rows = values[:, :, torch.from_numpy(sorted_columns)].transpose(1, 2).contiguous()
            total, active = total[:, sorted_columns], active[:, sorted_columns]
        else:
            return
        rows.numpy().sort(axis=2)
        self.gini_covered[sets] += torch.from_numpy(active.sum(axis=1).astype(np.float64))
        self.gini[sets] += torch.where(torch.from_numpy(active), gini(rows, torch.from_numpy(total)), 0.0).sum(dim=1)

    def scores(self, empty: float) -> list[dict[str, float]]:
        """Scores (a)-(d) of every set; a set without any covered pixel scores ``empty`` in (b)-(d), and
        one whose sorted columns were all uncovered has no Gini coefficient (NaN)."""
        covered = self.covered.clamp(min=1.0)
        per_set = {f"neurons_per_pixel_a{a:g}": counts.median(dim=1).values for a, counts in self.counts.items()}
        per_set["pixels_per_neuron"] = (self.above_mean_share / covered[:, None]).median(dim=1).values
        per_set["top_neuron_share"] = self.top_share / covered
        per_set["gini"] = torch.where(self.gini_covered > 0, self.gini / self.gini_covered.clamp(min=1.0), math.nan)
        none = self.covered == 0
        for metric in SHARE_METRICS:
            per_set[metric] = torch.where(none, empty, per_set[metric].double())
        return [{metric: float(values[s]) for metric, values in per_set.items()} for s in range(self.covered.numel())]


@dataclass(frozen=True)
class LayerSampling:
    """How one layer's samples are drawn: its ``spatial_shuffle`` null draws and (d)'s pixel sample.

    Attributes:
        draws: number of null draws ``D`` (0: none).
        seed: the task's null seed (it seeds both samples).
        pixels: ``m``, the null pixels scored per draw (at most the canvas's ``P``).
        gini_pixels: the pixels whose Gini coefficients (d) averages, on a layer of more pixels.
        stream: separates the layers' random streams (the layer's index).
    """

    draws: int = 0
    seed: int = 0
    pixels: int = NULL_PIXELS
    gini_pixels: int = GINI_PIXELS
    stream: int = 0


def gini_sample(pixels: int, sample: int, seed: int, stream: int) -> np.ndarray | None:
    """Which of a layer's ``pixels`` pixels (d) is taken over: a seeded uniform sample of ``sample`` of them,
    without replacement, as a boolean mask (``None``: every pixel, when there are at most ``sample``)."""
    if pixels <= sample:
        return None
    mask = np.zeros(pixels, dtype=bool)
    mask[np.random.default_rng([seed, stream, _GINI_STREAM]).choice(pixels, sample, replace=False)] = True
    return mask


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


class LayerTally:
    """The one-pass part of a layer's scores once its thresholds are known: the observed canvas's
    :class:`PixelTally`, its null draws' and the neurons with a non-zero map.

    Args:
        shape: the layer's ``(N, T, H, W)``.
        thresholds: ``tau_a`` of the layer for every ``a``.
        sampling: how its null draws and (d)'s pixel sample are drawn.
    """

    def __init__(self, shape: tuple[int, int, int, int], thresholds: dict[float, float],
                 sampling: LayerSampling) -> None:
        num_neurons, self.num_frames, height, width = shape
        self.sampling = sampling
        self.frame_pixels = height * width
        self.columns = max(1, _BLOCK_ELEMENTS // num_neurons)
        total = self.num_frames * self.frame_pixels
        self.observed = PixelTally(1, total, num_neurons, thresholds)
        self.gini_sample = gini_sample(total, sampling.gini_pixels, sampling.seed, sampling.stream)
        pixels = min(total, sampling.pixels)
        self.shuffled = PixelTally(sampling.draws, pixels, num_neurons, thresholds)
        self.counts = (
            null_frame_counts(self.num_frames, self.frame_pixels, pixels, sampling.seed, sampling.stream)
            if sampling.draws else None
        )
        self.offsets = None if self.counts is None else np.cumsum(self.counts) - self.counts
        self.nonzero = torch.zeros(num_neurons, dtype=torch.bool)

    def update(self, start: int, mags: torch.Tensor) -> None:
        """Add frames ``start ..`` of the layer, ``|C|[N, t * H * W]``, to the observed scores and the null draws."""
        self.nonzero |= mags.amax(dim=1) > 0
        for first in range(0, mags.shape[1], self.columns):
            chunk = mags[:, first : first + self.columns]
            pixel = start * self.frame_pixels + first
            stop = pixel + chunk.shape[1]
            sampled = None if self.gini_sample is None else np.flatnonzero(self.gini_sample[pixel:stop])
            self.observed.update(chunk[None], slice(0, 1), slice(pixel, stop), sampled)
        if self.counts is None:
            return
        sampling = self.sampling
        for index in range(mags.shape[1] // self.frame_pixels):
            frame = start + index
            if self.counts[frame]:
                gen = generator(sampling.seed, sampling.stream * self.num_frames + frame)
                frame_mags = mags[:, index * self.frame_pixels : (index + 1) * self.frame_pixels]
                _add_null_frame(self.shuffled, frame_mags, int(self.counts[frame]), int(self.offsets[frame]), gen)

    def scores(self) -> tuple[dict[str, float], list[dict[str, float]]]:
        """``(scores, draws)`` once every frame was added (see :func:`layer_distribution`)."""
        scores = {"zero_maps": float((~self.nonzero).sum()), **self.observed.scores(empty=0.0)[0]}
        # an all-zero layer stays all zero when shuffled: its draws score 0 like the layer itself
        empty = 0.0 if not bool(self.nonzero.any()) else math.nan
        draws = self.shuffled.scores(empty=empty) if self.sampling.draws else []
        return scores, draws


class LayerDistribution:
    """The scores of one layer and of its null draws from its blocks, in one or three passes.

    * ``thresholds`` given (``tau_a`` known, e.g. the canvas's for its spatial-shuffle control, which
      has the same entries): one pass, every block scored by :class:`LayerTally`.
    * ``exact`` (the layer fits in one chunk of the canvas): one pass. ``|C|`` of the whole layer is
      gathered (the sort needs every entry; at most the canvas's chunk budget, dropped once scored):
      when its last frame arrives ``tau_a`` is found by :func:`contribution_threshold` and the
      layer scored by :class:`LayerTally` as one chunk.
    * otherwise three passes: passes 0 and 1 are the two levels of :class:`RadixThresholds`, pass 2
      scores every block with :class:`LayerTally`.

    Args:
        shape: the layer's ``(N, T, H, W)``.
        alphas: the mass thresholds of (a).
        sampling: how its null draws and (d)'s pixel sample are drawn.
        exact: sort the whole layer (see :func:`sorted_exactly`) rather than stream its thresholds.
        thresholds: ``tau_a`` of every ``a`` when already known (neither sorted nor streamed then).
    """

    def __init__(
        self, shape: tuple[int, int, int, int], alphas: list[float], sampling: LayerSampling, exact: bool,
        thresholds: dict[float, float] | None = None,
    ) -> None:
        self.shape = shape
        self.alphas = list(alphas)
        self.sampling = sampling
        self.exact = exact and thresholds is None
        #: ``tau_a`` of every ``a``, once known
        self.thresholds = thresholds
        #: passes over the layer needed
        self.passes = 1 if thresholds is not None or exact else len(_RADIX_LEVELS) + 1
        self._radix = None if self.passes == 1 else RadixThresholds(self.alphas)
        self._tally = None if thresholds is None else LayerTally(shape, thresholds, sampling)
        self._whole: torch.Tensor | None = None  # exact: ``|C|[N, T, H * W]`` being gathered
        self._received = 0
        self._result: tuple[dict[str, float], list[dict[str, float]]] | None = None

    def update(self, start: int, chunk: torch.Tensor, pass_index: int) -> None:
        """Take frames ``start .. start + t - 1`` of the layer, ``chunk`` float32 ``[N, t, H, W]`` (read only)."""
        if self.exact:
            self._gather(start, chunk)
        elif pass_index < self.passes - 1:
            self._radix.update(block_magnitudes(chunk))
        else:
            self._tally.update(start, block_magnitudes(chunk))

    def _gather(self, start: int, chunk: torch.Tensor) -> None:
        """Exact path: add the block to the whole layer; score the layer once complete."""
        num_neurons, num_frames, height, width = self.shape
        frames = chunk.shape[1]
        if frames == num_frames:
            whole = block_magnitudes(chunk)
        else:
            if self._whole is None:
                self._whole = torch.empty(num_neurons, num_frames, height * width)
            self._whole[:, start : start + frames].copy_(chunk.reshape(num_neurons, frames, -1)).abs_()
            self._received += frames
            if self._received < num_frames:
                return
            whole, self._whole = self._whole.reshape(num_neurons, -1), None
        self.thresholds = contribution_thresholds(whole.numpy(), self.alphas)
        tally = LayerTally(self.shape, self.thresholds, self.sampling)
        tally.update(0, whole)
        self._result = tally.scores()

    def end_pass(self, pass_index: int) -> None:
        """Called once every block of pass ``pass_index`` was given."""
        if self.exact:
            if self._result is None:
                raise RuntimeError(f"pass {pass_index} ended before every frame of the layer was given")
        elif pass_index < self.passes - 1:
            self._radix.end_level()
            if pass_index == len(_RADIX_LEVELS) - 1:
                self.thresholds = self._radix.thresholds
                self._tally = LayerTally(self.shape, self.thresholds, self.sampling)
        else:
            self._result, self._tally = self._tally.scores(), None

    @property
    def result(self) -> tuple[dict[str, float], list[dict[str, float]]]:
        """``(scores, draws)`` once every pass has ended (see :func:`layer_distribution`)."""
        if self._result is None:
            raise RuntimeError("the layer's scores are asked for before every pass over it has ended")
        return self._result


def layer_distribution(
    canvas: Canvas, name: str, alphas: list[float], sampling: LayerSampling = LayerSampling()
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Distribution scores (a)-(d) of layer ``name`` and of each of its null draws, read in frame chunks.

    Reads the layer from ``canvas`` (for use outside an accumulator: :class:`LayerDistribution`
    driven over :meth:`~xinc_bench.canvas.Canvas.frame_chunks`, once per pass).

    Returns ``(scores, draws)``: the layer's scores (with ``zero_maps``) and, per null draw, the
    scores (a)-(d) on ``m`` pixels of the spatially shuffled layer (see the module doc).
    """
    layer = LayerDistribution(canvas.layer_shape(name), alphas, sampling, exact=sorted_exactly(canvas, name))
    for pass_index in range(layer.passes):
        for start, chunk in canvas.frame_chunks(name):
            layer.update(start, chunk, pass_index)
        layer.end_pass(pass_index)
    return layer.result


@PROBES.register("distribution")
class DistributionProbe(ProbeAccumulator):
    """SPEC 5.1 (a)-(d) of every layer and their ``spatial_shuffle`` null draws; headlines are means over layers.

    Passes (per layer, see :class:`LayerDistribution`): when every layer fits in one chunk of the
    canvas, each block holds a whole layer, which is scored in pass 0 and sorted exactly. Else the
    layers of :func:`sorted_layers` (small ones: their copies, kept until their last frame
    arrives, take at most a quarter of the chunk budget together) are gathered from their blocks
    and sorted, and every other layer needs three passes: the two levels of the radix selection
    of ``tau_a`` (passes 0 and 1) and the scores with their null draws (pass 2). So ``passes`` is
    1 when every layer fits in one chunk, else 3. The null's values are gathered in the scoring
    pass, frame by frame from seeded per-frame streams, so they do not depend on the blocks.
    The figure's frame 0 is scored when pass 0 brings it.

    The spatial-shuffle control (:meth:`for_control`) keeps every neuron's values, so each layer's
    ``tau_a`` is the canvas's: a control made once the canvas's passes have ended takes them and
    needs one pass.

    Params:
        alphas ([0.1, 0.5]): the mass thresholds of (a).
        null_draws (0), null_seed (0): the task's null draws and their seed.
        null_pixels (8192): ``m``, the shuffled pixels scored per null draw.
        gini_pixels (131072): (d) is averaged over a seeded sample of this many pixels on a layer of more.

    Raises:
        XincError: ``null_pixels`` or ``gini_pixels`` is not a positive number.
    """

    def __init__(self, canvas: Canvas, params: dict[str, Any],
                 thresholds: dict[str, dict[float, float]] | None = None) -> None:
        super().__init__(canvas, params)
        self.alphas = [float(a) for a in params.get("alphas", [0.1, 0.5])]
        self.draws = int(params.get("null_draws", 0))
        seed = int(params.get("null_seed", 0))
        null_pixels = int(params.get("null_pixels", NULL_PIXELS))
        gini_pixels = int(params.get("gini_pixels", GINI_PIXELS))
        for name, value in (("null_pixels", null_pixels), ("gini_pixels", gini_pixels)):
            if value < 1:
                raise XincError(f"parameter {name}={value} must be a positive number of pixels")
        exact = sorted_layers(canvas)
        self.layers = {
            name: LayerDistribution(
                canvas.layer_shape(name),
                self.alphas,
                LayerSampling(self.draws, seed, null_pixels, gini_pixels, stream=index),
                exact=name in exact,
                thresholds=None if thresholds is None else thresholds[name],
            )
            for index, name in enumerate(canvas.layer_names)
        }
        self.passes = max((layer.passes for layer in self.layers.values()), default=1)
        #: per layer, the fraction of neurons above ``tau_alpha`` of frame 0 at each pixel of frame 0, ``[H, W]``
        self.first_frames: dict[str, torch.Tensor] = {}

    def for_control(self, canvas: Canvas) -> ProbeAccumulator:
        """The probe on the spatial-shuffle control, without null draws; with the canvas's ``tau_a`` of
        every layer (one pass) once every pass over the canvas has ended, else finding its own."""
        thresholds = {name: layer.thresholds for name, layer in self.layers.items()}
        known = all(value is not None for value in thresholds.values())
        return type(self)(canvas, {**self.params, "null_draws": 0}, thresholds if known else None)

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        if pass_index == 0 and start == 0:
            frame = block_magnitudes(chunk)[:, : chunk.shape[2] * chunk.shape[3]]
            self.first_frames[layer] = _neurons_per_pixel_map(frame, self.alphas[0]).reshape(chunk.shape[2:])
        state = self.layers[layer]
        if pass_index < state.passes:
            state.update(start, chunk, pass_index)

    def end_pass(self, pass_index: int) -> None:
        for state in self.layers.values():
            if pass_index < state.passes:
                state.end_pass(pass_index)

    def compute(self) -> ProbeResult:
        scores: dict[str, float] = {}
        per_layer: dict[str, dict[str, float]] = {}
        null_layers: dict[str, list[dict[str, float]]] = {}
        for name, state in self.layers.items():
            per_layer[name], null_layers[name] = state.result
            scores.update({f"{name}/{metric}": value for metric, value in per_layer[name].items()})
        for metric in next(iter(per_layer.values())):
            if metric != "zero_maps":
                scores[metric] = float(np.mean([values[metric] for values in per_layer.values()]))
        nulls = {}
        if self.draws:
            per_draw = [{name: null_layers[name][d] for name in self.layers} for d in range(self.draws)]
            nulls["spatial_shuffle"] = collect_null_draws(per_draw)
        first_frames = {name: self.first_frames[name] for name in self.layers}
        figures = {"neurons_per_pixel": _neurons_per_pixel_figure(first_frames, self.alphas[0])}
        return ProbeResult(scores=scores, figures=figures, nulls=nulls)


def _neurons_per_pixel_map(mags: torch.Tensor, alpha: float) -> torch.Tensor:
    """The fraction of neurons above ``tau_alpha`` of one frame ``|C|[N, H * W]`` at each of its pixels, ``[H * W]``.

    ``tau_alpha`` is found from at most :data:`FIGURE_ENTRIES` of the frame's entries, taken at an
    even stride (all of them when the frame has no more, e.g. every layer of the MLP zoo at 64x128).
    """
    flat = mags.reshape(-1)
    stride = max(1, -(-flat.numel() // FIGURE_ENTRIES))
    tau = contribution_threshold(flat[::stride].numpy(), alpha)
    above = np.zeros(mags.shape[1], dtype=np.int64)
    rows = max(1, _BLOCK_ELEMENTS // max(1, mags.shape[1]))
    for first in range(0, mags.shape[0], rows):  # counted a block of rows at a time: no frame-sized temporary
        above += np.add.reduce(mags[first : first + rows].numpy() > tau, axis=0, dtype=np.int64)
    return torch.from_numpy(above / mags.shape[0]).float()


def _neurons_per_pixel_figure(maps: dict[str, torch.Tensor], alpha: float) -> Any:
    """Per layer, its map of :func:`_neurons_per_pixel_map` on frame 0."""
    fig, axes = subplots(1, len(maps), figsize=(4 * len(maps), 2.6), squeeze=False)
    for axis, (name, image) in zip(axes[0], maps.items()):
        shown = axis.imshow(image.numpy(), cmap="magma", vmin=0)
        axis.set_title(f"{name}: neurons per pixel (a={alpha:g})", fontsize=9)
        axis.axis("off")
        fig.colorbar(shown, ax=axis, fraction=0.03)
    fig.tight_layout()
    return fig
