"""Building blocks shared by the static result pages (leaderboard and run report).

Pages are plain HTML files with inline CSS and JavaScript (no CDN) whose pictures live in an
assets folder beside them and are linked by relative paths, so a page opens from disk and can
be copied anywhere with its folder. Everything written here is deterministic (same inputs, same
bytes) and atomic (temporary file or folder, then a rename).
"""

from __future__ import annotations

import html
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


#: colour map of neuron contribution maps (|C| normalised by the map's maximum)
MAP_COLORMAP = "magma"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; } h3 { font-size: 1rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #d0d0d7; padding: 0.25rem 0.5rem; text-align: right; vertical-align: middle; }
th { background: #f1f1f5; max-width: 7.5rem; font-weight: 600; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
.pictures.thumbnails { flex-wrap: nowrap; gap: 0.25rem; }
th.sortable { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
tr.stale td { background: #fff4e0; }
table.reference td { background: #eef6ee; }
tr.headline td { font-weight: 600; }
th a.detail { font-weight: 400; font-size: 0.75rem; display: block; }
td.wrap { white-space: normal; min-width: 16rem; max-width: 48rem; }
td.score { white-space: normal; min-width: 7rem; }
span.part { white-space: nowrap; }
img.pixelated { image-rendering: pixelated; }
.pictures { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 0.75rem; color: #55555f; text-align: center; }
.grid { display: grid; grid-template-columns: repeat(8, max-content); gap: 0.4rem; }
.note { color: #55555f; font-size: 0.85rem; }
"""


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def format_number(value: Any) -> str:
    """Fixed formatting for tables: integers as integers, floats with 4 significant digits, NaN empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def short_number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, positional between 1e-4 and 1e6, else in e-notation; NaN empty.

    E.g. ``0.71 -> "0.710"``, ``27.71 -> "27.7"``, ``1234.5 -> "1234"``, ``2e-7 -> "2.00e-07"``.
    """
    if value is None or not math.isfinite(value):
        return ""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 6:
        return f"{value:.{max(0, digits - 1 - magnitude)}f}"
    return f"{value:.{digits - 1}e}"


def page(title: str, body: str, script: str = "") -> str:
    """A complete HTML document with the shared style sheet and an optional inline script."""
    script_tag = f"<script>\n{script}\n</script>\n" if script else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n{script_tag}</body>\n</html>\n"
    )


def image(src: str, alt: str, caption: str | None = None, width: int | None = None, pixelated: bool = False) -> str:
    """An ``<img>`` (with ``src`` a relative link) linked to itself, optionally inside a captioned figure."""
    size = f' width="{width}"' if width else ""
    cls = ' class="pixelated"' if pixelated else ""
    tag = f'<a href="{escape(src)}"><img src="{escape(src)}" alt="{escape(alt)}" title="{escape(alt)}"{size}{cls}></a>'
    if caption is None:
        return tag
    return f"<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>"


def save_rgb_png(frame: torch.Tensor, path: Path) -> Path:
    """Save an RGB frame ``[H, W, 3]`` with values in [0, 1] (clipped) as an 8-bit PNG."""
    import imageio.v3 as iio

    pixels = (frame.float().clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, pixels)
    return path


def save_map_png(values: torch.Tensor, path: Path) -> Path:
    """Save a contribution map ``[H, W]`` as a colour-mapped PNG of ``|values|`` / max.

    An all-zero map is saved black (it stays visibly empty instead of being stretched).
    """
    import imageio.v3 as iio
    from matplotlib import colormaps

    magnitude = values.float().abs()
    peak = float(magnitude.max())
    scaled = (magnitude / peak if peak > 0 else magnitude).numpy()
    rgba = colormaps[MAP_COLORMAP](scaled, bytes=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.ascontiguousarray(rgba[..., :3]))
    return path


#: longest side, in pixels, of the probe-figure previews on a leaderboard page
PREVIEW_SIDE = 900


def save_preview(source: Path, destination: Path, max_side: int = PREVIEW_SIDE) -> Path:
    """A downscaled WebP copy of the image ``source``, at ``destination`` with suffix ``.webp``.

    A leaderboard shows every probe figure of every row, so it keeps previews (about a tenth of
    the PNGs' size, which matters for a committed leaderboard); run reports keep the originals.
    """
    from PIL import Image

    destination = destination.with_suffix(".webp")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as picture:
        preview = picture.convert("RGB")
    preview.thumbnail((max_side, max_side))
    preview.save(destination, "WEBP", quality=80, method=4)
    return destination


def copy_file(source: Path, destination: Path) -> Path:
    """Copy ``source`` to ``destination`` byte for byte (creating folders)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return destination
