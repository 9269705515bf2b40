"""The ``color`` probe (SPEC 5.2, paper section 4.1): does contribution follow colour?

For each layer, over all ``P = T * H * W`` pixels, with ``S(p) = sum_n |C_n(p)|`` and
``I(p)`` = the sum of the min-max normalised RGB channels:

* ``intensity_pearson`` / ``intensity_spearman``: Pearson and Spearman correlation of S with I.
* ``neuron_channel_correlation``: the median over neurons and channels of the Pearson correlation
  of ``|C_n|`` with each RGB channel; per layer also ``neuron_{red,green,blue}_correlation``
  (median over neurons for one channel).

A correlation with a constant input (an all-zero neuron or layer, a flat image) is undefined:
it is NaN and left out of medians and layer means; a flat intensity or flat RGB channels put the
scores they leave undefined into ``ProbeResult.absent`` with the reason.

Null (``pixel_permutation``): in draw ``d`` the signal's pixels are permuted by ``pi_d`` (within
each frame), so ``I`` and the RGB channel maps keep their values but lose their alignment with
the canvas. The intensity correlations of a draw use the per-pixel S already kept (Spearman: the
ranks of I permuted along, as ranks commute with permutations). For the neuron correlations only
the co-moments change under a permutation (the per-neuron and per-channel moments do not), so the
chunk pass accumulates the cross sums ``sum_p |C_n(p)| c(pi_d(p))`` for all draws at once, one
matmul per block of pixels against the ``3 D`` permuted channel maps of the block.

The probe is an accumulator (:class:`ColorProbe`) that sees each frame block of a layer once:
S(p) is kept for every pixel, and the per-neuron channel correlations come from per-neuron
moments merged block by block (Chan et al.'s pairwise update of means, centred sums of squares
and co-moments, as exact as the two-pass formula), with the per-neuron minimum and maximum
deciding which neurons are constant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.stats import rankdata

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .accumulator import ProbeAccumulator, ProbeResult
from .image_features import intensity
from .nulls import null_order
from .numerics import (
    block_magnitudes,
    block_neuron_extrema,
    block_pixel_totals,
    finite_median,
    minmax,
    pearson,
    pearson_rows,
)
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

CHANNELS = ("red", "green", "blue")

#: float64 elements of one block of neuron rows centred at a time
_BLOCK_ELEMENTS = 1 << 24


class ChannelMoments:
    """Per-neuron moments of ``|C_n|`` and its co-moments with the RGB channels, merged over pixel chunks.

    Chunks are merged with Chan et al.'s pairwise update. Each neuron's values are shifted by
    its first value (and the channels are centred by the caller), so that merging means far from
    zero loses no precision; the centred sums do not depend on the shift.

    Attributes:
        count: pixels seen.
        shift: ``[N]`` value subtracted from ``|C_n|`` (its value at the first pixel of the first chunk).
        mean: ``[N]`` mean of ``|C_n| - shift_n``; ``channel_mean``: ``[3]`` mean of each channel.
        squares: ``[N]`` sum of squared deviations of ``|C_n|`` from its mean.
        comoment: ``[N, 3]`` sum of ``(|C_n| - mean_n)(c - channel_mean_c)``.
        cross: ``[N, D * 3]`` sum of ``(|C_n| - shift_n) c(pi_d(p))`` for each null draw ``d``
            (draw-major: column ``3 d + c``); ``D = 0`` without null draws.
        low, high: ``[N]`` minimum and maximum of ``|C_n|`` (given with :meth:`add_extrema`).
    """

    def __init__(self, num_neurons: int, draws: int = 0) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.mean = torch.zeros(num_neurons, dtype=torch.float64)
        self.channel_mean = torch.zeros(3, dtype=torch.float64)
        self.squares = torch.zeros(num_neurons, dtype=torch.float64)
        self.comoment = torch.zeros(num_neurons, 3, dtype=torch.float64)
        self.cross = torch.zeros(num_neurons, draws * 3, dtype=torch.float64)
        self.low = torch.full((num_neurons,), math.inf)
        self.high = torch.full((num_neurons,), -math.inf)

    def add(self, mags: torch.Tensor, channels: torch.Tensor, permuted: torch.Tensor | None = None) -> None:
        """Merge a chunk: ``mags`` ``|C|[N, m]`` and ``channels[m, 3]`` (float64) of the same m pixels.

        Args:
            permuted: ``[m, D * 3]`` float64, the channels at each null draw's permuted pixels
                (draw-major), added to :attr:`cross` from the same float64 rows; None without draws.
        """
        count = mags.shape[1]
        block = max(1, _BLOCK_ELEMENTS // max(1, count))
        if self.shift is None:
            self.shift = mags[:, 0].double()
        channel_mean = channels.mean(dim=0)
        centred_channels = channels - channel_mean
        mean = torch.empty_like(self.mean)
        squares = torch.empty_like(self.squares)
        comoment = torch.empty_like(self.comoment)
        for start in range(0, mags.shape[0], block):
            rows = mags[start : start + block].double() - self.shift[start : start + block, None]
            if permuted is not None:
                self.cross[start : start + block] += rows @ permuted
            mean[start : start + block] = rows.mean(dim=1)
            rows -= mean[start : start + block, None]
            squares[start : start + block] = (rows * rows).sum(dim=1)
            comoment[start : start + block] = rows @ centred_channels
        total = self.count + count
        weight = self.count * count / total
        delta, channel_delta = mean - self.mean, channel_mean - self.channel_mean
        self.squares += squares + delta * delta * weight
        self.comoment += comoment + delta[:, None] * channel_delta[None, :] * weight
        self.mean += delta * (count / total)
        self.channel_mean += channel_delta * (count / total)
        self.count = total

    def add_extrema(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Widen :attr:`low` and :attr:`high` by a chunk's per-neuron minimum and maximum of ``|C|`` (``[N]`` each)."""
        self.low = torch.minimum(self.low, low)
        self.high = torch.maximum(self.high, high)

    def correlations(self, channels: torch.Tensor) -> torch.Tensor:
        """``[N, 3]`` Pearson correlation of each neuron with each channel of all ``channels[P, 3]``.

        NaN where the neuron or the channel is constant (max == min, as ``numerics.pearson_rows``).
        """
        return self._normalise(self.comoment, channels)

    def null_correlations(self, channels: torch.Tensor) -> torch.Tensor:
        """``[D, N, 3]``: :meth:`correlations` with the channels permuted as in each null draw.

        A permutation keeps every neuron's and channel's mean and spread, so only the co-moment
        changes: ``sum_p (|C_n(p)| - shift_n) c(pi_d(p))`` less ``mean_n`` times the channel sum.
        """
        draws = self.cross.shape[1] // 3
        cross = self.cross.reshape(-1, draws, 3).permute(1, 0, 2)
        comoment = cross - self.mean[None, :, None] * channels.sum(dim=0)[None, None, :]
        return self._normalise(comoment, channels)

    def _normalise(self, comoment: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """Co-moments ``[..., N, 3]`` -> correlations, NaN where the neuron or the channel is constant."""
        channel_norms = torch.linalg.vector_norm(channels - channels.mean(dim=0), dim=0)
        valid = (self.high > self.low)[:, None] & (channels.amax(dim=0) > channels.amin(dim=0))[None, :]
        norms = self.squares.sqrt()[:, None] * channel_norms[None, :]
        correlation = comoment / torch.where(valid, norms, 1.0)
        return torch.where(valid, correlation, math.nan).clamp(-1.0, 1.0)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank) of the flat ``values``, float64."""
    return torch.from_numpy(rankdata(values.reshape(-1).double().numpy()))


def centred_channels(frames: torch.Tensor) -> torch.Tensor:
    """The RGB channels of ``frames[T, H, W, 3]`` as ``[P, 3]`` float64, centred (so chunk means merge exactly)."""
    channels = frames.reshape(-1, 3).double()
    return channels - channels.mean(dim=0)


class LayerColor:
    """The colour statistics of one layer, accumulated from its frame blocks.

    Keeps ``S(p)`` for every pixel (``[P]`` float64) and the per-neuron :class:`ChannelMoments`
    (with the cross sums of the null draws); blocks may come in any order, each frame once.

    Args:
        channels: ``[P, 3]`` centred RGB channels (:func:`centred_channels`), shared, not copied.
        num_neurons: N of the layer.
        order: ``[D, P]`` pixel permutations of the null draws
            (:func:`~xinc_bench.probes.nulls.frame_permutations`); None for none.
    """

    def __init__(self, channels: torch.Tensor, num_neurons: int, order: torch.Tensor | None) -> None:
        self.channels = channels
        self.order = order
        self.draws = 0 if order is None else order.shape[0]
        self.moments = ChannelMoments(num_neurons, self.draws)
        self.total = torch.zeros(channels.shape[0], dtype=torch.float64)

    def update(self, start: int, chunk: torch.Tensor) -> None:
        """Add frames ``start .. start + t - 1`` of the layer, ``chunk`` float32 ``[N, t, H, W]`` (read only).

        ``|C|``, ``S`` and the extrema are the block's shared values
        (:func:`~xinc_bench.probes.numerics.block_magnitudes`). The moments are merged in pixel
        chunks small enough for their permuted channels ``[m, 3 D]`` to stay bounded.
        """
        mags = block_magnitudes(chunk)
        first = start * chunk.shape[2] * chunk.shape[3]
        self.total[first : first + mags.shape[1]] = block_pixel_totals(chunk)
        self.moments.add_extrema(*block_neuron_extrema(chunk))
        pixel_block = max(1, _BLOCK_ELEMENTS // max(1, 3 * self.draws))  # bounds the permuted channels of a chunk
        for offset in range(0, mags.shape[1], pixel_block):
            stop = min(offset + pixel_block, mags.shape[1])
            pixels = slice(first + offset, first + stop)
            permuted = None
            if self.order is not None:
                permuted = self.channels[self.order[:, pixels]].permute(1, 0, 2).reshape(stop - offset, self.draws * 3)
            self.moments.add(mags[:, offset:stop], self.channels[pixels], permuted)

    def scores(self, light: torch.Tensor, light_ranks: torch.Tensor) -> tuple[dict[str, float], list[dict[str, float]]]:
        """The layer's colour scores and their null draws, once every frame was added.

        Args:
            light: the flat intensity ``I`` ``[P]``; light_ranks: its :func:`_ranks`.

        Returns:
            ``(scores, draws)``: ``draws[d]`` holds ``intensity_pearson``, ``intensity_spearman`` and
            ``neuron_channel_correlation`` of null draw ``d``.
        """
        total_ranks = _ranks(self.total)
        scores = {
            "intensity_pearson": pearson(self.total, light),
            "intensity_spearman": pearson(total_ranks, light_ranks),
        }
        per_channel = self.moments.correlations(self.channels)
        for c, channel in enumerate(CHANNELS):
            scores[f"neuron_{channel}_correlation"] = finite_median(per_channel[:, c])
        scores["neuron_channel_correlation"] = finite_median(per_channel.reshape(-1))
        if self.order is None:
            return scores, []
        order, draws = self.order, self.draws
        null_channel = self.moments.null_correlations(self.channels).reshape(draws, -1).nanmedian(dim=1).values
        null_scores = {
            "intensity_pearson": pearson_rows(light[order], self.total),
            "intensity_spearman": pearson_rows(light_ranks[order], total_ranks),
            "neuron_channel_correlation": null_channel,
        }
        return scores, [{metric: float(values[d]) for metric, values in null_scores.items()} for d in range(draws)]


def layer_color(canvas: Canvas, name: str) -> dict[str, float]:
    """Colour scores of layer ``name`` against ``canvas.frames``, reading the layer once in frame chunks."""
    return layer_color_and_nulls(canvas, name, None)[0]


def layer_color_and_nulls(
    canvas: Canvas, name: str, order: torch.Tensor | None
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Colour scores of layer ``name`` and their null draws, reading the layer once in frame chunks.

    The one-layer functional form of :class:`ColorProbe` (the probe itself never reads a layer).

    Args:
        order: ``[D, P]`` pixel permutations of the null draws (:func:`~xinc_bench.probes.nulls.frame_permutations`);
            None for none.

    Returns:
        :meth:`LayerColor.scores`.
    """
    state = LayerColor(centred_channels(canvas.frames), canvas.layer_shape(name)[0], order)
    for start, chunk in canvas.frame_chunks(name):
        state.update(start, chunk)
    light = intensity(canvas.frames).reshape(-1)
    return state.scores(light, _ranks(light))


def _absent(canvas: Canvas) -> dict[str, str]:
    """Scores undefined on every layer because the signal is flat, with the reason."""
    reasons = {}
    light = intensity(canvas.frames)
    if float(light.amax()) <= float(light.amin()):
        for metric in ("intensity_pearson", "intensity_spearman"):
            reasons[metric] = "the signal's intensity I(p) is constant (a flat image): no correlation with it"
    rgb = canvas.frames.reshape(-1, 3)
    if bool((rgb.amax(dim=0) <= rgb.amin(dim=0)).all()):
        reasons["neuron_channel_correlation"] = "every RGB channel of the signal is constant: no correlation with them"
    return {
        score: reason
        for metric, reason in reasons.items()
        for score in (metric, *(f"{name}/{metric}" for name in canvas.layer_names))
    }


@PROBES.register("color")
class ColorProbe(ProbeAccumulator):
    """SPEC 5.2 for every layer; headline scores are means over layers.

    One pass: each block of a layer goes into the layer's :class:`LayerColor` (its per-pixel
    ``S`` ``[P]`` float64, per-neuron moments and null cross sums); the scores, null draws and
    the figure (frame 0 of each ``S``) come from those. Memory: that state for every layer at
    once, the centred channels ``[P, 3]`` and the null permutations ``[D, P]``.

    Params:
        null_draws, null_seed: pixel-permutation null draws (0: none) and their seed.
    """

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        self.order = null_order(canvas, params)
        channels = centred_channels(canvas.frames)
        self.layers = {
            name: LayerColor(channels, canvas.layer_shape(name)[0], self.order) for name in canvas.layer_names
        }

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        self.layers[layer].update(start, chunk)

    def compute(self) -> ProbeResult:
        canvas = self.canvas
        light = intensity(canvas.frames).reshape(-1)
        light_ranks = _ranks(light)
        num_draws = 0 if self.order is None else self.order.shape[0]
        per_layer: dict[str, dict[str, float]] = {}
        draws: list[dict[str, dict[str, float]]] = [{} for _ in range(num_draws)]
        for name, state in self.layers.items():
            per_layer[name], layer_draws = state.scores(light, light_ranks)
            for draw, values in zip(draws, layer_draws):
                draw[name] = values
        _, height, width = canvas.shape
        first_frames = {
            name: state.total[: height * width].reshape(height, width)
            for name, state in self.layers.items()
        }
        return ProbeResult(
            scores=collect_scores(per_layer),
            figures={"contribution_vs_intensity": _figure(canvas, first_frames)},
            nulls={"pixel_permutation": collect_null_draws(draws)} if num_draws else {},
            absent=_absent(canvas),
        )


def _figure(canvas: Canvas, first_frames: dict[str, torch.Tensor]) -> Any:
    """Per layer (rows), frame 0: min-max S beside min-max I and their difference.

    Args:
        first_frames: per layer, ``S`` of frame 0, ``[H, W]``.
    """
    names = canvas.layer_names
    light = minmax(intensity(canvas.frames[:1]))[0]
    fig, axes = subplots(len(names), 3, figsize=(11, 2.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        total = minmax(first_frames[name])
        panels = (
            (total, f"{name}: S(p)", "magma", (0, 1)),
            (light, "I(p)", "gray", (0, 1)),
            (total - light, "S - I (min-max)", "coolwarm", (-1, 1)),
        )
        for axis, (image, title, cmap, limits) in zip(row, panels):
            shown = axis.imshow(image.numpy(), cmap=cmap, vmin=limits[0], vmax=limits[1])
            axis.set_title(title, fontsize=9)
            axis.axis("off")
            fig.colorbar(shown, ax=axis, fraction=0.03)
    fig.tight_layout()
    return fig
