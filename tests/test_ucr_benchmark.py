"""benchmarks/ucr.py: --quick end to end in a subprocess on one archive set from the installed
sktime wheel, its 1-NN DTW baseline against DTW computed by hand, the quick slice, the
published figures and the argument errors. Accuracies are never asserted: those are the
benchmark's to print. Skipped where sktime (the bench extra) is not installed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import ucr  # noqa: E402

needs_sktime = pytest.mark.skipif(
    importlib.util.find_spec("sktime") is None or importlib.util.find_spec("numba") is None,
    reason="sktime and numba (pip install 'rnnkit[bench]') are not installed",
)


def run_script(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RNNKIT_CACHE": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "ucr.py"), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )  # fmt: skip


def hand_dtw(x: np.ndarray, y: np.ndarray) -> float:
    """Full-window DTW of (T, C) series: D[i, j] = |x_i - y_j|^2 + min of the three before."""
    D = np.full((len(x) + 1, len(y) + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            cost = float(((x[i - 1] - y[j - 1]) ** 2).sum())
            D[i, j] = cost + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return float(D[-1, -1])


def write_ts(path: Path, cases: list[tuple[np.ndarray, str]]) -> Path:
    lines = ["@problemName Toy", "@dimensions 2", "@classLabel true p q", "@data"]
    for x, label in cases:
        dims = [",".join(f"{v:.6f}" for v in x[:, c]) for c in range(x.shape[1])]
        lines.append(":".join(dims) + ":" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@needs_sktime
def test_the_dtw_baseline_is_1nn_under_dtw_computed_by_hand(tmp_path):
    """Unequal lengths, two channels: the benchmark's 1-NN equals argmin of a hand DTW."""
    rng = np.random.default_rng(0)
    train = [(rng.normal(size=(int(rng.integers(4, 9)), 2)), "pq"[i % 2]) for i in range(8)]
    test = [(rng.normal(size=(int(rng.integers(4, 9)), 2)), "pq"[i % 2]) for i in range(10)]
    got = ucr.nn_dtw(write_ts(tmp_path / "a.ts", train), write_ts(tmp_path / "b.ts", test))
    rounded = [(np.round(x, 6), label) for x, label in train]
    right = 0
    for y, label in test:
        distances = [hand_dtw(x, np.round(y, 6)) for x, _ in rounded]
        right += rounded[int(np.argmin(distances))][1] == label
    assert got["accuracy"] == pytest.approx(right / len(test))


def test_the_quick_slice_keeps_the_headers_and_two_classes():
    text = "@classLabel true a b\n@data\n1,2:a\n3,4:a\n5,6:a\n7,8:b\n"
    kept = ucr._first_cases(text, 2)
    assert kept == "@classLabel true a b\n@data\n1,2:a\n3,4:a\n7,8:b\n"


def test_every_published_figure_says_where_it_comes_from():
    assert set(ucr.PUBLISHED) == set(ucr.SETS)
    for rows in ucr.PUBLISHED.values():
        for label, accuracy, source in rows:
            assert "1-NN" in label and 0 < accuracy < 1 and "20" in source


def test_arguments_are_checked(tmp_path):
    bad = run_script("--max-time", "0", "--out", tmp_path / "o", cwd=tmp_path)
    assert bad.returncode == 2 and "--max-time must be > 0" in bad.stderr
    bad = run_script("--sets", "Nope", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'Nope'" in bad.stderr


@needs_sktime
def test_quick_runs_end_to_end_and_writes_results(tmp_path):
    out = tmp_path / "ucr"
    done = run_script(
        "--quick", "--sets", "ItalyPowerDemand", "--threads", "1", "--out", out, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "ItalyPowerDemand" in done.stdout and "1-NN DTW (w=100%) 0.950" in done.stdout
    assert "rnnkit beats 1-NN DTW (w=100%, this run) on" in done.stdout
    results = json.loads((out / "results.json").read_text())
    row = results["results"]["ItalyPowerDemand"]
    assert 0 <= row["rnnkit"]["accuracy"] <= 1 and 0 <= row["dtw"]["accuracy"] <= 1
    assert [p["method"] for p in row["published"]][-1] == "1-NN DTW (w=100%)"
    assert results["settings"]["quick"] is True
    assert (out / "runs" / "ItalyPowerDemand" / "best" / "config.json").is_file()
    kept = (out / "data" / "ItalyPowerDemand_TRAIN.ts").read_text().split("@data")[1]
    assert len(kept.split()) == ucr.QUICK_CASES
