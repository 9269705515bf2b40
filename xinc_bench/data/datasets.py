"""Annotated video datasets on disk: Cityscapes-VPS, VIPSeg and DAVIS.

Each loader reads one sequence into a :class:`Signal` with ``masks[T, H, W]`` int32 (0 =
unlabelled) and, where the layout names them, ``categories`` (segment id -> category id, for
the segments present in the loaded masks). Frames and masks are centre-cropped the same way
(see :func:`~xinc_bench.data.transforms.crop_and_resize`); masks are resized by nearest
neighbour so that no new ids appear. Without a frame range the first
:data:`~xinc_bench.data.video.DEFAULT_NUM_FRAMES` annotated frames are loaded.

The layouts are registered in :data:`LAYOUTS` (the project's :class:`~xinc_bench.registry.Registry`);
the command line reaches them through :func:`xinc_bench.data.load_signal` (``--data ROOT --layout
NAME --sequence NAME``).

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
  binary grey PNGs (DAVIS 2016) read as object 1. ``<resolution>`` is ``480p``, or the only
  resolution folder present (``Full-Resolution``, say). Background and void are both 0 (DAVIS
  labels objects only); DAVIS has no categories.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import XincError
from ..registry import Registry
from .signal import FrameRange, Signal, index_text
from .transforms import centre_crop_box
from .video import frame_range_text, list_image_files, read_frames, select_frames

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


@dataclass(frozen=True)
class DatasetLayout:
    """A dataset's standard folder layout (see the module docstring), registered in :data:`LAYOUTS`.

    Attributes:
        title: the dataset's name in messages (``"DAVIS"``).
        load: ``(root, sequence, size, frames, **options) -> Signal`` with ``masks`` (and
            ``categories`` when the layout has them).
        sequences: ``(root, **options) -> [name, ...]``, the sequences found at ``root``, sorted.
        recognise: whether a folder looks like a root of this layout (to suggest ``--layout``).
    """

    title: str
    load: Callable[..., Signal]
    sequences: Callable[..., list[str]]
    recognise: Callable[[Path], bool]


#: The dataset layouts by name (``--layout``): ``cityscapes-vps``, ``davis``, ``vipseg``.
LAYOUTS: Registry[DatasetLayout] = Registry("dataset layout")


def load_dataset(
    root: Path | str,
    layout: str,
    sequence: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
    **options: str,
) -> Signal:
    """Load ``sequence`` of the dataset at ``root`` in ``layout`` (a name in :data:`LAYOUTS`).

    ``options`` go to the layout's loader: ``split`` for Cityscapes-VPS, ``resolution`` for DAVIS.

    Raises:
        XincError: an unknown layout or option, a missing root or sequence (the sequences found
            are listed), a sequence without annotations, missing files, frames out of range.
    """
    entry = LAYOUTS.get(layout)
    root = _root(root, entry)
    allowed = set(inspect.signature(entry.load).parameters) - {"root", "sequence", "size", "frames"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise XincError(f"dataset layout {layout!r} takes no option {', '.join(unknown)}; its options: {known}")
    return entry.load(root, sequence, size, frames, **options)


def list_sequences(root: Path | str, layout: str, **options: str) -> list[str]:
    """The sequence names found at ``root`` in ``layout`` (``options`` as in :func:`load_dataset`)."""
    entry = LAYOUTS.get(layout)
    return entry.sequences(_root(root, entry), **options)


def detect_layouts(folder: Path | str) -> list[str]:
    """The layouts whose root ``folder`` looks like (usually none or one)."""
    folder = Path(folder)
    return [entry.name for entry in LAYOUTS if folder.is_dir() and entry.obj.recognise(folder)]


def names_text(names: list[str], limit: int = 20) -> str:
    """``names`` for a message: the first ``limit``, then how many there are (``"none"`` when empty)."""
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def load_davis(
    root: Path | str,
    sequence: str,
    size: tuple[int, int],
    frames: FrameRange | None = None,
    resolution: str | None = None,
) -> Signal:
    """A DAVIS sequence with its object masks (no categories); see the module docstring.

    ``resolution`` defaults to ``480p``, or to the only resolution folder when 480p is absent.
    """
    root = Path(root)
    resolution = resolution or _davis_resolution(root)
    image_dir = _sequence_dir(_davis_frames_root(root, resolution), sequence, "DAVIS")
    images = _sequence_frames(image_dir, "DAVIS", sequence)
    annotation_dir = _annotation_dir(root / "Annotations" / resolution / sequence, "DAVIS", sequence, image_dir)
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
    images = _sequence_frames(image_dir, "VIPSeg", sequence)
    annotation_dir = _annotation_dir(root / "panomasks" / sequence, "VIPSeg", sequence, image_dir)
    masks = [annotation_dir / f"{image.stem}.png" for image in images]
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
        available = names_text(_cityscapes_sequences(mask_dir))
        raise XincError(
            f"Cityscapes-VPS sequence {sequence!r} not found in {mask_dir}; available: {available}; "
            "pick one with --sequence"
        )
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
    missing = [i for i in indices if not (images[i].is_file() and masks[i].is_file())]
    if missing:
        first = images[missing[0]] if not images[missing[0]].is_file() else masks[missing[0]]
        annotated = [i for i in range(len(images)) if images[i].is_file() and masks[i].is_file()]
        raise XincError(
            f"{name}: missing file {first} ({len(missing)} of the {len(indices)} selected frames lack their image "
            f"or mask); choose --frames among the complete frames ({index_text(annotated) or 'none'}) "
            "or add the missing files"
        )
    images, masks = [images[i] for i in indices], [masks[i] for i in indices]
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


def _root(root: Path | str, layout: DatasetLayout) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise XincError(f"dataset root {root} does not exist or is not a folder; point --data at the {layout.title} folder")
    return root


def _sequence_dir(parent: Path, sequence: str, dataset: str) -> Path:
    folder = parent / sequence
    if not folder.is_dir():
        available = names_text(_subfolders(parent))
        raise XincError(
            f"{dataset} sequence {sequence!r} not found in {parent}; available: {available}; pick one with --sequence"
        )
    return folder


def _sequence_frames(image_dir: Path, dataset: str, sequence: str) -> list[Path]:
    files = list_image_files(image_dir)
    if not files:
        raise XincError(f"{dataset} sequence {sequence!r} has no frames: {image_dir} holds no image file; "
                        "pick another sequence or add its frames")
    return files


def _annotation_dir(folder: Path, dataset: str, sequence: str, image_dir: Path) -> Path:
    """The annotation folder of a sequence whose frames are in ``image_dir``; absent, name the fix."""
    if not folder.is_dir():
        raise XincError(
            f"{dataset} sequence {sequence!r} has no annotations: {folder} is missing; add the dataset's "
            f"annotations there, or load the frames alone with --data {image_dir} and no --layout"
        )
    return folder


def _subfolders(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def _davis_resolution(root: Path) -> str:
    """``480p`` when present, else the only resolution folder of ``JPEGImages/``."""
    found = _subfolders(root / "JPEGImages")
    if "480p" in found or not found:
        return "480p"
    if len(found) == 1:
        return found[0]
    raise XincError(
        f"{root / 'JPEGImages'} holds several resolutions ({', '.join(found)}) and no 480p; "
        "keep one of them there (load_dataset(..., resolution=...) picks one from Python)"
    )


def _davis_frames_root(root: Path, resolution: str) -> Path:
    folder = root / "JPEGImages" / resolution
    if not folder.is_dir():
        found = _subfolders(root / "JPEGImages")
        if not found:
            raise XincError(
                f"{root} is not a DAVIS root: it has no JPEGImages/<resolution>/ folder; "
                "point --data at the folder holding JPEGImages/ and Annotations/"
            )
        raise XincError(f"{root} has no DAVIS frames at resolution {resolution!r} ({folder} is missing); "
                        f"resolutions found: {', '.join(found)}")
    return folder


def _davis_sequences(root: Path, resolution: str | None = None) -> list[str]:
    return _subfolders(_davis_frames_root(root, resolution or _davis_resolution(root)))


def _vipseg_image_root(root: Path) -> Path:
    for name in ("images", "imgs"):
        if (root / name).is_dir():
            return root / name
    raise XincError(f"{root} is not a VIPSeg root: it has no images/ (or imgs/) folder; point --data at VIPSeg_720P")


def _vipseg_sequences(root: Path) -> list[str]:
    return _subfolders(_vipseg_image_root(root))


def _cityscapes_mask_dir(root: Path, split: str) -> Path:
    """``panoptic_video`` when present, else ``panoptic_inst``."""
    video_dir, inst_dir = root / split / "panoptic_video", root / split / "panoptic_inst"
    for folder in (video_dir, inst_dir):
        if folder.is_dir():
            return folder
    raise XincError(
        f"{root} has no Cityscapes-VPS annotations for split {split!r}: neither {video_dir} nor {inst_dir} exists; "
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


def _list_cityscapes(root: Path, split: str = "val") -> list[str]:
    return _cityscapes_sequences(_cityscapes_mask_dir(root, split))


def _is_cityscapes_root(folder: Path) -> bool:
    return any(folder.glob("panoptic_gt_*_city_vps.json")) or any(
        (split / kind).is_dir() for split in folder.iterdir() if split.is_dir() for kind in ("panoptic_video", "img_all")
    )


LAYOUTS.add(
    "cityscapes-vps",
    DatasetLayout("Cityscapes-VPS", load_cityscapes_vps, _list_cityscapes, _is_cityscapes_root),
    description="Cityscapes-VPS: <split>/panoptic_video (or panoptic_inst) + img/, panoptic masks with categories",
)
LAYOUTS.add(
    "davis",
    DatasetLayout("DAVIS", load_davis, _davis_sequences, lambda folder: (folder / "JPEGImages").is_dir()),
    description="DAVIS 2016/2017: JPEGImages/<res>/<seq> + Annotations/<res>/<seq>, object masks",
)
LAYOUTS.add(
    "vipseg",
    DatasetLayout(
        "VIPSeg",
        load_vipseg,
        _vipseg_sequences,
        lambda folder: (folder / "panomasks").is_dir() or (folder / "imgs").is_dir(),
    ),
    description="VIPSeg: images/<video> (or imgs/) + panomasks/<video>, panoptic masks with categories",
)
