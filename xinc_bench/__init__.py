"""xinc-bench: interpretability benchmark for implicit neural representations.

Train an INR, compute its implicit neural canvas (the contribution of every neuron to every
pixel, after "Explaining the Implicit Neural Canvas", CVPR 2024), and score it with probe tasks.
"""

import os

__version__ = "0.1.0"

# Large CPU tensors on transparent huge pages: PyTorch's own switch, read once, at its first
# large allocation, so it is set here, before this package imports torch (a process that made a
# large tensor before importing xinc_bench keeps 4 KiB pages). The tracer and the probes allocate
# and free block-sized temporaries all the time; faulted in 4 KiB at a time they made the paper
# NeRV's 2-frame run 1.58x slower (``python -m benchmarks.allocator --compare pages``). A value
# the user set, "0" included, wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from . import annotate, canvas, data, inrs, probes  # noqa: E402  (registers the built-ins)
from .inrs.base import create_inr, register_inr  # noqa: E402

__all__ = ["__version__", "canvas", "create_inr", "data", "inrs", "probes", "register_inr"]
