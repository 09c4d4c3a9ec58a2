"""``rnnkit bench``'s measurements, on small shapes: each measures what it says (no timing is
asserted: the machines are shared and noisy)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.benchmark import generation as gen
from rnnkit.benchmark import machine, suite
from rnnkit.benchmark.layers import forward_backward, layer_contenders, measure_cells
from rnnkit.benchmark.machine import copy_gbps, gemm_gflops
from rnnkit.benchmark.minimal import measure_minimal, minimal_contenders
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
    assert gemm_gflops(torch.bfloat16, n=64, rounds=1) > 0  # on any CPU: MKL's (emulated) bf16
    assert copy_gbps(megabytes=8, rounds=1) > 0


def test_onednn_bf16_is_measured_only_where_the_cpu_supports_it(monkeypatch):
    support = machine.cpu_support()
    assert set(support) == {"capability", "avx512", "bf16"}
    libraries = machine.gemm_libraries(torch.bfloat16, n=32, rounds=1)
    assert ("onednn" in libraries) == support["bf16"]  # never the RuntimeError of an AVX2 CPU
    monkeypatch.setattr(machine, "_bf16_native", lambda: False)  # an AVX2 CPU, simulated
    assert set(machine.gemm_libraries(torch.bfloat16, n=32, rounds=1)) == {"mkl"}
    assert machine.cpu_support()["bf16"] is False


def test_bench_on_a_cpu_without_bf16_says_not_supported(monkeypatch, capsys):
    from rnnkit.cli import main

    monkeypatch.setattr(machine, "_bf16_native", lambda: False)
    monkeypatch.setattr(machine, "copy_gbps", lambda *_, **__: 1.0)
    run = ["bench", "--only", "machine", "--quick", "--threads", "1"]
    assert main([*run, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["cpu_bf16"] is False and figures["gemm_bf16_onednn_gflops"] is None
    assert figures["gemm_bf16_mkl_gflops"] > 0 and figures["gemm_fp32_gflops"] > 0
    assert main(run) == 0
    table = capsys.readouterr().out
    assert "no native bf16" in table
    assert any(
        "bf16 GEMM: oneDNN" in line and "not supported" in line for line in table.split("\n")
    )


def test_a_failing_section_keeps_the_others_figures(monkeypatch, capsys):
    from rnnkit.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("mkldnn_linear: bf16 path needs the cpu support avx512bw")

    monkeypatch.setattr(machine, "gemm_libraries", broken)
    monkeypatch.setattr(suite, "SIZES", {k: {"quick": v} for k, v in TINY.items()})
    run = ["bench", "--only", "machine", "training", "minimal", "--quick", "--json"]
    assert main(run) == 1
    out, err = capsys.readouterr()
    figures = json.loads(out)  # the object is printed all the same
    assert figures["mingru_over_gru"] > 0
    assert set(figures["failed"]) == {"machine", "training"}  # training divides by the GEMM rate
    assert "avx512bw" in figures["failed"]["machine"]
    assert "section machine failed" in err and "Traceback" not in err


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


# ---- generation, minimal, cells ------------------------------------------------------------

TINY = {
    "generation": {"rounds": 1, "length": 6, "batch": 2, "batch_length": 3, "copy_megabytes": 1,
                   "shape": SMALL},
    "minimal": {"rounds": 1, "seq_len": 12, "batch": 2, "input_size": 5, "hidden": 7},
    "cells": {"rounds": 1, "seq_len": 6, "batch": 3, "input_size": 5, "hidden": 7,
              "compiled": False},
}  # fmt: skip


def test_weight_bytes_per_step_by_hand():
    model = gen.make_model(SMALL)
    # layer 0: 4H(E + H) + 2*4H; layer 1: 4H(2H) + 2*4H; head: H*V + V; one embedding row: E
    numel = (64 * 24 + 128) + (64 * 32 + 128) + (16 * 65 + 65) + 8
    assert gen.weight_bytes_per_step(model) == 4 * numel
    canonical = gen.weight_bytes_per_step(gen.make_model())
    assert 13.2e6 < canonical < 13.4e6  # 4 bytes x ~3.32 M parameters
    assert gen.flops_per_char(model) == 2 * (64 * 24 + 64 * 32 + 16 * 65)  # matrices only


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_generation_figures_on_a_small_model(clock):
    speed = gen.measure_generation(clock=clock, **TINY["generation"])
    figures = speed.figures()
    assert figures["gen_text_equals_loop"] is True
    assert figures["gen_streams"] == 2 and "gen_batch64_chars_per_s" not in figures  # by count
    rates = ("gen_chars_per_s", "gen_loop_chars_per_s", "gen_loop_cell_chars_per_s",
             "gen_batch2_chars_per_s", "gen_copy_gbps", "gen_cache_copy_gbps")  # fmt: skip
    assert all(figures[key] > 0 for key in rates)
    r = figures["gen_chars_per_s"]
    assert figures["gen_ratio_vs_loop"] == pytest.approx(r / figures["gen_loop_chars_per_s"])
    assert figures["gen_batch2_over_single"] == pytest.approx(figures["gen_batch2_chars_per_s"] / r)
    assert figures["gen_batch2_gflops"] == pytest.approx(
        figures["gen_batch2_chars_per_s"] * 2 * (64 * 24 + 64 * 32 + 16 * 65) / 1e9
    )
    # fraction of the bound = chars/s x bytes per char / copy bytes per second
    nbytes = gen.weight_bytes_per_step(gen.make_model(SMALL))
    assert figures["gen_bandwidth_fraction"] == pytest.approx(
        r * nbytes / (figures["gen_copy_gbps"] * 1e9)
    )
    assert figures["gen_cache_bandwidth_fraction"] == pytest.approx(
        r * nbytes / (figures["gen_cache_copy_gbps"] * 1e9)
    )
    assert {"gen_ratio_vs_loop", "gen_bandwidth_fraction", "gen_batch64_over_single"} <= set(
        suite.KEYS
    )


def test_cpu_clock_times_every_round_and_drops_the_warmup():
    calls = []
    medians = gen.timed({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        rounds=3, clock="cpu")  # fmt: skip
    assert calls.count("a") == calls.count("b") == 4  # 1 warm-up + 3 timed
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())


def test_forward_backward_resets_the_gradients():
    torch.manual_seed(0)
    layer = torch.nn.GRU(3, 4)
    x = torch.randn(5, 2, 3)
    forward_backward(layer, x)
    first = [p.grad.clone() for p in layer.parameters()]
    forward_backward(layer, x)  # not accumulated on top of the first
    for p, g in zip(layer.parameters(), first, strict=True):
        torch.testing.assert_close(p.grad, g)
    out, _ = layer(x)
    expected = torch.autograd.grad(out.sum(), layer.weight_hh_l0)[0]
    torch.testing.assert_close(layer.weight_hh_l0.grad, expected)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_contenders_hold_the_same_weights(cell):
    torch.manual_seed(1)
    modules = layer_contenders(cell, 5, 7)
    assert modules["fused"].use_fused and not modules["cells"].use_fused
    x = torch.randn(6, 3, 5)
    outputs = [m(x)[0] for m in modules.values()]
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], rtol=1e-5, atol=1e-5)


def test_minimal_and_cells_figures_on_small_shapes():
    minimal = measure_minimal(**TINY["minimal"])
    assert all(seconds > 0 for seconds in minimal)
    assert minimal.mingru_over_gru == pytest.approx(minimal.gru_s / minimal.mingru_s)
    assert minimal.minlstm_over_lstm == pytest.approx(minimal.lstm_s / minimal.minlstm_s)
    names = {name: type(m).__name__ for name, m in minimal_contenders(5, 7).items()}
    assert names == {"mingru": "MinGRU", "gru": "GRU", "minlstm": "MinLSTM", "lstm": "LSTM"}
    from rnnkit.nn.unroll import compile_unavailable

    cells = measure_cells(**(TINY["cells"] | {"compiled": True}))
    assert all(seconds > 0 for seconds in cells[:3])
    assert cells.cells_over_fused == pytest.approx(cells.cells_s / cells.fused_s)
    assert cells.fused_over_torch == pytest.approx(cells.fused_s / cells.torch_s)
    reason = compile_unavailable()
    if reason is not None:  # no compiler here: the figure is missing, with the reason
        assert cells.compiled_s is None and cells.compiled_error == reason
    else:
        assert cells.compiled_error is None and cells.compiled_s > 0
        assert cells.compiled_over_fused == pytest.approx(cells.compiled_s / cells.fused_s)


def test_a_compiled_path_that_fails_is_reported_not_raised(monkeypatch):
    from rnnkit.nn import unroll

    def broken(module):
        def fail(*args, **kwargs):
            raise RuntimeError("inductor: no working C compiler\n(details)")

        module.forward = fail
        return 1

    monkeypatch.setattr(unroll, "compile_unavailable", lambda: None)
    monkeypatch.setattr(unroll, "compile_steps", broken)
    cells = measure_cells(**(TINY["cells"] | {"compiled": True}))
    assert cells.compiled_s is None and cells.compiled_over_fused is None
    assert cells.compiled_error == "RuntimeError: inductor: no working C compiler (details)"
    assert cells.cells_s > 0 and cells.fused_s > 0  # the others are measured all the same
    monkeypatch.setattr(unroll, "compile_steps", lambda module: 0)
    assert measure_cells(**(TINY["cells"] | {"compiled": True})).compiled_error == (
        "compile_steps switched no layer"
    )


def test_cli_runs_the_new_sections(monkeypatch, capsys):
    """``rnnkit bench --only generation minimal cells --quick``, in process, on tiny shapes."""
    from rnnkit.cli import main

    monkeypatch.setattr(suite, "SIZES", {k: {"quick": v} for k, v in TINY.items()})
    run = ["bench", "--only", "generation", "minimal", "cells", "--quick", "--device", "cpu"]
    assert main([*run, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in ("gen_ratio_vs_loop", "gen_bandwidth_fraction", "gen_batch2_over_single",
                "mingru_over_gru", "cells_over_fused", "minlstm_over_lstm"):  # fmt: skip
        assert figures[key] > 0, key
    assert figures["minimal_seq_len"] == 12 and figures["device"] == "cpu"
    assert figures["minimal_cudnn"] is False
    assert figures["train_ratio_vs_torch"] is None and "gemm_fp32_gflops" not in figures
    assert main(run) == 0
    table = capsys.readouterr().out
    for label in ("rnnkit / nn.LSTM loop", "fraction of DRAM bound", "MinGRU speed-up over nn.GRU",
                  "cells / fused time", "generate: 2 streams / 1 stream"):  # fmt: skip
        assert label in table
    assert "fp32 GEMM" not in table  # a section not run has no rows


def test_the_lstm_of_equal_size_has_the_nearest_parameter_count():
    from rnnkit.benchmark.modern import lstm_hidden_for

    def count(h: int) -> int:
        return sum(p.numel() for p in torch.nn.LSTM(256, h).parameters())

    for params in (100_000, 262_144, 331_000, 1_000_000):
        h = lstm_hidden_for(params, 256)
        assert abs(count(h) - params) <= min(abs(count(h - 1) - params), abs(count(h + 1) - params))


def test_cli_runs_the_modern_section(monkeypatch, capsys):
    """``rnnkit bench --only modern --quick --json`` on a tiny shape: every layer's figures,
    its LSTM of equal size, and the table's rows."""
    from rnnkit.benchmark.modern import LABELS, LAYERS
    from rnnkit.cli import main

    tiny = {"rounds": 1, "seq_len": 6, "batch": 2, "width": 8, "gen_steps": 3}
    monkeypatch.setattr(suite, "SIZES", {"modern": {"quick": tiny}})
    assert main(["bench", "--only", "modern", "--quick", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for name in LAYERS:
        for key in ("tokens_per_s", "lstm_tokens_per_s", "over_lstm", "gen_per_s",
                    "lstm_gen_per_s"):  # fmt: skip
            assert figures[f"modern_{name}_{key}"] > 0, (name, key)
        ratio = figures[f"modern_{name}_tokens_per_s"] / figures[f"modern_{name}_lstm_tokens_per_s"]
        assert figures[f"modern_{name}_over_lstm"] == pytest.approx(ratio)
        assert figures[f"modern_{name}_params"] > 0 and figures[f"modern_{name}_lstm_hidden"] >= 1
    assert main(["bench", "--only", "modern", "--quick"]) == 0
    table = capsys.readouterr().out
    assert all(f"{LABELS[name]} / LSTM, training" in table for name in LAYERS)


def load_script(name: str):
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_scripts_run(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = load_script("minimal").main(["--seq-len", "9", "--batch", "2", "--input-size", "4",
                                       "--hidden", "6", "--rounds", "1", "--json",
                                       str(tmp_path / "m.json")])  # fmt: skip
    assert json.loads((tmp_path / "m.json").read_text()) == out and out["mingru_over_gru"] > 0
    out = load_script("generation").main(["--quick", "--threads", "1"])
    [result] = out["results"]
    assert result["gen_text_equals_loop"] and result["gen_ratio_vs_loop"] > 0
    printed = capsys.readouterr().out
    assert "mingru_over_gru" in printed and "gen_bandwidth_fraction" in printed
    assert torch.get_num_threads() == threads  # the scripts restore what they change


# ---- devices -------------------------------------------------------------------------------


def test_interleaved_synchronises_the_device_around_each_timed_call(monkeypatch):
    from rnnkit.benchmark import timing

    events = []
    monkeypatch.setattr(timing, "synchronize", lambda device: events.append(("sync", device)))
    timing.interleaved({"a": lambda: events.append("a")}, rounds=2, warmup=1, device="cuda:0")
    assert events == [("sync", "cuda:0"), "a", ("sync", "cuda:0")] * 3  # warm-up + 2 rounds
    events.clear()
    timing.interleaved({"a": lambda: events.append("a")}, rounds=2, warmup=0)
    assert events == ["a", "a"]  # no device: the CPU's calls are done when they return


def test_bench_refuses_a_missing_device_before_measuring(monkeypatch, capsys):
    from rnnkit.cli import main

    def measured(*args, **kwargs):
        raise AssertionError("measured before the device was checked")

    monkeypatch.setattr(suite, "measure", measured)
    assert main(["bench", "--only", "machine", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "rnnkit: error: --device cuda: this PyTorch has no CUDA support (a CPU build)"
    assert main(["bench", "--device", "gpu"]) == 2
    assert "--device must be auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err


def test_the_table_on_an_accelerator_names_it_and_its_targets():
    figures = {
        "device": "cuda:0 (NVIDIA H100 80GB HBM3)", "cpu": "AMD EPYC", "threads": 8,
        "torch": "2.11.0", "cpu_bf16": False, "gemm_fp32_gflops": 5e4, "gemm_bf16_gflops": 7e5,
        "gemm_fp16_gflops": 7e5, "gen_streams": 1024, "gen_batch1024_over_single": 512.0,
        "bf16_speedup": 1.7, "fp16_speedup": 1.8, "compiled_over_fused": None,
        "compiled_error": "BackendCompilerFailed: no C compiler",
        "precision_refused": {"fp16": "--precision fp16 needs CUDA"},
    }  # fmt: skip
    lines = suite.table(figures).splitlines()
    assert lines[0] == "rnnkit bench: cuda:0 (NVIDIA H100 80GB HBM3), torch 2.11.0 (host: AMD EPYC)"
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:]}
    assert rows["generate: 1024 streams / 1 stream"] == ["512.0x", ">=", "200x"]
    assert rows["bf16 step speed-up over fp32"] == ["1.700x", ">=", "1.4x"]  # not "emulated"
    assert rows["fp16 GEMM"] == ["700000.0", "GFLOP/s"]
    assert rows["LSTM 512: compiled / fused time"][:2] == ["not", "measured"]
    assert "no C compiler" in " ".join(rows["LSTM 512: compiled / fused time"])
    assert "bf16 GEMM: oneDNN" not in rows  # a CPU library: nothing to say on a GPU
    assert "--precision fp16 not measured: --precision fp16 needs CUDA" in lines


def test_sizes_on_an_accelerator_are_the_gpu_shapes():
    from rnnkit.benchmark.shapes import CANONICAL, GPU_SHAPE

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert suite.section_sizes("training", False, cuda)["shape"] == GPU_SHAPE
    assert "shape" not in suite.section_sizes("training", False, cpu)
    assert suite.section_sizes("precision", False, cuda)["val_shape"] == CANONICAL
    assert suite.section_sizes("precision", True, cuda)["precisions"] == ("bf16", "fp16")
    assert "precisions" not in suite.section_sizes("precision", False, cpu)  # bf16 alone
    assert suite.section_sizes("generation", False, cuda)["batch"] == 1024
    assert suite.section_sizes("generation", True, cuda)["batch"] == 1024
    assert "batch" not in suite.section_sizes("generation", False, cpu)  # 64, the default
    assert suite.section_sizes("minimal", False, cuda)["seq_len"] == 2048


def test_precision_section_on_a_small_model():
    """bf16 and fp16 are each measured, or named with the trainer's reason for refusing."""
    from rnnkit.benchmark.sections import _precision

    tiny = {**SMALL, "hidden": 8, "embed": 4, "layers": 1, "seq_len": 8}
    lines = []
    figures = _precision(lines.append, {}, True, torch.device("cpu"), shape=tiny, steps=4,
                         val_shape=tiny, precisions=("bf16", "fp16"))  # fmt: skip
    assert figures["precision_val_steps"] == 4 and len(lines) == 1
    for name in ("bf16", "fp16"):
        refused = name in figures.get("precision_refused", {})
        assert (figures[f"{name}_speedup"] is None) == refused
        if not refused:
            assert figures[f"{name}_speedup"] > 0
            assert figures[f"{name}_val_delta"] == pytest.approx(
                figures[f"{name}_val"] - figures["fp32_val"]
            )
    assert figures["bf16_speedup"] is not None  # bf16 runs on any CPU


@pytest.mark.gpu
def test_every_section_measures_on_cuda():
    """``rnnkit bench --device cuda`` on tiny shapes: every section runs on the GPU."""
    tiny = {**SMALL, "hidden": 32, "embed": 16, "layers": 2, "seq_len": 16}
    sizes = {
        "machine": {"n": 512, "megabytes": 16},
        "training": {"rounds": 1, "steps_per_round": 1, "shape": tiny},
        "precision": {
            "rounds": 1,
            "shape": tiny,
            "steps": 4,
            "val_shape": tiny,
            "precisions": ("bf16", "fp16"),
        },
        "generation": {**TINY["generation"], "batch": 1024},
        "minimal": {**TINY["minimal"], "seq_len": 2048},
        "cells": TINY["cells"],  # the compiled path: gpu_check.py's figures (a compilation)
    }
    sections = [name for name in suite.SECTIONS if name != "rss"]
    figures = suite.measure(sections, True, lambda *_: None, torch.device("cuda"), sizes)
    assert "failed" not in figures, figures.get("failed")
    assert figures["device"].startswith("cuda:0 (")
    assert figures["gemm_fp32_gflops"] > 0 and figures["gemm_fp16_gflops"] > 0
    assert figures["train_ratio_vs_torch"] > 0 and figures["bf16_speedup"] > 0
    assert figures["fp16_speedup"] > 0 and abs(figures["bf16_val_delta"]) < 0.5
    assert figures["gen_batch1024_over_single"] > 0 and figures["gen_streams"] == 1024
    assert figures["minimal_cudnn"] is True and figures["mingru_over_gru"] > 0
    assert figures["cells_over_fused"] > 0 and figures["fused_over_torch"] > 0
