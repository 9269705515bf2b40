"""Compute a model's canvas with a tracer, in memory or streamed into a canvas file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.signal import Signal
from ..errors import XincError
from ..registry import TRACERS
from .canvas import Canvas, default_chunk_bytes, non_finite
from .file import CanvasWriter, _file_metadata, read_canvas


def compute_canvas(
    model: nn.Module,
    signal: Signal,
    tracer: str,
    *,
    out: Path | None = None,
    dtype: torch.dtype = torch.float32,
    chunk_size: int = 16384,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    layers: Sequence[str] | None = None,
) -> Canvas:
    """The canvas of ``model`` on ``signal``'s pixel grid, with the registered ``tracer``.

    Args:
        model: a trained INR (put in eval mode here).
        signal: the signal it represents; its frames, masks and flow go into the canvas.
        tracer: registered tracer name (``xinc-bench list tracers``).
        out: if given, the canvas is streamed into this file (atomic) and read back lazily.
        dtype: ``torch.float32`` or ``torch.float16`` storage for the contribution maps.
        chunk_size: pixels (or frames, for frame tracers) processed at once.
        metadata: extra metadata (model, data, fidelity) stored with the canvas.
        progress: called with the output pixels of each traced chunk (they add up to ``T * H * W``).
        layers: trace only these layers (default: every layer the tracer and the model's
            ``canvas_layers`` select).

    Raises:
        XincError: ``layers`` names a layer the tracer does not trace for this model.

    Raises:
        XincError: a layer's contributions hold NaN or inf (:func:`refuse_non_finite`); no file is left.
    """
    model.eval()
    implementation = TRACERS.get(tracer)
    shape = (signal.num_frames, signal.height, signal.width)
    layer_counts = traced_layers(implementation.layers(model, shape), layers, tracer)
    np_dtype = np.dtype(np.float16 if dtype == torch.float16 else np.float32)
    meta: dict[str, Any] = {**(metadata or {}), "tracer": tracer, "dtype": str(np_dtype)}
    started = time.perf_counter()
    if out is None:
        canvas_arrays = {n: np.empty((c, *shape), np_dtype) for n, c in layer_counts.items()}
        recon = np.empty((*shape, 3), np.float32)
        meta["checks"] = implementation.trace(model, shape, canvas_arrays, recon, chunk_size, progress)
        refuse_non_finite(canvas_arrays)
        meta["canvas_seconds"] = time.perf_counter() - started
        return Canvas(
            layers={n: torch.from_numpy(a) for n, a in canvas_arrays.items()},
            frames=signal.frames,
            recon=torch.from_numpy(recon),
            masks=signal.masks,
            flow=signal.flow,
            metadata=meta,
        )
    tensors = canvas_tensors(layer_counts, shape, np_dtype)
    check_disk_space(Path(out), tensors)
    tensors["frames"] = ((*shape, 3), np.dtype(np.float32))
    tensors["recon"] = ((*shape, 3), np.dtype(np.float32))
    if signal.masks is not None:
        tensors["masks"] = (shape, np.dtype(np.int32))
    if signal.flow is not None:
        tensors["flow"] = ((*shape, 2), np.dtype(np.float32))
    # Checks and timings are only known after tracing, but the header is written first:
    # reserve them by tracing into the file, then rewrite the (small) header in place.
    placeholder = Canvas(layers=dict.fromkeys(layer_counts), frames=signal.frames, metadata=meta)
    with CanvasWriter(Path(out), tensors, _file_metadata(placeholder)) as writer:
        canvas_arrays = {n: writer.array(f"canvas.{n}") for n in layer_counts}
        checks = implementation.trace(model, shape, canvas_arrays, writer.array("recon"), chunk_size, progress)
        refuse_non_finite(canvas_arrays)  # before commit: the writer removes its temporary file
        writer.array("frames")[...] = signal.frames.numpy()
        if signal.masks is not None:
            writer.array("masks")[...] = signal.masks.numpy()
        if signal.flow is not None:
            writer.array("flow")[...] = signal.flow.numpy()
        meta.update(checks=checks, canvas_seconds=time.perf_counter() - started)
        writer.set_metadata(_file_metadata(Canvas(layers=dict.fromkeys(layer_counts), frames=signal.frames, metadata=meta)))
        writer.commit()
    return read_canvas(Path(out))


def refuse_non_finite(canvas_arrays: dict[str, np.ndarray]) -> None:
    """Refuse traced contributions ``layer -> [N, T, H, W]`` holding NaN or inf, naming the model's layer.

    Read frame chunk by frame chunk within :func:`~xinc_bench.canvas.canvas.default_chunk_bytes`;
    float16 values are summed in float32, so a sum of float16 never overflows by itself.

    Raises:
        XincError: naming the layer, the frames, and the fix (float32 storage for an overflow of
            float16, a new fit for a model that gives NaN).
    """
    for name, array in canvas_arrays.items():
        num_neurons, num_frames, height, width = array.shape
        step = max(1, default_chunk_bytes() // max(1, 4 * num_neurons * height * width))  # summed as float32
        for start in range(0, num_frames, step):
            found = non_finite(torch.from_numpy(array[:, start : start + step]), start)
            if found is None:
                continue
            fix = ("its contributions overflow float16: trace in float32 (without --float16)"
                   if array.dtype == np.float16 and not found.nan else
                   "the model's weights are broken (a diverged fit?): refit it, e.g. with a lower --lr")
            raise XincError(f"the model's layer {name!r} gives {found}; the canvas is not stored: {fix}")


def traced_layers(counts: dict[str, int], layers: Sequence[str] | None, tracer: str) -> dict[str, int]:
    """``counts`` (layer -> neurons, network order) restricted to ``layers`` (None: all of them).

    Raises:
        XincError: ``layers`` names a layer that is not in ``counts``.
    """
    if layers is None:
        return counts
    unknown = [name for name in layers if name not in counts]
    if unknown:
        raise XincError(f"--layers names {', '.join(unknown)}, which the {tracer} tracer does not trace for this "
                        f"model; its layers are {', '.join(counts)}")
    return {name: count for name, count in counts.items() if name in layers}


def canvas_tensors(
    layer_counts: dict[str, int], shape: tuple[int, int, int], dtype: np.dtype
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The contribution tensors of a canvas file: ``canvas.<layer>`` -> (``[N, T, H, W]``, dtype)."""
    return {f"canvas.{n}": ((c, *shape), np.dtype(dtype)) for n, c in layer_counts.items()}


def check_disk_space(
    out: Path, tensors: dict[str, tuple[tuple[int, ...], np.dtype]], what: str = "the canvas", copies: int = 1
) -> None:
    """Refuse to start a canvas file that the disk cannot hold (a full disk would kill the writer midway).

    Args:
        out: the canvas file to be written; tensors: its tensors' shapes and dtypes;
        what: how the error names what is written; copies: how many such files are written.

    Raises:
        XincError: naming the size needed, the space free and the ways to shrink the canvas.
    """
    needed = copies * sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for shape, dtype in tensors.values())
    folder = Path(out).resolve().parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        halve = "" if all(np.dtype(dtype) == np.float16 for _, dtype in tensors.values()) else "store float16 (--float16 halves it), "
        raise XincError(
            f"{what} need{'s' if copies == 1 else ''} {needed / 2**30:.1f} GiB but {folder} has {free / 2**30:.1f} GiB "
            f"free; free some space, write elsewhere, {halve}or trace fewer frames, a smaller --size or fewer layers "
            "(the model's canvas_layers)"
        )
