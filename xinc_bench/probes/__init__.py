"""Probe tasks that score a canvas. Each probe module registers itself on import."""

from . import distribution
from .base import Metric, ProbeResult, Task, available_tasks, load_task

__all__ = ["Metric", "ProbeResult", "Task", "available_tasks", "distribution", "load_task"]
