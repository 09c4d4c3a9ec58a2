"""The figures of ``rnnkit bench``: every figure of the performance issue, measured by section
(:func:`measure`), and the table they print as (:func:`table`).

    rnnkit bench                 # everything (~10 minutes on 2 cores)
    rnnkit bench --quick         # fewer repeats, a 20 MB corpus, shorter sequences
    rnnkit bench --only machine training rss --json
    rnnkit bench --only generation minimal cells --threads 1

Each section measures its contenders interleaved (see ``timing.py``), by the wall clock; a
figure whose section was skipped is ``null`` in the JSON. Sections: ``machine`` (GEMM fp32/bf16
GFLOP/s, copy GB/s), ``training`` (rnnkit vs hand-written torch.nn.LSTM loop; fraction of the
fp32 GEMM rate), ``rss`` (peak RSS training on a 200 MB corpus), ``generation`` (generate() vs
hand-written loops, 1 and 64 streams; fraction of the memory-bandwidth bound), ``minimal``
(MinGRU vs torch.nn.GRU, MinLSTM vs torch.nn.LSTM, forward + backward at L 2048), ``cells``
(rnnkit.LSTM's cells path vs its fused path), ``bf16`` (a canonical training step with
``--precision bf16`` vs fp32; val loss at equal steps of a small model). ``SIZES`` holds the
arguments of the generation, minimal and cells sections.
"""

from __future__ import annotations

import sys

import torch

from rnnkit.benchmark.machine import cpu_model
from rnnkit.wording import plural

SECTIONS = ("machine", "training", "bf16", "rss", "generation", "minimal", "cells")
#: keyword arguments of the generation / minimal / cells measurements, full and --quick
SIZES = {
    "generation": {"full": {"rounds": 9, "length": 200, "batch_length": 50},
                   "quick": {"rounds": 3, "length": 50, "batch_length": 10}},
    "minimal": {"full": {"rounds": 5, "seq_len": 2048}, "quick": {"rounds": 2, "seq_len": 512}},
    "cells": {"full": {"rounds": 9}, "quick": {"rounds": 3}},
}  # fmt: skip
KEYS = (
    "train_ratio_vs_torch",
    "train_gemm_fraction",
    "bf16_speedup",
    "bf16_val_delta",
    "cells_over_fused",
    "gen_ratio_vs_loop",
    "gen_bandwidth_fraction",
    "gen_batch64_over_single",
    "mingru_over_gru",
    "peak_rss_mb_200mb",
)


def measure(sections, quick: bool = False, say=print) -> dict:
    """The figures of ``sections`` (``machine`` too when ``training`` is measured): one dict,
    ``None`` for a figure whose section was skipped. A section that fails is named on stderr
    and under ``failed``; the others' figures are still measured. ``say``: progress lines."""
    from rnnkit.benchmark.machine import cpu_support

    figures: dict[str, object] = dict.fromkeys(KEYS)
    figures |= {"threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__}
    figures |= {f"cpu_{key}": value for key, value in cpu_support().items()}
    size = "quick" if quick else "full"
    failed = {}
    for name, measure_section in MEASURES:
        wanted = name in sections or (name == "machine" and "training" in sections)
        if not wanted:
            continue
        try:
            figures |= measure_section(say, figures, quick, **SIZES.get(name, {}).get(size, {}))
        except Exception as error:  # one section's failure never loses the others' figures
            failed[name] = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            print(f"rnnkit bench: section {name} failed: {failed[name]}", file=sys.stderr)
    if failed:
        figures["failed"] = failed
    return figures


def _machine(say, figures: dict, quick: bool) -> dict:
    from rnnkit.benchmark.machine import copy_gbps, gemm_libraries

    rounds = 3 if quick else 9
    say("measuring the machine: fp32 and bf16 GEMM, memory copy ...")
    fp32 = gemm_libraries(torch.float32, rounds=rounds)
    bf16 = gemm_libraries(torch.bfloat16, n=512, rounds=2)  # oneDNN only with native bf16
    return {
        "gemm_fp32_gflops": max(fp32.values()),
        "gemm_fp32_mkl_gflops": fp32["mkl"],
        "gemm_fp32_onednn_gflops": fp32.get("onednn"),
        "gemm_bf16_gflops": max(bf16.values()),
        "gemm_bf16_mkl_gflops": bf16["mkl"],
        "gemm_bf16_onednn_gflops": bf16.get("onednn"),
        "copy_gbps": copy_gbps(rounds=rounds),
    }


def _training(say, figures: dict, quick: bool) -> dict:
    from rnnkit.benchmark.training import measure_training

    if figures.get("gemm_fp32_gflops") is None:
        raise RuntimeError("needs the fp32 GEMM rate, and the machine section failed")
    say("training the canonical model: rnnkit vs a hand-written torch.nn.LSTM loop ...")
    speed = measure_training(rounds=3 if quick else 9, steps_per_round=1 if quick else 2)
    return {
        "train_chars_per_s": speed.rnnkit_chars_per_s,
        "torch_train_chars_per_s": speed.torch_chars_per_s,
        "train_ratio_vs_torch": speed.ratio,
        "train_gemm_fraction": speed.gemm_fraction(figures["gemm_fp32_gflops"]),
    }


def _bf16(say, figures: dict, quick: bool) -> dict:
    """``--precision bf16`` runs on any CPU (emulated without native bf16: slow, but what a
    user of the flag gets), so it is measured everywhere; the table says when it is emulated."""
    from rnnkit.benchmark.precision import SMALL, bf16_speedup, bf16_val_delta

    say("bf16 autocast vs fp32: a canonical training step; val loss at equal steps ...")
    speedup = bf16_speedup(rounds=1, shape=SMALL if quick else None)
    delta = bf16_val_delta(steps=20 if quick else 100)
    return {"bf16_speedup": speedup, "bf16_val_delta": delta["delta"], "bf16_val": delta["bf16"],
            "fp32_val": delta["fp32"]}  # fmt: skip


def _rss(say, figures: dict, quick: bool) -> dict:
    from rnnkit.benchmark.rss import peak_rss_mb

    megabytes = 20 if quick else 200
    say(f"peak memory of rnnkit train on a {megabytes} MB corpus ...")
    return {"peak_rss_mb_2mb": peak_rss_mb(2), f"peak_rss_mb_{megabytes}mb": peak_rss_mb(megabytes)}


def _generation(say, figures: dict, quick: bool, **size) -> dict:
    from rnnkit.benchmark.generation import measure_generation

    say("generating with the canonical model: rnnkit generate() vs hand-written loops ...")
    return measure_generation(**size).figures()


def _minimal(say, figures: dict, quick: bool, **size) -> dict:
    from rnnkit.benchmark.minimal import SHAPE, measure_minimal

    say("forward + backward: MinGRU vs torch.nn.GRU, MinLSTM vs torch.nn.LSTM ...")
    speed = measure_minimal(**size)
    return {
        **speed._asdict(),
        "mingru_over_gru": speed.mingru_over_gru,
        "minlstm_over_lstm": speed.minlstm_over_lstm,
        "minimal_seq_len": (SHAPE | size)["seq_len"],
    }


def _cells(say, figures: dict, quick: bool, **size) -> dict:
    from rnnkit.benchmark.layers import measure_cells

    say("forward + backward: rnnkit.LSTM cells path vs fused path vs torch.nn.LSTM ...")
    speed = measure_cells(**size)
    return {"cells_s": speed.cells_s, "fused_s": speed.fused_s, "torch_lstm_s": speed.torch_s,
            "cells_over_fused": speed.cells_over_fused,
            "fused_over_torch": speed.fused_over_torch}  # fmt: skip


#: each section's measurement, in the order they run (machine first: training divides by it)
MEASURES = (("machine", _machine), ("training", _training), ("bf16", _bf16), ("rss", _rss),
            ("generation", _generation), ("minimal", _minimal), ("cells", _cells))  # fmt: skip


ROWS = (
    ("fp32 GEMM", "gemm_fp32_gflops", "{:.1f} GFLOP/s", None),
    ("fp32 GEMM: MKL (torch.mm)", "gemm_fp32_mkl_gflops", "{:.1f} GFLOP/s", None),
    ("fp32 GEMM: oneDNN", "gemm_fp32_onednn_gflops", "{:.1f} GFLOP/s", None),
    ("bf16 GEMM", "gemm_bf16_gflops", "{:.2f} GFLOP/s", None),
    ("bf16 GEMM: MKL (torch.mm)", "gemm_bf16_mkl_gflops", "{:.2f} GFLOP/s", None),
    ("bf16 GEMM: oneDNN", "gemm_bf16_onednn_gflops", "{:.2f} GFLOP/s", None),
    ("memory copy", "copy_gbps", "{:.1f} GB/s", None),
    ("train: rnnkit", "train_chars_per_s", "{:,.0f} chars/s", None),
    ("train: hand-written torch.nn", "torch_train_chars_per_s", "{:,.0f} chars/s", None),
    ("train: rnnkit / torch.nn", "train_ratio_vs_torch", "{:.3f}x", ">= 1.0x"),
    ("train: fraction of fp32 GEMM", "train_gemm_fraction", "{:.0%}", ">= 50%"),
    ("bf16 step speed-up over fp32", "bf16_speedup", "{:.3f}x", ">= 1.4x"),
    ("val loss, fp32 (equal steps)", "fp32_val", "{:.4f}", None),
    ("val loss, bf16 (equal steps)", "bf16_val", "{:.4f}", None),
    ("bf16 - fp32 val loss", "bf16_val_delta", "{:+.4f}", "|x| <= 0.02"),
    ("generate: rnnkit, 1 stream", "gen_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: nn.LSTM loop", "gen_loop_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: nn.LSTMCell loop", "gen_loop_cell_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: rnnkit / nn.LSTM loop", "gen_ratio_vs_loop", "{:.2f}x", ">= 2x"),
    ("generate: rnnkit / LSTMCell loop", "gen_ratio_vs_loop_cell", "{:.2f}x", None),
    ("generate: rnnkit, 64 streams", "gen_batch64_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: 64 streams / 1 stream", "gen_batch64_over_single", "{:.1f}x", ">= 20x"),
    ("generate: 64 streams, GFLOP/s", "gen_batch64_gflops", "{:.1f} GFLOP/s", None),
    ("generate: weights read per step", "gen_weight_mb_per_step", "{:.1f} MB", None),
    ("copy 256 MB (DRAM)", "gen_copy_gbps", "{:.1f} GB/s", None),
    ("copy weights-sized (cache)", "gen_cache_copy_gbps", "{:.1f} GB/s", None),
    ("generate: DRAM bound", "gen_bound_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: fraction of DRAM bound", "gen_bandwidth_fraction", "{:.0%}", ">= 60%"),
    ("generate: cache bound", "gen_cache_bound_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: fraction of cache bound", "gen_cache_bandwidth_fraction", "{:.0%}", None),
    ("MinGRU fwd+bwd", "mingru_s", "{:.3f} s", None),
    ("torch.nn.GRU fwd+bwd", "gru_s", "{:.3f} s", None),
    ("MinGRU speed-up over nn.GRU", "mingru_over_gru", "{:.2f}x", ">= 3x"),
    ("MinLSTM fwd+bwd", "minlstm_s", "{:.3f} s", None),
    ("torch.nn.LSTM fwd+bwd", "lstm_s", "{:.3f} s", None),
    ("MinLSTM speed-up over nn.LSTM", "minlstm_over_lstm", "{:.2f}x", None),
    ("LSTM 512 fwd+bwd: cells path", "cells_s", "{:.3f} s", None),
    ("LSTM 512 fwd+bwd: fused path", "fused_s", "{:.3f} s", None),
    ("LSTM 512 fwd+bwd: torch.nn.LSTM", "torch_lstm_s", "{:.3f} s", None),
    ("LSTM 512: cells / fused time", "cells_over_fused", "{:.2f}x", "<= 1.5x"),
    ("LSTM 512: fused / torch.nn time", "fused_over_torch", "{:.2f}x", None),
    ("peak RSS, 2 MB corpus", "peak_rss_mb_2mb", "{:.0f} MiB", None),
    ("peak RSS, 20 MB corpus", "peak_rss_mb_20mb", "{:.0f} MiB", None),
    ("peak RSS, 200 MB corpus", "peak_rss_mb_200mb", "{:.0f} MiB", "<= 1024 MiB"),
)


def table(figures: dict) -> str:
    support = "native bf16" if figures.get("cpu_bf16") else "no native bf16"
    lines = [
        f"rnnkit bench: {figures['cpu']} ({figures.get('cpu_capability')}, {support}), "
        f"{plural(figures['threads'], 'thread')}, torch {figures['torch']}"
    ]
    lines.append(f"{'figure':34s} {'measured':>18s}  target")
    for label, key, fmt, target in ROWS:
        if figures.get(key) is not None:
            value = fmt.format(figures[key])
            if key == "bf16_speedup" and not figures.get("cpu_bf16"):
                target = f"{target} (bf16 emulated: no native bf16 on this CPU)"
            lines.append(f"{label:34s} {value:>18s}  {target or ''}")
        elif key in UNSUPPORTED and UNSUPPORTED[key](figures):
            lines.append(f"{label:34s} {'not supported':>18s}  on this CPU")
    for name, reason in figures.get("failed", {}).items():
        lines.append(f"section {name} FAILED: {reason}")
    return "\n".join(lines)


#: figures that are null because the CPU cannot run them (not because a section was skipped)
UNSUPPORTED = {
    "gemm_bf16_onednn_gflops": lambda f: (
        f.get("gemm_bf16_gflops") is not None and not f.get("cpu_bf16")
    ),
}
