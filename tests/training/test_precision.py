"""``--precision bf16``: CPU autocast with fp32 master weights. The fused recurrent kernels have
no autocast rule; rnnkit runs them wholly in bf16 where oneDNN can, else in fp32."""

from __future__ import annotations

import pytest
import torch
from test_loop import config_for, make_corpus

import rnnkit
from rnnkit.nn import fused
from rnnkit.trainer.loop import Trainer, train


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_fused_layers_under_autocast(cls):
    torch.manual_seed(0)
    layer = cls(6, 10, 2, batch_first=True)
    x = torch.randn(3, 7, 6)
    reference, _ = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x)
    torch.testing.assert_close(out.float(), reference, atol=3e-2, rtol=3e-2)
    out.float().sum().backward()
    assert layer.weight_hh_l1.grad is not None and layer.weight_hh_l1.grad.dtype == torch.float32


def test_fallback_to_fp32_where_the_bf16_kernel_is_missing(monkeypatch):
    torch.manual_seed(0)
    layer = rnnkit.LSTM(6, 10, batch_first=True)
    x = torch.randn(3, 7, 6)
    reference, (h, c) = layer(x)
    monkeypatch.setitem(fused._BF16_KERNELS, "lstm-torch.bfloat16", False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h2, c2) = layer(x)
    assert out.dtype == h2.dtype == c2.dtype == torch.bfloat16  # torch.nn.LSTM's dtypes
    bf16 = {"atol": 1e-2, "rtol": 1e-2}  # the fp32 kernel, rounded once to bfloat16
    torch.testing.assert_close(out.float(), reference, **bf16)
    torch.testing.assert_close(c2.float(), c, **bf16)


def test_bf16_training_matches_fp32_at_equal_steps(tmp_path):
    corpus = make_corpus(tmp_path / "corpus.txt", n_words=3000)
    results = {}
    for precision in ("fp32", "bf16"):
        config = config_for(tmp_path, corpus, out=precision, max_steps=30, eval_every=30,
                            precision=precision)  # fmt: skip
        results[precision] = train(config, log=lambda *_: None)
    fp32, bf16 = results["fp32"].best_val, results["bf16"].best_val
    assert bf16 < 2.5  # it learned (uniform over the ~25 symbols is ~3.2 nats)
    assert abs(bf16 - fp32) < 0.05


def test_warning_on_a_cpu_without_native_bf16(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus.txt", n_words=500)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    lines: list[str] = []
    Trainer(config_for(tmp_path, corpus, precision="bf16"), log=lines.append)
    assert any("no native bfloat16" in line for line in lines)
