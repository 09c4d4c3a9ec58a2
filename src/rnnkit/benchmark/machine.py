"""This machine's reference speeds, the yardsticks the other figures are divided by.

* ``gemm_gflops(dtype)``: a large square matrix product (``n`` x ``n`` @ ``n`` x ``n``, 2 n^3
  floating-point operations) in float32 or bfloat16 -- what the CPU's vector units sustain
  through PyTorch's faster GEMM library, MKL or oneDNN (on a CPU without native bf16
  instructions bf16 is emulated and slow, and oneDNN refuses bf16 altogether);
* ``copy_gbps()``: ``dst.copy_(src)`` of a tensor far larger than the caches, bytes read +
  written per second -- the memory bandwidth a weight-bound workload (one-token generation)
  cannot beat;
* ``cpu_support()``: what this CPU offers the kernels above (PyTorch's vector capability,
  AVX-512, oneDNN's native bf16), so a section measures only what can run here and says
  "not supported on this CPU" for the rest;
* ``device_gemm_gflops(device, dtype)``: the same product on an accelerator (cuBLAS on CUDA),
  timed with the device synchronised -- the yardstick of ``rnnkit bench --device cuda``, where
  ``copy_gbps(device=...)`` is the accelerator's memory bandwidth.
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
    if onednn_supports(dtype):
        a_dnn, b_dnn = a.to_mkldnn(), b.t().contiguous().to_mkldnn()  # linear: a @ (b^T)^T
        contenders["onednn"] = lambda: F.linear(a_dnn, b_dnn)
    seconds = interleaved(contenders, rounds=rounds)
    return {name: 2 * n**3 / s / 1e9 for name, s in seconds.items()}


def onednn_supports(dtype: torch.dtype) -> bool:
    """Whether oneDNN runs ``dtype`` products on this CPU. bf16 needs AVX512-BW/VL/DQ or
    AVX-NE-CONVERT: elsewhere (an AVX2-only CPU) ``F.linear`` on mkldnn bf16 tensors raises."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return _bf16_native()
    return dtype == torch.float32


def _bf16_native() -> bool:
    try:  # PyTorch's own probe of the CPU (private, hence the fallback)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_support() -> dict:
    """``capability`` (PyTorch's vector level: "AVX2", "AVX512", ...), ``avx512`` and
    ``bf16`` (oneDNN's native bfloat16 products) for this CPU."""
    capability = torch.backends.cpu.get_cpu_capability()
    return {
        "capability": capability,
        "avx512": capability.startswith("AVX512"),
        "bf16": onednn_supports(torch.bfloat16),
    }


def copy_gbps(megabytes: int = 256, rounds: int = 5, device: torch.device | None = None) -> float:
    """GB/s moved (read + written) by copying a ``megabytes`` float32 tensor (on ``device``:
    the CPU when None)."""
    src = torch.ones(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    copy = {"copy": lambda: dst.copy_(src)}
    seconds = interleaved(copy, rounds=rounds, device=device)["copy"]
    return 2 * src.numel() * 4 / seconds / 1e9


def device_gemm_gflops(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 8192, rounds: int = 5
) -> float:
    """GFLOP/s of an ``n`` x ``n`` matrix product in ``dtype`` on ``device`` (median of
    ``rounds``, synchronised around each call). float32 is what torch does by default: on CUDA
    full fp32, not TF32, unless ``torch.set_float32_matmul_precision`` says otherwise."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, dtype=dtype, device=device)
    mm = {"mm": lambda: torch.mm(a, b, out=out)}
    seconds = interleaved(mm, rounds=rounds, device=device)["mm"]
    return 2 * n**3 / seconds / 1e9


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
