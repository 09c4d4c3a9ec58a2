"""The figures of ``rnnkit bench``: every figure of the performance issues, measured by section
(:func:`measure`) on one device, and the table they print as (:func:`table`).

    rnnkit bench                 # everything (~10 minutes on 2 cores)
    rnnkit bench --quick         # fewer repeats, a 20 MB corpus, shorter sequences
    rnnkit bench --only machine training rss --json
    rnnkit bench --only generation minimal cells --threads 1
    rnnkit bench --device cuda   # every section on the GPU (larger shapes: ``ACCELERATOR``)

Each section (``rnnkit.benchmark.sections``) measures its contenders interleaved (see
``timing.py``), by the wall clock, the device synchronised around each timed call; a figure
whose section was skipped is ``null`` in the JSON. Sections: ``machine`` (GEMM GFLOP/s and copy
GB/s of the CPU, or of the accelerator), ``training`` (rnnkit vs hand-written torch.nn.LSTM
loop; fraction of the fp32 GEMM rate), ``precision`` (a training step with ``--precision bf16``
-- and ``fp16`` on an accelerator -- vs fp32; val loss at equal steps of a small model),
``rss`` (peak RSS training on a 200 MB corpus), ``generation`` (generate() vs hand-written
loops, 1 and 64 streams -- 1,024 on an accelerator; fraction of the memory-bandwidth bound),
``minimal`` (MinGRU vs torch.nn.GRU, MinLSTM vs torch.nn.LSTM, forward + backward at L 2048;
cuDNN's on CUDA), ``cells`` (rnnkit.LSTM's cells path, plain and compiled, vs its fused path),
``modern`` (mLSTM, sLSTM, Gated DeltaNet, Mamba-2, GLA and RWKV-7 against torch.nn.LSTM of the
same parameter count: training tokens/s at width 256, L 2,048, batch 8, and generation).
``SIZES`` holds the sections' arguments, full and ``--quick``; on an accelerator
``ACCELERATOR`` overrides some.
"""

from __future__ import annotations

import sys

import torch

from rnnkit.benchmark.machine import cpu_model
from rnnkit.benchmark.modern import rows as modern_rows
from rnnkit.benchmark.sections import MEASURES
from rnnkit.benchmark.shapes import CANONICAL, GPU_SHAPE, SMALL
from rnnkit.devices import describe_device
from rnnkit.wording import plural

SECTIONS = ("machine", "training", "precision", "rss", "generation", "minimal", "cells", "modern")
#: keyword arguments of each section's measurement, full and --quick
SIZES = {
    "training": {"full": {"rounds": 9, "steps_per_round": 2},
                 "quick": {"rounds": 3, "steps_per_round": 1}},
    "precision": {"full": {"rounds": 1, "steps": 100},
                  "quick": {"rounds": 1, "steps": 20, "shape": SMALL}},
    "generation": {"full": {"rounds": 9, "length": 200, "batch_length": 50},
                   "quick": {"rounds": 3, "length": 50, "batch_length": 10}},
    "minimal": {"full": {"rounds": 5, "seq_len": 2048}, "quick": {"rounds": 2, "seq_len": 512}},
    "cells": {"full": {"rounds": 9}, "quick": {"rounds": 3}},
    "modern": {"full": {"rounds": 3, "seq_len": 2048},
               "quick": {"rounds": 1, "seq_len": 256, "gen_steps": 50}},
}  # fmt: skip
#: on an accelerator, what changes: the gpu preset's model for training and precision (the
#: canonical one measures only launch overhead there), fp16 beside bf16, the canonical model
#: 300 steps for the val loss, 1,024 generation streams, more rounds where a round is short
ACCELERATOR = {
    "training": {"full": {"shape": GPU_SHAPE}},
    "precision": {"full": {"rounds": 5, "shape": GPU_SHAPE, "steps": 300,
                           "val_shape": CANONICAL, "precisions": ("bf16", "fp16")},
                  "quick": {"precisions": ("bf16", "fp16")}},
    "generation": {"full": {"batch": 1024}, "quick": {"batch": 1024}},
    "cells": {"full": {"rounds": 20}},
}  # fmt: skip
KEYS = (
    "train_ratio_vs_torch",
    "train_gemm_fraction",
    "bf16_speedup",
    "bf16_val_delta",
    "fp16_speedup",
    "cells_over_fused",
    "compiled_over_fused",
    "gen_ratio_vs_loop",
    "gen_bandwidth_fraction",
    "gen_batch64_over_single",
    "mingru_over_gru",
    "peak_rss_mb_200mb",
)


def section_sizes(name: str, quick: bool, device: torch.device) -> dict:
    """The keyword arguments of section ``name``: ``SIZES``, then ``ACCELERATOR`` off the CPU."""
    mode = "quick" if quick else "full"
    size = dict(SIZES.get(name, {}).get(mode, {}))
    if device.type != "cpu":
        size |= ACCELERATOR.get(name, {}).get(mode, {})
    return size


def measure(sections, quick: bool = False, say=print, device=None, sizes=None) -> dict:
    """The figures of ``sections`` (``machine`` too when ``training`` is measured) on ``device``
    (the CPU when None): one dict, ``None`` for a figure whose section was skipped. A section
    that fails is named on stderr and under ``failed``; the others' figures are still measured.
    ``say``: progress lines; ``sizes``: {section: keyword arguments} instead of the defaults."""
    from rnnkit.benchmark.machine import cpu_support

    device = torch.device(device or "cpu")
    figures: dict[str, object] = dict.fromkeys(KEYS)
    figures |= {"threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__}
    figures |= {f"cpu_{key}": value for key, value in cpu_support().items()}
    figures["device"] = describe_device(device)
    failed = {}
    for name, measure_section in MEASURES:
        wanted = name in sections or (name == "machine" and "training" in sections)
        if not wanted:
            continue
        size = sizes[name] if sizes and name in sizes else section_sizes(name, quick, device)
        try:
            figures |= measure_section(say, figures, quick, device, **size)
        except Exception as error:  # one section's failure never loses the others' figures
            failed[name] = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            print(f"rnnkit bench: section {name} failed: {failed[name]}", file=sys.stderr)
    if failed:
        figures["failed"] = failed
    return figures


ROWS = (
    ("fp32 GEMM", "gemm_fp32_gflops", "{:.1f} GFLOP/s", None),
    ("fp32 GEMM: MKL (torch.mm)", "gemm_fp32_mkl_gflops", "{:.1f} GFLOP/s", None),
    ("fp32 GEMM: oneDNN", "gemm_fp32_onednn_gflops", "{:.1f} GFLOP/s", None),
    ("bf16 GEMM", "gemm_bf16_gflops", "{:.2f} GFLOP/s", None),
    ("bf16 GEMM: MKL (torch.mm)", "gemm_bf16_mkl_gflops", "{:.2f} GFLOP/s", None),
    ("bf16 GEMM: oneDNN", "gemm_bf16_onednn_gflops", "{:.2f} GFLOP/s", None),
    ("fp16 GEMM", "gemm_fp16_gflops", "{:.1f} GFLOP/s", None),
    ("memory copy", "copy_gbps", "{:.1f} GB/s", None),
    ("train: rnnkit", "train_chars_per_s", "{:,.0f} chars/s", None),
    ("train: hand-written torch.nn", "torch_train_chars_per_s", "{:,.0f} chars/s", None),
    ("train: rnnkit / torch.nn", "train_ratio_vs_torch", "{:.3f}x", ">= 1.0x"),
    ("train: fraction of fp32 GEMM", "train_gemm_fraction", "{:.0%}", ">= 50%"),
    ("bf16 step speed-up over fp32", "bf16_speedup", "{:.3f}x", ">= 1.4x"),
    ("fp16 step speed-up over fp32", "fp16_speedup", "{:.3f}x", None),
    ("val loss, fp32 (equal steps)", "fp32_val", "{:.4f}", None),
    ("val loss, bf16 (equal steps)", "bf16_val", "{:.4f}", None),
    ("val loss, fp16 (equal steps)", "fp16_val", "{:.4f}", None),
    ("bf16 - fp32 val loss", "bf16_val_delta", "{:+.4f}", "|x| <= 0.02"),
    ("fp16 - fp32 val loss", "fp16_val_delta", "{:+.4f}", None),
    ("generate: rnnkit, 1 stream", "gen_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: nn.LSTM loop", "gen_loop_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: nn.LSTMCell loop", "gen_loop_cell_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: rnnkit / nn.LSTM loop", "gen_ratio_vs_loop", "{:.2f}x", ">= 2x"),
    ("generate: rnnkit / LSTMCell loop", "gen_ratio_vs_loop_cell", "{:.2f}x", None),
    ("generate: rnnkit, {n} streams", "gen_batch{n}_chars_per_s", "{:,.0f} chars/s", None),
    ("generate: {n} streams / 1 stream", "gen_batch{n}_over_single", "{:.1f}x", "streams"),
    ("generate: {n} streams, GFLOP/s", "gen_batch{n}_gflops", "{:.1f} GFLOP/s", None),
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
    ("LSTM 512 fwd+bwd: cells compiled", "compiled_s", "{:.3f} s", None),
    ("LSTM 512: cells / fused time", "cells_over_fused", "{:.2f}x", "<= 1.5x"),
    ("LSTM 512: compiled / fused time", "compiled_over_fused", "{:.2f}x", "<= 2x"),
    ("LSTM 512: fused / torch.nn time", "fused_over_torch", "{:.2f}x", None),
    ("peak RSS, 2 MB corpus", "peak_rss_mb_2mb", "{:.0f} MiB", None),
    ("peak RSS, 20 MB corpus", "peak_rss_mb_20mb", "{:.0f} MiB", None),
    ("peak RSS, 200 MB corpus", "peak_rss_mb_200mb", "{:.0f} MiB", "<= 1024 MiB"),
    *modern_rows(),
)


#: the target of N streams / 1 stream, by N (the CPU's issue: 64; the GPU's: 1,024)
STREAM_TARGETS = {64: ">= 20x", 1024: ">= 200x"}


def header(figures: dict) -> str:
    """The table's first line: the device measured (and the CPU's threads), torch's version."""
    device = figures.get("device", "cpu")
    threads = plural(figures["threads"], "thread")
    if device != "cpu":
        return f"rnnkit bench: {device}, torch {figures['torch']} (host: {figures['cpu']})"
    support = "native bf16" if figures.get("cpu_bf16") else "no native bf16"
    return (
        f"rnnkit bench: {figures['cpu']} ({figures.get('cpu_capability')}, {support}), "
        f"{threads}, torch {figures['torch']}"
    )


def table(figures: dict) -> str:
    """The figures as a table: one row per figure measured, its target where it has one; a
    figure that cannot run here says why; a failed section says so."""
    on_cpu = figures.get("device", "cpu") == "cpu"
    streams = figures.get("gen_streams") or 64
    lines = [header(figures), f"{'figure':34s} {'measured':>18s}  target"]
    for label, key, fmt, target in ROWS:
        label, key = label.format(n=streams), key.format(n=streams)
        if target == "streams":
            target = STREAM_TARGETS.get(streams)
        if figures.get(key) is not None:
            value = fmt.format(figures[key])
            if key == "bf16_speedup" and on_cpu and not figures.get("cpu_bf16"):
                target = f"{target} (bf16 emulated: no native bf16 on this CPU)"
            lines.append(f"{label:34s} {value:>18s}  {target or ''}")
        elif key in NOT_MEASURED and (why := NOT_MEASURED[key](figures)):
            lines.append(f"{label:34s} {why[0]:>18s}  {why[1]}")
    for name, reason in figures.get("precision_refused", {}).items():
        lines.append(f"--precision {name} not measured: {reason}")
    for name, reason in figures.get("failed", {}).items():
        lines.append(f"section {name} FAILED: {reason}")
    return "\n".join(lines)


def _no_onednn_bf16(f: dict) -> tuple[str, str] | None:
    cpu = f.get("device", "cpu") == "cpu"
    if cpu and f.get("gemm_bf16_gflops") is not None and not f.get("cpu_bf16"):
        return "not supported", "on this CPU"
    return None


def _not_compiled(f: dict) -> tuple[str, str] | None:
    return ("not measured", f["compiled_error"]) if f.get("compiled_error") else None


#: figures that are null because they cannot run here (not because a section was skipped):
#: key -> the (value, note) the table shows instead, or None
NOT_MEASURED = {
    "gemm_bf16_onednn_gflops": _no_onednn_bf16,
    "compiled_over_fused": _not_compiled,
}
