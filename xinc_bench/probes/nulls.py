"""Null models: named ways of destroying the structure a score asks about.

Each task declares in its YAML which null model(s) its scores are measured against and how many
draws (``nulls: {draws: 20, seed: 0}``; metric ``null: <model>``). Null models are registered in
:data:`~xinc_bench.registry.NULL_MODELS` with a description, so a task can only name one that exists.

Probes evaluate their scores on the draws themselves, on per-pixel or per-group summaries
wherever the score allows, so 20 draws do not cost 20 passes over the canvas. The helpers here
are the shared machinery: seeded pixel permutations, the seeded neuron sample a wide layer's draws
are summed for, and per-neuron group sums of the canvas's and many permuted label maps at once
(one read of a chunk).

Two more references are kept beside every record as *controls* (one draw each, all scores and
layers): the spatial-shuffle canvas (:mod:`~xinc_bench.probes.controls`) and the random-init twin.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import XincError
from ..registry import NULL_MODELS
from .numerics import stacked_group_sums

for _name, _description in {
    "label_permutation": (
        "the pixel labels of a partition (or instance mask) are permuted at random: group areas are "
        "kept, the link between groups and image content is destroyed; for one neuron this is "
        "distributed as a spatial shuffle of its map"
    ),
    "pixel_permutation": (
        "a per-pixel quantity compared with the canvas (intensity, edge mask, flow magnitude) is "
        "permuted at random over the pixels (within each frame for video); its values are kept, "
        "its alignment with the canvas is destroyed"
    ),
    "spatial_shuffle": (
        "every neuron's map is permuted over the pixels independently of the other neurons (each "
        "neuron keeps its value distribution; which neurons co-occur at a pixel is destroyed)"
    ),
    "neuron_permutation": (
        "neuron labels are permuted: each neuron is paired with another neuron's ablation "
        "map or profile, keeping the set of values and destroying the pairing"
    ),
    "random_neurons": (
        "the neurons an intervention acts on are chosen at random instead of by the canvas, same count"
    ),
}.items():
    NULL_MODELS.add(_name, _description)

def generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for null draws: ``seed`` from the task, ``stream`` separating uses within a probe."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(stream))


def neuron_sample(num_neurons: int, limit: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of at most ``limit`` neurons out of ``num_neurons``, drawn with ``seed`` (all if they fit)."""
    if num_neurons <= limit:
        return torch.arange(num_neurons)
    return torch.randperm(num_neurons, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def permutations(num_items: int, draws: int, gen: torch.Generator) -> torch.Tensor:
    """``[draws, num_items]`` int64: an independent uniform permutation of ``0..num_items-1`` per draw."""
    return torch.rand(draws, num_items, generator=gen).argsort(dim=1)


def permuted_labels(labels: torch.Tensor, draws: int, gen: torch.Generator) -> torch.Tensor:
    """``[draws, P]``: the flat ``labels[P]`` permuted over the pixels, independently per draw."""
    flat = labels.reshape(-1)
    return flat[permutations(flat.numel(), draws, gen)]


def null_neuron_sample(params: dict[str, Any], num_neurons: int) -> torch.Tensor | None:
    """The neurons of a layer its null draws are summed for: a seeded sample of ``params["max_null_neurons"]``
    of its ``num_neurons`` (:func:`neuron_sample`, seed ``params["null_seed"]``), or None (every neuron)
    without that limit or when the layer is no wider."""
    limit = params.get("max_null_neurons")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise XincError(
            f"parameter max_null_neurons={limit!r} is not a positive integer; give a neuron count, or null for every neuron"
        )
    return None if num_neurons <= limit else neuron_sample(num_neurons, limit, int(params.get("null_seed", 0)))


def own_and_null_group_sums(
    values: torch.Tensor,
    own: list[tuple[torch.Tensor, int]],
    drawn: list[tuple[torch.Tensor, int]],
    null_neurons: torch.Tensor | None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Group sums (:func:`~xinc_bench.probes.numerics.stacked_group_sums`) of the canvas's label-map stacks
    ``own`` over every row of ``values[N, p]``, and of the null draws' stacks ``drawn`` over the rows
    ``null_neurons`` (None: every row, both from one read of ``values``)."""
    if null_neurons is None:
        sums = stacked_group_sums(values, own + drawn)
        return sums[: len(own)], sums[len(own) :]
    return stacked_group_sums(values, own), stacked_group_sums(values[null_neurons], drawn) if drawn else []


def compact_labels(labels: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Integer labels in ``0..num_groups-1`` stored in the smallest integer type that holds them (int16 or int32)."""
    return labels.to(torch.int16 if num_groups <= torch.iinfo(torch.int16).max else torch.int32)


def frame_permutations(shape: tuple[int, int, int], draws: int, gen: torch.Generator) -> torch.Tensor:
    """``[draws, T * H * W]`` int64 flat pixel indices, each draw an independent permutation within every frame.

    Gathering a flat per-pixel map ``x`` at row ``d`` (``x[order[d]]``) gives ``x`` permuted over
    the pixels of each frame; frames are never mixed, so a frame chunk's pixels map into themselves.
    """
    frames, height, width = shape
    pixels = height * width
    within = permutations(pixels, draws * frames, gen).reshape(draws, frames, pixels)
    return (within + (torch.arange(frames) * pixels)[None, :, None]).reshape(draws, frames * pixels)


def null_order(canvas: Any, params: dict[str, Any]) -> torch.Tensor | None:
    """The pixel permutations of a probe's ``params["null_draws"]`` draws (seed ``params["null_seed"]``).

    :func:`frame_permutations` of the canvas pixels, shared by every layer; None for no draws.
    """
    draws = int(params.get("null_draws", 0))
    return frame_permutations(canvas.shape, draws, generator(int(params.get("null_seed", 0)))) if draws else None
