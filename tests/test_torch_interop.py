"""rnnkit.RNN / LSTM / GRU where torch's tools meet them: TorchScript, torch.fx, dynamic
quantization, ``torch.load(weights_only=True)`` with torch.nn's allowlist, CPU autocast, a
zero-length sequence, and the state's type -- each against what torch.nn's own layers do."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import fx, nn
from torch.ao.quantization import quantize_dynamic

import rnnkit

PAIRS = [(rnnkit.RNN, nn.RNN), (rnnkit.LSTM, nn.LSTM), (rnnkit.GRU, nn.GRU)]
IDS = ["RNN", "LSTM", "GRU"]


def flat(result):
    """``(out, h)`` or ``(out, (h, c))`` as a list of tensors."""
    out, state = result
    return [out, *(state if isinstance(state, tuple) else (state,))]


class Tagger(nn.Module):
    """Embedding -> recurrent layer -> linear head, the way models hold a layer."""

    def __init__(self, layer: nn.Module, hidden: int = 16):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.rnn = layer
        self.head = nn.Linear(hidden, 20)

    def forward(self, idx):
        out, _ = self.rnn(self.embed(idx))
        return self.head(out)


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=IDS)
def test_isinstance_mode_and_plain_tuple_state(ours, theirs):
    layer = ours(3, 5)
    assert isinstance(layer, theirs) and isinstance(layer, nn.RNNBase)
    assert layer.mode == theirs(3, 5).mode
    _, state = layer(torch.randn(4, 2, 3))
    if isinstance(state, tuple):  # LSTM: a plain tuple, so type(state)(iterable) works
        assert type(state) is tuple and type(state)(s * 2 for s in state)[0].shape == (1, 2, 5)
    assert rnnkit.RNN(3, 5, nonlinearity="softplus").mode == "RNN_SOFTPLUS"


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=IDS)
def test_jit_script_compiles_and_matches(ours, theirs):
    torch.manual_seed(0)
    layer = ours(3, 5, 2, batch_first=True, bidirectional=True).eval()
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 4, 3)
    for inp in (x, x[0]):  # batched and unbatched
        expected = layer(inp)
        for a, b in zip(flat(scripted(inp)), flat(expected), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(
            flat(scripted(inp, expected[1])), flat(layer(inp, expected[1])), strict=True
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.jit.load(buffer)(x)[0], layer(x)[0], rtol=0, atol=0)


def test_jit_script_of_a_model_leaves_the_model_alone():
    model = Tagger(rnnkit.LSTM(8, 16)).eval()
    idx = torch.randint(0, 20, (6, 3))
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(idx), model(idx), rtol=0, atol=0)
    assert type(model.rnn) is rnnkit.LSTM  # compiled as is, not swapped for a torch.nn twin


@pytest.mark.parametrize(
    "layer",
    [
        rnnkit.RNN(3, 5, nonlinearity="softplus"),
        rnnkit.LSTM(3, 5, impl="cells"),
        rnnkit.GRU(3, 5, zoneout=0.1),
    ],
    ids=["softplus", "cells", "zoneout"],
)
def test_jit_script_refuses_the_cells_path_in_one_line(layer):
    with pytest.raises(ValueError, match="torch.jit.script compiles the fused path only"):
        torch.jit.script(layer)


def test_fx_symbolic_trace_keeps_the_layer_whole():
    torch.manual_seed(0)
    model = Tagger(rnnkit.GRU(8, 16))
    graph = fx.symbolic_trace(model)
    calls = [n.target for n in graph.graph.nodes if n.op == "call_module"]
    assert calls == ["embed", "rnn", "head"]  # one node, as for torch.nn.GRU
    reference = fx.symbolic_trace(Tagger(nn.GRU(8, 16)))
    assert [n.op for n in graph.graph.nodes] == [n.op for n in reference.graph.nodes]
    idx = torch.randint(0, 20, (6, 3))
    torch.testing.assert_close(graph(idx), model(idx), rtol=0, atol=0)


def test_fx_passes_lengths_on():
    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnnkit.LSTM(3, 5, batch_first=True)

        def forward(self, x, lengths):
            return self.rnn(x, lengths=lengths)[0]

    model = Packed()
    graph = fx.symbolic_trace(model)
    x, lengths = torch.randn(2, 4, 3), torch.tensor([4, 2])
    torch.testing.assert_close(graph(x, lengths), model(x, lengths), rtol=0, atol=0)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU], ids=["LSTM", "GRU"])
@pytest.mark.parametrize("dtype,atol", [(torch.qint8, 2e-2), (torch.float16, 1e-3)])
def test_quantize_dynamic_swaps_rnnkit_layers(cls, dtype, atol):
    torch.manual_seed(0)
    model = Tagger(cls(8, 16, 2)).eval()
    idx = torch.randint(0, 20, (7, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for eager quantization
        quantized = quantize_dynamic(model, {rnnkit.LSTM, rnnkit.GRU}, dtype=dtype)
        torch_only = quantize_dynamic(model, {nn.LSTM, nn.GRU}, dtype=dtype)
    kind = (
        torch.ao.nn.quantized.dynamic.LSTM
        if cls is rnnkit.LSTM
        else torch.ao.nn.quantized.dynamic.GRU
    )
    assert type(quantized.rnn) is kind and type(model.rnn) is cls
    torch.testing.assert_close(quantized(idx), model(idx), atol=atol, rtol=0)
    assert type(torch_only.rnn) is cls  # torch looks the qconfig up by exact class


@pytest.mark.parametrize(
    "layer,message",
    [
        (rnnkit.LSTM(8, 16, proj_size=4), "no projection"),
        (rnnkit.GRU(8, 16, recurrent_dropout=0.1), "has no torch.nn equivalent"),
    ],
    ids=["proj_size", "recurrent_dropout"],
)
def test_quantize_dynamic_refuses_what_torch_cannot_quantize(layer, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=message):
            quantize_dynamic(Tagger(layer, hidden=layer.proj_size or 16), {type(layer)})


def test_to_torch_shares_the_parameters():
    layer = rnnkit.LSTM(3, 5, 2, proj_size=2)
    twin = layer.to_torch()
    assert type(twin) is nn.LSTM and twin.weight_hh_l1 is layer.weight_hh_l1
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(twin(x)[0], layer(x)[0], rtol=0, atol=0)
    twin(x)[0].sum().backward()
    assert layer.weight_ih_l0.grad is not None


def test_torch_load_weights_only_with_torch_nn_allowlist():
    """pytorch/examples' word_language_model saves the whole model and loads it back with an
    allowlist of torch.nn's classes; a model holding rnnkit's layers loads the same way."""
    torch.manual_seed(0)
    model = Tagger(rnnkit.LSTM(8, 16, 2, dropout=0.2))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    allow = [Tagger, nn.Dropout, nn.Embedding, nn.Linear, nn.LSTM, nn.GRU, nn.RNN]
    with torch.serialization.safe_globals(allow):
        loaded = torch.load(buffer, weights_only=True)
    idx = torch.randint(0, 20, (6, 3))
    assert type(loaded.rnn) is rnnkit.LSTM
    torch.testing.assert_close(loaded.eval()(idx), model.eval()(idx), rtol=0, atol=0)


@pytest.mark.parametrize("ours,theirs", [PAIRS[0], PAIRS[2]], ids=["RNN", "GRU"])
def test_cpu_autocast_dtypes_are_torch_nn_s_on_both_paths(ours, theirs):
    torch.manual_seed(0)
    reference = theirs(6, 10, 2)
    x = torch.randn(7, 3, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = [t.dtype for t in flat(reference(x))]
        for impl in ("fused", "cells"):
            layer = ours(6, 10, 2, impl=impl)
            assert [t.dtype for t in flat(layer(x))] == expected


def test_cpu_autocast_lstm_is_bf16_on_both_paths():
    """torch.nn.LSTM runs oneDNN's LSTM, which autocast casts whole: output, h and c come out
    in bfloat16 (on a CPU without that primitive torch.nn.LSTM fails; rnnkit computes in fp32)."""
    x = torch.randn(7, 3, 6)
    for impl in ("fused", "cells"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dtypes = {t.dtype for t in flat(rnnkit.LSTM(6, 10, impl=impl)(x))}
        assert dtypes == {torch.bfloat16}


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=IDS)
def test_zero_length_sequence_errors_like_torch(ours, theirs):
    x = torch.randn(0, 2, 3)
    with pytest.raises(RuntimeError) as expected:
        theirs(3, 5)(x)
    for impl in ("fused", "cells"):
        with pytest.raises(RuntimeError) as got:
            ours(3, 5, impl=impl)(x)
        assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=IDS)
def test_torch_compile_matches_eager(ours, theirs):
    """torch.compile's graph capture and AOT autograd (the "aot_eager" backend: no C compiler)
    give the eager outputs and gradients on the fused path, as for torch.nn's layer."""
    torch.manual_seed(0)
    layer = ours(3, 5, 2)
    x = torch.randn(4, 2, 3)
    compiled = torch.compile(layer, backend="aot_eager")
    got, expected = flat(compiled(x)), flat(layer(x))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    grads = [
        torch.autograd.grad(sum(t.sum() for t in out), layer.weight_hh_l1)[0]
        for out in (got, expected)
    ]
    torch.testing.assert_close(*grads)
    torch._dynamo.reset()
