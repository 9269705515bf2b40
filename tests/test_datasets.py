"""Dataset layouts (Cityscapes-VPS, VIPSeg, DAVIS) on tiny fake trees of real PNG/JPEG files, read
through ``datasets`` and through ``load_signal`` (``--data ROOT --layout NAME --sequence NAME``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from xinc_bench.annotate import masks_for
from xinc_bench.data import LAYOUTS, datasets, load_signal
from xinc_bench.data.signal import FrameRange
from xinc_bench.data.transforms import crop_and_resize
from xinc_bench.errors import XincError

# Masks are drawn at LOW size and written at twice that size in 2x2 blocks, so a nearest
# resize back to LOW must return the drawing exactly.
LOW = (8, 16)


def blocks(low: np.ndarray) -> np.ndarray:
    """Upsample ``[h, w]`` by 2 in 2x2 blocks."""
    return np.kron(low, np.ones((2, 2), dtype=low.dtype))


def drawing(ids: list[int], shift: int) -> np.ndarray:
    """A ``LOW`` id map: ``ids[0]`` everywhere, ``ids[1:]`` as 4-column bands moving right by ``shift``."""
    low = np.full(LOW, ids[0], dtype=np.int64)
    for k, segment in enumerate(ids[1:]):
        low[2:6, 4 * k + shift : 4 * k + shift + 3] = segment
    return low


def grey_frame(value: int, shape: tuple[int, int]) -> np.ndarray:
    return np.full((*shape, 3), value, dtype=np.uint8)


def rgb_ids(ids: np.ndarray) -> np.ndarray:
    """COCO-panoptic colour encoding of ids: ``id = R + 256 G + 256^2 B``."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Cityscapes-VPS

CITY_NAMES = [
    "0005_0000_frankfurt_000000_001736",
    "0005_0005_frankfurt_000000_001741",
    "0005_0010_frankfurt_000000_001746",
]
CITY_IDS = [7, 13001, 0x123456]  # road; car 1; a segment whose id needs all three channels
CITY_CATEGORIES = {7: 0, 13001: 13, 0x123456: 11}


def city_tree(root: Path) -> Path:
    """A Cityscapes-VPS val split: video 0005 (3 frames, img/), video 0010 (1 frame, img_all/ only)."""
    split = root / "val"
    for folder in ("panoptic_video", "img", "img_all"):
        (split / folder).mkdir(parents=True)
    annotations = []
    for t, name in enumerate(CITY_NAMES):
        low = drawing(CITY_IDS, shift=t)
        low[0, 0] = 0  # a void pixel
        iio.imwrite(split / "panoptic_video" / f"{name}_gtFine_color.png", rgb_ids(blocks(low)))
        iio.imwrite(split / "img" / f"{name}_leftImg8bit.png", grey_frame(40 * t + 20, (16, 32)))
        segments = [{"id": i, "category_id": CITY_CATEGORIES[i], "iscrowd": 0} for i in CITY_IDS]
        annotations.append({"image_id": name, "file_name": f"{name}_gtFine_color.png", "segments_info": segments})
    other = "0010_0000_lindau_000001_000019"
    iio.imwrite(split / "panoptic_video" / f"{other}_gtFine_color.png", rgb_ids(blocks(np.full(LOW, 7))))
    iio.imwrite(split / "img_all" / "lindau_000001_000019_leftImg8bit.png", grey_frame(200, (16, 32)))
    annotations.append({"image_id": other, "file_name": f"{other}_gtFine_color.png", "segments_info": []})
    (root / "panoptic_gt_val_city_vps.json").write_text(json.dumps({"annotations": annotations, "categories": []}))
    return root


def test_cityscapes_vps_panoptic_video(tmp_path: Path) -> None:
    root = city_tree(tmp_path / "cityscapes_vps")
    signal = datasets.load_dataset(root, "cityscapes-vps", "0005", LOW)
    assert signal.frames.shape == (3, *LOW, 3) and signal.masks.dtype == torch.int32
    for t in range(3):
        expected = drawing(CITY_IDS, shift=t)
        expected[0, 0] = 0
        assert np.array_equal(signal.masks[t].numpy(), expected)
    assert torch.allclose(signal.frames[:, 0, 0, 0] * 255, torch.tensor([20.0, 60, 100]), atol=1e-3)
    assert signal.categories == CITY_CATEGORIES
    assert signal.name == "cityscapes-vps/0005" and signal.source["split"] == "val"
    assert datasets.list_sequences(root, "cityscapes-vps") == ["0005", "0010"]


def test_cityscapes_vps_frames_from_img_all_and_own_annotations(tmp_path: Path) -> None:
    root = city_tree(tmp_path / "cityscapes_vps")
    other = datasets.load_cityscapes_vps(root, "0010", LOW)
    assert torch.allclose(other.frames * 255, torch.tensor(200.0), atol=1e-3)
    assert torch.all(other.masks == 7)
    assert other.categories == {}  # only this video's segments_info count, and it lists no id 7


def test_cityscapes_vps_errors(tmp_path: Path) -> None:
    root = city_tree(tmp_path / "cityscapes_vps")
    with pytest.raises(XincError, match=r"sequence '0099' not found .*available: 0005, 0010"):
        datasets.load_cityscapes_vps(root, "0099", LOW)
    (root / "val" / "img" / f"{CITY_NAMES[1]}_leftImg8bit.png").unlink()
    with pytest.raises(XincError, match=rf"missing file .*{CITY_NAMES[1]}_leftImg8bit\.png"):
        datasets.load_cityscapes_vps(root, "0005", LOW)
    assert datasets.load_cityscapes_vps(root, "0005", LOW, FrameRange(0, 1)).num_frames == 1
    (root / "panoptic_gt_val_city_vps.json").unlink()
    with pytest.raises(XincError, match=r"missing .*panoptic_gt_val_city_vps\.json"):
        datasets.load_cityscapes_vps(root, "0005", LOW, FrameRange(0, 1))


def test_cityscapes_vps_panoptic_inst(tmp_path: Path) -> None:
    split = tmp_path / "cityscapes_vps" / "val"
    (split / "panoptic_inst").mkdir(parents=True)
    (split / "img").mkdir()
    name = "0005_0000_frankfurt_000000_001736"
    low = drawing([0, 13001, 11000], shift=0)  # road (train id 0), car 1, person 0
    low[0, :4] = 255  # void
    iio.imwrite(split / "panoptic_inst" / f"{name}_gtFine_color.png", blocks(low).astype(np.uint16))
    iio.imwrite(split / "img" / f"{name}_leftImg8bit.png", grey_frame(90, (16, 32)))
    signal = datasets.load_cityscapes_vps(tmp_path / "cityscapes_vps", "0005", LOW)
    expected = np.where(low == 255, 0, low + 1)  # road must not read as unlabelled
    assert np.array_equal(signal.masks[0].numpy(), expected)
    assert signal.categories == {1: 0, 13002: 13, 11001: 11}


# ---------------------------------------------------------------------------------------------
# VIPSeg

VIPSEG_IDS = [5, 6100, 6101, 0]  # stuff class 5, two persons (class 61), void


def vipseg_tree(root: Path, frames: int = 3, images: str = "images") -> Path:
    for t in range(frames):
        stem = f"{5 * t:08d}"
        (root / images / "2001_abc").mkdir(parents=True, exist_ok=True)
        (root / "panomasks" / "2001_abc").mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / images / "2001_abc" / f"{stem}.jpg", grey_frame(50 * t + 30, (16, 32)))
        mask = blocks(drawing(VIPSEG_IDS, shift=t)).astype(np.uint16)
        iio.imwrite(root / "panomasks" / "2001_abc" / f"{stem}.png", mask)
    (root / images / "1000_other").mkdir()
    return root


@pytest.mark.parametrize("images", ["images", "imgs"])
def test_vipseg(tmp_path: Path, images: str) -> None:
    root = vipseg_tree(tmp_path / "VIPSeg_720P", images=images)
    signal = datasets.load_dataset(root, "vipseg", "2001_abc", LOW, FrameRange(1, 3))
    assert signal.num_frames == 2
    for index, t in enumerate([1, 2]):
        assert np.array_equal(signal.masks[index].numpy(), drawing(VIPSEG_IDS, shift=t))
    jpeg_means = signal.frames.mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(jpeg_means, torch.tensor([80.0, 130.0]), atol=2.0)
    assert signal.categories == {5: 4, 6100: 60, 6101: 60}  # 0-based panoVIPSeg_categories ids
    assert datasets.list_sequences(root, "vipseg") == ["1000_other", "2001_abc"]


def test_vipseg_errors(tmp_path: Path) -> None:
    root = vipseg_tree(tmp_path / "VIPSeg_720P")
    (root / "panomasks" / "2001_abc" / "00000005.png").unlink()
    (root / "panomasks" / "2001_abc" / "00000010.png").unlink()
    with pytest.raises(XincError, match=r"missing file .*2001_abc/00000005\.png"):
        datasets.load_vipseg(root, "2001_abc", LOW)
    with pytest.raises(XincError, match=r"sequence 'nope' not found .*available: 1000_other, 2001_abc"):
        datasets.load_vipseg(root, "nope", LOW)
    with pytest.raises(XincError, match="frames 0:9 are out of range"):
        datasets.load_vipseg(root, "2001_abc", LOW, FrameRange(0, 9))
    iio.imwrite(root / "panomasks" / "2001_abc" / "00000005.png", np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(XincError, match=r"00000005\.png has 3 channels"):
        datasets.load_vipseg(root, "2001_abc", LOW, FrameRange(1, 2))
    iio.imwrite(root / "panomasks" / "2001_abc" / "00000005.png", np.zeros((16, 30), np.uint16))
    with pytest.raises(XincError, match=r"00000005\.png is 16x30 but its frames are 16x32"):
        datasets.load_vipseg(root, "2001_abc", LOW, FrameRange(1, 2))


# ---------------------------------------------------------------------------------------------
# DAVIS


def write_palette_png(path: Path, indices: np.ndarray) -> None:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
    image.save(path)


def davis_tree(root: Path) -> Path:
    """``bear``: 16x40 frames (cropped to 16x32 for a 1:2 target), objects 1 and 2, one void band."""
    (root / "JPEGImages" / "480p" / "bear").mkdir(parents=True)
    (root / "Annotations" / "480p" / "bear").mkdir(parents=True)
    (root / "JPEGImages" / "480p" / "cows").mkdir(parents=True)
    for t in range(4):
        low = np.zeros((8, 20), dtype=np.int64)
        low[:, 2:18] = drawing([0, 1, 2], shift=t)
        low[7, :] = 255
        iio.imwrite(root / "JPEGImages" / "480p" / "bear" / f"{t:05d}.jpg", grey_frame(60 * t, (16, 40)))
        write_palette_png(root / "Annotations" / "480p" / "bear" / f"{t:05d}.png", blocks(low))
    return root


def test_davis_palette_masks_cropped_like_frames(tmp_path: Path) -> None:
    root = davis_tree(tmp_path / "DAVIS")
    signal = datasets.load_dataset(root, "davis", "bear", LOW)
    assert signal.frames.shape == (4, *LOW, 3) and signal.categories is None
    for t in range(4):
        expected = drawing([0, 1, 2], shift=t)
        expected[7, :] = 0  # void reads as unlabelled
        assert np.array_equal(signal.masks[t].numpy(), expected)
    assert datasets.list_sequences(root, "davis") == ["bear", "cows"]
    assert signal.source["sequence"] == "bear" and signal.source["frames"] == "0:4"


def test_davis_binary_grey_masks_are_object_one(tmp_path: Path) -> None:
    root = davis_tree(tmp_path / "DAVIS")
    binary = np.zeros((16, 40), np.uint8)
    binary[4:12, 10:30] = 255
    iio.imwrite(root / "Annotations" / "480p" / "bear" / "00000.png", binary)
    masks = datasets.load_davis(root, "bear", LOW, FrameRange(0, 1)).masks[0].numpy()
    assert set(np.unique(masks)) == {0, 1} and masks[2:6, 3:13].all() and masks.sum() == 4 * 10


def test_davis_errors(tmp_path: Path) -> None:
    root = davis_tree(tmp_path / "DAVIS")
    with pytest.raises(XincError, match=r"DAVIS sequence 'dog' not found .*available: bear, cows"):
        datasets.load_davis(root, "dog", LOW)
    iio.imwrite(root / "JPEGImages" / "480p" / "cows" / "00000.jpg", grey_frame(9, (16, 40)))
    with pytest.raises(XincError, match=r"'cows' has no annotations: .*Annotations/480p/cows is missing"):
        datasets.load_davis(root, "cows", LOW)
    (root / "Annotations" / "480p" / "bear" / "00002.png").unlink()
    with pytest.raises(XincError, match=r"missing file .*bear/00002\.png \(1 of the 4 selected .*complete frames \(0-1, 3\)"):
        datasets.load_davis(root, "bear", LOW)
    assert datasets.load_davis(root, "bear", LOW, FrameRange(0, 2)).num_frames == 2
    with pytest.raises(XincError, match="unknown dataset layout 'kitti'.*Known dataset layouts: cityscapes-vps, davis, vipseg"):
        datasets.load_dataset(root, "kitti", "bear", LOW)
    with pytest.raises(XincError, match="'davis' takes no option split; its options: resolution"):
        datasets.load_dataset(root, "davis", "bear", LOW, split="val")
    with pytest.raises(XincError, match=r"no DAVIS frames at resolution '1080p' .*resolutions found: 480p"):
        datasets.load_dataset(root, "davis", "bear", LOW, resolution="1080p")
    with pytest.raises(XincError, match=r"is not a DAVIS root: it has no JPEGImages"):
        datasets.load_dataset(root / "Annotations", "davis", "bear", LOW)


def test_davis_takes_its_only_resolution(tmp_path: Path) -> None:
    root = davis_tree(tmp_path / "DAVIS")
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "480p").rename(root / kind / "Full-Resolution")
    signal = datasets.load_dataset(root, "davis", "bear", LOW, FrameRange(0, 2))
    assert signal.source["resolution"] == "Full-Resolution" and signal.num_frames == 2
    assert datasets.list_sequences(root, "davis") == ["bear", "cows"]


# ---------------------------------------------------------------------------------------------
# Mask resizing


def test_mask_resize_nearest_with_frame_crop() -> None:
    low = torch.arange(8 * 20, dtype=torch.int32).reshape(1, 8, 20)
    masks = torch.from_numpy(blocks(low[0].numpy()))[None]  # [1, 16, 40]
    resized = datasets.crop_and_resize_masks(masks, (8, 16))  # crop 16x40 -> 16x32 (2 columns each side)
    assert torch.equal(resized, low[:, :, 2:18])
    assert torch.equal(datasets.crop_and_resize_masks(masks, (16, 40)), masks)


def test_mask_resize_stays_aligned_with_frame_resize() -> None:
    stripes = torch.arange(70) // 10  # 7 vertical stripes of 10 columns
    masks = stripes.expand(1, 30, 70).to(torch.int32)
    frames = (stripes.float() / 10).expand(1, 30, 70)[..., None].expand(1, 30, 70, 3)
    small_masks = datasets.crop_and_resize_masks(masks, (12, 20))[0]  # crop to 30x50, scale 2.5
    small_frames = crop_and_resize(frames, (12, 20))[0, ..., 0]
    padded = torch.nn.functional.pad(small_masks[None].float(), (2, 2), mode="replicate")[0]
    window = padded.unfold(1, 5, 1)  # [12, 20, 5] the mask within two pixels either side
    pure = (window == small_masks[..., None]).all(-1)
    assert pure.sum() > 40
    assert torch.allclose(small_frames[pure], small_masks[pure].float() / 10, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# load_signal: the entry point of --data ROOT --layout NAME --sequence NAME


def test_load_signal_reads_a_davis_sequence_with_its_masks(tmp_path: Path) -> None:
    root = davis_tree(tmp_path / "DAVIS")
    signal = load_signal(str(root), LOW, FrameRange(1, 4), layout="davis", sequence="bear")
    assert signal.frames.shape == (3, *LOW, 3) and signal.name == "davis/bear"
    assert torch.allclose(signal.frames.mean(dim=(1, 2, 3)) * 255, torch.tensor([60.0, 120, 180]), atol=2.0)
    for index, t in enumerate([1, 2, 3]):
        expected = drawing([0, 1, 2], shift=t)
        expected[7, :] = 0
        assert np.array_equal(signal.masks[index].numpy(), expected)
    assert signal.categories is None and signal.source["frames"] == "1:4"
    assert torch.equal(masks_for(signal), signal.masks)  # the object tasks' default mask source is the layout's


def test_load_signal_reads_a_vipseg_sequence_with_categories(tmp_path: Path) -> None:
    root = vipseg_tree(tmp_path / "VIPSeg_720P")
    signal = load_signal(str(root), LOW, layout="vipseg", sequence="2001_abc")
    assert signal.num_frames == 3 and signal.masks.shape == (3, *LOW)
    assert np.array_equal(signal.masks[2].numpy(), drawing(VIPSEG_IDS, shift=2))
    assert signal.categories == {5: 4, 6100: 60, 6101: 60}
    assert torch.equal(masks_for(signal), signal.masks)


def test_layouts_are_registered() -> None:
    assert LAYOUTS.names() == ["cityscapes-vps", "davis", "vipseg"]
    assert [LAYOUTS.get(name).title for name in LAYOUTS.names()] == ["Cityscapes-VPS", "DAVIS", "VIPSeg"]


def test_dataset_roots_are_recognised(tmp_path: Path) -> None:
    roots = {
        "cityscapes-vps": city_tree(tmp_path / "cityscapes_vps"),
        "davis": davis_tree(tmp_path / "DAVIS"),
        "vipseg": vipseg_tree(tmp_path / "VIPSeg_720P"),
    }
    assert {name: datasets.detect_layouts(root) for name, root in roots.items()} == {name: [name] for name in roots}
    assert datasets.detect_layouts(roots["davis"] / "JPEGImages") == []
    _one_line_error(lambda: load_signal(str(roots["vipseg"]), LOW),
                    "is a VIPSeg dataset root, not a folder of frames; add --layout vipseg --sequence NAME")


def _one_line_error(call: Callable[[], object], pattern: str) -> None:
    with pytest.raises(XincError, match=pattern) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_load_signal_bad_dataset_inputs(tmp_path: Path) -> None:
    root = davis_tree(tmp_path / "DAVIS")
    data = str(root)
    _one_line_error(lambda: load_signal(data, LOW, layout="kitti", sequence="bear"),
                    r"unknown dataset layout 'kitti'\. Known dataset layouts: cityscapes-vps, davis, vipseg")
    _one_line_error(lambda: load_signal(data, LOW, layout="davis", sequence="dog"),
                    r"DAVIS sequence 'dog' not found in .*480p; available: bear, cows; pick one with --sequence")
    _one_line_error(lambda: load_signal(data, LOW, layout="davis"),
                    r"--layout davis needs --sequence NAME; the sequences in .*DAVIS: bear, cows")
    _one_line_error(lambda: load_signal(data, LOW, sequence="bear"),
                    r"--sequence bear needs the dataset's layout: add --layout davis")
    _one_line_error(lambda: load_signal(data, LOW),
                    r"DAVIS is a DAVIS dataset root, not a folder of frames; add --layout davis --sequence NAME")
    _one_line_error(lambda: load_signal(data, LOW, FrameRange(2, 9), layout="davis", sequence="bear"),
                    r"davis/bear: frames 2:9 are out of range: the video has 4 frames \(valid indices 0\.\.3\)")
    _one_line_error(lambda: load_signal(str(tmp_path / "nowhere"), LOW, layout="davis", sequence="bear"),
                    r"dataset root .*nowhere does not exist or is not a folder; point --data at the DAVIS folder")
    _one_line_error(lambda: load_signal(data, LOW, layout="davis", sequence="cows"),
                    r"DAVIS sequence 'cows' has no frames: .*cows holds no image file; pick another sequence")
    iio.imwrite(root / "JPEGImages" / "480p" / "cows" / "00000.jpg", grey_frame(9, (16, 40)))
    _one_line_error(lambda: load_signal(data, LOW, layout="davis", sequence="cows"),
                    r"DAVIS sequence 'cows' has no annotations: .*Annotations/480p/cows is missing; .*--data .*cows and no --layout")
    _one_line_error(lambda: load_signal(str(tmp_path), LOW, layout="davis", sequence="bear"),
                    r"is not a DAVIS root: it has no JPEGImages/<resolution>/ folder")


def test_load_signal_datasets_without_annotations(tmp_path: Path) -> None:
    vipseg = vipseg_tree(tmp_path / "VIPSeg_720P")
    shutil.rmtree(vipseg / "panomasks")
    _one_line_error(lambda: load_signal(str(vipseg), LOW, layout="vipseg", sequence="2001_abc"),
                    r"VIPSeg sequence '2001_abc' has no annotations: .*panomasks/2001_abc is missing")
    city = city_tree(tmp_path / "cityscapes_vps")
    shutil.rmtree(city / "val" / "panoptic_video")
    _one_line_error(lambda: load_signal(str(city), LOW, layout="cityscapes-vps", sequence="0005"),
                    r"has no Cityscapes-VPS annotations for split 'val': neither .*panoptic_video nor .*panoptic_inst exists")


def test_load_signal_keeps_frame_folders_and_files(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for t in range(3):
        iio.imwrite(folder / f"{t:03d}.png", grey_frame(50 * t, (16, 32)))
    (folder / "JPEGImages").mkdir()  # a frame folder that also holds a sub-folder named like DAVIS's
    assert load_signal(str(folder), LOW).num_frames == 3
    assert load_signal(str(folder / "001.png"), LOW).num_frames == 1
