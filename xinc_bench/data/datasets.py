"""Annotated video datasets on disk: Cityscapes-VPS, VIPSeg and DAVIS.

Each loader reads one sequence into a :class:`Signal` with ``masks[T, H, W]`` int32 (0 =
unlabelled) and, where the layout names them, ``categories`` (segment id -> category id, for
the segments present in the loaded masks). Frames and masks are centre-cropped the same way
(see :func:`~xinc_bench.data.transforms.crop_and_resize`); masks are resized by nearest
neighbour so that no new ids appear. Without a frame range the first
:data:`~xinc_bench.data.video.DEFAULT_NUM_FRAMES` annotated frames are loaded.

Layouts (``root`` is the folder named first):

* ``cityscapes-vps`` (`mcahny/vps <https://github.com/mcahny/vps>`_ ``docs/DATASET.md``)::

      cityscapes_vps/
        panoptic_gt_<split>_city_vps.json
        <split>/panoptic_video/<VVVV>_<FFFF>_<city>_<seq>_<frame>_gtFine_color.png
        <split>/panoptic_inst/<same names>            (used when panoptic_video is absent)
        <split>/img/<VVVV>_<FFFF>_<city>_<seq>_<frame>_leftImg8bit.png
        <split>/img_all/<city>_<seq>_<frame>_leftImg8bit.png

  A sequence is a video id ``VVVV`` (e.g. ``0005``); its frames are the annotated ones (every
  fifth frame of the video, six per video). ``panoptic_video`` PNGs are RGB with segment id
  ``R + 256 G + 256^2 B`` (0 = void), consistent across the frames of a video; the JSON's
  ``annotations[].segments_info`` gives each id's ``category_id`` (train ids 0..18, things
  11..18). ``panoptic_inst`` PNGs hold one value per pixel: a stuff train id (0..10), a thing
  ``train id * 1000 + instance``, or 255 for void; the segment id is that value + 1 (road, value
  0, must not read as unlabelled) and void becomes 0. The frame image is ``img/`` by
  annotation name, else ``img_all/`` by Cityscapes name.
* ``vipseg`` (`VIPSeg-Dataset <https://github.com/VIPSeg-Dataset/VIPSeg-Dataset>`_)::

      VIPSeg_720P/images/<video>/<frame>.jpg     (``imgs/`` in the original release)
      VIPSeg_720P/panomasks/<video>/<frame>.png

  ``panomasks`` PNGs hold 0 for void, a stuff class ``c`` (1..124) as ``c``, a thing as
  ``c * 100 + instance``. Segment ids are these values; categories are the 0-based ids of
  ``panoVIPSeg_categories.json``: ``value - 1`` for stuff, ``value // 100 - 1`` for things.
* ``davis`` (DAVIS 2016/2017)::

      DAVIS/JPEGImages/<resolution>/<sequence>/00000.jpg
      DAVIS/Annotations/<resolution>/<sequence>/00000.png

  Annotations are palette PNGs whose index is the object id (0 = background, 255 = void);
  binary grey PNGs (DAVIS 2016) read as object 1. Background and void are both 0 (DAVIS
  labels objects only); DAVIS has no categories.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import XincError
from .signal import FrameRange, Signal
from .transforms import centre_crop_box
from .video import frame_range_text, image_files, read_frames, select_frames

#: A decoder turns one annotation file into segment ids ``[H, W]`` int64 (0 = unlabelled).
MaskDecoder = Callable[[Path], np.ndarray]

CITYSCAPES_VOID = 255
VIPSEG_MAX_STUFF = 124
DAVIS_VOID = 255


def crop_and_resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop ``masks[T, H, W]`` to the aspect of ``size`` and resize by nearest neighbour.

    The crop box is the one :func:`~xinc_bench.data.transforms.crop_and_resize` uses for frames,
    and output pixel centres sample the nearest input pixel centre, so masks stay aligned with
    their frames. Returns ``[T, h, w]`` int32 holding only ids present in the input.
    """
    height, width = size
    top, left, crop_h, crop_w = centre_crop_box(tuple(masks.shape[1:]), size)
    rows = top + ((torch.arange(height) + 0.5) * crop_h / height).long()
    cols = left + ((torch.arange(width) + 0.5) * crop_w / width).long()
    return masks[:, rows[:, None], cols[None, :]].to(torch.int32)


def load_dataset(
    root: Path | str,
    layout: str,
    sequence: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
    **options: str,
) -> Signal:
    """Load ``sequence`` of the dataset at ``root`` in ``layout`` (one of :data:`LAYOUTS`).

    ``options`` go to the layout's loader: ``split`` for Cityscapes-VPS, ``resolution`` for DAVIS.
    """
    if layout not in LAYOUTS:
        raise XincError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    loader = LAYOUTS[layout]
    allowed = set(inspect.signature(loader).parameters) - {"root", "sequence", "size", "frames"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise XincError(f"dataset layout {layout!r} takes no option {', '.join(unknown)}; its options: {known}")
    return loader(root, sequence, size, frames, **options)


def list_sequences(root: Path | str, layout: str) -> list[str]:
    """The sequence names available at ``root`` in ``layout``."""
    if layout not in SEQUENCE_LISTERS:
        raise XincError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return SEQUENCE_LISTERS[layout](Path(root))


def load_davis(
    root: Path | str,
    sequence: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
    resolution: str = "480p",
) -> Signal:
    """A DAVIS sequence with its object masks (no categories); see the module docstring."""
    root = Path(root)
    image_dir = _sequence_dir(root / "JPEGImages" / resolution, sequence, "DAVIS")
    images = image_files(image_dir)
    annotation_dir = root / "Annotations" / resolution / sequence
    masks = [annotation_dir / f"{image.stem}.png" for image in images]
    signal = _annotated_signal(f"davis/{sequence}", images, masks, _decode_davis, size, frames)
    signal.source.update(source="davis", root=str(root), sequence=sequence, resolution=resolution)
    return signal


def load_vipseg(
    root: Path | str,
    sequence: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
) -> Signal:
    """A VIPSeg video with panoptic masks and categories; see the module docstring."""
    root = Path(root)
    image_dir = _sequence_dir(_vipseg_image_root(root), sequence, "VIPSeg")
    images = image_files(image_dir)
    masks = [root / "panomasks" / sequence / f"{image.stem}.png" for image in images]
    signal = _annotated_signal(f"vipseg/{sequence}", images, masks, _decode_vipseg, size, frames)
    signal.categories = _present(signal.masks, _vipseg_category)
    signal.source.update(source="vipseg", root=str(root), sequence=sequence)
    return signal


def load_cityscapes_vps(
    root: Path | str,
    sequence: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
    split: str = "val",
) -> Signal:
    """A Cityscapes-VPS video (its annotated frames) with panoptic masks and categories.

    Masks come from ``panoptic_video`` with the split's JSON, or from ``panoptic_inst`` when
    ``panoptic_video`` is absent; see the module docstring.
    """
    root = Path(root)
    mask_dir = _cityscapes_mask_dir(root, split)
    masks = sorted(mask_dir.glob(f"{sequence}_*.png"))
    if not masks:
        available = ", ".join(_cityscapes_sequences(mask_dir)) or "none"
        raise XincError(f"Cityscapes-VPS sequence {sequence!r} not found in {mask_dir}; available: {available}")
    images = [_cityscapes_image(root / split, mask) for mask in masks]
    if mask_dir.name == "panoptic_video":
        json_path = root / f"panoptic_gt_{split}_city_vps.json"
        decode, category_of = _read_rgb_ids, _segment_categories(json_path, {mask.name for mask in masks}).get
    else:
        decode, category_of = _decode_cityscapes_inst, _cityscapes_inst_category
    signal = _annotated_signal(f"cityscapes-vps/{sequence}", images, masks, decode, size, frames)
    signal.categories = _present(signal.masks, category_of)
    signal.source.update(source="cityscapes-vps", root=str(root), sequence=sequence, split=split)
    return signal


def _annotated_signal(
    name: str,
    images: list[Path],
    masks: list[Path],
    decode: MaskDecoder,
    size: tuple[int, int],
    frames: FrameRange | None,
) -> Signal:
    """Frames and masks of the selected frames; missing or mis-sized files are named."""
    try:
        indices = select_frames(frames, len(images))
    except XincError as exc:
        raise XincError(f"{name}: {exc}") from None
    images, masks = [images[i] for i in indices], [masks[i] for i in indices]
    for path in images + masks:
        if not path.is_file():
            raise XincError(f"{name}: missing file {path}; every selected frame needs its image and its mask")
    tensor = read_frames(images, size)  # checks that all frames share the first one's size
    frame_shape = _image_shape(images[0])
    mask_tensor = torch.stack([_mask_frame(mask, decode, frame_shape, size) for mask in masks])
    source = {"size": list(size), "frames": frame_range_text(indices)}
    return Signal(frames=tensor, name=name, masks=mask_tensor, source=source)


def _mask_frame(
    mask: Path, decode: MaskDecoder, frame_shape: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """One decoded mask cropped and resized to ``[h, w]`` int32; its size must be the frames'."""
    ids = decode(mask)
    if ids.shape != frame_shape:
        raise XincError(
            f"mask {mask} is {ids.shape[0]}x{ids.shape[1]} but its frames are {frame_shape[0]}x{frame_shape[1]}; "
            "masks must have their frame's size"
        )
    return crop_and_resize_masks(torch.from_numpy(ids)[None], size)[0]


def _image_shape(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def _open_mask(path: Path) -> tuple[np.ndarray, str]:
    """The raw values of a mask PNG (palette indices for palette PNGs) as int64, and its PIL mode."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image).astype(np.int64), image.mode
    except Exception as exc:
        raise XincError(f"cannot read mask file {path}: {exc}; replace it with a valid PNG") from exc


def _one_channel_mask(path: Path, fix: str) -> tuple[np.ndarray, str]:
    """A mask PNG that holds one id per pixel ``[H, W]``, and its PIL mode; ``fix`` ends the error."""
    values, mode = _open_mask(path)
    if values.ndim != 2:
        raise XincError(f"mask {path} has {values.shape[2]} channels where one id per pixel is expected; {fix}")
    return values, mode


def _read_rgb_ids(path: Path) -> np.ndarray:
    """COCO-panoptic RGB ids ``R + 256 G + 256^2 B`` ``[H, W]`` int64."""
    rgb = _open_mask(path)[0]
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise XincError(f"panoptic mask {path} is not an RGB PNG; panoptic_video masks encode ids in RGB")
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _decode_vipseg(path: Path) -> np.ndarray:
    return _one_channel_mask(path, "give the panomasks/ PNGs (not panomasksRGB/)")[0]


def _decode_davis(path: Path) -> np.ndarray:
    values, mode = _one_channel_mask(path, "give the DAVIS Annotations PNGs")
    if mode != "P":
        return (values > 0).astype(np.int64)
    values[values == DAVIS_VOID] = 0
    return values


def _decode_cityscapes_inst(path: Path) -> np.ndarray:
    values = _one_channel_mask(path, "give the Cityscapes-VPS panoptic_inst PNGs")[0]
    return np.where(values == CITYSCAPES_VOID, 0, values + 1)


def _cityscapes_inst_category(segment: int) -> int:
    value = segment - 1
    return value // 1000 if value >= 1000 else value


def _vipseg_category(segment: int) -> int:
    return segment - 1 if segment <= VIPSEG_MAX_STUFF else segment // 100 - 1


def _present(masks: torch.Tensor, category_of: Callable[[int], int | None]) -> dict[int, int]:
    """Categories of the labelled segments present in ``masks`` (ids without one are left out)."""
    ids = [int(i) for i in torch.unique(masks) if i != 0]
    categories = {i: category_of(i) for i in ids}
    return {i: c for i, c in categories.items() if c is not None}


def _sequence_dir(parent: Path, sequence: str, dataset: str) -> Path:
    folder = parent / sequence
    if not folder.is_dir():
        available = ", ".join(_subfolders(parent)) or "none"
        raise XincError(f"{dataset} sequence {sequence!r} not found in {parent}; available: {available}")
    return folder


def _subfolders(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def _vipseg_image_root(root: Path) -> Path:
    for name in ("images", "imgs"):
        if (root / name).is_dir():
            return root / name
    raise XincError(f"{root} is not a VIPSeg root: it has no images/ (or imgs/) folder; point it at VIPSeg_720P")


def _cityscapes_mask_dir(root: Path, split: str) -> Path:
    """``panoptic_video`` when present, else ``panoptic_inst``."""
    video_dir, inst_dir = root / split / "panoptic_video", root / split / "panoptic_inst"
    for folder in (video_dir, inst_dir):
        if folder.is_dir():
            return folder
    raise XincError(
        f"{root} is not a Cityscapes-VPS root for split {split!r}: it has neither {video_dir} nor {inst_dir}; "
        "create them with the dataset's prepare_data scripts"
    )


def _segment_categories(json_path: Path, file_names: set[str]) -> dict[int, int]:
    """Segment id -> category id from the annotations of ``file_names`` in a COCO-panoptic JSON."""
    if not json_path.is_file():
        raise XincError(f"missing {json_path}: panoptic_video masks need it for their categories")
    try:
        annotations = json.loads(json_path.read_text())["annotations"]
        return {
            int(segment["id"]): int(segment["category_id"])
            for annotation in annotations
            if annotation["file_name"] in file_names
            for segment in annotation["segments_info"]
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise XincError(
            f"cannot read panoptic annotations from {json_path}: {exc!r}; give the dataset's JSON"
        ) from exc


def _cityscapes_image(split_dir: Path, mask: Path) -> Path:
    """The frame image of an annotation ``VVVV_FFFF_city_seq_frame_<suffix>.png``."""
    image_id = mask.stem.rsplit("_", 2)[0]
    candidates = [
        split_dir / "img" / f"{image_id}_leftImg8bit.png",
        split_dir / "img" / f"{image_id}_newImg8bit.png",
        split_dir / "img_all" / f"{image_id.split('_', 2)[2]}_leftImg8bit.png",
    ]
    return next((path for path in candidates if path.is_file()), candidates[0])


def _cityscapes_sequences(mask_dir: Path) -> list[str]:
    return sorted({p.name.split("_", 1)[0] for p in mask_dir.glob("*.png")})


def _list_cityscapes(root: Path) -> list[str]:
    return _cityscapes_sequences(_cityscapes_mask_dir(root, "val"))


#: Layout name -> loader ``(root, sequence, size, frames) -> Signal``.
LAYOUTS: dict[str, Callable[..., Signal]] = {
    "cityscapes-vps": load_cityscapes_vps,
    "vipseg": load_vipseg,
    "davis": load_davis,
}

SEQUENCE_LISTERS: dict[str, Callable[[Path], list[str]]] = {
    "cityscapes-vps": _list_cityscapes,
    "vipseg": lambda root: _subfolders(_vipseg_image_root(root)),
    "davis": lambda root: _subfolders(root / "JPEGImages" / "480p"),
}
