"""Mask sources (felzenszwalb, slic, sam), the masks_for front door and the annotation cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import xinc_bench.data.images  # noqa: F401  (registers the skimage images)
from xinc_bench.annotate import cache
from xinc_bench.annotate.masks import felzenszwalb_masks, masks_for, sam_id_map, sam_masks, slic_masks
from xinc_bench.data.signal import Signal
from xinc_bench.errors import XincError
from xinc_bench.registry import DATA_SOURCES, MASK_SOURCES, Entry


@pytest.fixture(autouse=True)
def empty_memory_cache():
    cache.MEMORY.clear()
    yield
    cache.MEMORY.clear()


@pytest.fixture(scope="module")
def astronaut() -> Signal:
    return DATA_SOURCES.get("astronaut")(size=(64, 128))


class CallCounter:
    """A real mask source wrapped to count how often it runs."""

    def __init__(self, source):
        self.source = source
        self.calls = 0

    def __call__(self, frames: torch.Tensor, **options) -> torch.Tensor:
        self.calls += 1
        return self.source(frames, **options)


@pytest.fixture
def counting_slic(monkeypatch) -> CallCounter:
    """``slic`` registered (for this test only) as the mask source ``counting-slic``."""
    counter = CallCounter(slic_masks)
    monkeypatch.setitem(MASK_SOURCES._entries, "counting-slic", Entry("counting-slic", counter))
    return counter


def _assert_consecutive_ids(masks: torch.Tensor) -> int:
    ids = np.unique(masks.numpy())
    assert ids[0] == 1 and np.array_equal(ids, np.arange(1, len(ids) + 1))
    return len(ids)


@pytest.mark.parametrize("name", ["astronaut", "camera", "chelsea", "coffee"])
def test_felzenszwalb_and_slic_give_plausible_segment_counts(name):
    frames = DATA_SOURCES.get(name)(size=(128, 256)).frames
    felzenszwalb = felzenszwalb_masks(frames)
    slic = slic_masks(frames, n_segments=100)
    for masks in (felzenszwalb, slic):
        assert masks.dtype == torch.int32 and masks.shape == (1, 128, 256)
    assert 20 <= _assert_consecutive_ids(felzenszwalb) <= 400
    assert 50 <= _assert_consecutive_ids(slic) <= 150


def test_felzenszwalb_scale_controls_segment_count(astronaut):
    fine = len(np.unique(felzenszwalb_masks(astronaut.frames, scale=20.0, min_size=10)))
    coarse = len(np.unique(felzenszwalb_masks(astronaut.frames, scale=500.0, min_size=10)))
    assert fine > 3 * coarse


def test_video_frames_are_segmented_independently(astronaut):
    video = torch.cat([astronaut.frames, astronaut.frames.flip(2)])
    masks = slic_masks(video, n_segments=40)
    assert masks.shape == (2, 64, 128)
    assert torch.equal(masks[0], slic_masks(astronaut.frames, n_segments=40)[0])
    assert masks[1].min() == 1


def test_sam_id_map_paints_small_masks_over_large_ones():
    large = np.zeros((4, 6), dtype=bool)
    large[:, :4] = True
    small = np.zeros((4, 6), dtype=bool)
    small[1:3, 1:3] = True
    hidden = np.zeros((4, 6), dtype=bool)
    hidden[1:3, 1:2] = True  # entirely covered by the smaller "small2" below: its id vanishes
    small2 = np.zeros((4, 6), dtype=bool)
    small2[1:3, 1:2] = True
    records = [
        {"segmentation": small, "area": 4},
        {"segmentation": large, "area": 16},
        {"segmentation": hidden, "area": 3},
        {"segmentation": small2, "area": 2},
    ]
    expected = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 3, 2, 1, 0, 0],
            [1, 3, 2, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
        ],
        dtype=np.int32,
    )
    result = sam_id_map(records, (4, 6))
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, expected)


def test_sam_id_map_edge_cases():
    np.testing.assert_array_equal(sam_id_map([], (2, 3)), np.zeros((2, 3), dtype=np.int32))
    full = {"segmentation": np.ones((2, 3), dtype=bool), "area": 6}
    np.testing.assert_array_equal(sam_id_map([full], (2, 3)), np.ones((2, 3), dtype=np.int32))


def test_sam_without_checkpoint_says_how_to_supply_one(astronaut):
    with pytest.raises(XincError, match="--sam-checkpoint PATH --sam-model-type vit_b"):
        masks_for(astronaut, "sam")


def test_sam_checkpoint_errors(tmp_path, astronaut):
    with pytest.raises(XincError, match="does not exist"):
        sam_masks(astronaut.frames, checkpoint=tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(XincError, match="corrupt"):
        sam_masks(astronaut.frames, checkpoint=corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(XincError, match="does not hold a vit_b model's weights"):
        sam_masks(astronaut.frames, checkpoint=foreign)
    with pytest.raises(XincError, match="unknown SAM model type 'vit_x'"):
        sam_masks(astronaut.frames, checkpoint=foreign, model_type="vit_x")
    with pytest.raises(XincError, match="'sam' has no option\\(s\\) points; .*points_per_side"):
        sam_masks(astronaut.frames, checkpoint=foreign, points=4)


@pytest.mark.slow
def test_sam_runs_on_a_random_weight_checkpoint(tmp_path):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    checkpoint = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), checkpoint)
    frames = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    signal = Signal(frames=frames, name="noise")
    masks = masks_for(
        signal, "sam", checkpoint=checkpoint, model_type="vit_b",
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
    )
    assert masks.shape == (1, 64, 64) and masks.dtype == torch.int32
    assert masks.min() >= 0
    ids = np.unique(masks.numpy())
    assert np.array_equal(ids[ids > 0], np.arange(1, int((ids > 0).sum()) + 1))


def test_gt_masks_come_from_the_signal(astronaut):
    masks = torch.arange(64 * 128, dtype=torch.int32).reshape(1, 64, 128) % 5
    signal = Signal(frames=astronaut.frames, name="annotated", masks=masks)
    assert torch.equal(masks_for(signal, "gt"), masks)
    assert torch.equal(masks_for(signal), masks)


def test_gt_without_masks_names_the_computed_sources(astronaut):
    with pytest.raises(XincError, match="no ground-truth masks.*felzenszwalb, sam, slic"):
        masks_for(astronaut, "gt")


def test_default_source_without_annotations_is_felzenszwalb(astronaut):
    assert torch.equal(masks_for(astronaut), felzenszwalb_masks(astronaut.frames))


def test_unknown_source_lists_the_known_ones(astronaut):
    with pytest.raises(XincError, match="unknown mask source 'slick'.*gt, felzenszwalb, sam, slic"):
        masks_for(astronaut, "slick")


def test_unknown_options_are_named_with_the_accepted_ones(astronaut):
    message = "mask source 'slic' has no option\\(s\\) n_segment; its options are: n_segments, compactness"
    with pytest.raises(XincError, match=message):
        masks_for(astronaut, "slic", n_segment=10)


def test_memory_cache_computes_once_per_signal_and_options(astronaut, counting_slic):
    first = masks_for(astronaut, "counting-slic", n_segments=30)
    first[:] = -1  # callers get copies: this must not reach the cache
    second = masks_for(astronaut, "counting-slic", n_segments=30)
    assert counting_slic.calls == 1
    assert torch.equal(second, slic_masks(astronaut.frames, n_segments=30))
    masks_for(astronaut, "counting-slic", n_segments=60)
    assert counting_slic.calls == 2
    other = Signal(frames=astronaut.frames.flip(1), name="flipped")
    masks_for(other, "counting-slic", n_segments=30)
    assert counting_slic.calls == 3


def test_disk_cache_survives_a_cleared_memory(tmp_path, astronaut, counting_slic):
    computed = masks_for(astronaut, "counting-slic", cache_dir=tmp_path, n_segments=30)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    cache.MEMORY.clear()
    loaded = masks_for(astronaut, "counting-slic", cache_dir=tmp_path, n_segments=30)
    assert counting_slic.calls == 1
    assert loaded.dtype == torch.int32 and torch.equal(loaded, computed)


def test_unreadable_cache_file_is_recomputed_and_replaced(tmp_path, astronaut, counting_slic):
    computed = masks_for(astronaut, "counting-slic", cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"truncated")
    cache.MEMORY.clear()
    assert torch.equal(masks_for(astronaut, "counting-slic", cache_dir=tmp_path), computed)
    assert counting_slic.calls == 2
    with np.load(path, allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["annotation"], computed.numpy())


def test_a_source_returning_the_wrong_format_is_rejected(monkeypatch, astronaut):
    def float_source(frames: torch.Tensor) -> torch.Tensor:
        return frames[..., 0]

    monkeypatch.setitem(MASK_SOURCES._entries, "float", Entry("float", float_source))
    with pytest.raises(XincError, match="mask source 'float' returned float32.*must return int32"):
        masks_for(astronaut, "float")


def test_memory_store_evicts_least_recently_used():
    store = cache.MemoryStore(limit_bytes=3 * 400)
    arrays = {key: np.full(100, index, dtype=np.int32) for index, key in enumerate("abcd")}
    for key in "abc":
        store.put(key, arrays[key])
    assert store.get("a") is arrays["a"]  # "a" is now the most recently used
    store.put("d", arrays["d"])
    assert store.get("b") is None
    assert all(store.get(key) is arrays[key] for key in "acd")


def test_annotation_key_ignores_option_order(astronaut):
    first = cache.annotation_key("masks", astronaut, "slic", {"n_segments": 10, "sigma": 1.0})
    second = cache.annotation_key("masks", astronaut, "slic", {"sigma": 1.0, "n_segments": 10})
    assert first == second and astronaut.content_hash() in first
    assert first != cache.annotation_key("masks", astronaut, "slic", {"n_segments": 11, "sigma": 1.0})
    assert Path(first).name == first
