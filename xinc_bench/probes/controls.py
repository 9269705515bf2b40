"""Controls: canvases that keep what a probe should not reward and destroy what it measures.

:func:`shuffle_canvas` permutes every neuron's map spatially, with an independent pixel
permutation per neuron and frame. Each neuron keeps its values in each frame (so its total
mass, value distribution and per-frame totals are unchanged) while the link between a neuron's
contribution and the content at a pixel is destroyed: probe scores on it are the chance
reference printed beside the real scores.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..canvas.canvas import Canvas

_BLOCK_ELEMENTS = 1 << 24


def shuffle_layer(layer: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``[N, T, H, W]`` with each ``(neuron, frame)`` map's pixels independently permuted."""
    num_neurons, num_frames, height, width = layer.shape
    maps = layer.reshape(num_neurons * num_frames, height * width)
    out = torch.empty_like(maps)
    block = max(1, _BLOCK_ELEMENTS // max(1, height * width))
    for start in range(0, maps.shape[0], block):
        chunk = maps[start : start + block]
        order = torch.rand(chunk.shape, generator=generator).argsort(dim=1)
        out[start : start + block] = torch.gather(chunk, 1, order)
    return out.reshape(layer.shape)


def shuffle_canvas(canvas: Canvas, seed: int = 0) -> Canvas:
    """The spatial-shuffle control of ``canvas``: same frames, masks and flow, shuffled maps.

    Layers are shuffled lazily when read; layer ``i`` always uses the generator seeded with
    ``(seed, i)``, so reading a layer twice gives the same shuffled map.
    """
    layers: dict[str, Callable[[], torch.Tensor]] = {
        name: _lazy_shuffle(canvas, name, seed * 1_000_003 + index) for index, name in enumerate(canvas.layer_names)
    }
    metadata = {**canvas.metadata, "control": "spatial_shuffle", "shuffle_seed": seed}
    return Canvas(
        layers=layers,
        frames=canvas.frames,
        recon=canvas.recon,
        masks=canvas.masks,
        flow=canvas.flow,
        metadata=metadata,
    )


def _lazy_shuffle(canvas: Canvas, name: str, seed: int) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return shuffle_layer(canvas.layer(name), generator)

    return load
