"""Known-answer INRs: presets whose canvas neurons each belong to one group of pixels by construction.

These are reference models for the probes (issue 12): what a probe should find on them is fixed by
the architecture, not by training luck. Each is a coordinate MLP in which every pixel ``p`` is
assigned one of ``G`` groups ``g(p)`` (a spatial tile, a colour cluster, an object instance) and
local coordinates ``u(p)``::

    f(p)      = [sin(2 pi B u(p)), cos(2 pi B u(p)), 1]          F = 2 M + 1 features
    x_gi(p)   = [g(p) = g] f_i(p)                                G F gated features   (layer ``hidden.0``)
    h1_gj(p)  = tanh(sum_i W1_g[j, i] x_gi(p))                   G n units of layer 1 (layer ``hidden.1``)
    h2_gj(p)  = tanh(sum_i W2_g[j, i] h1_gi(p))                  G n units of layer 2 (layer ``out``)
    rgb(p)    = sum_gj V[:, gj] h2_gj(p)

Every gated feature is zero outside its group. The hidden layers are block-diagonal and have no
bias, so a unit of group ``g`` reads only group ``g``'s units and is ``tanh(0) = 0`` outside the
group; the output layer has no bias either, so the canvas rule gives no neuron a uniform bias
share. Hence every neuron's canvas map is exactly zero outside its group, whatever the weights
(the random-init twin of a run is owned the same way). The activation is tanh, not ReLU: it is
zero at zero and nonzero almost everywhere else, so a group's units cover all of its pixels (with
ReLU, trained units go silent on parts of their group, and there a moving group shows no change).
Canvases come from the generic hook tracer (``linear``, :mod:`xinc_bench.canvas.hooks`), whose
exactness checks hold to float precision; every traced module's inputs are owned neurons.

Presets (family ``known-answer``):

* ``known-tiled``: groups are the cells of a ``rows x cols`` grid over the image (space-owned).
* ``known-palette``: groups are the k-means RGB clusters of the image (colour-owned).
* ``known-objects``: groups are the instances of the signal's masks (object-owned; needs masks,
  e.g. a synthetic scene's first frame, ``synthetic-static --frames 0:1``).
* ``known-motion``: a video INR on ``[t, y, x]`` whose groups are the instances in each frame and
  whose local coordinates move with each instance (its displacement since frame 0, from the
  signal's flow), so a static instance's neurons are constant over time and only the neurons of
  moving instances change (needs masks and flow, e.g. ``synthetic-moving``).

The last three read their groups from the signal: they declare ``needs_signal = True`` and
:func:`~xinc_bench.training.fit` calls ``set_signal(signal)`` before training (the groups are a
persistent buffer, so checkpoints carry them). Until then every pixel is in group 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from ..data.signal import Signal
from ..data.synthetic import DEFAULT_NUM_OBJECTS
from ..errors import XincError
from .base import register_inr


class BlockLinear(nn.Module):
    """A bias-free linear map whose weight is block-diagonal: ``G`` blocks of ``[out, in]``.

    Input ``[P, G * in]`` -> output ``[P, G * out]``; output block ``g`` reads only input block
    ``g``. ``linear_map = True`` and the dense :attr:`weight` let the hook tracers treat its
    input units as neurons (:func:`xinc_bench.canvas.hooks.is_traced`).
    """

    linear_map = True

    def __init__(self, groups: int, in_per_group: int, out_per_group: int) -> None:
        super().__init__()
        self.groups = groups
        self.in_features = groups * in_per_group
        self.out_features = groups * out_per_group
        bound = 1.0 / math.sqrt(in_per_group)
        self.blocks = nn.Parameter(torch.empty(groups, out_per_group, in_per_group).uniform_(-bound, bound))
        self.register_parameter("bias", None)

    @property
    def weight(self) -> torch.Tensor:
        """The dense block-diagonal ``[G * out, G * in]`` weight."""
        return torch.block_diag(*self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[P, G * in] -> [P, G * out]``."""
        rows = x.shape[0]
        out = torch.einsum("pgi,goi->pgo", x.reshape(rows, self.groups, -1), self.blocks)
        return out.reshape(rows, self.out_features)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, in_features={self.in_features}, out_features={self.out_features}, bias=False"


class GroupOwnedMLP(nn.Module, ABC):
    """Base of the known-answer INRs: gated Fourier features, block-diagonal tanh layers, a linear output.

    Subclasses define :meth:`assign`, which gives each input coordinate its group and local
    coordinates (module docstring).

    Args:
        num_groups: G.
        units_per_group: units n of each group in each hidden layer.
        frequencies: Fourier frequencies M (``B[M, 2] ~ N(0, scale^2)``, fixed).
        scale: standard deviation of the frequencies.
        hidden_layers: block-diagonal tanh layers.
    """

    input_kind = "coords"
    signal_kind = "image"
    tracer = "linear"
    default_lr = 1e-2

    def __init__(
        self, num_groups: int, units_per_group: int, frequencies: int, scale: float, hidden_layers: int = 2
    ) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.register_buffer("B", torch.randn(frequencies, 2) * scale)
        widths = [2 * frequencies + 1] + [units_per_group] * hidden_layers
        self.hidden = nn.ModuleList(BlockLinear(num_groups, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(num_groups * units_per_group, 3, bias=False)

    @abstractmethod
    def assign(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``coords[P, D]`` -> (group ``[P]`` int64 in ``0..G-1``, local coordinates ``[P, 2]``)."""

    def features(self, local: torch.Tensor) -> torch.Tensor:
        """``[P, 2] -> [P, 2 M + 1]``: sines, cosines, and a constant 1."""
        proj = 2.0 * math.pi * local @ self.B.T
        return torch.cat([torch.sin(proj), torch.cos(proj), torch.ones_like(proj[:, :1])], dim=-1)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords[P, D] -> rgb[P, 3]``."""
        group, local = self.assign(coords)
        gate = F.one_hot(group, self.num_groups).to(local.dtype)
        gated = (gate[:, :, None] * self.features(local)[:, None, :]).reshape(coords.shape[0], -1)
        for layer in self.hidden:
            gated = torch.tanh(layer(gated))
        return self.out(gated)


def pixel_index(coords: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Flat index ``(t H + y) W + x`` of each coordinate row on a ``(T, H, W)`` grid (inverse of
    :func:`~xinc_bench.inrs.base.signal_coordinates`): ``[P]`` int64.

    ``coords`` is ``[P, 2]`` ``(y, x)`` for images or ``[P, 3]`` ``(t, y, x)`` for videos.
    """
    num_frames, height, width = shape
    scale = max(height, width) - 1
    yx = torch.round((coords[:, -2:] / 2.0 + 0.5) * scale).long()
    y = yx[:, 0].clamp(0, height - 1)
    x = yx[:, 1].clamp(0, width - 1)
    if coords.shape[1] == 3 and num_frames > 1:
        t = torch.round((coords[:, 0] + 1.0) / 2.0 * (num_frames - 1)).long().clamp(0, num_frames - 1)
    else:
        t = torch.zeros_like(y)
    return (t * height + y) * width + x


@register_inr("known-tiled", family="known-answer", signal_kind="image", input_kind="coords", tracer="linear",
              description="known answer, space-owned: 4x8 grid cells x (33 features, 2x8 tanh units), 11,264 params")
class TiledMLP(GroupOwnedMLP):
    """Known-answer INR whose neurons each live in one cell of a ``rows x cols`` grid (space-owned).

    Args:
        height, width: the image size; pixel ``(y, x)`` is in cell ``(y rows // H, x cols // W)``.
        rows, cols: the grid; G = rows * cols.
        units_per_group, frequencies, scale: see :class:`GroupOwnedMLP`.
    """

    def __init__(
        self,
        height: int,
        width: int,
        rows: int = 4,
        cols: int = 8,
        units_per_group: int = 8,
        frequencies: int = 16,
        scale: float = 6.0,
    ) -> None:
        if rows > height or cols > width:
            raise XincError(
                f"a {rows}x{cols} tiling needs an image of at least {rows}x{cols} pixels, not {height}x{width}"
            )
        super().__init__(rows * cols, units_per_group, frequencies, scale)
        self.shape = (1, height, width)
        self.rows, self.cols = rows, cols

    def assign(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group = the grid cell of the pixel; local coordinates = the coordinates."""
        index = pixel_index(coords, self.shape)
        _, height, width = self.shape
        row = (index // width) * self.rows // height
        col = (index % width) * self.cols // width
        return row * self.cols + col, coords


class SignalGroupsMLP(GroupOwnedMLP):
    """Known-answer INR whose groups are read from the signal by :meth:`set_signal`.

    The group of every pixel of the ``T x H x W`` signal is the persistent buffer ``groups``
    (``[T H W]`` int64, saved with the model); until :meth:`set_signal` runs, all are 0.
    """

    needs_signal = True

    def __init__(
        self, num_frames: int, height: int, width: int, num_groups: int, units_per_group: int, frequencies: int,
        scale: float,
    ) -> None:
        super().__init__(num_groups, units_per_group, frequencies, scale)
        self.shape = (num_frames, height, width)
        self.register_buffer("groups", torch.zeros(num_frames * height * width, dtype=torch.long))

    def set_signal(self, signal: Signal) -> None:
        """Read the pixels' groups from ``signal`` (its shape must be the model's)."""
        shape = (signal.num_frames, signal.height, signal.width)
        if shape != self.shape:
            raise XincError(
                f"{type(self).__name__} was built for a {'x'.join(map(str, self.shape))} signal but got "
                f"{'x'.join(map(str, shape))}; build it with the signal's num_frames, height and width"
            )
        self.groups.copy_(self.signal_groups(signal).reshape(-1))

    @abstractmethod
    def signal_groups(self, signal: Signal) -> torch.Tensor:
        """``[T, H, W]`` group of every pixel of ``signal``, in ``0..G-1``."""

    def assign(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group = the stored group of the pixel; local coordinates = ``(y, x)``."""
        return self.groups[pixel_index(coords, self.shape)], coords[:, -2:]


@register_inr("known-palette", family="known-answer", signal_kind="image", input_kind="coords", tracer="linear",
              description="known answer, colour-owned: 8 RGB k-means clusters x (129 features, 2x32 tanh), 41,984 params")
class PaletteMLP(SignalGroupsMLP):
    """Known-answer INR whose neurons each live on one k-means colour cluster of the image (colour-owned).

    Args:
        height, width: the image size.
        num_colors: G, the k-means clusters of the image's RGB values (Lloyd's algorithm from
            colours at evenly spaced brightness quantiles, so it is deterministic).
        units_per_group, frequencies, scale: see :class:`GroupOwnedMLP`.
    """

    def __init__(
        self, height: int, width: int, num_colors: int = 8, units_per_group: int = 32, frequencies: int = 64,
        scale: float = 10.0,
    ) -> None:
        super().__init__(1, height, width, num_colors, units_per_group, frequencies, scale)

    def signal_groups(self, signal: Signal) -> torch.Tensor:
        return color_clusters(signal.frames, self.num_groups).reshape(self.shape)


def color_clusters(frames: torch.Tensor, num_clusters: int, iterations: int = 30) -> torch.Tensor:
    """k-means cluster of every pixel's RGB value, ``[T H W]`` int64 (some clusters may end empty).

    Deterministic: the initial centres are the colours at ``num_clusters`` evenly spaced quantiles
    of the brightness; then ``iterations`` Lloyd steps (an empty cluster keeps its centre).
    """
    colors = frames.reshape(-1, 3).double()
    order = colors.sum(dim=1).argsort()
    picks = torch.linspace(0, colors.shape[0] - 1, num_clusters).round().long()
    centres = colors[order[picks]]
    for _ in range(iterations):
        labels = torch.cdist(colors, centres).argmin(dim=1)
        counts = torch.bincount(labels, minlength=num_clusters).double()
        sums = torch.zeros_like(centres).index_add_(0, labels, colors)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    return torch.cdist(colors, centres).argmin(dim=1)


def instance_groups(signal: Signal, num_groups: int, model: str) -> torch.Tensor:
    """``[T, H, W]`` instance index (``0..K-1``, segment ids in increasing order) from the signal's masks."""
    if signal.masks is None:
        raise XincError(
            f"{model} owns its neurons by object instance and needs the signal's masks; fit it on a source "
            "with instance masks, e.g. synthetic-static --frames 0:1 (image) or synthetic-moving (video)"
        )
    ids, inverse = torch.unique(signal.masks, return_inverse=True)
    if len(ids) > num_groups:
        raise XincError(
            f"{model} has {num_groups} instance groups but the masks hold {len(ids)} segments; "
            f"build it with num_groups={len(ids)} or more"
        )
    return inverse


@register_inr("known-objects", family="known-answer", signal_kind="image", input_kind="coords", tracer="linear",
              description="known answer, object-owned: 5 mask instances x (209 features, 2x48 tanh), 62,400 params")
class ObjectsMLP(SignalGroupsMLP):
    """Known-answer INR whose neuron groups each own one instance of the signal's masks (object-owned).

    Args:
        height, width: the image size.
        num_groups: at least the number of mask segments (default: the synthetic scenes' four
            objects and background); a group with no segment keeps all-zero neurons.
        units_per_group, frequencies, scale: see :class:`GroupOwnedMLP`.
    """

    def __init__(
        self, height: int, width: int, num_groups: int = DEFAULT_NUM_OBJECTS + 1, units_per_group: int = 48,
        frequencies: int = 104, scale: float = 10.0,
    ) -> None:
        super().__init__(1, height, width, num_groups, units_per_group, frequencies, scale)

    def signal_groups(self, signal: Signal) -> torch.Tensor:
        return instance_groups(signal, self.num_groups, "known-objects")


@register_inr("known-motion", family="known-answer", signal_kind="video", input_kind="coords", tracer="linear",
              description="known answer, motion: 5 instances x (209 features, 2x48 tanh), each moving with its instance")
class MotionMLP(SignalGroupsMLP):
    """Known-answer video INR on ``[t, y, x]``: one neuron group per instance, moving with it.

    The local coordinates of a pixel of instance ``g`` in frame ``t`` are ``(y, x) - o_g(t)`` with
    ``o_g(t)`` the instance's displacement since frame 0: the sum over frames ``s <= t`` of its
    mean flow on its pixels of frame ``s`` (0 in frames where it is absent). The time enters only
    through ``o_g``, so the neurons of an instance whose flow is zero are the same in every frame,
    and a moving instance's neurons follow its surface (buffer ``offsets[T, G, 2]``).

    Args:
        num_frames, height, width: the video's shape.
        num_groups: at least the number of mask segments (default as :class:`ObjectsMLP`).
        units_per_group, frequencies, scale: see :class:`GroupOwnedMLP`.
    """

    signal_kind = "video"

    def __init__(
        self, num_frames: int, height: int, width: int, num_groups: int = DEFAULT_NUM_OBJECTS + 1,
        units_per_group: int = 48, frequencies: int = 104, scale: float = 10.0,
    ) -> None:
        super().__init__(num_frames, height, width, num_groups, units_per_group, frequencies, scale)
        self.register_buffer("offsets", torch.zeros(num_frames, num_groups, 2))

    def signal_groups(self, signal: Signal) -> torch.Tensor:
        return instance_groups(signal, self.num_groups, "known-motion")

    def set_signal(self, signal: Signal) -> None:
        """Read the instances from the masks and each instance's displacement from the flow."""
        if signal.flow is None:
            raise XincError(
                "known-motion moves each instance's neurons with its flow and needs the signal's flow; "
                "fit it on a source with ground-truth flow, e.g. synthetic-moving"
            )
        super().set_signal(signal)
        num_frames, height, width = self.shape
        frame = torch.arange(num_frames).repeat_interleave(height * width)
        cell = frame * self.num_groups + self.groups
        cells = num_frames * self.num_groups
        step_yx = signal.flow.reshape(-1, 2).flip(-1).double()  # (dx, dy) -> (dy, dx) pixels
        sums = torch.zeros(cells, 2, dtype=torch.float64).index_add_(0, cell, step_yx)
        counts = torch.bincount(cell, minlength=cells).double()
        steps = (sums / counts.clamp(min=1)[:, None]).reshape(num_frames, self.num_groups, 2)
        coordinate_step = 2.0 / (max(height, width) - 1)  # coordinates per pixel
        self.offsets.copy_((steps.cumsum(dim=0) * coordinate_step).float())

    def assign(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group = the pixel's instance in its frame; local coordinates = ``(y, x)`` minus its displacement."""
        index = pixel_index(coords, self.shape)
        group = self.groups[index]
        frame = index // (self.shape[1] * self.shape[2])
        return group, coords[:, -2:] - self.offsets[frame, group]
