"""benchmarks/forecast_real.py runs (a --quick smoke run: its figures are never asserted) and
reads its data from the installed wheels' files, never by importing their data modules."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "forecast_real.py"


def load_script():
    spec = importlib.util.spec_from_file_location("forecast_real", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_data_files_read_as_documented():
    pytest.importorskip("pmdarima")
    pytest.importorskip("statsmodels")
    bench = load_script()
    times, y = bench.read_taylor()
    assert len(y) == 4032 and y[:3].tolist() == [22262.0, 21756.0, 22247.0]
    assert times[0].weekday() == 0 and (times[1] - times[0]).seconds == 1800
    assert "pmdarima.datasets.taylor" not in sys.modules  # read as text, never run
    times, y = bench.read_co2()
    assert len(y) == 2284 and not np.isnan(y).any() and y[0] == 316.1
    assert all((b - a).days == 7 for a, b in zip(times, times[1:], strict=False))


def test_quick_run_prints_the_table_and_writes_results(tmp_path):
    pytest.importorskip("statsforecast")
    pytest.importorskip("pmdarima")
    pytest.importorskip("statsmodels")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for fragment in ("taylor:", "co2:", "SeasonalNaive", "AutoETS", "AutoARIMA", "rnnkit"):
        assert fragment in result.stdout, result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("taylor", "co2"):
        models = results[name]["models"]
        assert set(models) == {"SeasonalNaive", "AutoETS", "AutoARIMA", "rnnkit"}
        for figures in models.values():
            assert figures["mase"] > 0 and 0 <= figures["coverage80"] <= 1
        assert models["rnnkit"]["crps"] > 0
