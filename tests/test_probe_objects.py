"""The objects probe on constructed canvases whose answers are known in advance.

Four instances (the quadrants of a 32 x 64 image, unequal areas on purpose: the top row is
shorter) in two categories: segments 1 and 2 are category 7, segments 3 and 4 category 8.
"""

from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import pytest
import torch

from xinc_bench.canvas import Canvas
from xinc_bench.errors import XincError
from xinc_bench.probes.base import load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.probes.objects import instance_labels, profiles

N, H, W = 16, 32, 64
CATEGORIES = {"1": 7, "2": 7, "3": 8, "4": 8}


def _masks() -> torch.Tensor:
    masks = torch.zeros(1, H, W, dtype=torch.int32)
    masks[0, :10, :32], masks[0, :10, 32:], masks[0, 10:, :32], masks[0, 10:, 32:] = 1, 2, 3, 4
    return masks


def _weights() -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(0))[:, None, None, None] + 0.5


def _on(segments_per_neuron: list[list[int]]) -> torch.Tensor:
    """Neuron n active with value 1 on the pixels of its segments (times its weight)."""
    masks = _masks()[0]
    layer = torch.stack([torch.isin(masks, torch.tensor(s)).float()[None] for s in segments_per_neuron])
    return layer * _weights()


def _run(layer: torch.Tensor, masks: torch.Tensor | None = None, **params: object) -> dict[str, float]:
    canvas = Canvas(
        layers={"layer": layer},
        frames=torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(5)),
        masks=_masks() if masks is None else masks,
        metadata={"categories": CATEGORIES},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_task("objects").run(canvas, **params)
    assert set(result.figures) == {"neuron_profiles"}
    plt.close("all")
    return result.scores


def test_neurons_shared_within_categories_are_semantically_consistent() -> None:
    scores = _run(_on([[1, 2]] * 8 + [[3, 4]] * 8))
    assert scores["semantic_consistency"] == pytest.approx(1.0)  # same category: cos 1, across: 0
    assert scores["object_selectivity"] == 0.0  # profiles put exactly half on each of two instances
    assert scores["instances"] == 4


def test_neurons_owning_one_instance_are_selective_but_not_semantic() -> None:
    scores = _run(_on([[1], [2], [3], [4]] * 4))
    assert scores["object_selectivity"] == 1.0
    assert scores["semantic_consistency"] == pytest.approx(0.0)  # all instance columns orthogonal


def test_uniform_canvas_matches_the_declared_chance() -> None:
    scores = _run(torch.ones(N, 1, H, W))
    for metric, spec in load_task("objects").metrics.items():
        assert scores[metric] == pytest.approx(spec.chance, abs=1e-9), metric


def test_profiles_are_area_normalised() -> None:
    labels, ids = instance_labels(_masks())
    canvas = Canvas(layers={"layer": torch.ones(3, 1, H, W)}, frames=torch.rand(1, H, W, 3))
    profile = profiles(canvas, "layer", labels, len(ids))
    assert torch.allclose(profile, torch.full((3, 4), 0.25, dtype=torch.float64))  # despite unequal areas


def test_unlabelled_pixels_are_not_an_instance() -> None:
    masks = _masks()
    masks[0, :, 60:] = 0
    layer = torch.zeros(N, 1, H, W)
    layer[:, :, :, 60:] = 1.0  # contributes only to unlabelled pixels
    scores = _run(layer, masks)
    assert math.isnan(scores["object_selectivity"])  # no neuron touches an instance


def test_shuffled_control_loses_selectivity() -> None:
    canvas = Canvas(layers={"layer": _on([[1], [2], [3], [4]] * 4)}, frames=torch.rand(1, H, W, 3), masks=_masks())
    control = load_task("objects").run(shuffle_canvas(canvas, seed=0)).scores
    plt.close("all")
    assert control["object_selectivity"] == 0.0


def test_categories_param_overrides_metadata_and_missing_ids_are_errors() -> None:
    layer = _on([[1, 2]] * 8 + [[3, 4]] * 8)
    regrouped = _run(layer, categories={1: 7, 2: 8, 3: 7, 4: 8})
    assert regrouped["semantic_consistency"] == pytest.approx(-0.5)  # within: 0, 0; across: 1, 1, 0, 0
    with pytest.raises(XincError, match="segment ids"):
        _run(layer, categories={1: 7})


def test_without_categories_consistency_is_nan() -> None:
    canvas = Canvas(layers={"layer": _on([[1]] * N)}, frames=torch.rand(1, H, W, 3), masks=_masks())
    scores = load_task("objects").run(canvas).scores
    plt.close("all")
    assert math.isnan(scores["semantic_consistency"])
    assert scores["object_selectivity"] == 1.0


def test_missing_masks_is_a_clear_error() -> None:
    canvas = Canvas(layers={"layer": torch.rand(N, 1, H, W)}, frames=torch.rand(1, H, W, 3))
    with pytest.raises(XincError, match="mask"):
        load_task("objects").run(canvas)


def test_degenerate_inputs_are_defined() -> None:
    zero = _run(torch.zeros(N, 1, H, W))
    assert math.isnan(zero["semantic_consistency"]) and math.isnan(zero["object_selectivity"])
    no_segments = _run(torch.rand(1, 1, H, W), masks=torch.zeros(1, H, W, dtype=torch.int32))
    assert no_segments["instances"] == 0 and math.isnan(no_segments["object_selectivity"])
