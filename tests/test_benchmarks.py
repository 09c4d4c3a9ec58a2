"""The benchmark scripts run (smoke runs only: timings are never asserted in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("script", "args", "prints"),
    [
        ("layers.py", ["--quick", "--repeats", "1"], ["fused/torch", "cells/fused"]),
        ("padding.py", ["--quick", "--threads", "1"], ["packed/padded", "cells/cells-padded"]),
        (
            "ddp_speed.py",
            ["--preset", "tiny", "--steps", "20", "--rounds", "1", "--cores", "2"],
            ["1 process x 2 threads", "2 processes x 1 thread(s)"],
        ),
        ("mingru_quality.py", ["--max-time", "3", "--probe-steps", "12"], ["lstm", "mingru"]),
    ],
)
def test_benchmark_runs_and_prints_its_ratios(script, args, prints):
    """A smoke run, so the benchmark cannot rot; its timings are never asserted."""
    path = Path(__file__).parents[1] / "benchmarks" / script
    result = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert all(fragment in result.stdout for fragment in prints), result.stdout
