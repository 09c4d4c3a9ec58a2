"""The fused path's dtypes under autocast, the CPU side of CUDA's rules (:mod:`rnnkit.nn.fused`).

On CUDA every cell comes back in the autocast dtype; float16 goes through torch's own cuDNN rule
(which casts to float16), any other dtype through :func:`rnnkit.nn.fused._run_autocast`, in
bfloat16 where cuDNN has it (9.13+), else in float32 -- never a silent float16. Here, without a
GPU, CUDA's autocast state is faked and the decisions checked; the casts run on the CPU with
CUDA's flat-buffer layout. What only a GPU shows (the kernels, the numbers) is
tests/test_gpu_kernels.py's.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rnnkit.nn import fused
from rnnkit.nn.layers import GRU, LSTM


def _fake_autocast(monkeypatch, kind: str, dtype: torch.dtype) -> None:
    """Autocast on for ``kind`` devices with ``dtype``, off elsewhere (as torch reports it)."""
    real_enabled, real_dtype = torch.is_autocast_enabled, torch.get_autocast_dtype
    monkeypatch.setattr(
        torch, "is_autocast_enabled", lambda t=None: t == kind or real_enabled(*(t,) if t else ())
    )
    monkeypatch.setattr(
        torch, "get_autocast_dtype", lambda t: dtype if t == kind else real_dtype(t)
    )


def _on(kind: str, dtype=torch.float32):
    """A stand-in for an input tensor on a ``kind`` device (only its device and dtype are read)."""
    return SimpleNamespace(device=torch.device(kind), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_gives_its_dtype_for_every_cell(monkeypatch, dtype):
    _fake_autocast(monkeypatch, "cuda", dtype)
    for cell in ("rnn", "lstm", "gru"):
        assert fused.autocast_dtype(cell, _on("cuda")) == dtype
        assert fused.autocast_dtype(cell, _on("cpu")) is None  # CPU autocast is off
        # float16: torch's cuDNN rule is right; anything else: run by rnnkit, never float16
        assert fused._runs_itself(cell, _on("cuda"), dtype) == (dtype != torch.float16)


def test_cpu_autocast_keeps_torch_nn_s_dtypes(monkeypatch):
    _fake_autocast(monkeypatch, "cpu", torch.bfloat16)
    x = _on("cpu")
    assert fused.autocast_dtype("lstm", x) == torch.bfloat16
    assert fused.autocast_dtype("rnn", x) == torch.bfloat16
    assert fused.autocast_dtype("gru", x) == torch.float32  # torch's GRU keeps the input's
    assert fused._runs_itself("lstm", x, torch.bfloat16)
    assert not fused._runs_itself("gru", x, torch.bfloat16)
    assert fused.autocast_dtype("lstm", _on("cuda")) is None  # CUDA autocast is off


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_cuda_layout_cast_is_the_plain_cast_and_passes_gradients(cls):
    torch.manual_seed(0)
    layer = cls(5, 7, num_layers=2, bidirectional=True)
    weights = layer._flat_weights
    flat = fused.cast_weights(weights, torch.bfloat16, "cuda")
    plain = fused.cast_weights(weights, torch.bfloat16, "cpu")
    assert [w.shape for w in flat] == [w.shape for w in weights]
    for a, b in zip(flat, plain, strict=True):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert len({w.untyped_storage().data_ptr() for w in flat}) == 1  # one buffer, as cuDNN's
    sum((w.float() * (i + 1)).sum() for i, w in enumerate(flat)).backward()
    for i, w in enumerate(weights):  # each master weight gets its own part's gradient
        torch.testing.assert_close(w.grad, torch.full_like(w, i + 1.0))


def test_kernel_without_the_dtype_falls_back_to_float32_once(monkeypatch):
    """Where the kernel refuses the autocast dtype (a CPU's oneDNN without bf16 LSTM, a cuDNN
    before 9.13), the float32 kernel runs, autocast off, and the result comes back cast."""
    torch.manual_seed(0)
    layer = LSTM(5, 7)
    x = torch.randn(4, 3, 5)
    hx = (torch.zeros(1, 3, 7), torch.zeros(1, 3, 7))
    calls = []
    real = fused._call

    def refuse_bf16(layer, x, batch_sizes, hx, weights=None):
        calls.append(x.dtype)
        if x.dtype == torch.bfloat16:
            raise RuntimeError("no bf16 kernel here")
        return real(layer, x, batch_sizes, hx, weights)

    monkeypatch.setattr(fused, "_call", refuse_bf16)
    monkeypatch.setitem(fused._BF16_KERNELS, "lstm-torch.bfloat16", True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = fused.run_fused(layer, x, None, hx)
        again, _ = fused.run_fused(layer, x, None, hx)
    assert calls == [torch.bfloat16, torch.float32, torch.float32]  # tried once, remembered
    assert out.dtype == torch.bfloat16 and all(s.dtype == torch.bfloat16 for s in state)
    expected, _ = real(layer, x, None, hx)
    torch.testing.assert_close(out, expected.to(torch.bfloat16))
    torch.testing.assert_close(again, out)
