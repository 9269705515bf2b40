"""The canvas file (SPEC 4.4): one ``.safetensors`` file, written streaming and read lazily.

:class:`CanvasWriter` lays out a safetensors file whose header is known in advance and maps
each tensor's bytes into memory, so tracers write chunks of a canvas straight into the file
and peak memory stays at one chunk. The file is written under a temporary name and renamed
into place on :meth:`CanvasWriter.commit`, so a failure never leaves a half-written canvas.
Reading goes through ``safetensors.safe_open``: one layer at a time.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from ..errors import XincError
from ..files import temp_sibling
from .canvas import Canvas

FORMAT = "xinc-canvas/1"

#: spare header bytes so metadata known only after tracing (checks, timings) fits in place
_HEADER_RESERVE = 16384

_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int32"): "I32",
    np.dtype("float64"): "F64",
}


class CanvasWriter:
    """Pre-allocates a safetensors file and exposes each tensor as a writable memory map.

    Args:
        path: final file path; the data goes to ``path.tmp-<pid>`` until :meth:`commit`.
        tensors: name -> (shape, numpy dtype) of every tensor, in file order.
        metadata: string -> string header metadata.
    """

    def __init__(self, path: Path, tensors: dict[str, tuple[tuple[int, ...], np.dtype]], metadata: dict[str, str]) -> None:
        self.path = Path(path)
        self.tmp_path = temp_sibling(self.path)
        header: dict[str, Any] = {"__metadata__": metadata}
        offset = 0
        self._layout: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}
        for name, (shape, dtype) in tensors.items():
            dtype = np.dtype(dtype)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._layout[name] = (offset, tuple(shape), dtype)
            offset += nbytes
        self._header = header
        encoded = self._encode_header(reserve=_HEADER_RESERVE)
        self._data_start = 8 + len(encoded)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.tmp_path, "wb") as handle:
            handle.write(struct.pack("<Q", len(encoded)))
            handle.write(encoded)
            handle.truncate(self._data_start + offset)
        self._maps: dict[str, np.memmap] = {}

    def _encode_header(self, reserve: int = 0, length: int | None = None) -> bytes:
        encoded = json.dumps(self._header, separators=(",", ":")).encode()
        target = length if length is not None else len(encoded) + reserve + (-(len(encoded) + reserve) % 8)
        if len(encoded) > target:
            raise ValueError("canvas metadata outgrew the reserved header space")
        return encoded + b" " * (target - len(encoded))

    def set_metadata(self, metadata: dict[str, str]) -> None:
        """Replace the header metadata (e.g. with checks known only after tracing)."""
        self._header["__metadata__"] = metadata
        encoded = self._encode_header(length=self._data_start - 8)
        with open(self.tmp_path, "r+b") as handle:
            handle.seek(8)
            handle.write(encoded)

    def array(self, name: str) -> np.ndarray:
        """Writable ``np.memmap`` view of tensor ``name`` in the file."""
        if name not in self._maps:
            offset, shape, dtype = self._layout[name]
            if int(np.prod(shape)) == 0:
                return np.zeros(shape, dtype)
            self._maps[name] = np.memmap(self.tmp_path, dtype=dtype, mode="r+", offset=self._data_start + offset, shape=shape)
        return self._maps[name]

    def commit(self) -> Path:
        """Flush every map and atomically move the file into place."""
        for mapped in self._maps.values():
            mapped.flush()
        self._maps.clear()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the temporary file (on failure)."""
        self._maps.clear()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "CanvasWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()


def _file_metadata(canvas: Canvas) -> dict[str, str]:
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in canvas.metadata.items()}
    meta["format"] = FORMAT
    meta["layers"] = json.dumps(canvas.layer_names)
    return meta


def write_canvas(canvas: Canvas, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write a :class:`Canvas` to ``path`` (atomic), layer by layer and frame chunk by frame chunk."""
    np_dtype = np.dtype(np.float16 if dtype == torch.float16 else np.float32)
    tensors: dict[str, tuple[tuple[int, ...], np.dtype]] = {
        f"canvas.{name}": (canvas.layer_shape(name), np_dtype) for name in canvas.layer_names
    }
    arrays: dict[str, np.ndarray] = {}
    for name in ("frames", "recon", "masks", "flow"):
        value = getattr(canvas, name)
        if value is not None:
            arrays[name] = value.detach().cpu().numpy()
            tensors[name] = (arrays[name].shape, arrays[name].dtype)
    with CanvasWriter(path, tensors, _file_metadata(canvas)) as writer:
        for name in canvas.layer_names:
            target = writer.array(f"canvas.{name}")
            for start, chunk in canvas.frame_chunks(name):
                target[:, start : start + chunk.shape[1]] = chunk.numpy()
        for name, value in arrays.items():
            writer.array(name)[...] = value
        return writer.commit()


def read_canvas(path: Path) -> Canvas:
    """Open a canvas file; layers are read lazily, one at a time, when asked for.

    Raises:
        XincError: the file is missing, not a safetensors file, or not ``xinc-canvas/1``.
    """
    path = Path(path)
    if not path.is_file():
        raise XincError(f"canvas file {path} does not exist; make one with `xinc-bench canvas`")
    try:
        handle = safe_open(str(path), framework="pt")
        metadata = dict(handle.metadata() or {})
        keys = set(handle.keys())
    except Exception as exc:
        raise XincError(f"cannot read canvas file {path}: not a valid safetensors file ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise XincError(f"{path} is not a canvas file: metadata format is {metadata.get('format')!r}, expected {FORMAT!r}")
    try:
        layer_names = json.loads(metadata["layers"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise XincError(f"canvas file {path} has no valid 'layers' list in its metadata") from exc
    missing = [n for n in layer_names if f"canvas.{n}" not in keys] + (["frames"] if "frames" not in keys else [])
    if missing:
        raise XincError(f"canvas file {path} lacks tensors {missing}; the file is incomplete")

    def optional(name: str) -> torch.Tensor | None:
        return handle.get_tensor(name) if name in keys else None

    frames = handle.get_tensor("frames")
    layers = {n: FileLayer(handle, f"canvas.{n}") for n in layer_names}
    for name, layer in layers.items():
        if len(layer.shape) != 4 or layer.shape[1:] != tuple(frames.shape[:3]):
            raise XincError(f"canvas file {path}: layer {name!r} has shape {list(layer.shape)}, expected "
                            f"[N, {', '.join(str(d) for d in frames.shape[:3])}] to match its frames; the file is corrupt")
    parsed = {k: _maybe_json(v) for k, v in metadata.items() if k not in ("format", "layers")}
    return Canvas(
        layers=layers,
        frames=frames,
        recon=optional("recon"),
        masks=optional("masks"),
        flow=optional("flow"),
        metadata=parsed,
    )


class FileLayer:
    """One layer of an open canvas file, read a frame range at a time (a :class:`LayerSource`)."""

    def __init__(self, handle: Any, key: str) -> None:
        self._handle = handle
        self._key = key
        self.shape: tuple[int, int, int, int] = tuple(handle.get_slice(key).get_shape())  # type: ignore[assignment]

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``start:stop``, ``[N, stop - start, H, W]`` in the file's dtype."""
        if start == 0 and stop >= self.shape[1]:
            return self._handle.get_tensor(self._key)
        return self._handle.get_slice(self._key)[:, start:stop]


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
