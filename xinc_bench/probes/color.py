"""The ``color`` probe (SPEC 5.2, paper section 4.1): does contribution follow colour?

For each layer, over all ``P = T * H * W`` pixels, with ``S(p) = sum_n |C_n(p)|`` and
``I(p)`` = the sum of the min-max normalised RGB channels:

* ``intensity_pearson`` / ``intensity_spearman``: Pearson and Spearman correlation of S with I.
* ``neuron_channel_correlation``: the median over neurons and channels of the Pearson correlation
  of ``|C_n|`` with each RGB channel; per layer also ``neuron_{red,green,blue}_correlation``
  (median over neurons for one channel).

A correlation with a constant input (an all-zero neuron or layer, a flat image) is undefined:
it is NaN and left out of medians and layer means.

A layer is read once, in frame chunks: S(p) is kept for every pixel, and the per-neuron channel
correlations come from per-neuron moments merged chunk by chunk (Chan et al.'s pairwise update of
means, centred sums of squares and co-moments, as exact as the two-pass formula), with the
per-neuron minimum and maximum deciding which neurons are constant.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..canvas.canvas import Canvas
from ..registry import PROBES
from .base import ProbeResult
from .features import (
    collect_scores,
    finite_median,
    intensity,
    magnitude_chunks,
    minmax,
    pearson,
    pyplot,
    spearman,
)

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
        shift: ``[N]`` value subtracted from ``|C_n|`` (its value at the first pixel).
        mean: ``[N]`` mean of ``|C_n| - shift_n``; ``channel_mean``: ``[3]`` mean of each channel.
        squares: ``[N]`` sum of squared deviations of ``|C_n|`` from its mean.
        comoment: ``[N, 3]`` sum of ``(|C_n| - mean_n)(c - channel_mean_c)``.
        low, high: ``[N]`` minimum and maximum of ``|C_n|``.
    """

    def __init__(self, num_neurons: int) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.mean = torch.zeros(num_neurons, dtype=torch.float64)
        self.channel_mean = torch.zeros(3, dtype=torch.float64)
        self.squares = torch.zeros(num_neurons, dtype=torch.float64)
        self.comoment = torch.zeros(num_neurons, 3, dtype=torch.float64)
        self.low = torch.full((num_neurons,), math.inf)
        self.high = torch.full((num_neurons,), -math.inf)

    def add(self, mags: torch.Tensor, channels: torch.Tensor) -> None:
        """Merge a chunk: ``mags`` ``|C|[N, m]`` and ``channels[m, 3]`` (float64) of the same m pixels."""
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
        self.low = torch.minimum(self.low, mags.amin(dim=1))
        self.high = torch.maximum(self.high, mags.amax(dim=1))

    def correlations(self, channels: torch.Tensor) -> torch.Tensor:
        """``[N, 3]`` Pearson correlation of each neuron with each channel of all ``channels[P, 3]``.

        NaN where the neuron or the channel is constant (max == min, as ``features.pearson_rows``).
        """
        channel_norms = torch.linalg.vector_norm(channels - channels.mean(dim=0), dim=0)
        valid = (self.high > self.low)[:, None] & (channels.amax(dim=0) > channels.amin(dim=0))[None, :]
        norms = self.squares.sqrt()[:, None] * channel_norms[None, :]
        correlation = self.comoment / torch.where(valid, norms, 1.0)
        return torch.where(valid, correlation, math.nan).clamp(-1.0, 1.0)


def layer_color(canvas: Canvas, name: str) -> dict[str, float]:
    """Colour scores of layer ``name`` against ``canvas.frames``, reading the layer once in frame chunks."""
    num_neurons, _, height, width = canvas.layer_shape(name)
    channels = canvas.frames.reshape(-1, 3).double()
    channels = channels - channels.mean(dim=0)  # centred once, so that chunk means merge exactly
    moments = ChannelMoments(num_neurons)
    totals = []
    for start, mags in magnitude_chunks(canvas, name):
        totals.append(mags.sum(dim=0, dtype=torch.float64))
        moments.add(mags, channels[start * height * width : start * height * width + mags.shape[1]])
    total = torch.cat(totals)
    light = intensity(canvas.frames).reshape(-1)
    scores = {
        "intensity_pearson": pearson(total, light),
        "intensity_spearman": spearman(total, light),
    }
    per_channel = moments.correlations(channels)
    for c, channel in enumerate(CHANNELS):
        scores[f"neuron_{channel}_correlation"] = finite_median(per_channel[:, c])
    scores["neuron_channel_correlation"] = finite_median(per_channel.reshape(-1))
    return scores


@PROBES.register("color")
def color(canvas: Canvas, params: dict[str, Any]) -> ProbeResult:
    """SPEC 5.2 for every layer; headline scores are means over layers. No parameters."""
    per_layer = {name: layer_color(canvas, name) for name in canvas.layer_names}
    return ProbeResult(scores=collect_scores(per_layer), figures={"contribution_vs_intensity": _figure(canvas)})


def _figure(canvas: Canvas) -> Any:
    """Per layer (rows), frame 0: min-max S beside min-max I and their difference."""
    plt = pyplot()
    names = canvas.layer_names
    light = minmax(intensity(canvas.frames[:1]))[0]
    fig, axes = plt.subplots(len(names), 3, figsize=(11, 2.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        total = minmax(canvas.layer_frames(name, 0, 1)[:, 0].abs().sum(dim=0))
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
