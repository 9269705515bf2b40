"""Helpers of the probe tests that check the accumulator contract (:mod:`xinc_bench.probes.accumulator`).

* :func:`unreadable`: the canvas with layers that fail the test when read, so an accumulator
  built on it must get every block through ``update``;
* :func:`feed_blocks`: an accumulator fed by hand, blocks of a few frames with the layers
  interleaved, every block checked unchanged after ``update`` (blocks are shared, read only);
* :func:`assert_same_result`: two probe results with the same scores, null draws and absent scores.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.probes.accumulator import ProbeAccumulator, ProbeResult


class Unreadable:
    """A layer that only has a shape: reading it fails the test."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def read(self, start: int, stop: int) -> torch.Tensor:
        raise AssertionError("accumulator read a layer")


def unreadable(canvas: Canvas) -> Canvas:
    """``canvas`` with every layer replaced by an :class:`Unreadable` of its shape."""
    return dataclasses.replace(canvas, layers={name: Unreadable(canvas.layer_shape(name)) for name in canvas.layer_names})


def feed_blocks(accumulator: ProbeAccumulator, canvas: Canvas, frames: int) -> ProbeResult:
    """Every pass of ``accumulator`` fed by hand from ``canvas`` in blocks of ``frames`` frames, layers
    interleaved; each block must be unchanged by ``update``. Returns :meth:`~ProbeAccumulator.compute`."""
    num_frames = canvas.shape[0]
    for pass_index in range(accumulator.passes):
        for start in range(0, num_frames, frames):
            stop = min(num_frames, start + frames)
            for name in canvas.layer_names:
                block = canvas.layer_frames(name, start, stop)
                accumulator.update(name, start, block, pass_index)
                assert torch.equal(block, canvas.layer_frames(name, start, stop)), "update modified its block"
        accumulator.end_pass(pass_index)
    return accumulator.compute()


def assert_same_result(got: ProbeResult, expected: ProbeResult) -> None:
    """Same score names and values, null models and draws (rel 1e-9, abs 1e-12, NaN equal to NaN), absent scores."""
    assert got.scores.keys() == expected.scores.keys()
    for name, value in expected.scores.items():
        assert got.scores[name] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), name
    assert got.nulls.keys() == expected.nulls.keys()
    for model, draws in expected.nulls.items():
        assert got.nulls[model].keys() == draws.keys(), model
        for name, values in draws.items():
            assert got.nulls[model][name] == pytest.approx(values, rel=1e-9, abs=1e-12, nan_ok=True), name
    assert got.absent == expected.absent
