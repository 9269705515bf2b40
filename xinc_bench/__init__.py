"""xinc-bench: interpretability benchmark for implicit neural representations.

Train an INR, compute its implicit neural canvas (the contribution of every neuron to every
pixel, after "Explaining the Implicit Neural Canvas", CVPR 2024), and score it with probe tasks.
"""

__version__ = "0.1.0"

from . import annotate, canvas, data, inrs, probes  # noqa: E402  (registers the built-ins)
from .inrs.base import create_inr, register_inr  # noqa: E402

__all__ = ["__version__", "canvas", "create_inr", "data", "inrs", "probes", "register_inr"]
