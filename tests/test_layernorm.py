"""rnnkit.LayerNormLSTM against a straightforward implementation built from nn.LayerNorm modules.

The reference below writes the equations out with explicit gate slices and runs each direction
with a Python loop, sharing only the parameter tensors with the layer. float64 throughout, small
odd sizes, layer-norm gains and shifts randomised so that none of them is a no-op.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.nn.layernorm import (
    LayerNormLSTM,
    layernorm_lstm_project,
    layernorm_lstm_recur,
    layernorm_lstm_step,
)

IN, H, N, L = 5, 7, 3, 4
DT = torch.float64
LENGTHS = torch.tensor([4, 1, 3])


def make_layer(seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = LayerNormLSTM(IN, H, dtype=DT, **kwargs)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("ln_"):
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "gain" in name else 0.0))
    return layer


def _layer_norm(size, weight, bias, eps):
    ln = nn.LayerNorm(size, eps=eps, bias=bias is not None, dtype=DT)
    ln.weight = weight
    if bias is not None:
        ln.bias = bias
    return ln


def reference(layer, x, h0, c0):
    """x (L, N, IN), full length; returns output (L, N, D*H) and (h_n, c_n)."""
    directions = ("", "_reverse") if layer.bidirectional else ("",)
    h_n, c_n = [], []
    for k in range(layer.num_layers):
        outs = []
        for d, suffix in enumerate(directions):
            p = {
                name: getattr(layer, f"{name}_l{k}{suffix}", None)
                for name in (
                    "weight_ih",
                    "weight_hh",
                    "bias_ih",
                    "bias_hh",
                    "ln_gain_ih",
                    "ln_gain_hh",
                    "ln_gain_c",
                    "ln_bias_c",
                )
            }
            ln_ih = _layer_norm(4 * H, p["ln_gain_ih"], p["bias_ih"], layer.eps)
            ln_hh = _layer_norm(4 * H, p["ln_gain_hh"], p["bias_hh"], layer.eps)
            ln_c = _layer_norm(H, p["ln_gain_c"], p["ln_bias_c"], layer.eps)
            row = k * len(directions) + d
            h, c = h0[row], c0[row]
            out = [None] * x.size(0)
            for t in range(x.size(0)) if d == 0 else reversed(range(x.size(0))):
                pre = ln_ih(x[t] @ p["weight_ih"].T) + ln_hh(h @ p["weight_hh"].T)
                i, f = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H : 2 * H])
                g, o = torch.tanh(pre[:, 2 * H : 3 * H]), torch.sigmoid(pre[:, 3 * H :])
                c = f * c + i * g
                h = o * torch.tanh(ln_c(c))
                out[t] = h
            outs.append(torch.stack(out))
            h_n.append(h)
            c_n.append(c)
        x = torch.cat(outs, -1)
    return x, (torch.stack(h_n), torch.stack(c_n))


def inputs(layer, seed=1, length=L, batch=N):
    gen = torch.Generator().manual_seed(seed)
    rows = layer.num_layers * (2 if layer.bidirectional else 1)
    x = torch.randn(length, batch, IN, generator=gen, dtype=DT, requires_grad=True)
    h0 = torch.randn(rows, batch, H, generator=gen, dtype=DT, requires_grad=True)
    c0 = torch.randn(rows, batch, H, generator=gen, dtype=DT, requires_grad=True)
    return x, h0, c0


def scalar(out, state, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=DT)).sum() for t in (out, *state))


@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "bias"),
    list(itertools.product([1, 2], [False, True], [True, False])),
)
def test_matches_the_reference_outputs_states_and_gradients(num_layers, bidirectional, bias):
    layer = make_layer(num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    x, h0, c0 = inputs(layer)
    out, state = layer(x, (h0, c0))
    out_ref, state_ref = reference(layer, x, h0, c0)
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    for a, b in zip(state, state_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    leaves = [x, h0, c0, *layer.parameters()]
    grads = torch.autograd.grad(scalar(out, state), leaves)
    grads_ref = torch.autograd.grad(scalar(out_ref, state_ref), leaves)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


def test_step_is_recur_of_projection_and_the_layer_is_the_step_looped():
    layer = make_layer()
    x, h0, c0 = inputs(layer)
    w = {k: getattr(layer, f"{k}_l0") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    ln = {k: getattr(layer, f"ln_{k}_l0") for k in ("gain_ih", "gain_hh", "gain_c", "bias_c")}
    state = (h0[0], c0[0])
    x_proj = layernorm_lstm_project(x[0], w["weight_ih"], ln["gain_ih"], w["bias_ih"])
    a = layernorm_lstm_step(x[0], state, **w, **ln)
    b = layernorm_lstm_recur(
        x_proj, state, w["weight_hh"], ln["gain_hh"], ln["gain_c"], w["bias_hh"], ln["bias_c"]
    )
    assert torch.equal(a.h, b.h) and torch.equal(a.c, b.c)
    outs = []
    for t in range(L):
        state = layernorm_lstm_step(x[t], state, **w, **ln)
        outs.append(state.h)
    out, (h_n, c_n) = layer(x, (h0, c0))
    torch.testing.assert_close(out, torch.stack(outs), atol=1e-13, rtol=0)
    torch.testing.assert_close(c_n[0], state.c, atol=1e-13, rtol=0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_match_each_sequence_run_alone(batch_first):
    layer = make_layer(num_layers=2, bidirectional=True, batch_first=batch_first)
    x, h0, c0 = inputs(layer)
    xb = x.transpose(0, 1) if batch_first else x
    out, (h_n, c_n) = layer(xb, (h0, c0), lengths=LENGTHS)
    out = out.transpose(0, 1) if batch_first else out  # (L, N, 2H)
    for n, length in enumerate(LENGTHS.tolist()):
        alone, (h_a, c_a) = reference(
            layer, x[:length, n : n + 1], h0[:, n : n + 1], c0[:, n : n + 1]
        )
        torch.testing.assert_close(out[:length, n : n + 1], alone, atol=1e-12, rtol=0)
        assert torch.all(out[length:, n] == 0)
        torch.testing.assert_close(h_n[:, n : n + 1], h_a, atol=1e-12, rtol=0)
        torch.testing.assert_close(c_n[:, n : n + 1], c_a, atol=1e-12, rtol=0)
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    layer.batch_first = False
    packed_out, (h_p, c_p) = layer(packed, (h0, c0))
    torch.testing.assert_close(h_p, h_n, atol=1e-13, rtol=0)
    torch.testing.assert_close(c_p, c_n, atol=1e-13, rtol=0)
    expected = pack_padded_sequence(out, LENGTHS, enforce_sorted=False).data
    torch.testing.assert_close(packed_out.data, expected, atol=1e-13, rtol=0)


def test_gradcheck_every_parameter_with_lengths_both_directions():
    torch.manual_seed(0)
    layer = LayerNormLSTM(2, 3, bidirectional=True, dtype=DT)
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(3, 2, 2, dtype=DT, requires_grad=True)
    c0 = torch.randn(2, 2, 3, dtype=DT, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def run(x, c0, *params):
        out, (h_n, c_n) = functional_call(
            layer,
            dict(zip(names, params, strict=True)),
            (x, (torch.zeros_like(c0), c0)),
            {"lengths": [3, 2]},
        )
        return out, h_n, c_n

    assert torch.autograd.gradcheck(run, (x, c0, *params))


def test_layer_norm_makes_the_output_blind_to_the_scale_of_the_weights():
    """LN(a W v) = LN(W v) for a > 0 (exactly with eps=0): the property LN buys, which a plain
    LSTM with the same weights does not have."""
    layer = make_layer(eps=0.0)
    plain = rnnkit.LSTM(IN, H, dtype=DT)
    plain.load_state_dict(layer.state_dict(), strict=False)
    x, h0, c0 = inputs(layer)
    before, plain_before = layer(x, (h0, c0))[0], plain(x, (h0, c0))[0]
    with torch.no_grad():
        for module in (layer, plain):
            module.weight_ih_l0.mul_(3.0)
            module.weight_hh_l0.mul_(0.25)
    torch.testing.assert_close(layer(x, (h0, c0))[0], before, atol=1e-12, rtol=0)
    assert (plain(x, (h0, c0))[0] - plain_before).abs().max() > 1e-2


def test_contract_names_initialisation_and_errors():
    torch.manual_seed(0)
    theirs = nn.LSTM(IN, H, num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    layer = LayerNormLSTM(IN, H, num_layers=2, bidirectional=True)
    for name, p in theirs.named_parameters():  # a seed gives torch.nn.LSTM's weights
        assert torch.equal(getattr(layer, name), p)
    ln_names = sorted(n for n, _ in layer.named_parameters() if n.startswith("ln_"))
    assert ln_names[:4] == [
        "ln_bias_c_l0",
        "ln_bias_c_l0_reverse",
        "ln_bias_c_l1",
        "ln_bias_c_l1_reverse",
    ]
    assert torch.all(layer.ln_gain_ih_l1_reverse == 1) and torch.all(layer.ln_bias_c_l0 == 0)
    assert layer.ln_gain_hh_l0.shape == (4 * H,) and layer.ln_gain_c_l0.shape == (H,)
    assert not layer.use_fused and layer.impl == "cells"
    assert len(layer.all_weights[0]) == 8
    assert "ln_bias_c_l0" not in dict(LayerNormLSTM(IN, H, bias=False).named_parameters())
    assert repr(LayerNormLSTM(3, 4, eps=1e-3)) == "LayerNormLSTM(3, 4, eps=0.001)"
    out, state = layer(torch.randn(L, IN))  # unbatched
    assert out.shape == (L, 2 * H) and state[0].shape == (4, H) and state[1].shape == (4, H)
    with pytest.raises(ValueError, match="eps must be a number >= 0, got -1"):
        LayerNormLSTM(IN, H, eps=-1)
    with pytest.raises(TypeError):
        LayerNormLSTM(IN, H, impl="fused")
