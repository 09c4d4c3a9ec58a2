"""The sections of ``rnnkit bench``: each measures one group of figures on one device and returns
them as a dict (``rnnkit.benchmark.suite`` runs them in order, with their sizes, and prints the
table).

Every section is called as ``section(say, figures, quick, device, **size)``: ``say`` prints a
progress line, ``figures`` holds what the earlier sections measured (training divides by the
machine's GEMM rate), ``device`` is the resolved ``torch.device`` every contender runs on, and
``size`` the keyword arguments of the measurement (``suite.SIZES``: full, ``--quick``, and
larger shapes on an accelerator).
"""

from __future__ import annotations

import torch


def _machine(
    say, figures: dict, quick: bool, device: torch.device, n: int = 0, megabytes: int = 256
) -> dict:
    """The yardsticks: GEMM GFLOP/s (``n`` x ``n`` products; 0: the default size) and memory
    copy GB/s (of ``megabytes``) -- the CPU's (MKL and oneDNN, fp32 and bf16) on the CPU, the
    accelerator's (fp32, bf16, fp16) on an accelerator."""
    from rnnkit.benchmark.machine import copy_gbps, device_gemm_gflops, gemm_libraries

    rounds = 3 if quick else 9
    if device.type != "cpu":
        say(f"measuring {device.type}: fp32, bf16 and fp16 GEMM, memory copy ...")
        n = n or (2048 if quick else 8192)
        rates = {
            f"gemm_{name}_gflops": device_gemm_gflops(device, dtype, n=n, rounds=rounds)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16),
                                ("fp16", torch.float16))
        }  # fmt: skip
        return {**rates, "copy_gbps": copy_gbps(megabytes, rounds=rounds, device=device)}
    say("measuring the machine: fp32 and bf16 GEMM, memory copy ...")
    fp32 = gemm_libraries(torch.float32, n=n or 2048, rounds=rounds)
    bf16 = gemm_libraries(torch.bfloat16, n=min(n or 512, 512), rounds=2)  # oneDNN: native bf16
    return {
        "gemm_fp32_gflops": max(fp32.values()),
        "gemm_fp32_mkl_gflops": fp32["mkl"],
        "gemm_fp32_onednn_gflops": fp32.get("onednn"),
        "gemm_bf16_gflops": max(bf16.values()),
        "gemm_bf16_mkl_gflops": bf16["mkl"],
        "gemm_bf16_onednn_gflops": bf16.get("onednn"),
        "copy_gbps": copy_gbps(megabytes, rounds=rounds),
    }


def _training(say, figures: dict, quick: bool, device: torch.device, **size) -> dict:
    from rnnkit.benchmark.shapes import CANONICAL
    from rnnkit.benchmark.training import measure_training

    if figures.get("gemm_fp32_gflops") is None:
        raise RuntimeError("needs the fp32 GEMM rate, and the machine section failed")
    shape = size.get("shape") or CANONICAL
    say(f"training an LSTM {shape['layers']}x{shape['hidden']}: rnnkit vs a hand-written "
        "torch.nn.LSTM loop ...")  # fmt: skip
    speed = measure_training(**size, device=device)
    return {
        "train_chars_per_s": speed.rnnkit_chars_per_s,
        "torch_train_chars_per_s": speed.torch_chars_per_s,
        "train_ratio_vs_torch": speed.ratio,
        "train_gemm_fraction": speed.gemm_fraction(figures["gemm_fp32_gflops"]),
        "train_shape": f"{shape['layers']}x{shape['hidden']} LSTM, "
        f"batch {shape['batch']}x{shape['seq_len']}",
    }


def _precision(
    say, figures: dict, quick: bool, device: torch.device, *, rounds: int = 1,
    shape=None, steps: int = 100, val_shape=None, precisions=("bf16",),
) -> dict:  # fmt: skip
    """``--precision`` bf16 (and, where asked, fp16) against fp32: step speed-up, val loss at
    equal steps. bf16 runs on any CPU (emulated without native bf16: slow, but what a user of
    the flag gets), so it is measured everywhere; the table says when it is emulated. fp16 is
    measured on an accelerator (``ACCELERATOR``): on a CPU it is emulated like bf16 without
    being what anyone would pick. A precision the trainer refuses is named under
    ``precision_refused``."""
    from rnnkit.benchmark.precision import precision_speedups, precision_val_losses

    say(f"{' and '.join(precisions)} vs fp32: a training step; val loss at equal steps ...")
    speed = precision_speedups(precisions, rounds=rounds, shape=shape, device=device)
    losses = precision_val_losses(("fp32", *precisions), steps, val_shape, device)
    if "fp32" not in losses:
        raise RuntimeError(f"fp32 training failed: {losses['refused'].get('fp32')}")
    result = {"fp32_val": losses["fp32"], "precision_val_steps": steps}
    for name in precisions:
        result[f"{name}_speedup"] = speed.get(name)
        result[f"{name}_val"] = losses.get(name)
        delta = losses[name] - losses["fp32"] if name in losses else None
        result[f"{name}_val_delta"] = delta
    refused = speed["refused"] | losses["refused"]
    if refused:
        result["precision_refused"] = refused
    return result


def _rss(say, figures: dict, quick: bool, device: torch.device, megabytes: int = 0) -> dict:
    from rnnkit.benchmark.rss import peak_rss_mb

    megabytes = megabytes or (20 if quick else 200)
    say(f"peak memory of rnnkit train on a {megabytes} MB corpus ...")
    return {
        "peak_rss_mb_2mb": peak_rss_mb(2, device=device),
        f"peak_rss_mb_{megabytes}mb": peak_rss_mb(megabytes, device=device),
    }


def _generation(say, figures: dict, quick: bool, device: torch.device, **size) -> dict:
    from rnnkit.benchmark.generation import measure_generation

    say("generating with the canonical model: rnnkit generate() vs hand-written loops ...")
    return measure_generation(**size, device=device).figures()


def _minimal(say, figures: dict, quick: bool, device: torch.device, **size) -> dict:
    from rnnkit.benchmark.minimal import SHAPE, measure_minimal

    say("forward + backward: MinGRU vs torch.nn.GRU, MinLSTM vs torch.nn.LSTM ...")
    speed = measure_minimal(**size, device=device)
    return {
        **speed._asdict(),
        "mingru_over_gru": speed.mingru_over_gru,
        "minlstm_over_lstm": speed.minlstm_over_lstm,
        "minimal_seq_len": (SHAPE | size)["seq_len"],
        "minimal_cudnn": device.type == "cuda" and torch.backends.cudnn.is_available()
        and torch.backends.cudnn.enabled,
    }  # fmt: skip


def _cells(say, figures: dict, quick: bool, device: torch.device, **size) -> dict:
    from rnnkit.benchmark.layers import measure_cells

    say("forward + backward: rnnkit.LSTM cells path (plain, compiled) vs fused vs torch.nn ...")
    speed = measure_cells(**size, device=device)
    return {"cells_s": speed.cells_s, "fused_s": speed.fused_s, "torch_lstm_s": speed.torch_s,
            "compiled_s": speed.compiled_s, "compiled_error": speed.compiled_error,
            "cells_over_fused": speed.cells_over_fused,
            "compiled_over_fused": speed.compiled_over_fused,
            "fused_over_torch": speed.fused_over_torch}  # fmt: skip


def _modern(say, figures: dict, quick: bool, device: torch.device, **size) -> dict:
    from rnnkit.benchmark.modern import measure_modern

    say("forward + backward and generation: mLSTM, sLSTM, Gated DeltaNet, Mamba-2, GLA, RWKV-7 "
        "vs torch.nn.LSTM of equal size ...")  # fmt: skip
    return measure_modern(**size, device=device)


#: each section's measurement, in the order they run (machine first: training divides by it)
MEASURES = (("machine", _machine), ("training", _training), ("precision", _precision),
            ("rss", _rss), ("generation", _generation), ("minimal", _minimal),
            ("cells", _cells), ("modern", _modern))  # fmt: skip
