"""Probes read big layers in frame chunks: the scores must not depend on the chunk size.

A canvas whose chunk budget holds one frame (``chunk_bytes=1``) and whose layers refuse to hand
out more than one frame at once must give the scores of the same canvas read whole: for every probe, in memory, from a file and on its
shuffled control.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from xinc_bench.canvas import Canvas, read_canvas
from xinc_bench.canvas.file import write_canvas
from xinc_bench.probes.base import load_task
from xinc_bench.probes.controls import shuffle_canvas

T, H, W = 5, 8, 12
TASKS = ["distribution", "color", "edges", "partitions", "objects", "motion", "clustering"]


def _canvas() -> Canvas:
    generator = torch.Generator().manual_seed(3)
    layers = {
        "first": torch.randn(6, T, H, W, generator=generator),
        "second": torch.rand(9, T, H, W, generator=generator) * (torch.rand(9, T, H, W, generator=generator) > 0.4),
    }
    layers["second"][2] = 0.0  # an all-zero map
    masks = torch.zeros(T, H, W, dtype=torch.int32)
    masks[:, :4, :6] = 1
    masks[:, 4:, 6:] = 2
    masks[:, :3, 8:] = 3
    for t in range(T):  # instance 2 moves right by one pixel per frame
        masks[t, 5:, :] = torch.where(torch.arange(W) < 2 + t, 4, masks[t, 5:, :])
    flow = torch.zeros(T, H, W, 2)
    flow[1:, 5:, : W // 2, 0] = 1.5
    flow[1:, :2, :, 1] = torch.rand(T - 1, 2, W, generator=generator)
    return Canvas(
        layers=layers,
        frames=torch.rand(T, H, W, 3, generator=generator),
        masks=masks,
        flow=flow,
        metadata={"categories": {"1": 0, "2": 1, "3": 0, "4": 1}},
    )


class _OneFrameAtATime:
    """A layer source that fails the test when a probe reads more than one frame at once."""

    def __init__(self, layer: torch.Tensor) -> None:
        self.layer = layer
        self.shape = tuple(layer.shape)

    def read(self, start: int, stop: int) -> torch.Tensor:
        assert stop - start <= 1, f"a probe read frames {start}:{stop} at once; it must read frame chunks"
        return self.layer[:, start:stop]


def _frame_by_frame(canvas: Canvas) -> Canvas:
    layers = {name: _OneFrameAtATime(canvas.layer(name)) for name in canvas.layer_names}
    return dataclasses.replace(canvas, layers=layers, chunk_bytes=1)


def _scores(canvas: Canvas, task: str) -> dict[str, float]:
    import matplotlib.pyplot as plt

    result = load_task(task).run(canvas)
    plt.close("all")
    return result.scores


def _assert_same(whole: dict[str, float], chunked: dict[str, float]) -> None:
    assert whole.keys() == chunked.keys()
    for name, value in whole.items():
        if math.isnan(value):
            assert math.isnan(chunked[name]), name
        else:
            assert chunked[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("task", TASKS)
def test_frame_chunks_give_the_scores_of_the_whole_layer(task: str) -> None:
    canvas = _canvas()
    frame_by_frame = _frame_by_frame(canvas)
    assert frame_by_frame.frames_per_chunk("second") == 1
    _assert_same(_scores(canvas, task), _scores(frame_by_frame, task))


@pytest.mark.parametrize("task", ["distribution", "motion", "partitions"])
def test_file_backed_and_shuffled_canvases_read_in_chunks_agree(tmp_path, task: str) -> None:
    canvas = _canvas()
    write_canvas(canvas, tmp_path / "c.safetensors")
    on_disk = read_canvas(tmp_path / "c.safetensors")
    on_disk.chunk_bytes = 1
    _assert_same(_scores(canvas, task), _scores(on_disk, task))
    _assert_same(_scores(shuffle_canvas(canvas), task), _scores(shuffle_canvas(on_disk), task))


def test_frame_chunks_cover_every_frame_once() -> None:
    canvas = dataclasses.replace(_canvas(), chunk_bytes=6 * H * W * 4 * 2)  # two frames of "first"
    starts = [(start, chunk.shape[1]) for start, chunk in canvas.frame_chunks("first")]
    assert starts == [(0, 2), (2, 2), (4, 1)]
    joined = torch.cat([chunk for _, chunk in canvas.frame_chunks("first")], dim=1)
    assert torch.equal(joined, canvas.layer("first"))


def test_block_values_are_computed_once_per_block_and_dropped_with_it() -> None:
    """The values probes derive from a block are shared while it lives, recomputed after an
    in-place change or for another block, and freed with it."""
    import gc

    from xinc_bench.probes import numerics

    block = torch.randn(4, 2, 3, 5, generator=torch.Generator().manual_seed(0))
    mags = numerics.block_magnitudes(block)
    assert mags is numerics.block_magnitudes(block)
    assert torch.equal(mags, block.reshape(4, -1).abs())
    assert torch.allclose(numerics.block_pixel_totals(block), block.abs().sum(dim=0, dtype=torch.float64).reshape(-1))
    assert torch.allclose(numerics.block_neuron_totals(block), block.abs().sum(dim=(1, 2, 3), dtype=torch.float64))
    low, high = numerics.block_neuron_extrema(block)
    assert torch.equal(low, mags.amin(dim=1)) and torch.equal(high, mags.amax(dim=1))
    block.mul_(2)
    assert torch.equal(numerics.block_magnitudes(block), 2 * mags)
    other = block.clone()
    assert numerics.block_magnitudes(other) is not numerics.block_magnitudes(block)
    del block, other
    gc.collect()
    assert numerics._BLOCK.values == {}


@pytest.mark.parametrize("groups", [3, 40])  # a matmul with the one-hot, and a scatter per map
def test_stacked_group_sums_are_the_sums_of_each_map(monkeypatch: pytest.MonkeyPatch, groups: int) -> None:
    from xinc_bench.probes import numerics

    generator = torch.Generator().manual_seed(1)
    values = torch.rand(7, 50, generator=generator)
    stacks = [(torch.randint(groups, (3, 50), generator=generator), groups), (torch.randint(2, (1, 50)).short(), 2)]
    monkeypatch.setattr(numerics, "_ONEHOT_ELEMENTS", 13)  # many small blocks of pixels and rows
    for (labels, count), sums in zip(stacks, numerics.stacked_group_sums(values, stacks)):
        for row, label_map in enumerate(labels):
            expected = torch.zeros(7, count, dtype=torch.float64).index_add_(1, label_map.long(), values.double())
            assert torch.allclose(sums[row], expected, rtol=1e-12, atol=0)


def test_distinct_rows_counts_up_to_the_limit() -> None:
    import numpy as np

    from xinc_bench.probes.kmeans import distinct_rows

    rows = np.repeat(np.arange(12.0).reshape(4, 3), 5, axis=0)
    assert distinct_rows(rows, 8) == 4 and distinct_rows(rows, 3) == 3
    assert distinct_rows(np.array([[0.0, 1.0], [-0.0, 1.0]]), 8) == 1  # as np.unique: -0.0 == 0.0
    assert distinct_rows(np.zeros((0, 3)), 8) == 0
