"""The CNN canvas of the NeRV family (SPEC 4.2, after the XINC reference implementation).

A neuron is one 2-D kernel ``(i, o)`` of a conv: input channel ``i``, conv output channel ``o``,
stored at canvas index ``n = i * C_conv + o`` (the reference's ``[C_in, C_out]`` order).
Its per-kernel map at the conv's input resolution is ``m_io = W[o, i] * x_i + b[o] / C_in``, so
the maps of one conv sum over ``i`` to the conv output exactly.

* Head (the last conv, no activation): ``C_io = m_io``; summed over ``i`` it equals the
  pre-activation output ``y_o`` (the model's ``tanh`` output map is not part of the canvas; see
  :mod:`xinc_bench.inrs.nerv`).
* Block ``GELU(PixelShuffle_r(Conv(x)))``: ``m_io`` is placed on its pixel-shuffle sub-lattice at
  output resolution (conv channel ``o`` lands at offset ``(s // r, s % r)``, ``s = o % r^2``, zero
  elsewhere), passed through GELU per kernel, then carried to the frame resolution: for each
  downstream block a ``k x k`` box filter (its conv's receptive field), nearest upsampling by its
  stride and GELU; finally a box filter for the head's receptive field.

Beyond the head these rules are the reference's approximations, not exact decompositions; the
ablation tracer is the exact alternative. Exactness checks (returned by :meth:`CNNTracer.fill`):
the head maps sum to ``y`` (relative error), and GELU of a block's summed pre-GELU maps equals
the next conv's input (absolute error).

Work is streamed: the frames of the traced window (all frames, or the job's ``frames``; frame
indices stay absolute) in chunks of ``max(1, chunk_size // (H W))``; within a frame chunk, the
kernels of one sub-pixel offset in batches, and a batch in chunks of at most ``max_chunk_values``
canvas values, written straight into the canvas arrays, so no layer is ever held whole in memory.
The rule is computed with as little work per canvas value as it allows:

* a batch's maps are one batched matmul of the kernels' taps with the input's patches;
* each pair of rule steps (placement or nearest upsampling, then a box filter) is one separable
  polyphase filter (:class:`PhaseFilter`) at the resolution it outputs, so neither the zeros off
  the sub-lattice nor the upsampled copies are ever filtered; the last pair's rows pass writes
  whole canvas rows, and a chunk's other stages stay in the CPU's cache;
* GELU is applied where it touches the fewest samples: before the placement, and before any
  stage that only moves samples; when the placement and the next stage read one sample per
  output (block 1 of the paper's model: a sub-lattice of stride 4 under a 3x3 box), their
  output's GELU is a gather from a table of GELU values per map sample (:class:`SingleTap`);
* on CPU, ``torch.get_num_threads()`` workers take the batches in turn, one thread each.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import XincError
from ..inrs.base import render_output
from ..registry import TRACERS
from .tracer import TraceJob, Tracer, select_canvas_layers


@dataclass(frozen=True)
class CanvasConv:
    """One traced conv of a frame decoder and how its kernels' maps reach the output.

    Attributes:
        name: canvas layer name (``block1`` ... ``blockL``, ``head``).
        conv: the conv; its ``in_channels * out_channels`` kernels are the layer's neurons.
        upscale: pixel-shuffle factor ``r`` after the conv (1 for the head).
        activation: whether GELU follows (blocks) or not (head).
        carry: ``(box size, upscale)`` of every downstream block, in network order.
        head_box: box size standing for the head's receptive field (0 for the head itself).
    """

    name: str
    conv: nn.Conv2d
    upscale: int
    activation: bool
    carry: tuple[tuple[int, int], ...]
    head_box: int

    @property
    def num_kernels(self) -> int:
        """Neurons of the layer: ``C_in * C_conv``."""
        return self.conv.in_channels * self.conv.out_channels


def canvas_convs(model: nn.Module) -> list[CanvasConv]:
    """The traced convs of a NeRV-family model (``blocks`` then ``head``), in network order.

    Raises:
        XincError: the model lacks ``blocks``/``head``/``trace`` or has convs the rule cannot trace.
    """
    _require_frame_decoder(model)
    blocks = list(model.blocks)
    head_size = model.head.kernel_size[0]
    layers = []
    for index, block in enumerate(blocks):
        downstream = tuple((b.conv.kernel_size[0], b.upscale) for b in blocks[index + 1 :])
        layers.append(CanvasConv(f"block{index + 1}", block.conv, block.upscale, True, downstream, head_size))
    layers.append(CanvasConv("head", model.head, 1, False, (), 0))
    return layers


def _require_frame_decoder(model: nn.Module) -> None:
    blocks = getattr(model, "blocks", None)
    head = getattr(model, "head", None)
    well_formed = (
        callable(getattr(model, "trace", None))
        and isinstance(head, nn.Conv2d)
        and blocks is not None
        and all(
            isinstance(getattr(b, "conv", None), nn.Conv2d) and isinstance(getattr(b, "upscale", None), int)
            for b in blocks
        )
    )
    if not well_formed:
        raise XincError(
            f"the cnn tracer needs a NeRV-family model: `blocks` (each with a `conv` and an int `upscale`), "
            f"a conv `head` and trace(t) ({type(model).__name__} lacks them); use --tracer ablation for other models"
        )
    for conv in [block.conv for block in blocks] + [head]:
        size = conv.kernel_size[0]
        if (
            conv.kernel_size != (size, size)
            or size % 2 == 0
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.padding != (size // 2, size // 2)
            or conv.padding_mode != "zeros"
        ):
            raise XincError(
                f"the cnn tracer handles stride-1, 'same'-padded, odd square convs; {type(model).__name__} has "
                f"{conv}; use --tracer ablation for this model"
            )


@dataclass(frozen=True)
class PhaseFilter:
    """A 1-D upsampling filter with integer weights, in polyphase form.

    ``out[r j + a] = sum(w * v[j + m] for m, w in taps[a])`` for each output phase
    ``a < r = len(taps)``, with ``v`` zero outside its samples.
    """

    taps: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def upscale(self) -> int:
        """Output samples per input sample."""
        return len(self.taps)

    @property
    def reach(self) -> tuple[int, int]:
        """Input samples read before and after ``j``: the zero padding ``v`` needs."""
        shifts = [m for phase in self.taps for m, _ in phase]
        return max(0, -min(shifts, default=0)), max(0, max(shifts, default=0))

    @property
    def copies(self) -> bool:
        """Whether every output sample is one input sample or zero (no arithmetic)."""
        return all(len(phase) <= 1 and all(weight == 1 for _, weight in phase) for phase in self.taps)


def sublattice_box(upscale: int, offset: int, size: int) -> PhaseFilter:
    """Placement on the sub-lattice ``r i + offset`` (zero elsewhere), then a ``size``-sample box sum.

    Phase ``a`` reads ``v[j + m]`` for each ``m`` with ``|r m + offset - a| <= size // 2``.
    """
    half = size // 2
    return PhaseFilter(tuple(
        tuple((m, 1) for m in range(-((offset + half - a) // upscale), (a - offset + half) // upscale + 1))
        for a in range(upscale)
    ))


def upsample_box(upscale: int, size: int) -> PhaseFilter:
    """Nearest upsampling by ``upscale``, then a ``size``-sample box sum.

    Phase ``a`` reads ``v[j + m]`` once for each ``|d| <= size // 2`` with ``(a + d) // upscale = m``.
    """
    half = size // 2
    return PhaseFilter(tuple(
        tuple(sorted(Counter((a + d) // upscale for d in range(-half, half + 1)).items()))
        for a in range(upscale)
    ))


@dataclass(frozen=True)
class CarryStage:
    """One resampling on the way of a block's kernel maps to the frame: scale by ``scale``, then
    upsample rows and columns (:class:`PhaseFilter`); ``scale`` is the box's ``1 / size^2``."""

    rows: PhaseFilter
    cols: PhaseFilter
    scale: float

    @property
    def copies(self) -> bool:
        """Whether the stage only moves samples, so GELU and scaling commute with it."""
        return self.rows.copies and self.cols.copies


def carry_stages(layer: CanvasConv, offset: int) -> list[CarryStage]:
    """The stages taking a block's GELU'd kernel maps of sub-pixel ``offset`` to the frame resolution.

    The rule ``P -> box_k1 -> GELU -> up_r1 -> box_k2 -> GELU -> ... -> box_head`` (module docstring),
    grouped as ``[P, box_k1]``, then ``[up_rj, box_k(j+1)]`` per downstream block, with GELU between
    stages. Each group is one separable polyphase filter at the resolution it outputs, so no
    pixel is computed twice, and neither the zeros off the sub-lattice nor the upsampled copies
    are ever filtered.
    """
    boxes = [size for size, _ in layer.carry] + [layer.head_box]
    r = layer.upscale
    first = CarryStage(sublattice_box(r, offset // r, boxes[0]), sublattice_box(r, offset % r, boxes[0]),
                       1.0 / boxes[0] ** 2)
    later = [
        CarryStage(upsample_box(upscale, size), upsample_box(upscale, size), 1.0 / size**2)
        for (_, upscale), size in zip(layer.carry, boxes[1:])
    ]
    return [first, *later]


class _Scratch:
    """Zero-initialised scratch tensors ``[K, ...]`` kept over the chunks of one layer.

    Only interiors are written, so the zero borders that stand for padding stay zero, and no
    chunk maps fresh pages. A key names a role and its layout (shape and padding).
    """

    def __init__(self, kernels: int, like: torch.Tensor) -> None:
        self.kernels = kernels
        self.like = like
        self._tensors: dict[tuple[Any, ...], torch.Tensor] = {}

    def get(self, key: tuple[Any, ...], shape: tuple[int, ...], count: int) -> torch.Tensor:
        """The first ``count`` kernels of the ``[kernels, *shape]`` tensor of ``key``."""
        tensor = self._tensors.get((*key, shape))
        if tensor is None:
            tensor = self._tensors[(*key, shape)] = self.like.new_zeros(self.kernels, *shape)
        return tensor[:count]


Step = Callable[[], Any]
_gelu_ = torch.ops.aten.gelu_.default  # in place; GELU(0) = 0 keeps zero borders zero


def _unit_first(terms: list[tuple[Any, int]]) -> list[tuple[Any, int]]:
    """``terms`` with a unit weight first, if any (the sort is stable)."""
    return sorted(terms, key=lambda term: term[1] != 1)


def _weighted_sum(terms: list[tuple[torch.Tensor, int]], out: torch.Tensor) -> None:
    """``out = sum(w * x for x, w in terms)``, unit weight first: one op for ``x + w y``, the box filters' case."""
    if not terms:
        out.zero_()
        return
    (first, weight), rest = terms[0], terms[1:]
    if weight != 1:
        torch.mul(first, weight, out=out)
    elif rest:
        (second, alpha), rest = rest[0], rest[1:]
        torch.add(first, second, alpha=alpha, out=out)
    else:
        out.copy_(first)
    for term, alpha in rest:
        out.add_(term, alpha=alpha)


def _scale_steps(tensor: torch.Tensor, scale: float) -> list[Step]:
    return [] if scale == 1.0 else [partial(torch.Tensor.mul_, tensor, scale)]


def _upscaled(shape: tuple[int, int, int], stage: CarryStage) -> tuple[int, int, int]:
    batch, height, width = shape
    return batch, height * stage.rows.upscale, width * stage.cols.upscale


def _padded_input(scratch: _Scratch, index: int, stage: CarryStage, count: int,
                  shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage ``index``'s input ``[K, B, h, left + w + right]``, zero-padded by its columns' reach, and its interior."""
    batch, height, width = shape
    left, right = stage.cols.reach
    padded = scratch.get(("input", index, left, right), (batch, height, left + width + right), count)
    return padded, padded[..., left : left + width]


class _ColumnsPass:
    """A stage's columns pass into ``columns[K, B, top + h + bottom, w, r]`` (zero rows: its rows' reach).

    Called with the stage's zero-padded input ``[K, B, h, left + w + right]``; phase ``b`` of
    output column ``j`` is written to ``columns[..., top + i, j, b]``.
    """

    def __init__(self, stage: CarryStage, scratch: _Scratch, index: int, count: int,
                 shape: tuple[int, int, int]) -> None:
        batch, height, width = shape
        top, bottom = stage.rows.reach
        self.columns = scratch.get(("columns", index, top, bottom),
                                   (batch, top + height + bottom, width, stage.cols.upscale), count)
        self.left, self.width = stage.cols.reach[0], width
        self.phases = [(_unit_first(list(taps)), self.columns[:, :, top : top + height, :, phase])
                       for phase, taps in enumerate(stage.cols.taps)]

    def __call__(self, source: torch.Tensor) -> None:
        for taps, out in self.phases:
            _weighted_sum([(source[..., self.left + m : self.left + m + self.width], weight) for m, weight in taps], out)


class _RowsPass:
    """A stage's rows pass from its :class:`_ColumnsPass` output, into ``out[K, B, r h, W]`` given per call.

    When the phases read the same weights at shifts that grow by a fixed ``delta >= 0`` rows per
    phase (nearest upsampling by 2 and a box of 3: shifts ``(-1, 0)`` and ``(0, 1)``), each term
    is one strided view over all phases, so every output row is written by one op, in order.
    """

    def __init__(self, stage: CarryStage, columns: torch.Tensor) -> None:
        rows = columns.flatten(-2)  # [K, B, top + h + bottom, W]
        top, bottom = stage.rows.reach
        self.upscale = upscale = stage.rows.upscale
        *lead, length, width = rows.shape
        height = length - top - bottom
        step = rows.stride(-2)
        ordered = [sorted(phase, key=lambda tap: (tap[1], tap[0])) for phase in stage.rows.taps]
        weights = [weight for _, weight in ordered[0]]
        self.terms: list[tuple[torch.Tensor, int]] | None = []
        for term, weight in enumerate(weights):
            shifts = [phase[term][0] for phase in ordered if [w for _, w in phase] == weights]
            delta = shifts[1] - shifts[0] if len(shifts) > 1 else 0
            if len(shifts) < upscale or delta < 0 or shifts != [shifts[0] + phase * delta for phase in range(upscale)]:
                self.terms = None
                break
            view = rows.as_strided((*lead, height, upscale, width), (*rows.stride()[:-2], step, delta * step, rows.stride(-1)),
                                   rows.storage_offset() + (top + shifts[0]) * step)
            self.terms.append((view, weight))
        if not weights:
            self.terms = None
        if self.terms is not None:
            self.terms = _unit_first(self.terms)
        self.phase_terms = [_unit_first([(rows[..., top + m : top + m + height, :], weight) for m, weight in taps])
                            for taps in stage.rows.taps]

    def __call__(self, out: torch.Tensor) -> None:
        phases = out.unflatten(-2, (out.shape[-2] // self.upscale, self.upscale))
        if self.terms is not None:
            _weighted_sum(self.terms, phases)
            return
        for phase, terms in enumerate(self.phase_terms):
            _weighted_sum(terms, phases[..., phase, :])


def _filter_matrix(phases: PhaseFilter, length: int) -> torch.Tensor:
    """The ``[r length, length]`` matrix of ``phases`` on ``length`` samples (zero outside them)."""
    matrix = torch.zeros(phases.upscale * length, length, dtype=torch.float64)
    samples = torch.arange(length)
    for phase, taps in enumerate(phases.taps):
        for shift, weight in taps:
            read = samples + shift
            valid = (read >= 0) & (read < length)
            matrix.index_put_((phases.upscale * samples[valid] + phase, read[valid]),
                              torch.tensor(float(weight), dtype=torch.float64), accumulate=True)
    return matrix


@dataclass(frozen=True)
class SingleTap:
    """Stages whose composite reads at most one input sample per output sample: ``z[p] = w(p) * e[q(p)]``.

    Then ``GELU(z)`` takes at most ``len(weights)`` values per input sample, and the stages and the
    GELU after them are one gather from a small table (:class:`_BatchPrefix`).

    Attributes:
        weights: ``[n]`` the distinct non-zero weights ``w``.
        index: ``[h' (left + w' + right)]`` for each sample of the next stage's zero-padded input,
            its entry ``q n + j`` (``weights[j] = w``) in a kernel's table of ``h w n + 1`` values,
            the last one zero (padding and ``w = 0``).
        shape: ``(h', w')`` the output's rows and columns.
    """

    weights: torch.Tensor
    index: torch.Tensor
    shape: tuple[int, int]

    @staticmethod
    @lru_cache(maxsize=256)
    def of(stages: tuple[CarryStage, ...], shape: tuple[int, int], padding: tuple[int, int]) -> SingleTap | None:
        """The single-tap form of ``stages`` on ``(h, w)`` samples, or None; ``padding``: the next stage's column reach.

        Cached: a layer asks once per sub-pixel offset and batch, for the same few answers.
        """
        taps = []
        for length, filters in zip(shape, ([stage.rows for stage in stages], [stage.cols for stage in stages])):
            composite = torch.eye(length, dtype=torch.float64)
            for phases in filters:
                composite = _filter_matrix(phases, composite.shape[0]) @ composite
            if bool(((composite != 0).sum(dim=1) > 1).any()):
                return None
            read = composite.abs().argmax(dim=1)
            taps.append((read, composite.gather(1, read[:, None])[:, 0]))
        (rows, row_weights), (cols, col_weights) = taps
        weights = row_weights[:, None] * col_weights[None, :]  # [h', w']
        distinct = torch.unique(weights[weights != 0])
        zero = shape[0] * shape[1] * len(distinct)
        entries = (rows[:, None] * shape[1] + cols[None, :]) * len(distinct) + torch.searchsorted(distinct, weights)
        left, right = padding
        index = torch.full((len(rows), left + len(cols) + right), zero, dtype=torch.long)
        index[:, left : left + len(cols)] = torch.where(weights != 0, entries, zero)
        return SingleTap(distinct.float(), index.reshape(-1), (len(rows), len(cols)))


class _BatchPrefix:
    """The kernel maps ``[K, B, h, w]`` of a batch of kernels and what runs on the whole batch at once.

    :meth:`run` (after the caller has written :attr:`maps`) applies GELU and the first stage's
    scale. Leading stages that only move samples (:attr:`CarryStage.copies`, not the last) commute
    with GELU and scaling, which then act on the maps' few samples. If those stages and the next
    one read one sample each (:class:`SingleTap`), their GELU'd output is a gather from a table of
    ``GELU(w * e)`` per map sample ``e`` and weight ``w``: :attr:`table` is built here and
    :attr:`single_tap` says how to read it. Otherwise the sample-moving stages run here and
    :attr:`output` is the ready input of stage :attr:`first` (the maps themselves for the head).
    """

    def __init__(self, stages: list[CarryStage], scratch: _Scratch, count: int, shape: tuple[int, int, int]) -> None:
        self.maps = scratch.get(("maps",), shape, count)
        self.steps: list[Step] = []
        self.first, self.shape, self.output = 0, shape, self.maps
        self.table: torch.Tensor | None = None
        self.single_tap: SingleTap | None = None
        if not stages:
            return
        moving = 0  # leading stages that only move samples, not the last
        while moving + 1 < len(stages) and stages[moving].copies:
            moving += 1
        batch, height, width = shape
        if moving + 1 < len(stages):
            self.single_tap = SingleTap.of(tuple(stages[: moving + 1]), (height, width), stages[moving + 1].cols.reach)
        if self.single_tap is not None:
            for stage in stages[: moving + 1]:
                self.steps += [partial(_gelu_, self.maps), *_scale_steps(self.maps, stage.scale)]
            distinct = self.single_tap.weights.to(self.maps.device)
            self.table = scratch.get(("table", len(distinct)), (batch, height * width * len(distinct) + 1), count)
            values = self.table[..., :-1].unflatten(-1, (height * width, len(distinct)))
            self.steps += [partial(torch.mul, self.maps.flatten(-2)[..., None], distinct, out=values),
                           partial(_gelu_, self.table), *_scale_steps(self.table, stages[moving + 1].scale)]
            self.first, self.shape = moving + 1, (batch, *self.single_tap.shape)
            return
        padded, interior = _padded_input(scratch, 0, stages[0], count, shape)
        self.steps += [partial(_gelu_, self.maps), partial(torch.mul, self.maps, stages[0].scale, out=interior)]
        for index in range(moving):
            stage, follows = stages[index], stages[index + 1]
            columns = _ColumnsPass(stage, scratch, index, count, self.shape)
            # GELU and the next scale commute with moving samples: apply them before, on fewer samples
            self.steps += [partial(_gelu_, padded), *_scale_steps(padded, follows.scale), partial(columns, padded)]
            self.shape = _upscaled(self.shape, stage)
            padded, interior = _padded_input(scratch, index + 1, follows, count, self.shape)
            self.steps.append(partial(_RowsPass(stage, columns.columns), interior))
        self.first, self.output = moving, padded

    def run(self) -> None:
        """Turn :attr:`maps` into :attr:`output` or :attr:`table` (``maps`` is overwritten)."""
        for step in self.steps:
            step()


class _KernelPipeline:
    """Stages ``first ..`` on a chunk of ``K`` kernels: from their ready input to the canvas rows ``[K, B, H, W]``.

    Built once per sub-pixel offset and chunk size, on scratch reused by every chunk: :meth:`run`
    replays prebound steps (no tensor is allocated). Between stages, GELU and the next stage's box
    scale are applied in place on its zero-padded input; before a stage that only moves samples,
    on that stage's input instead (fewer samples). The last stage's rows pass writes the canvas.
    """

    def __init__(self, stages: list[CarryStage], prefix: _BatchPrefix, scratch: _Scratch, count: int) -> None:
        self.first = prefix.first
        self.steps: list[Step] = []
        self.gather: torch.Tensor | None = None
        self.final: _RowsPass | None = None
        if self.first == len(stages):
            return
        shape = prefix.shape
        columns = self.first_columns = _ColumnsPass(stages[self.first], scratch, self.first, count, shape)
        if prefix.single_tap is not None:
            self.source, _ = _padded_input(scratch, self.first, stages[self.first], count, shape)
            index = prefix.single_tap.index.to(self.source.device)
            self.gather = index.expand(count, shape[0], len(index))
            self.steps.append(partial(columns, self.source))
        for index in range(self.first, len(stages) - 1):
            stage, follows = stages[index], stages[index + 1]
            shape = _upscaled(shape, stage)
            padded, interior = _padded_input(scratch, index + 1, follows, count, shape)
            self.steps.append(partial(_RowsPass(stage, columns.columns), interior))
            if not stage.copies:
                self.steps += [partial(_gelu_, padded), *_scale_steps(padded, follows.scale)]
            if follows.copies and index + 2 < len(stages):
                self.steps += [partial(_gelu_, padded), *_scale_steps(padded, stages[index + 2].scale)]
            columns = _ColumnsPass(follows, scratch, index + 1, count, shape)
            self.steps.append(partial(columns, padded))
        self.final = _RowsPass(stages[-1], columns.columns)

    def run(self, prefix: _BatchPrefix, start: int, out: torch.Tensor) -> None:
        """Write into ``out[K, B, H, W]`` the contributions of kernels ``start .. start + K - 1`` of ``prefix``."""
        stop = start + out.shape[0]
        if self.final is None:
            out.copy_(prefix.output[start:stop])
            return
        if self.gather is not None:
            torch.gather(prefix.table[start:stop], -1, self.gather, out=self.source.flatten(-2))
        else:
            self.first_columns(prefix.output[start:stop])
        for step in self.steps:
            step()
        self.final(out)


class CNNTracer(Tracer):
    """SPEC 4.2 for NeRV-family models (``blocks``, ``head``, ``trace(t) -> ConvTrace``).

    Args:
        max_chunk_values: canvas values (kernels x frames x pixels) computed at once, and about
            the size of a batch's maps before the chunks. Scratch is a few times this in float32,
            allocated once per layer and frame chunk; the default 2^20 (4 MB) keeps a chunk's
            stages in the CPU's cache, so only the canvas write reaches memory (2^19 and 2^21
            measured slower on a 2-core machine with a 32 MB L3).
    """

    def __init__(self, max_chunk_values: int = 2**20) -> None:
        self.max_chunk_values = max_chunk_values

    def layers(self, model: nn.Module, shape: tuple[int, int, int]) -> dict[str, int]:
        counts = {layer.name: layer.num_kernels for layer in canvas_convs(model)}
        return select_canvas_layers(model, counts, "cnn")

    def fill(self, model: nn.Module, job: TraceJob) -> dict[str, Any]:
        """Fill ``canvas[layer]`` (``[N, F, H, W]``, ``n = i * C_conv + o``) and ``recon`` (``[F, H, W, 3]``).

        Traces frames ``a .. b - 1`` of ``job.window`` (``F = b - a``). ``chunk_size`` counts
        pixels: ``max(1, chunk_size // (H W))`` frames are traced at once.

        Returns:
            ``head_sum_max_rel_error`` and ``<block>_gelu_sum_max_abs_error`` for the traced layers,
            over the window's frames.
        """
        _, height, width = job.shape
        first_frame, stop_frame = job.window
        frames_per_chunk = max(1, job.chunk_size // (height * width))
        layers = canvas_convs(model)
        device = model.head.weight.device
        checks: dict[str, float] = {}
        with _float32_convolutions():
            for start in range(first_frame, stop_frame, frames_per_chunk):
                t = torch.arange(start, min(start + frames_per_chunk, stop_frame), device=device)
                row = start - first_frame  # the chunk's first frame in the window's arrays
                result = model.trace(t)
                job.recon[row : row + len(t)] = result.output.permute(0, 2, 3, 1).cpu().numpy()
                targets = result.inputs[1:] + [result.head_output]
                for layer, x, target in zip(layers, result.inputs, targets):
                    if layer.name not in job.canvas:
                        continue
                    frames = torch.from_numpy(job.canvas[layer.name])[:, row : row + len(t)]
                    summed = self._fill_layer(layer, x, frames)
                    name, error = _layer_error(layer, summed, target)
                    checks[name] = max(checks.get(name, 0.0), error)
                job.advance(len(t) * height * width)
        return checks

    def _fill_layer(self, layer: CanvasConv, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Write one layer's contributions for the frames of ``x`` into ``frames[N, B, H, W]`` (a canvas view).

        The layer's kernels go in batches (:class:`_LayerChunks`). On CPU, ``torch.get_num_threads()``
        workers take batches in turn, each running its ops on one thread: batches are independent,
        and the ops of one chunk are too small to split across threads without them waiting on
        each other.

        Returns:
            ``[B, C_conv, h, w]`` the per-kernel pre-activation maps summed over input channels.
        """
        chunks = _LayerChunks(layer, x, frames, self.max_chunk_values)
        workers = min(torch.get_num_threads(), len(chunks.tasks)) if x.device.type == "cpu" else 1
        if workers <= 1:
            return chunks.work()
        with _intra_op_threads(1), ThreadPoolExecutor(workers) as pool:
            sums = list(pool.map(lambda _: chunks.work(), range(workers)))
        return torch.stack(sums).sum(dim=0)


class _LayerChunks:
    """The kernels of one layer over one frame chunk, in batches taken by :meth:`work` until none is left.

    A batch is ``(offset, i0, i1)``: the kernels of sub-pixel offset ``s`` and input channels
    ``i0 .. i1 - 1`` (conv channels ``s + r^2 c``), whose canvas rows are every ``r^2``-th from
    ``s + r^2 i0 C_conv / r^2``. Its maps are one batched matmul of the kernels' taps with the
    input's patches; :class:`_BatchPrefix` runs its first steps on the whole batch, then
    :class:`_KernelPipeline` writes it into the canvas rows ``max_chunk_values`` values at a time.
    A batch holds about ``max_chunk_values`` values in its prefix's largest tensor (at least one
    input channel).
    """

    def __init__(self, layer: CanvasConv, x: torch.Tensor, frames: torch.Tensor, max_chunk_values: int) -> None:
        batch, inputs, height, width = x.shape
        conv = layer.conv
        size = conv.kernel_size[0]
        self.layer, self.x, self.frames = layer, x, frames
        self.offsets = layer.upscale**2
        self.per_input = conv.out_channels // self.offsets  # kernels of one input channel and one offset
        self.shape = (batch, height, width)
        patches = F.unfold(x, size, padding=size // 2).view(batch, inputs, size * size, height * width)
        self.patches = patches.permute(1, 2, 0, 3).reshape(inputs, size * size, batch * height * width)
        self.weight = conv.weight.reshape(conv.out_channels, inputs, size * size)
        self.bias = conv.bias / inputs if conv.bias is not None else self.weight.new_zeros(conv.out_channels)
        self.per_chunk = max(1, max_chunk_values // (batch * frames.shape[-2] * frames.shape[-1]))
        prefix_values = batch * height * width  # per kernel: the maps, then each sample-moving stage's output
        stages = carry_stages(layer, 0) if layer.activation else []
        for stage in stages[:-1]:
            if not stage.copies:
                break
            prefix_values *= stage.rows.upscale * stage.cols.upscale
        self.inputs_per_batch = max(1, max_chunk_values // (self.per_input * prefix_values))
        self.tasks = deque(
            (offset, first, min(first + self.inputs_per_batch, inputs))
            for offset in range(self.offsets)
            for first in range(0, inputs, self.inputs_per_batch)
        )

    @torch.no_grad()  # grad mode is per thread: a worker does not inherit the caller's
    def work(self) -> torch.Tensor:
        """Trace batches until none is left (several workers may share them).

        Returns:
            ``[B, C_conv, h, w]`` the maps of this worker's batches summed over input channels.
        """
        batch, height, width = self.shape
        pixels = batch * height * width
        kernels_per_batch = min(self.inputs_per_batch, self.x.shape[1]) * self.per_input
        batch_scratch = _Scratch(kernels_per_batch, self.x)
        chunk_scratch = _Scratch(min(self.per_chunk, kernels_per_batch), self.x)
        on_device = self.frames.device == self.x.device
        summed = self.x.new_zeros(self.layer.conv.out_channels, batch, height, width)
        partial_sum = self.x.new_empty(self.per_input, pixels)
        prefixes: dict[tuple[int, int], _BatchPrefix] = {}
        pipelines: dict[tuple[int, int, int], _KernelPipeline] = {}
        while True:
            try:
                offset, i0, i1 = self.tasks.popleft()  # atomic: workers never take the same batch
            except IndexError:
                break
            stages = carry_stages(self.layer, offset) if self.layer.activation else []
            count = (i1 - i0) * self.per_input
            if (offset, count) not in prefixes:
                prefixes[offset, count] = _BatchPrefix(stages, batch_scratch, count, self.shape)
            prefix = prefixes[offset, count]
            maps = prefix.maps.view(i1 - i0, self.per_input, pixels)
            channels = slice(offset, None, self.offsets)
            torch.baddbmm(self.bias[channels, None], self.weight[channels, i0:i1].transpose(0, 1), self.patches[i0:i1],
                          out=maps)
            summed[channels] += torch.sum(maps, dim=0, out=partial_sum).view(self.per_input, batch, height, width)
            prefix.run()
            rows = self.frames[offset :: self.offsets][i0 * self.per_input : i1 * self.per_input]
            for start in range(0, count, self.per_chunk):
                stop = min(start + self.per_chunk, count)
                if (offset, count, stop - start) not in pipelines:
                    pipelines[offset, count, stop - start] = _KernelPipeline(stages, prefix, chunk_scratch, stop - start)
                out = rows[start:stop]
                target = out if on_device else chunk_scratch.get(("frames",), tuple(out.shape[1:]), stop - start)
                pipelines[offset, count, stop - start].run(prefix, start, target)
                if not on_device:
                    out.copy_(target)
        return summed.transpose(0, 1)


@contextmanager
def _intra_op_threads(count: int) -> Iterator[None]:
    """Run torch ops on ``count`` threads each (``torch.set_num_threads``), restoring the setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def kernel_ablated_output(
    model: nn.Module, layer: str, kernels: torch.Tensor, shape: tuple[int, int, int]
) -> torch.Tensor:
    """The model's output ``[T, H, W, 3]`` with a set of kernels of canvas layer ``layer`` zeroed together.

    Zeroing kernel ``n = i * C_conv + o`` removes exactly what its canvas map ``m_io`` stands for:
    the weight ``W[o, i]`` and its bias share ``b[o] / C_in``. This is the ablation ground truth of
    a kernel neuron (SPEC 4.3), used by the faithfulness probe on ``cnn`` canvases.
    """
    convs = {conv.name: conv for conv in canvas_convs(model)}
    if layer not in convs:
        raise XincError(f"{type(model).__name__} has no canvas layer {layer!r}; its layers are {', '.join(convs)}")
    conv = convs[layer].conv
    kernels = torch.as_tensor(kernels, dtype=torch.long).reshape(-1)
    if kernels.numel() and (kernels.min() < 0 or kernels.max() >= convs[layer].num_kernels):
        raise XincError(f"kernel indices out of range for layer {layer!r}, which has {convs[layer].num_kernels} kernels")
    inputs, outputs = kernels // conv.out_channels, kernels % conv.out_channels
    weight = conv.weight.detach().clone()
    bias = None if conv.bias is None else conv.bias.detach().clone()
    try:
        conv.weight[outputs, inputs] = 0.0
        if bias is not None:
            conv.bias.index_add_(0, outputs, -bias[outputs] / conv.in_channels)
        return render_output(model, shape)
    finally:
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)


#: kernels whose ablated outputs :func:`kernel_ablation_maps` computes in one batch
ABLATION_BATCH = 16


@torch.no_grad()
def kernel_ablation_maps(
    model: nn.Module,
    layer: str,
    kernels: torch.Tensor,
    base: torch.Tensor,
    frames: torch.Tensor | None = None,
    batch: int = ABLATION_BATCH,
) -> torch.Tensor:
    """Ablation maps ``[k, F, H, W]``: ``sum_rgb(base - output)`` with each kernel of ``layer`` zeroed alone,
    on the frames ``frames`` (``[F]`` indices; None: every frame of ``base``).

    The numbers of :func:`kernel_ablated_output` kernel by kernel (to float rounding), from the layer
    on: per frame, the layer's input ``x`` and conv output ``z`` are computed once (one traced
    forward pass); zeroing kernel ``(i, o)`` takes its map ``W[o, i] * x_i + b[o] / C_in`` off
    channel ``o`` of ``z``, and only the rest of the network runs (the block's own pixel shuffle and
    activation, the later blocks, the head and the output map), on ``batch`` kernels at once.
    A model without ``output_map``, or whose blocks lack ``shuffle`` and ``activation`` modules, gets
    one full forward pass per kernel (:func:`kernel_ablated_output`, which also checks ``layer``).

    Args:
        base: the plain output ``[T, H, W, 3]`` (:func:`~xinc_bench.inrs.base.render_output`).
    """
    layers = canvas_convs(model)
    names = [conv.name for conv in layers]
    shape = tuple(base.shape[:3])
    frames = torch.arange(shape[0]) if frames is None else torch.as_tensor(frames, dtype=torch.long)
    kernels = torch.as_tensor(kernels, dtype=torch.long).reshape(-1)
    if layer not in names or not hasattr(model, "output_map") or any(
        not hasattr(block, "shuffle") or not hasattr(block, "activation") for block in model.blocks
    ):
        if not len(kernels):
            return base.new_zeros(0, len(frames), *shape[1:])
        return torch.stack([(base - kernel_ablated_output(model, layer, kernel, shape))[frames].sum(dim=-1)
                            for kernel in kernels])
    index = names.index(layer)
    conv = layers[index].conv
    inputs, outputs = kernels // conv.out_channels, kernels % conv.out_channels
    weight = conv.weight[outputs, inputs].unsqueeze(1)  # [k, 1, kh, kw]
    bias = conv.bias[outputs] / conv.in_channels if conv.bias is not None else None
    maps = base.new_empty(len(kernels), len(frames), *shape[1:])
    device = conv.weight.device
    with _float32_convolutions():
        for row, t in enumerate(frames.tolist()):
            x = model.trace(torch.tensor([t], device=device)).inputs[index]  # [1, C_in, h, w]
            z = conv(x)
            for first in range(0, len(kernels), batch):
                part = slice(first, first + batch)
                count = len(kernels[part])
                # each kernel's map at the conv's resolution: [1, b, h, w], one grouped conv
                kernel_maps = F.conv2d(x[:, inputs[part]], weight[part], None if bias is None else bias[part],
                                       padding=conv.padding, groups=count)
                ablated = z.expand(count, -1, -1, -1).clone()
                ablated[torch.arange(count), outputs[part]] -= kernel_maps[0]
                output = _after_conv(model, index, ablated)  # [b, 3, H, W]
                maps[part, row] = (base[t] - output.permute(0, 2, 3, 1).to(base.device)).sum(dim=-1)
    return maps


def _after_conv(model: nn.Module, index: int, z: torch.Tensor) -> torch.Tensor:
    """The model's output from the output ``z`` of canvas conv ``index`` (block ``index + 1``, or the head)."""
    blocks = list(model.blocks)
    if index < len(blocks):
        block = blocks[index]
        x = block.activation(block.shuffle(z))
        for later in blocks[index + 1 :]:
            x = later(x)
        z = model.head(x)
    return model.output_map(z)


@contextmanager
def _float32_convolutions() -> Iterator[None]:
    """Run cuDNN convolutions in full float32 (CUDA's default TF32 keeps 10 mantissa bits).

    The exactness checks compare the model's own convs with their per-kernel decomposition;
    with TF32 on a GPU they differ by ~1e-4 although the canvas agrees with the CPU's to 1e-6.
    """
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


def _layer_error(layer: CanvasConv, summed: torch.Tensor, target: torch.Tensor) -> tuple[str, float]:
    """The exactness check of one layer: its summed maps against what the network computed."""
    if not layer.activation:
        scale = target.abs().max().clamp(min=1e-12)
        return f"{layer.name}_sum_max_rel_error", float((summed - target).abs().max() / scale)
    rebuilt = F.gelu(F.pixel_shuffle(summed, layer.upscale))
    return f"{layer.name}_gelu_sum_max_abs_error", float((rebuilt - target).abs().max())


TRACERS.add(
    "cnn",
    CNNTracer(),
    description="SPEC 4.2 NeRV-family kernel canvas (exact head, reference rule for blocks)",
)
