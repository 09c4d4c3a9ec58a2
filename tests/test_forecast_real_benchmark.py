"""benchmarks/forecast_real.py runs (a --quick smoke run: its figures are never asserted) and
reads its data from the installed wheels' files, never by importing their data modules."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "forecast_real.py"


def need(*packages: str) -> None:
    """Skip unless installed; found without importing (pmdarima's import loads its data)."""
    for name in packages:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (the bench extra)")


READ = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("fr", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
taylor_times, taylor = bench.read_taylor()
co2_times, co2 = bench.read_co2()
print(json.dumps({
    "taylor": taylor[:3].tolist(), "taylor_n": len(taylor),
    "monday": taylor_times[0].weekday() == 0,
    "half_hour": (taylor_times[1] - taylor_times[0]).seconds == 1800,
    "co2_n": len(co2), "co2_first": co2[0], "co2_nan": bool((co2 != co2).any()),
    "weekly": all((b - a).days == 7 for a, b in zip(co2_times, co2_times[1:])),
    "imported": sorted(m for m in sys.modules if m.startswith(("pmdarima", "statsmodels"))),
}))
"""


def test_the_data_files_read_as_documented():
    need("pmdarima", "statsmodels")
    done = subprocess.run(
        [sys.executable, "-c", READ, str(SCRIPT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["taylor"] == [22262.0, 21756.0, 22247.0] and facts["taylor_n"] == 4032
    assert facts["monday"] and facts["half_hour"] and facts["weekly"]
    assert facts["co2_n"] == 2284 and facts["co2_first"] == 316.1 and not facts["co2_nan"]
    assert facts["imported"] == []  # read as files, the packages never imported


def test_quick_run_prints_the_table_and_writes_results(tmp_path):
    need("statsforecast", "pmdarima", "statsmodels")
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
    assert results["settings"] == {"max_time": 900, "threads": 1, "quick": True, "samples": 50}
