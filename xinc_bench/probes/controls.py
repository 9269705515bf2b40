"""Controls: canvases that keep what a probe should not reward and destroy what it measures.

:func:`shuffle_canvas` permutes every neuron's map spatially, with an independent pixel
permutation per neuron and frame. Each neuron keeps its values in each frame (so its total
mass, value distribution and per-frame totals are unchanged) while the link between a neuron's
contribution and the content at a pixel is destroyed: probe scores on it are the chance
reference printed beside the real scores.
"""

from __future__ import annotations

import torch

from ..canvas.canvas import Canvas
from .accumulator import ChunkView

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


def shuffle_frames(block: torch.Tensor, layer_seed: int, start: int) -> torch.Tensor:
    """Frames ``start ..`` of a layer's spatial-shuffle control, from the same frames ``block[N, t, H, W]``.

    Frame ``start + i`` is shuffled with the generator seeded ``(layer_seed, start + i)``, so a
    frame gets the same permutations whatever block it is read in.
    """
    shuffled = [
        shuffle_layer(block[:, i : i + 1], torch.Generator().manual_seed(layer_seed * 100_003 + start + i))
        for i in range(block.shape[1])
    ]
    return torch.cat(shuffled, dim=1)


def layer_seeds(layer_names: list[str], seed: int) -> dict[str, int]:
    """The shuffle seed of each layer of a canvas (by its position) for the control of ``seed``."""
    return {name: seed * 1_000_003 + index for index, name in enumerate(layer_names)}


def shuffled_view(canvas: Canvas, seed: int = 0) -> ChunkView:
    """The spatial-shuffle control as a view of the canvas's blocks: block for block what
    :func:`shuffle_canvas` reads, for accumulators fed alongside the canvas's own
    (:func:`~xinc_bench.probes.accumulator.accumulate`)."""
    seeds = layer_seeds(canvas.layer_names, seed)
    return lambda name, start, block: shuffle_frames(block, seeds[name], start)


class ShuffledLayer:
    """The spatial-shuffle control of one layer, computed frame by frame when read.

    Frame ``t`` always uses the generator seeded with ``(seed, t)``, so a frame reads the same
    whatever chunk it is read in.
    """

    def __init__(self, canvas: Canvas, name: str, seed: int) -> None:
        self._canvas = canvas
        self._name = name
        self._seed = seed
        self.shape = canvas.layer_shape(name)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop`` of the shuffled layer, ``[N, stop - start, H, W]`` float32."""
        return shuffle_frames(self._canvas.layer_frames(self._name, start, stop), self._seed, start)


def shuffle_canvas(canvas: Canvas, seed: int = 0) -> Canvas:
    """The spatial-shuffle control of ``canvas``: same frames, masks and flow, shuffled maps.

    Layers are shuffled lazily, frame by frame, when read (see :class:`ShuffledLayer`), so the
    control of a canvas too big for memory is read in frame chunks like the canvas itself.
    """
    layers = {name: ShuffledLayer(canvas, name, layer_seed) for name, layer_seed in layer_seeds(canvas.layer_names, seed).items()}
    metadata = {**canvas.metadata, "control": "spatial_shuffle", "shuffle_seed": seed}
    return Canvas(
        layers=layers,
        frames=canvas.frames,
        recon=canvas.recon,
        masks=canvas.masks,
        flow=canvas.flow,
        metadata=metadata,
        chunk_bytes=canvas.chunk_bytes,
    )
