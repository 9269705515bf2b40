"""Flow sources (dis, farneback, raft), their direction convention and the flow_for front door."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import skimage.data
import torch

from xinc_bench.annotate import cache
from xinc_bench.annotate.flow import dis_flow, farneback_flow, flow_for, raft_flow, raft_input_size
from xinc_bench.data.signal import Signal
from xinc_bench.data.synthetic import make_scene
from xinc_bench.data.transforms import to_float_rgb
from xinc_bench.errors import XincError
from xinc_bench.registry import FLOW_SOURCES, Entry

#: Per-frame (dx, dy) motion of the translation scene: the content moves by these pixels.
SHIFTS = [(2, 0), (0, 2), (-1, 1), (2, -1)]
MARGIN = 16


@pytest.fixture(autouse=True)
def empty_memory_cache():
    cache.MEMORY.clear()
    yield
    cache.MEMORY.clear()


@functools.lru_cache(maxsize=None)
def picture(name: str) -> torch.Tensor:
    """A scikit-image picture at a quarter of its size: ``[h, w, 3]`` float32, rich texture."""
    return to_float_rgb(getattr(skimage.data, name)())[::4, ::4].contiguous()


def translation_scene(shifts: list[tuple[int, int]], size: tuple[int, int] = (64, 96)) -> Signal:
    """Windows of the astronaut picture moving by integer ``shifts``, with their exact flow.

    Frame t shows the picture displaced by the summed shifts, so
    ``frame_t[y, x] = frame_{t-1}[y - dy, x - dx]``: the flow is (dx, dy) everywhere.
    """
    astronaut = picture("astronaut")  # [128, 128, 3]
    height, width = size
    positions = np.cumsum([(0, 0), *shifts], axis=0)
    frames = torch.stack(
        [astronaut[MARGIN - dy : MARGIN - dy + height, MARGIN - dx : MARGIN - dx + width] for dx, dy in positions]
    )
    flow = torch.zeros(len(positions), height, width, 2)
    flow[1:] = torch.tensor(shifts, dtype=torch.float32).reshape(-1, 1, 1, 2)
    return Signal(frames=frames.contiguous(), name="translation", flow=flow)


def object_scene(velocity: tuple[int, int], num_frames: int = 5, side: int = 24) -> Signal:
    """A textured square moving by ``velocity`` (dx, dy) per frame over a still textured background.

    Exact flow in the module convention (on frame t's grid): ``velocity`` where the square is
    in frame t, zero elsewhere; ``masks`` is 1 on the square.
    """
    height, width = 64, 96
    background = picture("chelsea")[:height, :width]
    texture = picture("astronaut")[30 : 30 + side, 50 : 50 + side]
    frames = background.expand(num_frames, height, width, 3).clone()
    flow = torch.zeros(num_frames, height, width, 2)
    masks = torch.zeros(num_frames, height, width, dtype=torch.int32)
    for t in range(num_frames):
        y, x = 20 + t * velocity[1], 16 + t * velocity[0]
        frames[t, y : y + side, x : x + side] = texture
        masks[t, y : y + side, x : x + side] = 1
        flow[t, y : y + side, x : x + side] = torch.tensor(velocity, dtype=torch.float32) if t else 0.0
    return Signal(frames=frames, name="square", masks=masks, flow=flow)


def end_point_error(flow: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean Euclidean distance between two flows ``[T, H, W, 2]`` over frames 1..T-1."""
    return float(torch.linalg.vector_norm(flow[1:] - exact[1:], dim=-1).mean())


def test_translation_scene_matches_the_convention():
    scene = translation_scene(SHIFTS)
    for t, (dx, dy) in enumerate(SHIFTS, start=1):
        current, previous = scene.frames[t], scene.frames[t - 1]
        # frame_t(p) == frame_{t-1}(p - flow_t(p)) where p - flow stays inside the frame
        assert torch.equal(current[max(dy, 0) : 64 + min(dy, 0), max(dx, 0) : 96 + min(dx, 0)],
                           previous[max(-dy, 0) : 64 + min(-dy, 0), max(-dx, 0) : 96 + min(-dx, 0)])


@pytest.mark.parametrize("source", [dis_flow, farneback_flow], ids=["dis", "farneback"])
def test_opencv_flow_recovers_an_exact_translation(source):
    scene = translation_scene(SHIFTS)
    flow = source(scene.frames)
    assert flow.dtype == torch.float32 and flow.shape == (5, 64, 96, 2)
    assert torch.count_nonzero(flow[0]) == 0
    # measured: DIS 0.036 px, Farneback 0.045 px; the wrong sign would give about 4 px
    assert end_point_error(flow, scene.flow) < 0.2
    inner = flow[1:, 8:-8, 8:-8].mean(dim=(1, 2))
    torch.testing.assert_close(inner, scene.flow[1:, 0, 0], atol=0.1, rtol=0.0)


@pytest.mark.parametrize("velocity", [(2, 0), (0, 2), (-2, 1), (2, 2)])
@pytest.mark.parametrize("source", [dis_flow, farneback_flow], ids=["dis", "farneback"])
def test_opencv_flow_lives_on_the_grid_of_frame_t(source, velocity):
    scene = object_scene(velocity)
    flow = source(scene.frames)
    error = torch.linalg.vector_norm(flow - scene.flow, dim=-1)
    # measured full-frame EPE: DIS 0.12-0.21 px, Farneback 0.25-0.39 px
    assert error[1:].mean() < 0.5
    # Pixels the square newly covers in frame t: on frame t's grid they move with the square;
    # flow on frame t-1's grid would put background (zero) there, an error of |velocity|.
    covered = torch.zeros_like(scene.masks, dtype=torch.bool)
    covered[1:] = (scene.masks[1:] == 1) & (scene.masks[:-1] == 0)
    # measured: 0.27-0.52 px
    assert error[covered].mean() < 0.4 * float(np.hypot(*velocity))


@pytest.mark.parametrize("variant", ["static", "pan", "moving"])
@pytest.mark.parametrize("source", [dis_flow, farneback_flow], ids=["dis", "farneback"])
def test_opencv_flow_matches_the_synthetic_scenes(source, variant):
    scene = make_scene(variant, (128, 256), num_frames=6, seed=0)
    flow = source(scene.frames)
    # Where a pixel shows the same segment in frames t-1 and t, flow on either frame's grid
    # is that segment's motion, so the comparison does not depend on the grid.
    same = torch.zeros_like(scene.masks, dtype=torch.bool)
    same[1:] = scene.masks[1:] == scene.masks[:-1]
    error = torch.linalg.vector_norm(flow - scene.flow, dim=-1)[same]
    # measured (seeds 0, 1): static <= 0.001, pan 0.005-0.05, moving 0.11-0.20 px
    assert error.mean() < {"static": 0.01, "pan": 0.1, "moving": 0.3}[variant]


def test_one_frame_signal_has_zero_flow():
    frames = translation_scene([]).frames
    assert frames.shape[0] == 1
    for source in (dis_flow, farneback_flow):
        assert torch.equal(source(frames), torch.zeros(1, 64, 96, 2))


def test_dis_rejects_an_unknown_preset():
    with pytest.raises(XincError, match="unknown DIS preset 'slow'; choose one of ultrafast, fast, medium"):
        dis_flow(translation_scene(SHIFTS[:1]).frames, preset="slow")


def test_gt_flow_comes_from_the_signal():
    scene = translation_scene(SHIFTS)
    assert torch.equal(flow_for(scene, "gt"), scene.flow)
    assert torch.equal(flow_for(scene), scene.flow)


def test_gt_without_flow_names_the_computed_sources():
    scene = translation_scene(SHIFTS)
    plain = Signal(frames=scene.frames, name="plain")
    with pytest.raises(XincError, match="no exact flow.*dis, farneback, raft"):
        flow_for(plain, "gt")
    with pytest.raises(XincError, match="unknown flow source 'flownet'.*gt, dis, farneback, raft"):
        flow_for(plain, "flownet")


def test_unknown_options_are_named_with_the_accepted_ones():
    plain = Signal(frames=translation_scene(SHIFTS).frames, name="plain")
    with pytest.raises(XincError, match="flow source 'dis' has no option\\(s\\) presets; its options are: preset"):
        flow_for(plain, "dis", presets="fast")


def test_default_source_without_exact_flow_is_dis():
    scene = translation_scene(SHIFTS)
    plain = Signal(frames=scene.frames, name="plain")
    assert torch.equal(flow_for(plain), dis_flow(scene.frames))


def test_flow_is_cached_per_signal_and_options(monkeypatch):
    calls = []

    def counting_farneback(frames: torch.Tensor, **options) -> torch.Tensor:
        calls.append(options)
        return farneback_flow(frames, **options)

    monkeypatch.setitem(FLOW_SOURCES._entries, "counting", Entry("counting", counting_farneback))
    plain = Signal(frames=translation_scene(SHIFTS).frames, name="plain")
    first = flow_for(plain, "counting", winsize=9)
    assert torch.equal(flow_for(plain, "counting", winsize=9), first)
    assert len(calls) == 1
    flow_for(plain, "counting", winsize=21)
    assert calls == [{"winsize": 9}, {"winsize": 21}]


def test_raft_input_size_is_a_multiple_of_8_and_at_least_128():
    assert raft_input_size(128, 256) == (128, 256)
    assert raft_input_size(64, 64) == (128, 128)
    assert raft_input_size(60, 70) == (128, 152)
    assert raft_input_size(250, 333) == (256, 336)


def test_raft_runs_on_random_weights(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    weights = tmp_path / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)
    frames = torch.rand(3, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    flow = flow_for(Signal(frames=frames, name="noise"), "raft", weights=weights, num_flow_updates=2)
    assert flow.dtype == torch.float32 and flow.shape == (3, 64, 64, 2)
    assert torch.isfinite(flow).all()
    assert torch.count_nonzero(flow[0]) == 0


def test_raft_weights_errors(tmp_path):
    from torchvision.models.optical_flow import raft_small

    frames = translation_scene(SHIFTS[:1]).frames
    with pytest.raises(XincError, match="needs a weights file.*--raft-weights PATH --raft-model small"):
        raft_flow(frames)
    with pytest.raises(XincError, match="does not exist"):
        raft_flow(frames, weights=tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(XincError, match="corrupt"):
        raft_flow(frames, weights=corrupt)
    small = tmp_path / "small.pth"
    torch.save(raft_small(weights=None).state_dict(), small)
    with pytest.raises(XincError, match="do not belong to raft_large"):
        raft_flow(frames, weights=small, model="large")
    with pytest.raises(XincError, match="unknown RAFT model 'tiny'"):
        raft_flow(frames, weights=small, model="tiny")
