"""What a file holds, read from its first bytes, so that a file that cannot be decoded is named.

A decoder's own error ("need at least one array to stack", "Invalid data found when processing
input") says nothing about the file; :func:`describe_file` says what it is instead (text, a zip
archive, a NumPy array, an empty file, a PNG that does not decode...), and :data:`ACCEPTED`
what ``--data`` takes.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

#: what ``--data`` accepts, for the end of an error message
ACCEPTED = (
    "--data takes an image (PNG, JPEG, TIFF, ...), a video (mp4, mkv, webm, ...), a folder of frames, "
    "a dataset root with --layout, or a built-in source (xinc-bench list data)"
)

#: leading bytes -> (what the file is, its medium: "image", "video" or "" for neither)
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "image"),
    (b"\xff\xd8\xff", "a JPEG image", "image"),
    (b"GIF87a", "a GIF image", "image"),
    (b"GIF89a", "a GIF image", "image"),
    (b"II*\x00", "a TIFF image", "image"),
    (b"MM\x00*", "a TIFF image", "image"),
    (b"\x1aE\xdf\xa3", "a Matroska/WebM video", "video"),
    (b"\x93NUMPY", "a NumPy array (.npy)", ""),
    (b"PK\x03\x04", "a zip archive (or a PyTorch checkpoint)", ""),
    (b"\x1f\x8b", "a gzip archive", ""),
    (b"%PDF", "a PDF document", ""),
    (b"SQLite format 3\x00", "an SQLite database", ""),
)

_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class FileKind:
    """What a file holds: a phrase for messages (``"text"``, ``"a PNG image"``) and its medium.

    ``medium`` is ``"image"`` or ``"video"`` when the bytes say so, ``"unknown"`` for binary data
    of a format not recognised here (it may still be a video FFmpeg reads), ``""`` otherwise.
    """

    description: str
    medium: str


def describe_file(path: Path) -> FileKind:
    """What ``path`` holds, judged from its first bytes (never decodes the whole file)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        return FileKind(f"nothing readable ({exc.strerror})", "")
    if not head:
        return FileKind("nothing (an empty file)", "")
    for signature, description, medium in _SIGNATURES:
        if head.startswith(signature):
            return FileKind(description, medium)
    if head[4:8] == b"ftyp":
        return FileKind("an MP4/QuickTime video", "video")
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"AVI "):
        return (FileKind("a WebP image", "image") if head[8:12] == b"WEBP" else FileKind("an AVI video", "video"))
    if _is_text(head):
        return FileKind("text", "")
    if head.startswith(b"BM"):
        return FileKind("a BMP image", "image")
    return FileKind("binary data of an unknown format", "unknown")


def not_decodable(path: Path, error: Exception, wanted: str) -> str:
    """Why ``path`` failed to decode as ``wanted`` (``"image"`` or ``"video"``), and the fix.

    The clause follows ``cannot read image file PATH:``. A file of the wanted medium is named as
    truncated or corrupt; any other file is named by what it holds, then what ``--data`` accepts.
    """
    kind = describe_file(path)
    article = {"image": "an image", "video": "a video"}
    if kind.medium == wanted:
        return f"it is {kind.description} that cannot be decoded ({error}); the file is truncated or corrupt, replace it"
    if kind.medium == "unknown":
        return f"it holds {kind.description} that does not decode as {article[wanted]} ({error}); {ACCEPTED}"
    if kind.medium:
        return f"it is {kind.description}, not {article[wanted]}; rename it with the suffix of {article[kind.medium]}"
    return f"it holds {kind.description}, not {article[wanted]}; {ACCEPTED}"


def _is_text(head: bytes) -> bool:
    """UTF-8 without control characters other than tab, newline, carriage return and form feed."""
    try:  # incremental: the sniffed prefix may end inside a multi-byte character
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)
