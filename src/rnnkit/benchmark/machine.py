"""This machine's reference speeds, the yardsticks the other figures are divided by.

* ``gemm_gflops(dtype)``: a large square matrix product (``n`` x ``n`` @ ``n`` x ``n``, 2 n^3
  floating-point operations) in float32 or bfloat16 -- what the CPU's vector units sustain
  through PyTorch's faster GEMM library, MKL or oneDNN (on a CPU without native bf16
  instructions bf16 is emulated and slow);
* ``copy_gbps()``: ``dst.copy_(src)`` of a tensor far larger than the caches, bytes read +
  written per second -- the memory bandwidth a weight-bound workload (one-token generation)
  cannot beat.
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F

from rnnkit.benchmark.timing import interleaved


def gemm_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, rounds: int = 5) -> float:
    """GFLOP/s of an ``n`` x ``n`` matrix product in ``dtype`` (median of ``rounds``), through
    the faster of PyTorch's two CPU GEMM libraries (see :func:`gemm_libraries`)."""
    return max(gemm_libraries(dtype, n, rounds).values())


def gemm_libraries(dtype: torch.dtype = torch.float32, n: int = 2048, rounds: int = 5) -> dict:
    """GFLOP/s of an ``n`` x ``n`` matrix product in ``dtype`` through MKL (``torch.mm``, what
    ``F.linear`` and the cells path call) and oneDNN (``F.linear`` on mkldnn tensors, the
    library of the fused LSTM kernel), measured interleaved. MKL keeps AMD CPUs on a narrower
    code path: on a Zen 5 EPYC oneDNN runs twice as fast, and the fused LSTM beats MKL's GEMM."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    contenders = {"mkl": lambda: torch.mm(a, b, out=out)}
    if torch.backends.mkldnn.is_available():
        a_dnn, b_dnn = a.to_mkldnn(), b.t().contiguous().to_mkldnn()  # linear: a @ (b^T)^T
        contenders["onednn"] = lambda: F.linear(a_dnn, b_dnn)
    seconds = interleaved(contenders, rounds=rounds)
    return {name: 2 * n**3 / s / 1e9 for name, s in seconds.items()}


def copy_gbps(megabytes: int = 256, rounds: int = 5) -> float:
    """GB/s moved (read + written) by copying a ``megabytes`` float32 tensor."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    seconds = interleaved({"copy": lambda: dst.copy_(src)}, rounds=rounds)["copy"]
    return 2 * src.numel() * 4 / seconds / 1e9


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
