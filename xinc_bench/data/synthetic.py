"""Synthetic scenes with exact ground truth: textured objects over a textured background.

A scene is rendered from a seed: ``K`` rigid objects (discs and rectangles, ids ``1..K``, in
painting order) carry textures cut from real scikit-image pictures (astronaut, coffee,
chelsea) over a background cut from a different one (immunohistochemistry). Every motion is a
whole number of pixels per frame and surfaces are pasted, never resampled, so masks and flow
are exact. Variants:

* ``static``: nothing moves (all flow is zero);
* ``moving``: each object moves with its own velocity (up to 2 px per axis per frame) and
  bounces off the frame's borders; the background is still;
* ``pan``: the objects are still in the world and the camera pans (1 px down, 2 px right per
  frame, bouncing inside a world a quarter larger than the view), so everything moves.

Objects stay wholly inside the view in every variant (they may occlude one another). The three
variants of one seed share objects, textures and (up to the pan margin) positions.

Ground truth:

* ``masks[T, H, W]`` int32: object ids ``1..K``; the background is labelled too, as ``K + 1``
  (the probes treat it as an instance), so no pixel is 0;
* ``categories``: disc -> 1, rectangle -> 2, background -> 3 (:data:`CATEGORIES`), for the ids
  present;
* ``flow[T, H, W, 2]`` float32 ``(dx, dy)`` from the previous loaded frame to this one, frame 0
  zeros, in the convention of :mod:`xinc_bench.annotate.flow`: ``flow[t]`` lives on the pixel
  grid of frame ``t``, and the surface seen at pixel ``p`` of frame ``t`` was at
  ``p - flow[t][p]`` in frame ``t - 1``. Where it was visible there too (not disoccluded),
  ``frames[t][p] == frames[t - 1][p - flow[t][p]]`` exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import XincError
from ..registry import DATA_SOURCES
from .signal import FrameRange, Signal
from .transforms import crop_and_resize, to_float_rgb
from .video import DEFAULT_NUM_FRAMES, frame_range_text, select_frames

VARIANTS = ("static", "moving", "pan")
DISC, RECTANGLE, BACKGROUND = 1, 2, 3
#: Category ids of the segment kinds.
CATEGORIES = {"disc": DISC, "rectangle": RECTANGLE, "background": BACKGROUND}
OBJECT_TEXTURES = ("astronaut", "coffee", "chelsea")
BACKGROUND_TEXTURE = "immunohistochemistry"
DEFAULT_SEED = 0
DEFAULT_NUM_OBJECTS = 4
MAX_OBJECT_SPEED = 2
CAMERA_VELOCITY = (1, 2)  # (vy, vx) pixels per frame in the pan variant
MIN_SIZE = 8


@dataclass(frozen=True)
class SceneObject:
    """A rigid textured object moving in world pixels.

    Attributes:
        category: :data:`DISC` or :data:`RECTANGLE`.
        texture: ``[h, w, 3]`` float32 in [0, 1].
        footprint: ``[h, w]`` bool, the pixels the object covers.
        start: ``(y, x)`` of its top-left corner at frame 0.
        velocity: ``(vy, vx)`` whole pixels per frame; it bounces inside ``bounds``.
        bounds: ``(max_y, max_x)``, the largest top-left position it may take.
    """

    category: int
    texture: np.ndarray
    footprint: np.ndarray
    start: tuple[int, int]
    velocity: tuple[int, int]
    bounds: tuple[int, int]


@dataclass(frozen=True)
class Scene:
    """What a seed and variant define: the world and everything in it.

    Attributes:
        variant: one of :data:`VARIANTS`.
        seed: the seed it was drawn from.
        size: ``(H, W)`` of the view.
        background: ``[H + my, W + mx, 3]`` float32 world texture (margins only when panning).
        objects: objects in painting order; object ``k`` (0-based) has segment id ``k + 1``.
        camera_velocity: ``(vy, vx)`` of the view's top-left corner in the world.
    """

    variant: str
    seed: int
    size: tuple[int, int]
    background: np.ndarray
    objects: tuple[SceneObject, ...]
    camera_velocity: tuple[int, int]

    @property
    def background_id(self) -> int:
        return len(self.objects) + 1


def make_scene(
    variant: str,
    size: tuple[int, int],
    num_frames: int = DEFAULT_NUM_FRAMES,
    seed: int = DEFAULT_SEED,
    num_objects: int = DEFAULT_NUM_OBJECTS,
) -> Signal:
    """Render frames ``0..num_frames-1`` of a seeded scene with exact masks, flow and categories.

    Args:
        variant: ``"static"``, ``"moving"`` or ``"pan"`` (see the module docstring).
        size: ``(H, W)``, each at least :data:`MIN_SIZE`.
        num_frames: T.
        seed: the same seed gives the same scene, bit for bit.
        num_objects: K, the number of objects.

    Returns:
        A signal with ``frames[T, H, W, 3]``, ``masks[T, H, W]`` (ids 1..K+1),
        ``flow[T, H, W, 2]`` and ``categories``.
    """
    if num_frames < 1:
        raise XincError(f"num_frames must be at least 1, got {num_frames}")
    scene = build_scene(variant, size, seed, num_objects)
    return render_scene(scene, list(range(num_frames)))


def build_scene(variant: str, size: tuple[int, int], seed: int, num_objects: int) -> Scene:
    """Draw the objects, textures, positions and velocities of a seeded scene."""
    if variant not in VARIANTS:
        raise XincError(f"unknown synthetic variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    height, width = size
    if min(size) < MIN_SIZE:
        raise XincError(f"synthetic scenes need a size of at least {MIN_SIZE}x{MIN_SIZE}, got {height}x{width}")
    if num_objects < 1:
        raise XincError(f"num_objects must be at least 1, got {num_objects}")
    margin = (height // 4, width // 4) if variant == "pan" else (0, 0)
    rng = np.random.default_rng(seed)
    background = _texture_patch(BACKGROUND_TEXTURE, (height + margin[0], width + margin[1]), rng)
    objects = tuple(_draw_object(index, variant, size, margin, rng) for index in range(num_objects))
    camera = CAMERA_VELOCITY if variant == "pan" else (0, 0)
    return Scene(variant, seed, size, background, objects, camera)


def render_scene(scene: Scene, times: list[int]) -> Signal:
    """Render ``scene`` at frame ``times`` (increasing) with masks, flow and categories.

    Flow between consecutive entries of ``times`` is the whole displacement between them, so
    strided frame ranges keep exact flow.
    """
    camera = _positions(np.array(times), (0, 0), scene.camera_velocity, _camera_bounds(scene))  # [T, 2]
    objects = np.stack([
        _positions(np.array(times), obj.start, obj.velocity, obj.bounds) - camera for obj in scene.objects
    ])  # [K, T, 2] view positions
    frames, masks = zip(*(_render_frame(scene, camera[i], objects[:, i]) for i in range(len(times))))
    masks_array = np.stack(masks)
    flow = _flow(masks_array, objects, camera)
    categories = {k + 1: obj.category for k, obj in enumerate(scene.objects)} | {scene.background_id: BACKGROUND}
    present = set(np.unique(masks_array).tolist())
    name = f"synthetic-{scene.variant}"
    source = {
        "source": name,
        "seed": scene.seed,
        "num_objects": len(scene.objects),
        "size": list(scene.size),
        "frames": frame_range_text(times),
    }
    return Signal(
        frames=torch.from_numpy(np.stack(frames)),
        name=name,
        masks=torch.from_numpy(masks_array),
        flow=torch.from_numpy(flow),
        categories={i: c for i, c in categories.items() if i in present},
        source=source,
    )


def _draw_object(
    index: int, variant: str, size: tuple[int, int], margin: tuple[int, int], rng: np.random.Generator
) -> SceneObject:
    """Object ``index``: discs at even indices, rectangles at odd ones.

    The random draws do not depend on the variant, so the variants of a seed share objects.
    """
    height, width = size
    max_h, max_w = height - margin[0], width - margin[1]  # wholly visible whatever the camera
    if index % 2 == 0:
        radius = max(1, round(min(size) * rng.uniform(0.1, 0.18)))
        radius = min(radius, (min(max_h, max_w) - 1) // 2)
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        footprint, category = yy**2 + xx**2 <= radius**2, DISC
    else:
        h = min(max_h, max(2, round(height * rng.uniform(0.2, 0.35))))
        w = min(max_w, max(2, round(width * rng.uniform(0.12, 0.25))))
        footprint, category = np.ones((h, w), dtype=bool), RECTANGLE
    texture = _texture_patch(OBJECT_TEXTURES[index % len(OBJECT_TEXTURES)], footprint.shape, rng)
    placement = rng.uniform(size=2)
    speed = _velocity(rng)
    lows = margin if variant == "pan" else (0, 0)
    highs = (height - footprint.shape[0], width - footprint.shape[1])
    start = tuple(lo + int(u * (hi - lo + 1)) for lo, hi, u in zip(lows, highs, placement))
    bounds = (highs[0] + margin[0], highs[1] + margin[1])
    velocity = speed if variant == "moving" else (0, 0)
    return SceneObject(category, texture, footprint, start, velocity, bounds)


def _velocity(rng: np.random.Generator) -> tuple[int, int]:
    """A whole-pixel velocity ``(vy, vx)`` with components in [-2, 2], not both zero."""
    while True:
        vy, vx = (int(v) for v in rng.integers(-MAX_OBJECT_SPEED, MAX_OBJECT_SPEED + 1, size=2))
        if (vy, vx) != (0, 0):
            return vy, vx


@functools.lru_cache(maxsize=None)
def _source_image(name: str) -> torch.Tensor:
    """A scikit-image picture as ``[H, W, 3]`` float32 (cached: it is only ever read)."""
    import skimage.data

    return to_float_rgb(getattr(skimage.data, name)())


def _texture_patch(name: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random window of picture ``name`` with the aspect of ``shape``, resized to it: ``[h, w, 3]``."""
    image = _source_image(name)
    src_h, src_w = image.shape[:2]
    height, width = shape
    window_h = round(min(src_h, src_w) * rng.uniform(0.3, 0.6))
    window_w = min(src_w, max(1, round(window_h * width / height)))
    window_h = min(src_h, max(1, round(window_w * height / width)))
    # uniform draws take a fixed share of the random stream, so the variants of a seed stay in step
    u_top, u_left = rng.uniform(size=2)
    top, left = int(u_top * (src_h - window_h + 1)), int(u_left * (src_w - window_w + 1))
    window = image[top : top + window_h, left : left + window_w]
    return crop_and_resize(window[None], (height, width))[0].numpy()


def _camera_bounds(scene: Scene) -> tuple[int, int]:
    world_h, world_w = scene.background.shape[:2]
    return world_h - scene.size[0], world_w - scene.size[1]


def _positions(
    times: np.ndarray, start: tuple[int, int], velocity: tuple[int, int], bounds: tuple[int, int]
) -> np.ndarray:
    """Positions ``[T, 2]`` ``(y, x)`` at ``times`` of a point moving at ``velocity``.

    The point bounces inside ``[0, bounds]`` per axis: a triangle wave of its linear path, so
    every step between frames is whole pixels.
    """
    linear = np.asarray(start)[None, :] + times[:, None] * np.asarray(velocity)[None, :]
    period = np.maximum(2 * np.asarray(bounds), 1)[None, :]
    phase = np.mod(linear, period)
    return np.where(phase <= np.asarray(bounds)[None, :], phase, period - phase)


def _render_frame(scene: Scene, camera: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint one view: ``([H, W, 3] float32, [H, W] int32)``; ``positions`` is ``[K, 2]`` in the view."""
    height, width = scene.size
    cy, cx = int(camera[0]), int(camera[1])
    frame = scene.background[cy : cy + height, cx : cx + width].copy()
    mask = np.full((height, width), scene.background_id, dtype=np.int32)
    for k, (obj, (y, x)) in enumerate(zip(scene.objects, positions.tolist())):
        h, w = obj.footprint.shape
        frame[y : y + h, x : x + w][obj.footprint] = obj.texture[obj.footprint]
        mask[y : y + h, x : x + w][obj.footprint] = k + 1
    return frame, mask


def _flow(masks: np.ndarray, objects: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Exact ``flow[T, H, W, 2]`` ``(dx, dy)``: each pixel of frame t carries its surface's last step.

    Args:
        masks: ``[T, H, W]`` segment ids.
        objects: ``[K, T, 2]`` object top-left ``(y, x)`` in view pixels.
        camera: ``[T, 2]`` view top-left ``(y, x)`` in world pixels.
    """
    steps = np.diff(objects, axis=1)  # [K, T-1, 2]
    background_step = -np.diff(camera, axis=0)[None]  # the world moves against the camera
    table = np.concatenate([np.zeros_like(background_step), steps, background_step])  # [K+2, T-1, 2] by id
    flow = np.zeros((*masks.shape, 2), dtype=np.float32)
    for t in range(1, masks.shape[0]):
        flow[t] = table[masks[t], t - 1][..., ::-1]  # (dy, dx) -> (dx, dy)
    return flow


def _register_variant(variant: str) -> None:
    name = f"synthetic-{variant}"

    def load(size: tuple[int, int], frames: FrameRange | None = None) -> Signal:
        total = frames.stop if frames is not None and frames.stop is not None else DEFAULT_NUM_FRAMES
        scene = build_scene(variant, size, DEFAULT_SEED, DEFAULT_NUM_OBJECTS)
        return render_scene(scene, select_frames(frames, total))

    load.__doc__ = (
        f"The {variant!r} synthetic scene (seed {DEFAULT_SEED}, {DEFAULT_NUM_OBJECTS} objects) with exact "
        f"masks, flow and categories; ``frames=None`` = frames 0..{DEFAULT_NUM_FRAMES - 1}, and an open-ended "
        f"range ends at frame {DEFAULT_NUM_FRAMES - 1}."
    )
    DATA_SOURCES.add(name, load, kind="video", origin="synthetic", annotations=("masks", "flow", "categories"))


for _variant in VARIANTS:
    _register_variant(_variant)
