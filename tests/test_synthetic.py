"""Synthetic scenes: determinism, exact masks and categories, and flow that warps frames exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinc_bench.data import synthetic
from xinc_bench.data.signal import FrameRange, Signal
from xinc_bench.errors import XincError
from xinc_bench.registry import DATA_SOURCES

SIZE = (32, 64)


def warp_check(signal: Signal) -> tuple[int, int]:
    """Warp every frame t-1 onto frame t by flow[t]; return (mismatching, matched) visible pixels.

    A pixel p of frame t counts where p - flow lies inside frame t-1 and shows the same segment
    there (its surface was not hidden); it matches when the colour there is bit-identical.
    """
    frames, masks, flow = signal.frames.numpy(), signal.masks.numpy(), signal.flow.numpy()
    _, height, width = masks.shape
    ys, xs = np.mgrid[:height, :width]
    mismatching = matched = 0
    for t in range(1, len(frames)):
        sx = xs - flow[t, ..., 0].astype(int)
        sy = ys - flow[t, ..., 1].astype(int)
        inside = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
        sxc, syc = np.clip(sx, 0, width - 1), np.clip(sy, 0, height - 1)
        visible = inside & (masks[t - 1][syc, sxc] == masks[t])
        same = (frames[t - 1][syc, sxc] == frames[t]).all(axis=-1)
        mismatching += int((visible & ~same).sum())
        matched += int((visible & same).sum())
    return mismatching, matched


@pytest.mark.parametrize("variant", synthetic.VARIANTS)
def test_scene_shapes_ids_and_categories(variant: str) -> None:
    signal = synthetic.make_scene(variant, SIZE, num_frames=6, seed=3, num_objects=4)
    assert signal.frames.shape == (6, *SIZE, 3) and signal.frames.dtype == torch.float32
    assert signal.masks.shape == (6, *SIZE) and signal.masks.dtype == torch.int32
    assert signal.flow.shape == (6, *SIZE, 2) and signal.flow.dtype == torch.float32
    assert 0.0 <= float(signal.frames.min()) and float(signal.frames.max()) <= 1.0
    ids = set(signal.masks.unique().tolist())
    assert ids <= {1, 2, 3, 4, 5} and 5 in ids  # background is labelled K + 1, nothing is 0
    disc, rectangle = synthetic.DISC, synthetic.RECTANGLE
    expected = {1: disc, 2: rectangle, 3: disc, 4: rectangle, 5: synthetic.BACKGROUND}
    assert signal.categories == {i: expected[i] for i in ids}
    assert torch.all(signal.flow[0] == 0)
    assert torch.all(signal.flow == signal.flow.round())  # whole-pixel motion


@pytest.mark.parametrize("variant", ["moving", "pan"])
def test_flow_warps_previous_frame_onto_next_exactly(variant: str) -> None:
    """The convention of xinc_bench.annotate.flow: frames[t][p] == frames[t-1][p - flow[t][p]]."""
    signal = synthetic.make_scene(variant, SIZE, num_frames=12, seed=1)
    mismatching, matched = warp_check(signal)
    assert mismatching == 0
    assert matched > 0.8 * 11 * SIZE[0] * SIZE[1]  # almost every pixel stays visible


def test_static_scene_is_still() -> None:
    signal = synthetic.make_scene("static", SIZE, num_frames=4)
    assert torch.all(signal.frames == signal.frames[0]) and torch.all(signal.masks == signal.masks[0])
    assert torch.all(signal.flow == 0)


def test_moving_scene_moves_objects_over_a_still_background() -> None:
    signal = synthetic.make_scene("moving", SIZE, num_frames=8, seed=0)
    current = signal.masks[1:]  # flow[t] lives on the grid of frame t
    speed = signal.flow[1:].abs().sum(-1)
    assert torch.all(speed[current == 5] == 0)
    for object_id in range(1, 5):  # every object moves (it may pause for a step when it bounces)
        assert float(speed[current == object_id].max()) > 0
    assert not torch.equal(signal.masks[0], signal.masks[-1])


def test_pan_moves_everything_with_the_camera() -> None:
    signal = synthetic.make_scene("pan", SIZE, num_frames=8, seed=0)
    flow = signal.flow[1:]
    assert torch.all(flow.abs().sum(-1) > 0)
    # objects are still in the world, so every pixel shares the camera's motion, opposite to it
    assert torch.all(flow == flow[:, :1, :1])
    assert torch.equal(flow[0, 0, 0], -torch.tensor(synthetic.CAMERA_VELOCITY[::-1], dtype=torch.float32))


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    first = synthetic.make_scene("moving", SIZE, num_frames=3, seed=7)
    again = synthetic.make_scene("moving", SIZE, num_frames=3, seed=7)
    other = synthetic.make_scene("moving", SIZE, num_frames=3, seed=8)
    assert torch.equal(first.frames, again.frames) and torch.equal(first.flow, again.flow)
    assert not torch.equal(first.frames, other.frames)


def test_variants_of_a_seed_share_their_first_frame() -> None:
    static = synthetic.make_scene("static", SIZE, num_frames=1, seed=2)
    moving = synthetic.make_scene("moving", SIZE, num_frames=1, seed=2)
    assert torch.equal(static.frames, moving.frames) and torch.equal(static.masks, moving.masks)


@pytest.mark.parametrize("variant", synthetic.VARIANTS)
def test_registered_loader_defaults_to_thirty_frames(variant: str) -> None:
    signal = DATA_SOURCES.get(f"synthetic-{variant}")(size=SIZE)
    assert signal.num_frames == 30 and signal.name == f"synthetic-{variant}"
    assert signal.source["seed"] == 0 and signal.source["frames"] == "0:30"
    assert DATA_SOURCES.entry(f"synthetic-{variant}").metadata["kind"] == "video"


@pytest.mark.parametrize("variant", synthetic.VARIANTS)
def test_registered_scenes_give_every_instance_a_category(variant: str) -> None:
    """The objects probe's semantic consistency is defined on them: a same- and a different-category pair."""
    signal = DATA_SOURCES.get(f"synthetic-{variant}")(size=SIZE, frames=FrameRange(0, 4))
    categories = [signal.categories[i] for i in signal.masks.unique().tolist()]
    assert len(set(categories)) < len(categories) and len(set(categories)) > 1
    assert categories.count(synthetic.BACKGROUND) == 1  # the background is its own category


def test_strided_range_keeps_frames_and_exact_flow() -> None:
    full = synthetic.make_scene("moving", SIZE, num_frames=10, seed=0)
    strided = DATA_SOURCES.get("synthetic-moving")(size=SIZE, frames=FrameRange(1, 10, 3))
    assert torch.equal(strided.frames, full.frames[1:10:3])
    assert torch.equal(strided.masks, full.masks[1:10:3])
    assert torch.all(strided.flow[0] == 0)
    assert warp_check(strided)[0] == 0
    assert float(strided.flow.abs().max()) > synthetic.MAX_OBJECT_SPEED  # three frames of motion


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "spinning"}, "unknown synthetic variant"),
        ({"size": (4, 64)}, "at least 8x8"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_objects": 0}, "num_objects"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    arguments = {"variant": "moving", "size": SIZE, "num_frames": 2, "seed": 0, "num_objects": 2} | kwargs
    with pytest.raises(XincError, match=message):
        synthetic.make_scene(**arguments)
