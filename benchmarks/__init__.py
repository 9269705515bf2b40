"""Benchmarks of xinc-bench: ``python -m benchmarks`` times every stage of a unit against its floor.

The scripts beside this package (``canvas_mlp.py``, ``canvas_cnn.py``, ``probe_passes.py``,
``zoo_fidelity.py``) each compare variants of one stage; ``python -m benchmarks --help`` lists
the stages of the entry point.
"""
