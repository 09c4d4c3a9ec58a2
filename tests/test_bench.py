"""``rnnkit bench``'s measurements, on small shapes: each measures what it says (no timing is
asserted: the machines are shared and noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rnnkit.benchmark.machine import copy_gbps, gemm_gflops
from rnnkit.benchmark.rss import peak_rss_mb, write_corpus
from rnnkit.benchmark.timing import interleaved
from rnnkit.benchmark.training import measure_training, training_flops_per_char

SMALL = {"vocab": 65, "embed": 8, "hidden": 16, "layers": 2, "seq_len": 10, "batch": 4}


def test_flops_per_char_by_hand():
    # layer 1: 2*4*512*(64+512); layer 2: 2*4*512*(512+512); head: 2*512*65; x3 for training
    expected = 3 * (2 * 4 * 512 * 576 + 2 * 4 * 512 * 1024 + 2 * 512 * 65)
    assert training_flops_per_char(64, 512, 2, 65) == expected


def test_interleaved_rotates_and_counts_every_round():
    calls = []
    medians = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                          rounds=4, warmup=1)  # fmt: skip
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())


def test_machine_figures_are_positive():
    assert gemm_gflops(torch.float32, n=128, rounds=1) > 0
    assert gemm_gflops(torch.bfloat16, n=64, rounds=1) > 0
    assert copy_gbps(megabytes=8, rounds=1) > 0


def test_training_speed_on_a_small_model():
    speed = measure_training(rounds=2, steps_per_round=1, shape=SMALL)
    assert speed.rnnkit_chars_per_s > 0 and speed.torch_chars_per_s > 0
    assert speed.ratio == pytest.approx(speed.rnnkit_chars_per_s / speed.torch_chars_per_s)
    assert speed.gemm_fraction(1.0) == pytest.approx(
        speed.rnnkit_chars_per_s * speed.flops_per_char / 1e9
    )


def test_corpus_size_and_peak_rss(tmp_path):
    assert write_corpus(tmp_path / "c.txt", 0.5) == 500_000
    assert (tmp_path / "c.txt").stat().st_size == 500_000
    rss = peak_rss_mb(0.5, steps=2, shape=SMALL)
    assert 50 < rss < 4096  # a real child's peak: torch alone is ~200 MiB


def test_cli_bench_json_and_table():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [
        sys.executable,
        "-m",
        "rnnkit",
        "bench",
        "--only",
        "machine",
        "--quick",
        "--threads",
        "1",
    ]
    result = subprocess.run([*run, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["gemm_fp32_gflops"] > 0 and figures["threads"] == 1
    for key in ("train_ratio_vs_torch", "peak_rss_mb_200mb", "mingru_over_gru"):
        assert key in figures  # every documented key, null when its section did not run
    table = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert table.returncode == 0 and "fp32 GEMM" in table.stdout and "GFLOP/s" in table.stdout
    bad = subprocess.run([*run[:4], "--threads", "-1"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--threads" in bad.stderr


def test_bf16_figures_on_a_small_model():
    from rnnkit.benchmark.precision import bf16_speedup, bf16_val_delta

    tiny = {**SMALL, "hidden": 8, "embed": 4, "layers": 1, "seq_len": 8}
    assert bf16_speedup(rounds=1, shape=tiny) > 0
    result = bf16_val_delta(steps=6, shape=tiny)
    assert result["delta"] == pytest.approx(result["bf16"] - result["fp32"])
    assert abs(result["delta"]) < 0.5  # the same model, seed and batches: nearly the same loss
