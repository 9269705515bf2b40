"""The spatial-shuffle control: what it keeps and what it destroys, block for block."""

from __future__ import annotations

import torch

from xinc_bench.canvas import Canvas
from xinc_bench.probes.controls import layer_seeds, shuffle_canvas, shuffle_frames


def _canvas() -> Canvas:
    gen = torch.Generator().manual_seed(0)
    layer = torch.arange(6 * 4 * 8 * 16, dtype=torch.float32).reshape(6, 4, 8, 16)  # every value distinct
    return Canvas(layers={"a": layer, "b": torch.rand(3, 4, 8, 16, generator=gen)}, frames=torch.rand(4, 8, 16, 3))


def test_every_map_keeps_its_values_in_every_frame_and_loses_their_places() -> None:
    canvas = _canvas()
    original = canvas.layers["a"].reshape(6, 4, -1)
    shuffled = shuffle_canvas(canvas, seed=0).layer_frames("a", 0, 4).reshape(6, 4, -1)
    assert torch.equal(shuffled.sort(dim=-1).values, original.sort(dim=-1).values)  # same values per (neuron, frame)
    moved = (shuffled != original).float().mean()
    assert moved > 0.95  # a permutation of 128 pixels leaves ~1 in 128 in place
    # each (neuron, frame) has its own permutation: the ranks of the values differ between maps
    ranks = (shuffled - original[:, :, :1]).argsort(dim=-1)
    assert len({tuple(row.tolist()) for row in ranks.reshape(24, -1)}) == 24


def test_a_frame_reads_the_same_in_any_block_and_differs_with_the_seed() -> None:
    canvas = _canvas()
    control = shuffle_canvas(canvas, seed=3)
    whole = control.layer_frames("b", 0, 4)
    per_frame = torch.cat([control.layer_frames("b", t, t + 1) for t in range(4)], dim=1)
    assert torch.equal(per_frame, whole)
    assert torch.equal(control.layer_frames("b", 1, 3), whole[:, 1:3])
    assert not torch.equal(shuffle_canvas(canvas, seed=4).layer_frames("b", 0, 4), whole)


def test_the_block_given_to_the_view_is_left_as_it_was() -> None:
    canvas = _canvas()
    block = canvas.layer_frames("a", 0, 1)
    before = block.clone()
    shuffle_frames(block, layer_seeds(canvas.layer_names, 0)["a"], 0)
    assert torch.equal(block, before)


class _FreshLayer:
    """A layer source whose every read is a tensor of its own (as a traced layer's), remembering what it gave."""

    fresh_reads = True

    def __init__(self, layer: torch.Tensor) -> None:
        self.layer = layer
        self.shape = tuple(layer.shape)
        self.given: list[torch.Tensor] = []

    def read(self, start: int, stop: int) -> torch.Tensor:
        self.given.append(self.layer[:, start:stop].clone())
        return self.given[-1]


def test_a_layer_read_fresh_is_shuffled_in_place_into_the_same_control() -> None:
    """A source whose reads are its reader's own (a traced layer) is shuffled where the read lies, one
    frame or several, without a second block; the control is the one of the same layer stored whole,
    whose reads are views of it and are left as they were."""
    stored = _canvas()
    fresh = _FreshLayer(stored.layers["b"])
    traced = Canvas(layers={"a": stored.layers["a"], "b": fresh}, frames=stored.frames)
    assert traced.reads_fresh("b") and not traced.reads_fresh("a") and not stored.reads_fresh("b")
    kept = stored.layers["b"].clone()
    for start, stop in ((0, 1), (1, 3), (3, 4)):
        expected = shuffle_canvas(stored, seed=2).layer_frames("b", start, stop)
        control = shuffle_canvas(traced, seed=2).layer_frames("b", start, stop)
        assert control.data_ptr() == fresh.given[-1].data_ptr()  # the read itself, shuffled
        assert torch.equal(control, expected)
    assert torch.equal(stored.layers["b"], kept)
    assert shuffle_canvas(traced, seed=2).reads_fresh("b")
