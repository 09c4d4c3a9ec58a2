"""The benchmark scripts run (smoke runs only: timings are never asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_layer_benchmark_runs_and_prints_its_ratios():
    """A smoke run, so the benchmark cannot rot; its timings are never asserted."""
    script = Path(__file__).parents[1] / "benchmarks" / "layers.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "fused/torch" in result.stdout and "cells/fused" in result.stdout


def test_padding_benchmark_runs_and_prints_its_ratios():
    script = Path(__file__).parents[1] / "benchmarks" / "padding.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "packed/padded" in result.stdout and "cells/cells-padded" in result.stdout
