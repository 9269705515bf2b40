"""The figures the probes draw: matplotlib figures of their own, outside pyplot's registry.

A figure made here is not tracked by :mod:`matplotlib.pyplot`, so a run that draws many figures
before it saves them (every task's, per layer) neither keeps them alive after their last use nor
triggers pyplot's "more than 20 figures" warning, and nothing has to close them. It renders with
the non-interactive Agg canvas whatever pyplot's backend is.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(rows: int, columns: int, **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its grid of ``rows x columns`` axes (``kwargs``: ``figsize`` for the
    figure, the rest for :meth:`~matplotlib.figure.Figure.subplots`, e.g. ``squeeze=False``)."""
    figure = Figure(figsize=kwargs.pop("figsize", None))
    return figure, figure.subplots(rows, columns, **kwargs)
