"""The implicit neural canvas: tracers, the in-memory canvas, and the canvas file."""

from . import ablation, cnn, hooks, mlp
from .canvas import Canvas
from .compute import compute_canvas
from .file import FORMAT, read_canvas, write_canvas
from .tracer import Tracer

__all__ = ["FORMAT", "Canvas", "Tracer", "compute_canvas", "mlp", "read_canvas", "write_canvas"]
