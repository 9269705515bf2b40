"""The ``faithfulness`` probe (SPEC 5.8): does a tracer's canvas agree with ablation?

The ground truth is the ``ablation`` tracer (SPEC 4.3): the contribution of neuron n to pixel p is
the model output minus the output with n zeroed, summed over RGB. The probe needs the model
(``params["model"]``, an ``nn.Module`` in eval mode, passed by the runner). The canvas under test
is the probed canvas itself, or, when ``params["tracer"]`` names another tracer than the one
that made it, that tracer's canvas computed on the model.

Per layer, with ``|C|`` the canvas under test and ``|A|`` the ablation canvas:

* ``ablation_correlation``: Pearson correlation of ``|C|`` and ``|A|`` over all (neuron, pixel)
  entries (per layer also ``signed_correlation`` of C and A without absolute values);
* ``ablation_neuron_correlation``: the median over neurons of the Pearson correlation of
  ``|C_n|`` and ``|A_n|`` over pixels (neurons with a constant map in either are left out);
* ``deletion_contrast``: the ``k = max(1, round(deletion_fraction N))`` neurons with the most
  canvas mass inside a region are zeroed together; the PSNR (output clamped to [0, 1], against
  the frames; MSE floored at 1e-10) drops by ``drop_inside`` dB in the region and ``drop_outside``
  dB outside it; ``deletion_contrast = drop_inside - drop_outside`` (per layer also both drops).
  The region is the largest segment of the masks (``region: auto`` with masks, or ``segment``)
  or the centre block of half the height and width of every frame (``auto`` without masks, or
  ``centre``).

Nulls (``params["null_draws"]`` ``D``, ``params["null_seed"]``):

* ``neuron_permutation`` for the two correlations: each sampled canvas map is paired with the
  ablation map of another sampled neuron (a uniform permutation of the sample per draw, so a
  neuron keeps its own map with probability 1/k). The pairings are read off one Gram matrix of
  the row-centred maps (:class:`MapAgreement`, merged block by block): no extra forward pass, no
  pass per draw.
* ``random_neurons`` for ``deletion_contrast``: as many neurons as the test zeroes, drawn at
  random from the whole layer instead of by canvas mass (:func:`random_deletions`). Each draw is
  one forward pass of the signal per layer, so only ``min(D, deletion_null_draws)`` draws are
  made (default 5): with 5 draws the effect size rests on a rough standard deviation and the
  smallest p-value is 1/6, which the task YAML says.

Kernel canvases (the ``cnn`` tracer of the NeRV family, SPEC 4.2) are checked against kernel
ablation: zeroing kernel ``(i, o)``'s weight and bias share
(:func:`~xinc_bench.canvas.cnn.kernel_ablated_output`; the sample's maps are computed from the
layer on, in batches of kernels, :func:`~xinc_bench.canvas.cnn.kernel_ablation_maps`). Each
ablation still costs the rest of the network on the whole signal, so the correlations use a
seeded sample of at most ``max_neurons`` neurons per layer (default 256: every neuron of the MLP
zoo's layers; 256 of the paper NeRV's 18,352 block-1 kernels), and on video canvases the ablation maps are computed on at most ``max_frames`` frames,
evenly spaced over the video (:func:`frame_sample`; default 8: every frame of the zoo's 8-frame
videos, 8 of the paper NeRV's 30), over which the correlations are then taken: each ablated
neuron costs ``max_frames`` rather than ``T`` passes of the rest of the network, and its map
``max_frames / T`` of the memory. The sample is drawn from the layer sizes alone, so one pass over the canvas (an
accumulator, :class:`FaithfulnessProbe`) merges the sampled maps' moments against their ablation
maps and every neuron's region mass block by block: the canvas's size is not bounded by memory
(the ablation maps of the sample, ``[k, T, H, W]`` per layer, are held whole).

Canvas layers are matched to ablation layers by name; canvases of the ``mlp`` tracers name
layer ``layerK`` after the input of the model's ``linears[K - 1]``, which is mapped
automatically; any other naming needs ``params["layer_map"]`` (canvas layer -> module name).
"""

from __future__ import annotations

import copy
import math
import re
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..canvas.ablation import ablate_output
from ..canvas.canvas import Canvas
from ..canvas.cnn import kernel_ablated_output, kernel_ablation_maps
from ..inrs.base import render_output
from ..errors import XincError
from ..registry import PROBES, TRACERS
from .accumulator import ProbeAccumulator, ProbeResult
from .nulls import generator, neuron_sample, permutations
from .numerics import block_magnitudes, finite_median, stacked_group_sums
from .plotting import subplots
from .scores import collect_scores
from .stats import collect_null_draws

REGIONS = ("auto", "segment", "centre")
#: default ``random_neurons`` draws of the deletion test (each one forward pass of the signal per layer)
DELETION_NULL_DRAWS = 5
_MSE_FLOOR = 1e-10
_SCATTER_POINTS = 200_000
#: entries of a ``[k, P]`` block of maps held in float64 at once by :class:`MapAgreement`
_BLOCK_ELEMENTS = 1 << 22


def ablation_layer_names(
    model: nn.Module, shape: tuple[int, int, int], layers: list[str], layer_map: dict[str, str] | None
) -> dict[str, str]:
    """Canvas layer -> ablation layer (qualified module name) for every canvas layer."""
    ablatable = TRACERS.get("ablation").layers(model, shape)
    return {layer: _ablation_name(model, layer, ablatable, layer_map or {}) for layer in layers}


def ablation_canvas(
    model: nn.Module, shape: tuple[int, int, int], counts: dict[str, int], chunk_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The ablation canvas ``[N, T, H, W]`` of the named layers and the plain reconstruction ``[T, H, W, 3]``."""
    tracer = TRACERS.get("ablation")
    available = tracer.layers(model, shape)
    for name, count in counts.items():
        if name not in available:
            raise XincError(
                f"the model has no ablatable layer {name!r} (it has {', '.join(available)}); pass "
                "params layer_map={canvas layer: module name}"
            )
        if available[name] != count:
            raise XincError(
                f"the canvas layer for {name!r} has {count} neurons but the model's layer has "
                f"{available[name]}; probe a canvas computed from this model"
            )
    arrays = {name: np.empty((count, *shape), np.float32) for name, count in counts.items()}
    recon = np.empty((*shape, 3), np.float32)
    tracer.trace(model, shape, arrays, recon, chunk_size)
    return {name: torch.from_numpy(array) for name, array in arrays.items()}, torch.from_numpy(recon)


class MapMoments:
    """Per-row means and centred sums of squares of ``k`` maps, and their centred cross products with
    ``k`` other maps, merged over pixel blocks (Chan et al.'s pairwise update, as exact as the
    two-pass formulas).

    Attributes:
        count: pixels seen.
        mean_x, mean_y: ``[k]`` float64 row means; squares_x, squares_y: ``[k]`` centred sums of squares.
        cross: ``[k, k]`` float64 ``sum_p (x_i - mean_x_i)(y_j - mean_y_j)`` (every pairing), or only
            its diagonal ``[k]`` with ``pairs=False``.
        low_x, high_x, low_y, high_y: ``[k]`` row minima and maxima.
    """

    def __init__(self, rows: int, pairs: bool) -> None:
        self.count = 0
        self.pairs = pairs
        self.mean_x = torch.zeros(rows, dtype=torch.float64)
        self.mean_y = torch.zeros(rows, dtype=torch.float64)
        self.squares_x = torch.zeros(rows, dtype=torch.float64)
        self.squares_y = torch.zeros(rows, dtype=torch.float64)
        self.cross = torch.zeros((rows, rows) if pairs else (rows,), dtype=torch.float64)
        self.low_x = torch.full((rows,), math.inf)
        self.high_x = torch.full((rows,), -math.inf)
        self.low_y = torch.full((rows,), math.inf)
        self.high_y = torch.full((rows,), -math.inf)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Merge the same ``m`` pixels of both sets of maps, ``x[k, m]`` and ``y[k, m]`` (float32)."""
        count = x.shape[1]
        if count == 0:
            return
        a, b = x.double(), y.double()
        mean_x, mean_y = a.mean(dim=1), b.mean(dim=1)
        a -= mean_x[:, None]
        b -= mean_y[:, None]
        cross = a @ b.T if self.pairs else (a * b).sum(dim=1)
        total = self.count + count
        weight = self.count * count / total
        delta_x, delta_y = mean_x - self.mean_x, mean_y - self.mean_y
        self.squares_x += (a * a).sum(dim=1) + delta_x * delta_x * weight
        self.squares_y += (b * b).sum(dim=1) + delta_y * delta_y * weight
        self.cross += cross + (delta_x[:, None] * delta_y[None, :] if self.pairs else delta_x * delta_y) * weight
        self.mean_x += delta_x * (count / total)
        self.mean_y += delta_y * (count / total)
        self.count = total
        self.low_x, self.high_x = torch.minimum(self.low_x, x.amin(dim=1)), torch.maximum(self.high_x, x.amax(dim=1))
        self.low_y, self.high_y = torch.minimum(self.low_y, y.amin(dim=1)), torch.maximum(self.high_y, y.amax(dim=1))

    def constant(self) -> bool:
        """Whether all entries of the ``x`` maps, or all of the ``y`` maps, are equal (no correlation over entries)."""
        return not (self.high_x.max() > self.low_x.min() and self.high_y.max() > self.low_y.min())

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Over all ``k P`` entries: the centred cross products of each pairing (``[k, k]``, or the
        diagonal ``[k]``) and the centred sums of squares of ``x`` and of ``y``.

        The rows' deviations from the global means add ``P (a_i - a)(b_j - b)`` to the rows' own sums.
        """
        offsets_x, offsets_y = self.mean_x - self.mean_x.mean(), self.mean_y - self.mean_y.mean()
        outer = offsets_x[:, None] * offsets_y[None, :] if self.pairs else offsets_x * offsets_y
        spread_x = (self.squares_x + self.count * offsets_x**2).sum()
        spread_y = (self.squares_y + self.count * offsets_y**2).sum()
        return self.cross + self.count * outer, spread_x, spread_y


class MapAgreement:
    """The correlations of ``k`` canvas maps with their ``k`` ablation maps, from frame blocks of both.

    Keeps :class:`MapMoments` of ``|C|`` against ``|A|`` (every pairing, for the
    ``neuron_permutation`` null) and of the signed maps (own pairs only): ``[k, k]`` and a few
    ``[k]`` float64, never the maps. Blocks may come in any order and size; pixels are merged in
    sub-blocks of at most ``_BLOCK_ELEMENTS`` float64 entries.

    Args:
        rows: ``k``.
    """

    def __init__(self, rows: int) -> None:
        self.magnitudes = MapMoments(rows, pairs=True)
        self.signed = MapMoments(rows, pairs=False)

    def add(self, tested: torch.Tensor, truth: torch.Tensor) -> None:
        """Add the same pixels of the canvas maps ``tested[k, ...]`` and the ablation maps ``truth[k, ...]``."""
        x, y = tested.reshape(tested.shape[0], -1), truth.reshape(truth.shape[0], -1)
        step = max(1, _BLOCK_ELEMENTS // max(1, x.shape[0]))
        for first in range(0, x.shape[1], step):
            a, b = x[:, first : first + step], y[:, first : first + step]
            self.magnitudes.add(a.abs(), b.abs())
            self.signed.add(a, b)

    def scores(self) -> dict[str, float]:
        """:func:`agreement`'s scores of the maps added."""
        moments = self.magnitudes
        valid = (moments.high_x > moments.low_x) & (moments.high_y > moments.low_y)
        norms = moments.squares_x.sqrt() * moments.squares_y.sqrt()
        own = torch.diagonal(moments.cross)
        rows = torch.where(valid, own / torch.where(valid, norms, 1.0), math.nan).clamp(-1.0, 1.0)
        return {
            "ablation_correlation": _over_entries(moments, torch.diagonal(moments.entries()[0]).sum()),
            "ablation_neuron_correlation": finite_median(rows),
            "signed_correlation": _over_entries(self.signed, self.signed.entries()[0].sum()),
        }

    def null_scores(self, orders: torch.Tensor) -> list[dict[str, float]]:
        """:func:`permuted_agreement`'s scores: draw ``d`` pairs canvas map ``i`` with ablation map ``orders[d, i]``."""
        moments = self.magnitudes
        valid = (moments.high_x > moments.low_x)[:, None] & (moments.high_y > moments.low_y)[None, :]
        norms = torch.sqrt(moments.squares_x[:, None] * moments.squares_y[None, :])
        rows = torch.where(valid, moments.cross / torch.where(valid, norms, 1.0), math.nan).clamp(-1.0, 1.0)
        entries, spread_x, spread_y = moments.entries()
        own = torch.arange(orders.shape[1]).expand_as(orders)  # [D, k]: canvas map i, paired with orders[d, i]
        overall = (entries[own, orders].sum(dim=1) / torch.sqrt(spread_x * spread_y)).clamp(-1.0, 1.0)
        if moments.constant():
            overall = torch.full_like(overall, math.nan)
        per_neuron = rows[own, orders]  # [D, k]
        return [
            {"ablation_correlation": float(overall[d]), "ablation_neuron_correlation": finite_median(per_neuron[d])}
            for d in range(orders.shape[0])
        ]


def _over_entries(moments: MapMoments, cross: torch.Tensor) -> float:
    """Pearson correlation over all entries from the summed centred ``cross`` products; NaN for constant maps."""
    _, spread_x, spread_y = moments.entries()
    if moments.constant():
        return math.nan
    return float((cross / (spread_x.sqrt() * spread_y.sqrt())).clamp(-1.0, 1.0))


def agreement(canvas_layer: torch.Tensor, ablation: torch.Tensor) -> dict[str, float]:
    """Correlation scores of canvas maps with their ablation maps (both ``[N, T, H, W]``).

    ``ablation_correlation``: Pearson of ``|C|`` and ``|A|`` over all entries;
    ``ablation_neuron_correlation``: median over neurons of the Pearson of ``|C_n|`` and ``|A_n|``
    (NaN, and left out, where either map is constant); ``signed_correlation``: Pearson of C and A.
    """
    state = MapAgreement(canvas_layer.shape[0])
    state.add(canvas_layer, ablation)
    return state.scores()


def permuted_agreement(
    canvas_layer: torch.Tensor, ablation: torch.Tensor, orders: torch.Tensor
) -> list[dict[str, float]]:
    """The correlations of :func:`agreement` with the ablation maps re-paired: the ``neuron_permutation`` null.

    Draw ``d`` pairs canvas map ``i`` with ablation map ``orders[d, i]`` (``orders[D, k]``, one
    permutation per draw). Every pairing's cross products come from one Gram matrix of the ``k``
    row-centred maps, ``[k, k]`` (a ``k x P`` matmul, cheaper than the ``k`` ablation passes that
    made the maps), so the ``D`` draws cost no pass over the maps each. Returns per draw
    ``ablation_correlation`` and ``ablation_neuron_correlation``.
    """
    state = MapAgreement(canvas_layer.shape[0])
    state.add(canvas_layer, ablation)
    return state.null_scores(orders)


def deletion_region(canvas: Canvas, region: str) -> torch.Tensor:
    """Boolean region ``[T, H, W]`` of the deletion test."""
    num_frames, height, width = canvas.shape
    if region == "segment" or (region == "auto" and canvas.masks is not None):
        if canvas.masks is None:
            raise XincError("region: segment needs masks; compute the canvas with a mask source or use region: centre")
        ids, counts = torch.unique(canvas.masks[canvas.masks != 0], return_counts=True)
        if ids.numel():
            return canvas.masks == ids[counts.argmax()]
    inside = torch.zeros(num_frames, height, width, dtype=torch.bool)
    inside[:, height // 4 : height // 4 + max(1, height // 2), width // 4 : width // 4 + max(1, width // 2)] = True
    return inside


def psnr(output: torch.Tensor, frames: torch.Tensor, where: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of ``output.clamp(0, 1)`` against ``frames`` on the pixels ``where`` ``[T, H, W]``."""
    error = ((output.clamp(0, 1) - frames) ** 2)[where].double().mean()
    return float(10 * torch.log10(1.0 / error.clamp(min=_MSE_FLOOR)))


def deletion(
    ablate: Callable[[torch.Tensor], torch.Tensor],
    mass: torch.Tensor,
    frames: torch.Tensor,
    base: torch.Tensor,
    region: torch.Tensor,
    fraction: float,
) -> tuple[dict[str, float], torch.Tensor]:
    """Deletion scores of one layer and the output with its top-k region neurons zeroed.

    Args:
        ablate: neuron indices -> the model's output ``[T, H, W, 3]`` with them zeroed together.
        mass: each neuron's canvas mass inside the region ``[N]``.
        frames: the signal ``[T, H, W, 3]``; ``base`` the plain output ``[T, H, W, 3]``.
        region: boolean ``[T, H, W]``; ``fraction``: share of neurons zeroed (at least one).
    """
    if degenerate_region(region):
        return {"deletion_contrast": math.nan, "drop_inside": math.nan, "drop_outside": math.nan}, base
    chosen = torch.sort(mass, descending=True, stable=True).indices[: deletion_count(mass.shape[0], fraction)]
    ablated = ablate(chosen)
    return deletion_drops(ablated, frames, base, region), ablated


def deletion_count(num_neurons: int, fraction: float) -> int:
    """How many neurons the deletion test zeroes: ``round(fraction * N)``, at least 1 and at most ``N``."""
    return min(num_neurons, max(1, round(fraction * num_neurons)))


def degenerate_region(region: torch.Tensor) -> bool:
    """Whether the region covers every pixel or none (then there is no inside/outside contrast)."""
    return bool(region.all()) or not bool(region.any())


def deletion_drops(
    ablated: torch.Tensor, frames: torch.Tensor, base: torch.Tensor, region: torch.Tensor
) -> dict[str, float]:
    """PSNR drops inside and outside ``region`` from ``base`` to ``ablated`` (``[T, H, W, 3]``) and their difference."""
    inside = psnr(base, frames, region) - psnr(ablated, frames, region)
    outside = psnr(base, frames, ~region) - psnr(ablated, frames, ~region)
    return {"deletion_contrast": inside - outside, "drop_inside": inside, "drop_outside": outside}


def random_deletions(
    ablate: Callable[[torch.Tensor], torch.Tensor],
    num_neurons: int,
    frames: torch.Tensor,
    base: torch.Tensor,
    region: torch.Tensor,
    fraction: float,
    draws: int,
    gen: torch.Generator,
) -> list[float]:
    """``deletion_contrast`` of each of ``draws`` random sets of as many neurons as :func:`deletion` zeroes.

    The ``random_neurons`` null: one forward pass of the signal per draw; the other arguments are
    those of :func:`deletion`.
    """
    count = deletion_count(num_neurons, fraction)
    chosen = permutations(num_neurons, draws, gen)[:, :count]
    return [deletion_drops(ablate(neurons), frames, base, region)["deletion_contrast"] for neurons in chosen]


@PROBES.register("faithfulness")
class FaithfulnessProbe(ProbeAccumulator):
    """SPEC 5.8 for every layer, with its null draws; headline scores are means over layers.

    One pass. The neurons compared with their ablation are a seeded sample drawn from the layer
    sizes alone (:func:`neuron_sample`), and the region of the deletion test comes from the masks,
    so both are known before any block is read. When built, the accumulator computes from the
    model the ground truth (the sampled neurons' ablation maps ``[k, T, H, W]`` per layer, and the
    plain output, held whole); each block then adds, per layer, its frames of the sampled maps to
    their moments against the ablation maps (:class:`MapAgreement`: ``[k, k]`` float64, the canvas
    maps are not kept), and every neuron's ``|C|`` summed inside and outside the region (``[N, 2]``
    float64, the region mass). :meth:`compute` zeroes the top-mass neurons (forward passes of the
    model, not reads of the canvas), draws the nulls and scores.

    When ``tracer`` names another tracer than the one that made the canvas, the canvas under test
    is traced from the model when the accumulator is built (held in memory whole while its
    moments and masses are gathered frame chunk by frame chunk, as before the accumulators) and the
    probed canvas's blocks are not needed: ``passes`` is 0.

    Params:
        model: the INR the canvas was computed from (required).
        tracer: tracer whose canvas is tested (default: the probed canvas).
        layer_map: canvas layer -> ablation layer name (default: automatic, see module doc).
        deletion_fraction (0.1), region (``auto`` | ``segment`` | ``centre``), chunk_size (16384),
        max_neurons (256): neurons per layer, a seeded sample, compared with their ablation.
        max_frames (None: every frame): frames, evenly spaced, on which they are compared.
        null_draws (0), null_seed (0): ``neuron_permutation`` draws of the correlations.
        deletion_null_draws (5): ``random_neurons`` draws of the deletion test, at most ``null_draws``
            (each is one forward pass of the signal per layer).

    Raises:
        XincError: no model, an unknown region, or canvas layers the model's cannot be matched with.
    """

    @classmethod
    def held_bytes(cls, counts: dict[str, int], shape: tuple[int, int, int], params: dict[str, Any]) -> int:
        """The ablation maps of each layer's neuron sample on the sampled frames, and the plain output
        (float32, held from the build to the end)."""
        num_frames, height, width = shape
        max_frames = params.get("max_frames")
        frames = len(frame_sample(num_frames, None if max_frames is None else int(max_frames)))
        limit = int(params.get("max_neurons", 256))
        sampled = sum(min(count, limit) for count in counts.values())
        return 4 * (sampled * frames + 3 * num_frames) * height * width

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        model = params.get("model")
        if not isinstance(model, nn.Module):
            raise XincError(
                "the faithfulness probe needs the model that made the canvas: pass params model=<nn.Module> "
                "(the command line passes the checkpoint given with --checkpoint)"
            )
        self.region_name = params.get("region", "auto")
        if self.region_name not in REGIONS:
            raise XincError(f"parameter region={self.region_name!r} is not one of {', '.join(REGIONS)}")
        model.eval()
        chunk_size = int(params.get("chunk_size", 16384))
        limit = int(params.get("max_neurons", 256))
        traced = _traced_canvas(canvas, model, params.get("tracer"), chunk_size)
        tested = canvas if traced is None else traced
        #: the layers under test, in network order
        self.layer_names = tested.layer_names
        counts = {name: tested.layer_shape(name)[0] for name in self.layer_names}
        self.samples = {name: neuron_sample(counts[name], limit) for name in self.layer_names}
        max_frames = params.get("max_frames")
        #: the frames the ablation maps are computed on (sorted)
        self.frames = frame_sample(canvas.shape[0], None if max_frames is None else int(max_frames))
        self.region = deletion_region(canvas, self.region_name)
        self._frame_labels = self.region.long().reshape(canvas.shape[0], -1)
        self.base, self.truth, self.ablators = _ground_truth(
            model, canvas.shape, tested.metadata.get("tracer"), counts, self.samples, self.frames, params, chunk_size
        )
        #: per layer, the sampled neurons' canvas maps against their ablation maps, block by block
        self.agreements = {name: MapAgreement(len(self.samples[name])) for name in self.layer_names}
        #: per layer, each neuron's ``sum |C_n|`` outside (column 0) and inside (column 1) the region
        self.region_sums = {name: torch.zeros(counts[name], 2, dtype=torch.float64) for name in self.layer_names}
        #: per layer, the entries of the sampled maps the scatter figure shows: ``(map, frame, pixel)``
        #: indices and the canvas's ``|C|`` there, filled block by block
        sampled_shape = (len(self.frames), *canvas.shape[1:])
        self.scatter = {name: _scatter_sample(len(self.samples[name]), sampled_shape) for name in self.layer_names}
        self.scatter_values = {name: torch.zeros(len(self.scatter[name][0])) for name in self.layer_names}
        if traced is not None:
            self.passes = 0
            for name in self.layer_names:
                for start, chunk in traced.frame_chunks(name):
                    self._take(name, start, chunk)

    def for_control(self, canvas: Canvas) -> ProbeAccumulator:
        """The probe on a control of the same model's canvas, sharing the ground truth, the sample
        and the region (the control keeps the masks); its own maps and masses, no null draws."""
        if self.passes == 0:  # the canvas under test is traced from the model: nothing to share
            return super().for_control(canvas)
        control = copy.copy(self)
        control.canvas, control.params = canvas, {**self.params, "null_draws": 0}
        control.region = deletion_region(canvas, self.region_name)
        control._frame_labels = control.region.long().reshape(canvas.shape[0], -1)
        control.agreements = {name: MapAgreement(len(self.samples[name])) for name in self.layer_names}
        control.region_sums = {name: torch.zeros_like(sums) for name, sums in self.region_sums.items()}
        control.scatter_values = {name: torch.zeros_like(values) for name, values in self.scatter_values.items()}
        return control

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        self._take(layer, start, chunk)

    def _take(self, layer: str, start: int, chunk: torch.Tensor) -> None:
        """Add frames ``start ..`` of ``layer`` (``chunk`` read only) to the sampled maps' agreement with
        their ablation maps, the region sums and the scatter figure's entries."""
        stop = start + chunk.shape[1]
        labels = self._frame_labels[start:stop].reshape(1, -1)
        self.region_sums[layer] += stacked_group_sums(block_magnitudes(chunk), [(labels, 2)])[0][0]
        first, last = torch.searchsorted(self.frames, torch.tensor([start, stop])).tolist()
        if first == last:  # no sampled frame in the block
            return
        maps = chunk[self.samples[layer][:, None], self.frames[first:last] - start]  # [k, f, H, W], one gather
        self.agreements[layer].add(maps, self.truth[layer][:, first:last])
        rows, frames, pixels = self.scatter[layer]  # frames: positions among the sampled frames
        inside = torch.nonzero((frames >= first) & (frames < last)).reshape(-1)
        flat = maps.reshape(maps.shape[0], maps.shape[1], -1)
        self.scatter_values[layer][inside] = flat[rows[inside], frames[inside] - first, pixels[inside]].abs()

    def compute(self) -> ProbeResult:
        canvas, params, region, base = self.canvas, self.params, self.region, self.base
        draws = int(params.get("null_draws", 0))
        seed = int(params.get("null_seed", 0))
        deletion_draws = min(draws, int(params.get("deletion_null_draws", DELETION_NULL_DRAWS)))
        fraction = float(params.get("deletion_fraction", 0.1))
        per_layer: dict[str, dict[str, float]] = {}
        permuted: dict[str, list[dict[str, float]]] = {}
        deleted: dict[str, list[float]] = {}
        ablated: dict[str, torch.Tensor] = {}
        for index, name in enumerate(self.layer_names):
            mass = self.region_sums[name][:, 1]
            scores, ablated[name] = deletion(self.ablators[name], mass, canvas.frames, base, region, fraction)
            per_layer[name] = {**self.agreements[name].scores(), **scores}
            if draws:
                orders = permutations(self.samples[name].numel(), draws, generator(seed, 2 * index))
                permuted[name] = self.agreements[name].null_scores(orders)
            if deletion_draws and not degenerate_region(region):
                gen = generator(seed, 2 * index + 1)
                deleted[name] = random_deletions(
                    self.ablators[name], mass.shape[0], canvas.frames, base, region, fraction, deletion_draws, gen
                )
        nulls: dict[str, dict[str, list[float]]] = {}
        if permuted:
            nulls["neuron_permutation"] = collect_null_draws(
                [{n: permuted[n][d] for n in permuted} for d in range(draws)]
            )
        if deleted:
            nulls["random_neurons"] = collect_null_draws(
                [{n: {"deletion_contrast": deleted[n][d]} for n in deleted} for d in range(deletion_draws)]
            )
        absent: dict[str, str] = {}
        if degenerate_region(region):
            extent = "every" if bool(region.all()) else "no"
            reason = (
                f"the deletion region ({self.region_name}) covers {extent} pixel: there is no inside/outside contrast"
            )
            absent = {
                f"{prefix}{metric}": reason
                for prefix in ("", *(f"{name}/" for name in self.layer_names))
                for metric in ("deletion_contrast", "drop_inside", "drop_outside")
            }
        figures = {
            "canvas_vs_ablation": _scatter_figure(self.scatter_values, {
                name: self.truth[name].reshape(*self.truth[name].shape[:2], -1)[self.scatter[name]].abs()
                for name in self.layer_names
            }),
            "deletion": _deletion_figure(base, ablated, region),
        }
        return ProbeResult(scores=collect_scores(per_layer), figures=figures, nulls=nulls, absent=absent)


def frame_sample(num_frames: int, limit: int | None) -> torch.Tensor:
    """At most ``limit`` frame indices evenly spaced over ``0 .. num_frames - 1``, first and last
    included (every frame when they fit or ``limit`` is None): ``[F]`` sorted int64."""
    if limit is None or num_frames <= limit:
        return torch.arange(num_frames)
    if limit < 1:
        raise XincError(f"parameter max_frames={limit} must be at least 1")
    return torch.linspace(0, num_frames - 1, limit).round().long().unique()


def _ground_truth(
    model: nn.Module,
    shape: tuple[int, int, int],
    tracer: str | None,
    counts: dict[str, int],
    samples: dict[str, torch.Tensor],
    frames: torch.Tensor,
    params: dict[str, Any],
    chunk_size: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """The plain output ``[T, H, W, 3]``, per canvas layer the sampled neurons' ablation maps
    ``[k, F, H, W]`` on the sampled frames ``frames[F]`` and the ablator (neuron indices -> output
    with them zeroed), from the model.

    Kernel ablation for a ``cnn`` canvas (on the sampled frames only); else the ``ablation``
    tracer's canvas of the matched layers (every neuron and frame, kept only for the samples).
    """
    if tracer == "cnn":
        base = render_output(model, shape)
        truth = {name: kernel_ablation_maps(model, name, samples[name], base, frames) for name in counts}
        ablators = {name: partial(kernel_ablated_output, model, name, shape=shape) for name in counts}
        return base, truth, ablators
    names = ablation_layer_names(model, shape, list(counts), params.get("layer_map"))
    full, base = ablation_canvas(model, shape, {names[name]: count for name, count in counts.items()}, chunk_size)
    truth = {name: full[names[name]][samples[name]][:, frames] for name in counts}
    ablators = {name: partial(ablate_output, model, names[name], shape=shape) for name in counts}
    return base, truth, ablators


def _ablation_name(model: nn.Module, layer: str, ablatable: dict[str, int], layer_map: dict[str, str]) -> str:
    """``layer_map``'s entry, the same name, or for ``layerK`` of an MLP the name of ``linears[K - 1]``.

    A name that matches nothing is returned as it is; :func:`ablation_canvas` then reports it.
    """
    if layer in layer_map:
        return layer_map[layer]
    match = re.fullmatch(r"layer(\d+)", layer)
    linears = getattr(model, "linears", None)
    if layer in ablatable or match is None or linears is None or not 1 <= int(match.group(1)) <= len(linears):
        return layer
    qualified = {module: name for name, module in model.named_modules()}
    return qualified[linears[int(match.group(1)) - 1]]


def _traced_canvas(canvas: Canvas, model: nn.Module, tracer: str | None, chunk_size: int) -> Canvas | None:
    """``tracer``'s canvas computed on the model, held in memory; None when the probed canvas is the one tested."""
    if tracer is None or tracer == canvas.metadata.get("tracer"):
        return None
    implementation = TRACERS.get(tracer)
    counts = implementation.layers(model, canvas.shape)
    arrays = {name: np.empty((count, *canvas.shape), np.float32) for name, count in counts.items()}
    implementation.trace(model, canvas.shape, arrays, np.empty((*canvas.shape, 3), np.float32), chunk_size)
    layers = {name: torch.from_numpy(array) for name, array in arrays.items()}
    return Canvas(layers=layers, frames=canvas.frames, metadata={"tracer": tracer}, chunk_bytes=canvas.chunk_bytes)


def _scatter_sample(rows: int, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The entries of ``rows`` maps ``[rows, T, H, W]`` the scatter figure shows: all, or a seeded
    sample of ``_SCATTER_POINTS``; as ``(map, frame, pixel)`` index tensors."""
    num_frames, height, width = shape
    entries = rows * num_frames * height * width
    if entries > _SCATTER_POINTS:
        flat = torch.from_numpy(np.random.default_rng(0).choice(entries, _SCATTER_POINTS, replace=False))
    else:
        flat = torch.arange(entries)
    pixels = height * width
    return flat // (num_frames * pixels), flat // pixels % num_frames, flat % pixels


def _scatter_figure(tested: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> Any:
    """Per layer, a 2-D histogram of ``|C|`` against ``|A|`` on the entries of :func:`_scatter_sample`."""
    fig, axes = subplots(1, len(tested), figsize=(3.4 * len(tested), 3.0), squeeze=False)
    for axis, name in zip(axes[0], tested):
        axis.hexbin(tested[name].numpy(), truth[name].numpy(), gridsize=40, bins="log", cmap="viridis", mincnt=1)
        axis.set_xlabel("|C| (canvas)", fontsize=8)
        axis.set_ylabel("|A| (ablation)", fontsize=8)
        axis.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def _deletion_figure(base: torch.Tensor, ablated: dict[str, torch.Tensor], region: torch.Tensor) -> Any:
    """Frame 0: the region over the reconstruction, then per layer the output change after deletion."""
    fig, axes = subplots(1, len(ablated) + 1, figsize=(3.4 * (len(ablated) + 1), 2.4), squeeze=False)
    axes[0][0].imshow(base[0].clamp(0, 1).numpy())
    axes[0][0].contour(region[0].float().numpy(), levels=[0.5], colors="red", linewidths=1)
    axes[0][0].set_title("deletion region", fontsize=9)
    for axis, (name, output) in zip(axes[0][1:], ablated.items()):
        shown = axis.imshow((output[0] - base[0]).abs().sum(dim=-1).numpy(), cmap="magma")
        axis.set_title(f"{name}: |change| after deletion", fontsize=9)
        fig.colorbar(shown, ax=axis, fraction=0.03)
    for axis in axes[0]:
        axis.axis("off")
    fig.tight_layout()
    return fig
