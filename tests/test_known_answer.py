"""Known-answer INRs (issue 12): fitted through the run path, the probes find what they were built to hold.

Each preset is fitted for a few steps only: its neurons' owners are fixed by construction, so the
right answer does not depend on how well it trained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from xinc_bench.runs import RunDir, UnitSpec, run_unit
from xinc_bench.canvas import Canvas, read_canvas
from xinc_bench.checkpoints import load_checkpoint
from xinc_bench.data import load_signal, parse_frames
from xinc_bench.errors import XincError
from xinc_bench.inrs import create_inr, inr_info
from xinc_bench.inrs.base import signal_coordinates

SIZE = (16, 32)
STEPS = 8
NULL_DRAWS = 10


def run_preset(tmp_path: Path, model: str, data: str, frames: str | None, tasks: list[str]) -> dict[str, dict]:
    """``run_unit`` of the preset with ``tasks``; returns the records by task."""
    out = RunDir(tmp_path / model)
    spec = UnitSpec(model=model, data=data, size=SIZE, frames=parse_frames(frames) if frames else None, steps=STEPS,
                    tasks=tuple(tasks), null_draws=NULL_DRAWS, save_canvas=True)  # the tests read the canvas
    result = run_unit(spec, out.path)
    assert result.records_written == tasks and not result.skipped
    canvas = read_canvas(out.canvas)
    checks = canvas.metadata["checks"]
    assert checks["layer_sum_max_rel_error"] < 1e-5 and checks["output_sum_max_rel_error"] < 1e-5
    assert checks["skipped_layers"] == [] and checks["untraced_modules"] == []
    assert_owned(out.path, canvas)
    return {task: json.loads(out.record(task).read_text()) for task in tasks}


def assert_owned(run_dir: Path, canvas: Canvas) -> None:
    """Every neuron's canvas map is exactly zero outside its group (block ``n // (N / G)``)."""
    model, _ = load_checkpoint(run_dir, *SIZE)
    group, _ = model.assign(signal_coordinates(*canvas.shape))
    onehot = torch.nn.functional.one_hot(group, model.num_groups).double()
    for name in canvas.layer_names:
        maps = canvas.layer(name).reshape(canvas.layer_shape(name)[0], -1).abs().double()
        mass = maps @ onehot  # [N, G]
        owner = torch.arange(mass.shape[0]) // (mass.shape[0] // model.num_groups)
        inside = torch.nn.functional.one_hot(owner, model.num_groups).bool()
        assert float(mass[~inside].abs().max()) == 0.0, f"{name}: neurons contribute outside their group"
        assert float(mass[inside].sum()) > 0.0


def effect(record: dict, score: str) -> float:
    """Effect size of ``score`` against its null (NaN when the probe reports no null for it)."""
    null = record.get("nulls", {}).get(score)
    return float(null["effect_size"]) if null and null.get("effect_size") is not None else math.nan


def layers(record: dict, metric: str) -> dict[str, float]:
    """Per-layer values of ``metric``: layer name -> score."""
    return {key.rsplit("/", 1)[0]: value for key, value in record["scores"].items() if key.endswith(f"/{metric}")}


def test_presets_are_registered_as_known_answers() -> None:
    for name, kind in [("known-tiled", "image"), ("known-palette", "image"), ("known-objects", "image"),
                       ("known-motion", "video")]:
        info = inr_info(name)
        assert (info.family, info.signal_kind, info.tracer) == ("known-answer", kind, "linear")


def test_tiled_is_space_owned(tmp_path: Path) -> None:
    record = run_preset(tmp_path, "known-tiled", "astronaut", None, ["partitions"])["partitions"]
    s_grid, s_rgb, s_gabor, s_instances = (layers(record, f"s_{f}") for f in ("grid", "rgb", "gabor", "instances"))
    assert len(s_grid) == 3
    for layer in s_grid:  # space beats every content factor in every layer
        assert s_grid[layer] > max(s_rgb[layer], s_gabor[layer], s_instances[layer]), layer
        assert effect(record, f"{layer}/s_grid") > 10
    assert record["scores"]["spatial_agnosticism"] < 0.5
    assert effect(record, "spatial_agnosticism") < -3
    assert record["scores"]["color_bias"] < 0.5


def test_palette_is_colour_owned(tmp_path: Path) -> None:
    record = run_preset(tmp_path, "known-palette", "astronaut", None, ["partitions"])["partitions"]
    s_grid, s_rgb = layers(record, "s_grid"), layers(record, "s_rgb")
    for layer in s_grid:
        assert s_rgb[layer] > s_grid[layer], layer
        assert effect(record, f"{layer}/s_rgb") > 10
    assert record["scores"]["color_bias"] > 0.5
    assert effect(record, "color_bias") > 3


def test_objects_own_one_instance_each(tmp_path: Path) -> None:
    objects = run_preset(tmp_path, "known-objects", "synthetic-static", "0:1", ["objects"])["objects"]
    selectivity = layers(objects, "object_selectivity")
    assert len(selectivity) == 3 and all(value == 1.0 for value in selectivity.values())
    assert effect(objects, "object_selectivity") > 3


def test_motion_changes_only_on_moving_objects(tmp_path: Path) -> None:
    records = run_preset(tmp_path, "known-motion", "synthetic-moving", "0:4", ["motion"])
    motion = records["motion"]
    spearman = layers(motion, "flow_spearman")
    assert len(spearman) == 3 and all(value > 0.6 for value in spearman.values())
    assert effect(motion, "flow_spearman") > 3
    assert motion["scores"]["flow_top_bottom_ratio"] > 5
    # the background's neurons are the same in every frame: its canvas does not change at all
    canvas = read_canvas(RunDir(tmp_path / "known-motion").canvas)
    background = (canvas.masks == canvas.masks.max()).all(dim=0)  # background (last id) in every frame
    for name in canvas.layer_names:
        maps = canvas.layer(name)[..., background]
        assert torch.equal(maps[:, 1:], maps[:, :1].expand_as(maps[:, 1:])), name


def test_signal_groups_need_their_annotations() -> None:
    image = load_signal("astronaut", SIZE)
    with pytest.raises(XincError, match="masks"):
        create_inr("known-objects", height=SIZE[0], width=SIZE[1]).set_signal(image)
    still = load_signal("synthetic-static", SIZE, parse_frames("0:2"))
    still.flow = None
    with pytest.raises(XincError, match="flow"):
        create_inr("known-motion", num_frames=2, height=SIZE[0], width=SIZE[1]).set_signal(still)
    with pytest.raises(XincError, match="built for a 1x8x16"):
        create_inr("known-palette", height=8, width=16).set_signal(image)
