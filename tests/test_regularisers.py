"""Zoneout and variational (recurrent and input) dropout of rnnkit.RNN / LSTM / GRU / LayerNormLSTM.

Eval mode is checked against the expectation formulas written out by hand; training mode against
cases built so that a mask is observable in the output (a dropped unit reads 0 at every step, a
zoned-out unit repeats its previous value); gradients by gradcheck with the masks fixed by
seeding inside the function. float64 throughout.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.func import functional_call

import rnnkit
from rnnkit.nn.layernorm import LayerNormLSTM
from rnnkit.nn.unroll import zoneout

DT = torch.float64
CLASSES = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "ln_lstm": LayerNormLSTM}


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _initial(layer, n, seed=5):
    rows = layer.num_layers * (2 if layer.bidirectional else 1)
    h0 = _randn(rows, n, layer.hidden_size, seed=seed)
    return (
        (h0, _randn(rows, n, layer.hidden_size, seed=seed + 1))
        if len(layer.state_spec().names) == 2
        else h0
    )


def _states(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


# ---- eval: deterministic, and the expectation written out --------------------------------------
def test_eval_rnn_is_the_zoneout_expectation_and_ignores_dropout():
    torch.manual_seed(0)
    layer = rnnkit.RNN(3, 2, zoneout=0.3, recurrent_dropout=0.4, input_dropout=0.2, dtype=DT).eval()
    x, h = _randn(4, 2, 3, seed=1), _randn(2, 2, seed=2)
    out, h_n = layer(x, h[None])
    assert torch.equal(layer(x, h[None])[0], out)  # deterministic
    w_ih, w_hh, b_ih, b_hh = (
        layer.weight_ih_l0,
        layer.weight_hh_l0,
        layer.bias_ih_l0,
        layer.bias_hh_l0,
    )
    expected = []
    for t in range(4):
        h_new = torch.tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        h = 0.3 * h + 0.7 * h_new
        expected.append(h)
    torch.testing.assert_close(out, torch.stack(expected), atol=1e-13, rtol=0)
    torch.testing.assert_close(h_n[0], h, atol=1e-13, rtol=0)


def test_eval_lstm_zones_out_h_and_c_at_their_own_rates():
    """Krueger et al.: h_new reads the new cell state before c is zoned out."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 2, zoneout=(0.2, 0.6), dtype=DT).eval()
    x, h, c = _randn(4, 2, 3, seed=1), _randn(2, 2, seed=2), _randn(2, 2, seed=3)
    out, (h_n, c_n) = layer(x, (h[None], c[None]))
    w_ih, w_hh, b_ih, b_hh = (
        layer.weight_ih_l0,
        layer.weight_hh_l0,
        layer.bias_ih_l0,
        layer.bias_hh_l0,
    )
    for t in range(4):
        pre = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f = pre[:, :2].sigmoid(), pre[:, 2:4].sigmoid()
        g, o = pre[:, 4:6].tanh(), pre[:, 6:].sigmoid()
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        c, h = 0.6 * c + 0.4 * c_new, 0.2 * h + 0.8 * h_new
        torch.testing.assert_close(out[t], h, atol=1e-13, rtol=0)
    torch.testing.assert_close(c_n[0], c, atol=1e-13, rtol=0)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_dropouts_are_off_in_eval_and_zero_rates_change_nothing_in_training(kind):
    torch.manual_seed(0)
    plain = CLASSES[kind](3, 5, num_layers=2, dtype=DT)
    plain.impl = "cells"
    regular = CLASSES[kind](3, 5, num_layers=2, dtype=DT, recurrent_dropout=0.5, input_dropout=0.5)
    regular.load_state_dict(plain.state_dict())
    zero = CLASSES[kind](3, 5, num_layers=2, dtype=DT, zoneout=0.0, recurrent_dropout=0.0)
    zero.load_state_dict(plain.state_dict())
    zero.impl = "cells"  # p = 0 leaves "auto" on the fused path: compare like with like
    x, hx = _randn(6, 2, 3, seed=1), _initial(plain, 2)
    expected = plain(x, hx, lengths=[6, 3])
    for a, b in zip(_states(zero(x, hx, lengths=[6, 3])), _states(expected), strict=True):
        assert all(torch.equal(u, v) for u, v in zip(_states(a), _states(b), strict=True))
    trained = regular(x, hx, lengths=[6, 3])[0]
    assert not torch.allclose(trained, expected[0])  # the masks act in training...
    regular.eval()
    assert torch.equal(regular(x, hx, lengths=[6, 3])[0], expected[0])  # ...and not in eval


def test_zoneout_mixes_old_and_new_by_its_keep_mask_exactly():
    old, new = (_randn(3, 4, seed=0),), (_randn(3, 4, seed=1),)
    assert torch.equal(zoneout(old, new, [torch.zeros(3, 4, dtype=DT)])[0], new[0])
    assert torch.equal(zoneout(old, new, [torch.ones(3, 4, dtype=DT)])[0], old[0])
    keep = (_randn(3, 4, seed=2) > 0).to(DT)
    assert torch.equal(zoneout(old, new, [keep])[0], torch.where(keep.bool(), old[0], new[0]))


# ---- training: masks made observable -----------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", list(CLASSES))
def test_zoneout_one_keeps_the_initial_state_forever(kind, training):
    torch.manual_seed(0)
    layer = CLASSES[kind](3, 4, dtype=DT, zoneout=1.0).train(training)
    x, hx = _randn(7, 2, 3, seed=1), _initial(layer, 2)
    out, state = layer(x, hx)
    assert torch.equal(out, _states(hx)[0][0].expand(7, -1, -1))
    assert all(torch.equal(a, b) for a, b in zip(_states(state), _states(hx), strict=True))
    _, state = layer(x, hx, lengths=[7, 2])
    assert all(torch.equal(a, b) for a, b in zip(_states(state), _states(hx), strict=True))


def test_lstm_zoneout_pair_freezes_only_the_chosen_state():
    torch.manual_seed(0)
    x, hx = _randn(5, 2, 3, seed=1), _initial(rnnkit.LSTM(3, 4), 2)
    _, (h_n, c_n) = rnnkit.LSTM(3, 4, dtype=DT, zoneout=(0.0, 1.0))(x, hx)
    assert torch.equal(c_n, hx[1]) and not torch.allclose(h_n, hx[0])
    _, (h_n, c_n) = rnnkit.LSTM(3, 4, dtype=DT, zoneout=(1.0, 0.0))(x, hx)
    assert torch.equal(h_n, hx[0]) and not torch.allclose(c_n, hx[1])


def _identity_rnn(**kwargs):
    """A ReLU RNN with W_ih = W_hh = I and no bias: h_t = relu(x_t + h_{t-1}) unit by unit."""
    layer = rnnkit.RNN(16, 16, nonlinearity="relu", bias=False, dtype=DT, **kwargs)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.eye(16))
        layer.weight_hh_l0.copy_(torch.eye(16))
    return layer


def test_zoneout_draws_a_new_mask_at_every_step():
    """W_hh = 0 and x_t = t + 1: a unit reads t + 1 unless it zoned out (kept its old value)."""
    torch.manual_seed(0)
    layer = _identity_rnn(zoneout=0.5)
    with torch.no_grad():
        layer.weight_hh_l0.zero_()
    steps = torch.arange(1.0, 9.0, dtype=DT)  # (L,)
    out, _ = layer(steps[:, None, None].expand(8, 8, 16), torch.zeros(1, 8, 16, dtype=DT))
    previous = torch.cat([torch.zeros(1, 8, 16, dtype=DT), out[:-1]])
    kept = out != steps[:, None, None]  # (L, N, H)
    assert torch.equal(out[kept], previous[kept])  # a zoned-out unit repeats its old value
    assert 0.35 < kept.double().mean() < 0.65
    assert not all(torch.equal(kept[t], kept[0]) for t in range(1, 8))  # masks differ by step


@pytest.mark.parametrize("which", ["recurrent", "input"])
def test_variational_masks_are_shared_by_every_step_of_a_sequence(which):
    """Recurrent: x = 0, h_0 = 1, so h_t = relu(m * h_{t-1}) is 0 from step 1 on for a dropped
    unit and 2^t for a kept one (mask 1/(1-p) = 2). Input: W_hh = 0, x = 1, so h_t = m."""
    torch.manual_seed(0)
    layer = _identity_rnn(**{f"{which}_dropout": 0.5})
    x, h0 = torch.zeros(6, 8, 16, dtype=DT), torch.ones(1, 8, 16, dtype=DT)
    kept_values = 2.0 ** torch.arange(1, 7, dtype=DT)[:, None]  # (L, 1)
    if which == "input":
        with torch.no_grad():
            layer.weight_hh_l0.zero_()
        x, kept_values = x + 1, torch.full((6, 1), 2.0, dtype=DT)
    out, _ = layer(x, h0)
    dropped = out[0] == 0  # (N, H), from the first step
    for n in range(8):
        expected = torch.where(dropped[n], 0.0, kept_values)  # (L, H): the same mask every step
        assert torch.equal(out[:, n], expected)
    assert 0.3 < dropped.double().mean() < 0.7
    assert not all(torch.equal(dropped[n], dropped[0]) for n in range(1, 8))  # one per sequence


# ---- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CLASSES))
def test_gradcheck_with_the_masks_fixed_by_a_seed(kind):
    torch.manual_seed(0)
    extra = {"zoneout": (0.3, 0.5)} if kind.endswith("lstm") else {"zoneout": 0.3}
    layer = CLASSES[kind](
        2, 3, bidirectional=True, dtype=DT, recurrent_dropout=0.4, input_dropout=0.3, **extra
    )
    names = [name for name, _ in layer.named_parameters()]
    x = _randn(3, 2, 2, seed=1).requires_grad_()
    h0 = _randn(2, 2, 3, seed=2).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def run(x, h0, *params):
        torch.manual_seed(1)  # the same masks at every call
        hx = (h0, torch.zeros_like(h0)) if len(layer.state_spec().names) == 2 else h0
        out, state = functional_call(
            layer, dict(zip(names, params, strict=True)), (x, hx), {"lengths": [3, 2]}
        )
        return out, *_states(state)

    assert torch.autograd.gradcheck(run, (x, h0, *params))
    assert not torch.equal(
        run(x, h0, *params)[0],
        layer.eval()(
            x,
            h0 if len(layer.state_spec().names) == 1 else (h0, torch.zeros_like(h0)),
            lengths=[3, 2],
        )[0],
    )


# ---- configuration -----------------------------------------------------------------------------
def test_regularisers_pick_the_cells_path_and_refuse_the_fused_one():
    assert rnnkit.LSTM(3, 4).use_fused
    for kwargs in ({"zoneout": 0.1}, {"recurrent_dropout": 0.1}, {"input_dropout": 0.1}):
        assert not rnnkit.LSTM(3, 4, **kwargs).use_fused
        with pytest.raises(ValueError, match=r"impl='fused' cannot apply zoneout"):
            rnnkit.GRU(3, 4, impl="fused", **kwargs)
    assert rnnkit.LSTM(3, 4, zoneout=(0.1, 0.5)).zoneout == (0.1, 0.5)
    assert rnnkit.LSTM(3, 4, zoneout=0.2).zoneout == (0.2, 0.2)
    assert rnnkit.GRU(3, 4, zoneout=0.2).zoneout == (0.2,)
    assert repr(rnnkit.GRU(3, 4, zoneout=0.2, recurrent_dropout=0.1)) == (
        "GRU(3, 4, zoneout=0.2, recurrent_dropout=0.1)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zoneout": 1.5}, "zoneout must be a probability in [0, 1], got 1.5"),
        ({"zoneout": (0.1, 0.2, 0.3)}, "zoneout must be a probability or a pair (p_h, p_c)"),
        (
            {"recurrent_dropout": -0.1},
            "recurrent_dropout must be a probability in [0, 1], got -0.1",
        ),
        ({"input_dropout": True}, "input_dropout must be a probability in [0, 1], got True"),
    ],
)
def test_bad_rates_are_errors_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        rnnkit.LSTM(3, 4, **kwargs)
    with pytest.raises(ValueError, match="zoneout must be a probability in"):
        rnnkit.GRU(3, 4, zoneout=(0.1, 0.2))
