"""Probe tasks that score a canvas. Each probe module registers itself on import."""

from . import clustering, color, distribution, edges, faithfulness, motion, nulls, objects, partitions
from .controls import shuffle_canvas
from .base import Metric, ProbeResult, Task, available_tasks, load_task

__all__ = ["Metric", "ProbeResult", "Task", "available_tasks", "distribution", "load_task"]
