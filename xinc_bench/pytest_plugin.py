"""pytest plugin (SPEC 7): check an INR's probe scores against a baseline inside a test suite.

Registered through the ``pytest11`` entry point, so installing xinc-bench enables it. It adds

* the fixture ``xinc_check(records, baseline=None, tolerance=None, strict=None) -> CheckResult``,
  which runs :func:`xinc_bench.results.check.check` and fails the test with the readable table of
  what moved when the check fails;
* the marker ``@pytest.mark.xinc_baseline(baseline=..., tolerance=..., strict=False)``, whose
  values are the fixture's defaults for that test (arguments given to the fixture win).

A relative baseline path is taken relative to the test file's folder. Example::

    @pytest.mark.xinc_baseline(baseline="baselines/quick.csv", tolerance={"default": 0.02, "psnr_db": 0.5})
    def test_my_inr_keeps_its_scores(tmp_path, xinc_check):
        run_suite("my-suite.yaml", tmp_path)
        xinc_check(tmp_path)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

MARKER = "xinc_baseline"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(baseline, tolerance=0.0, strict=False): baseline (leaderboard CSV or records folder, "
        "relative to the test file), tolerance and strictness used by the xinc_check fixture",
    )


@pytest.fixture
def xinc_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``xinc_check(records, baseline=None, tolerance=None, strict=None) -> CheckResult``.

    Unset arguments come from the test's ``xinc_baseline`` marker (tolerance default 0, strict
    default False). Fails the test with the check's report when any value regressed.
    """
    from .errors import XincError
    from .results.check import check

    marker = request.node.get_closest_marker(MARKER)
    defaults = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        defaults.setdefault("baseline", marker.args[0])
    test_dir = Path(request.node.path).parent

    def run_check(records: Path | str, baseline: Path | str | None = None, tolerance: Any = None,
                  strict: bool | None = None) -> Any:
        chosen = baseline if baseline is not None else defaults.get("baseline")
        if chosen is None:
            pytest.fail(f"xinc_check needs a baseline: pass baseline= or mark the test with "
                        f"@pytest.mark.{MARKER}(baseline=...)", pytrace=False)
        path = Path(chosen)
        path = path if path.is_absolute() else test_dir / path
        try:
            result = check(records, path, tolerance if tolerance is not None else defaults.get("tolerance", 0.0),
                           strict=bool(strict if strict is not None else defaults.get("strict", False)))
        except XincError as exc:
            pytest.fail(f"xinc_check could not run: {exc}", pytrace=False)
        if not result.passed:
            pytest.fail(result.report(), pytrace=False)
        return result

    return run_check
