"""Runs: one path from a unit's spec to its records.

* :mod:`~xinc_bench.runs.spec`: :class:`UnitSpec`, everything that defines a unit;
* :mod:`~xinc_bench.runs.rundir`: :class:`RunDir`, the run folder's layout, lock and clean-up;
* :mod:`~xinc_bench.runs.stages`: the stages (fit, canvas, probe) as functions;
* :mod:`~xinc_bench.runs.unit`: :func:`run_unit`, the only orchestration;
* :mod:`~xinc_bench.runs.record`: building and reading records;
* :mod:`~xinc_bench.runs.sanity`: the sanity check (model randomisation);
* :mod:`~xinc_bench.runs.executors`: how many units are run (here one after the other, a process pool,
  or Ray tasks on a cluster: :mod:`~xinc_bench.runs.ray_executor`);
* :mod:`~xinc_bench.runs.suite`: suites, YAML matrices expanded into units;
* :mod:`~xinc_bench.runs.progress`: progress bars and stage lines.
"""

from .rundir import RunDir
from .spec import UnitSpec
from .unit import UnitResult, run_unit

__all__ = ["RunDir", "UnitResult", "UnitSpec", "run_unit"]
