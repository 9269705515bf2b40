"""The pytest plugin: the ``xinc_check`` fixture and the ``xinc_baseline`` marker, run with pytester."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from xinc_bench.probes.base import load_task
from xinc_bench.files import write_json_atomic
from xinc_bench.runs.record import build_record

pytest_plugins = ["pytester"]

SCORES = {"neurons_per_pixel_a0.1": 0.3, "neurons_per_pixel_a0.5": 0.1, "pixels_per_neuron": 0.2,
          "top_neuron_share": 0.05, "gini": 0.7}


def _plugin_args() -> list[str]:
    """Load the plugin by module unless the installed entry point already does."""
    installed = any(ep.value == "xinc_bench.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "xinc_bench.pytest_plugin"]


def _records(folder: Path, gini: float, psnr: float = 24.0) -> Path:
    """A records folder with one distribution record of ffn-paper on astronaut at 16x32."""
    metadata = {
        "model": "ffn-paper", "num_parameters": 32971, "bits_per_pixel": 515.17, "seed": 0, "tracer": "mlp",
        "data": {"data": "astronaut", "name": "astronaut", "num_frames": 1, "height": 16, "width": 32},
        "fidelity": {"psnr": psnr, "ssim": 0.8},
    }
    record = build_record(load_task("distribution"), {**SCORES, "gini": gini}, metadata)
    write_json_atomic(folder / "run" / "records" / "distribution.json", record)
    return folder


def test_fixture_and_marker(pytester: pytest.Pytester) -> None:
    _records(pytester.path / "baseline", gini=0.7)
    same = _records(pytester.path / "same", gini=0.7)
    changed = _records(pytester.path / "changed", gini=0.5)
    pytester.makepyfile(
        f"""
        import pytest

        SAME, CHANGED = {str(same)!r}, {str(changed)!r}

        @pytest.mark.xinc_baseline(baseline="baseline", tolerance=0.01)
        def test_unchanged_passes(xinc_check):
            result = xinc_check(SAME)
            assert result.passed and set(result.table["status"]) == {{"ok"}}

        @pytest.mark.xinc_baseline(baseline="baseline", tolerance={{"default": 0.01}})
        def test_changed_fails(xinc_check):
            xinc_check(CHANGED)

        @pytest.mark.xinc_baseline(baseline="baseline", tolerance=0.01)
        def test_arguments_beat_the_marker(xinc_check):
            xinc_check(CHANGED, tolerance=0.5)

        def test_without_a_baseline(xinc_check):
            xinc_check(SAME)
        """
    )
    result = pytester.runpytest("--strict-markers", *_plugin_args())
    result.assert_outcomes(passed=2, failed=2)
    output = result.stdout.str()
    assert "xinc-bench check FAILED: 1 failing" in output
    result.stdout.re_match_lines([r".*ffn-paper\s+astronaut\s+16x32\s+distribution/gini\s+0\.7\s+0\.5\s+-0\.2\s+0\.01\s+regressed"])
    assert "xinc_check needs a baseline: pass baseline= or mark the test with @pytest.mark.xinc_baseline" in output
    assert "Traceback" not in output  # failures show the table, not the plugin's internals


def test_marker_is_declared(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers", *_plugin_args())
    result.stdout.fnmatch_lines(["@pytest.mark.xinc_baseline(baseline, tolerance=0.0, strict=False):*"])
