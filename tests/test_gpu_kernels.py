"""On CUDA (``gpu`` marker; skipped with the reason elsewhere): the fused path really runs cuDNN,
the compiled cells path computes what it computes, MinGRU's scan runs without a host sync, and
autocast gives the fused kernels the dtypes :mod:`rnnkit.nn.fused` promises.

Comparisons run with TF32 off (cuDNN and cuBLAS), so float32 means float32 on both sides. The
kernel names each profile saw are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from rnnkit.nn import fused
from rnnkit.nn.layers import GRU, LSTM
from rnnkit.nn.minimal import MinGRU, MinLSTM
from rnnkit.nn.unroll import compile_steps, compile_unavailable

pytestmark = pytest.mark.gpu
IN, H, N, L = 16, 32, 8, 20


@pytest.fixture
def cuda():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _kernels(run) -> list[str]:
    """The names of the CUDA kernels ``run()`` launched."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    return sorted({e.key for e in prof.key_averages() if e.device_type.name == "CUDA"})


def _forward_backward(layer, x):
    out, _ = layer(x)
    out.float().sum().backward()
    return out


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_fused_path_runs_cudnn_kernels(cls, cuda):
    layer = cls(IN, H, num_layers=2).to(cuda)
    x = torch.randn(L, N, IN, device=cuda)
    _forward_backward(layer, x)  # warm up: cuDNN picks its algorithms
    names = _kernels(lambda: _forward_backward(layer, x))
    print(f"{cls.__name__} fused forward+backward kernels:", *names, sep="\n  ")
    assert any("cudnn" in n.lower() or "RNN" in n for n in names), names


@pytest.mark.skipif(compile_unavailable() is not None, reason=str(compile_unavailable()))
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_compiled_cells_equal_fused_on_cuda(cls, cuda):
    torch.manual_seed(0)
    fast = cls(IN, H, num_layers=2).to(cuda)
    cells = cls(IN, H, num_layers=2, impl="cells").to(cuda)
    cells.load_state_dict(fast.state_dict())
    assert compile_steps(cells) == 1 and compile_steps(fast) == 0
    x = torch.randn(L, N, IN, device=cuda)
    for layer in (fast, cells):
        layer.zero_grad()
    expected, got = _forward_backward(fast, x), _forward_backward(cells, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    for a, b in zip(fast.parameters(), cells.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-4)
    names = _kernels(lambda: _forward_backward(cells, x))
    print(f"{cls.__name__} compiled cells kernels:", *names, sep="\n  ")
    assert any("triton" in n for n in names), names  # inductor's fused step kernels ran


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_minimal_scan_on_cuda_syncs_nothing_and_matches_the_cpu(cls, cuda):
    torch.manual_seed(0)
    layer = cls(IN, H, num_layers=2, bidirectional=True)
    x = torch.randn(L, N, IN)
    lengths = torch.randint(1, L + 1, (N,))
    expected, h_expected = layer(x, lengths=lengths)
    on_gpu, x_gpu = layer.to(cuda), x.to(cuda)
    assert on_gpu._path(x_gpu) == "scan"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside raises
    try:
        out, h_n = on_gpu(x_gpu, lengths=lengths)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h_n.cpu(), h_expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_autocast_gives_the_fused_kernel_its_dtype(cls, dtype, cuda):
    torch.manual_seed(0)
    layer = cls(IN, H, num_layers=2).to(cuda)
    x = torch.randn(L, N, IN, device=cuda)
    expected, _ = layer(x)
    with torch.autocast("cuda", dtype=dtype):
        out, state = layer(x)
        names = _kernels(lambda: layer(x))
    states = state if isinstance(state, tuple) else (state,)
    assert out.dtype == dtype and all(s.dtype == dtype for s in states)
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=5e-2)
    ran = fused._BF16_KERNELS.get(f"cuda-{layer.cell}-{dtype}", "torch's fp16 rule")
    print(f"{cls.__name__} under {dtype} autocast (kernel in that dtype: {ran}):",
          *names, sep="\n  ")  # fmt: skip
    assert any("cudnn" in n.lower() or "RNN" in n for n in names), names
