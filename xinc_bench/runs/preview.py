"""The preview of a run's canvas: per layer, every neuron's total |C| and the frame-0 maps of the largest.

A run does not keep its canvas (it is traced, probed and dropped; ``--save-canvas`` keeps it), yet its
report, leaderboard thumbnails and W&B images show the neurons with the largest total |C|. The
preview is what they need, small enough to keep (``RUN/preview.safetensors``): the total |C| of
every neuron of every layer over the whole signal, summed in the probes' shared pass by
:class:`NeuronMass`, and frame 0 of the :data:`PREVIEW_NEURONS` largest neurons of each layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..canvas.canvas import Canvas
from ..errors import XincError
from ..files import atomic_file
from ..probes.accumulator import Accumulator, AccumulatorGroup, accumulate
from ..probes.numerics import block_neuron_totals

#: neurons per layer whose frame-0 map the preview keeps, largest total |C| first
PREVIEW_NEURONS = 16
#: the preview file's ``format`` metadata
FORMAT = "xinc-bench-preview/1"


@dataclass(frozen=True)
class LayerPreview:
    """One layer of the preview.

    Attributes:
        mass: ``[N]`` float64, every neuron's total |C| over the whole signal.
        indices: ``[k]`` the ``k = min(PREVIEW_NEURONS, N)`` neurons with the largest mass, largest
            first (ties to the lower index).
        maps: ``[k, H, W]`` float32, their contributions to frame 0.
    """

    mass: torch.Tensor
    indices: torch.Tensor
    maps: torch.Tensor

    @property
    def shares(self) -> torch.Tensor:
        """``[k]`` each shown neuron's fraction of the layer's total |C| (0 for an all-zero layer)."""
        total = self.mass.sum()
        return self.mass[self.indices] / total if total > 0 else torch.zeros(len(self.indices), dtype=torch.float64)


class NeuronMass(Accumulator):
    """Sums every neuron's |C| over the canvas, layer by layer, in one pass (``compute``: layer -> ``[N]`` float64)."""

    def __init__(self) -> None:
        self.mass: dict[str, torch.Tensor] = {}

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        """Add the block's |C| per neuron (the block's shared totals, which the probes also use)."""
        total = block_neuron_totals(chunk)
        self.mass[layer] = total.clone() if layer not in self.mass else self.mass[layer] + total

    def compute(self) -> dict[str, torch.Tensor]:
        """Layer -> ``[N]`` total |C| of each neuron."""
        return self.mass


def largest_neurons(mass: torch.Tensor, k: int = PREVIEW_NEURONS) -> torch.Tensor:
    """The ``min(k, N)`` neurons with the largest ``mass[N]``, largest first (ties to the lower index)."""
    return torch.sort(mass, descending=True, stable=True).indices[:k]


def canvas_preview(canvas: Canvas, mass: dict[str, torch.Tensor] | None = None) -> dict[str, LayerPreview]:
    """The preview of ``canvas``: ``mass`` (from :class:`NeuronMass` in a pass already made; default:
    one pass here) and frame 0 of every layer, read once (one traced window of a streamed canvas)."""
    if mass is None:
        mass = accumulate(canvas, [AccumulatorGroup([NeuronMass()])])[0][0].result
    preview = {}
    for name in canvas.layer_names:
        indices = largest_neurons(mass[name])
        preview[name] = LayerPreview(mass[name], indices, canvas.layer_frames(name, 0, 1)[indices, 0].clone())
    return preview


def write_preview(preview: dict[str, LayerPreview], path: Path) -> Path:
    """Write a preview to ``path`` (safetensors, atomic)."""
    from safetensors.torch import save_file

    tensors = {}
    for index, layer in enumerate(preview.values()):
        tensors.update({f"{index}.mass": layer.mass, f"{index}.indices": layer.indices.to(torch.int64),
                        f"{index}.maps": layer.maps.float().contiguous()})
    with atomic_file(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "layers": json.dumps(list(preview))})
    return Path(path)


def read_preview(path: Path) -> dict[str, LayerPreview]:
    """Read a preview written by :func:`write_preview`.

    Raises:
        XincError: the file is missing, corrupt or not a preview.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise XincError(f"{path} is not a canvas preview (format {metadata.get('format')!r}, expected {FORMAT})")
            layers = json.loads(metadata["layers"])
            return {name: LayerPreview(handle.get_tensor(f"{i}.mass"), handle.get_tensor(f"{i}.indices"),
                                       handle.get_tensor(f"{i}.maps")) for i, name in enumerate(layers)}
    except (OSError, SafetensorError, ValueError, KeyError) as exc:
        raise XincError(f"cannot read the canvas preview {path} ({exc}); rerun `xinc-bench run` on its folder "
                        "to write it again") from exc


def run_preview(run_dir: Path) -> dict[str, LayerPreview] | None:
    """The preview of a run folder: its preview file, else one computed from its canvas file (a pass
    over it), else ``None`` (a run that did not reach its probes)."""
    from ..canvas.file import read_canvas
    from .rundir import RunDir

    run = RunDir(run_dir)
    if run.preview.is_file():
        return read_preview(run.preview)
    if run.canvas.is_file():
        return canvas_preview(read_canvas(run.canvas))
    return None

