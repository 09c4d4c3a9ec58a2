"""The cells path's two forms of one cell: x projected at every step vs all steps at once.

``*_step(x, ...)`` must equal ``*_recur(W_ih x + b_ih, ...)`` bit for bit; the layer (one input
projection per layer and direction, then the recurrence) must agree with stepping the per-step
form through time on outputs, final states and every gradient, with and without lengths; and
:func:`rnnkit.nn.unroll.scan` must hand a tuple of per-step inputs to the step row-aligned when it
sorts the batch by length. float64, odd prime sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rnnkit
import rnnkit.nn.unroll
from rnnkit.nn.cells import gru_recur, gru_step, lstm_recur, lstm_step, rnn_recur, rnn_step
from rnnkit.nn.unroll import scan

IN, H, N, L, P = 7, 11, 3, 13, 5
DT = torch.float64
LENGTHS = torch.tensor([13, 2, 9])  # unsorted on purpose


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


@pytest.mark.parametrize("bias", [True, False])
def test_step_equals_recur_of_projection_bit_for_bit(bias):
    x, h, c, hp = (
        _randn(N, IN, seed=0),
        _randn(N, H, seed=1),
        _randn(N, H, seed=2),
        _randn(N, P, seed=3),
    )
    for gates, cell in ((1, "rnn"), (4, "lstm"), (3, "gru")):
        w_ih, w_hh = _randn(gates * H, IN, seed=4), _randn(gates * H, H, seed=5)
        b_ih, b_hh = (
            (_randn(gates * H, seed=6), _randn(gates * H, seed=7)) if bias else (None, None)
        )
        x_proj = F.linear(x, w_ih, b_ih)
        if cell == "rnn":
            pairs = [(rnn_step(x, h, w_ih, w_hh, b_ih, b_hh), rnn_recur(x_proj, h, w_hh, b_hh))]
        elif cell == "gru":
            pairs = [(gru_step(x, h, w_ih, w_hh, b_ih, b_hh), gru_recur(x_proj, h, w_hh, b_hh))]
        else:
            w_hr, w_hh_p = _randn(P, H, seed=8), _randn(4 * H, P, seed=9)
            pairs = [
                (
                    lstm_step(x, (h, c), w_ih, w_hh, b_ih, b_hh),
                    lstm_recur(x_proj, (h, c), w_hh, b_hh),
                ),
                (
                    lstm_step(x, (hp, c), w_ih, w_hh_p, b_ih, b_hh, w_hr),
                    lstm_recur(x_proj, (hp, c), w_hh_p, b_hh, w_hr),
                ),
            ]
        for step_out, recur_out in pairs:
            for a, b in zip(_as_tuple(step_out), _as_tuple(recur_out), strict=True):
                assert torch.equal(a, b)


def test_gru_recur_mask_acts_on_w_hh_only():
    x_proj, h = _randn(N, 3 * H, seed=0), _randn(N, H, seed=1)
    w_hh, b_hh = _randn(3 * H, H, seed=2), _randn(3 * H, seed=3)
    assert torch.equal(
        gru_recur(x_proj, h, w_hh, b_hh, torch.ones(N, H, dtype=DT)),
        gru_recur(x_proj, h, w_hh, b_hh),
    )
    mask = (_randn(N, H, seed=4) > 0).to(DT) * 2.0
    x_r, x_z, x_n = x_proj.chunk(3, -1)  # the equations written out, masked h in W_hh h only
    h_r, h_z, h_n = F.linear(h * mask, w_hh, b_hh).chunk(3, -1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    expected = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
    torch.testing.assert_close(gru_recur(x_proj, h, w_hh, b_hh, mask), expected, atol=1e-14, rtol=0)


def _as_tuple(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


LAYERS = {
    "rnn_softplus": lambda: rnnkit.RNN(IN, H, nonlinearity="softplus", dtype=DT, impl="cells"),
    "lstm": lambda: rnnkit.LSTM(IN, H, dtype=DT, impl="cells"),
    "lstm_proj": lambda: rnnkit.LSTM(IN, H, proj_size=P, dtype=DT, impl="cells"),
    "gru": lambda: rnnkit.GRU(IN, H, dtype=DT, impl="cells"),
    "lstm_no_bias": lambda: rnnkit.LSTM(IN, H, bias=False, dtype=DT, impl="cells"),
}


@pytest.mark.parametrize("block", [1, 5, 100])
@pytest.mark.parametrize("lengths", [None, LENGTHS])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_agrees_with_stepping_the_per_step_form(kind, lengths, block, monkeypatch):
    monkeypatch.setattr(rnnkit.nn.unroll, "PROJECT_BLOCK", block)  # steps per input projection
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    x = _randn(L, N, IN, seed=1).requires_grad_()
    hx = tuple(
        _randn(N, size, seed=2 + k).requires_grad_()
        for k, size in enumerate(
            [layer.proj_size or H] + ([H] if len(layer.state_spec().names) == 2 else [])
        )
    )
    out, state = layer(x, tuple(s[None] for s in hx) if len(hx) == 2 else hx[0][None], lengths)
    out_ref, state_ref = scan(layer.step_function(0), x, hx, lengths)  # W_ih x_t per step
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    for a, b in zip(_as_tuple(state), state_ref, strict=True):
        torch.testing.assert_close(a[0], b, atol=1e-12, rtol=0)
    weights = _randn(*out.shape, seed=9)
    leaves = [x, *hx, *layer.parameters()]
    grads = torch.autograd.grad((out * weights).sum() + sum(s.sum() for s in state), leaves)
    grads_ref = torch.autograd.grad(
        (out_ref * weights).sum() + sum(s.sum() for s in state_ref), leaves
    )
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_projection_of_many_steps_is_the_per_step_projection():
    layer = rnnkit.GRU(IN, H, dtype=DT, impl="cells")
    project, _ = layer.recurrence(0)
    x = _randn(L, N, IN, seed=0)
    expected = torch.stack([F.linear(x[t], layer.weight_ih_l0, layer.bias_ih_l0) for t in range(L)])
    torch.testing.assert_close(project(x), expected, atol=1e-13, rtol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_blocks_keep_the_regularisers_masks_in_step(kind, monkeypatch):
    """Masks are drawn before the scan: the same seed gives the same run whatever the block."""
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    layer.zoneout, layer.recurrent_dropout = (0.3,) * len(layer.zoneout), 0.4
    x = _randn(L, N, IN, seed=1)
    runs = []
    for block in (3, 100):
        monkeypatch.setattr(rnnkit.nn.unroll, "PROJECT_BLOCK", block)
        torch.manual_seed(1)
        runs.append(layer(x, lengths=LENGTHS)[0])
    torch.testing.assert_close(runs[0], runs[1], atol=1e-13, rtol=0)
    torch.manual_seed(2)
    assert not torch.allclose(layer(x, lengths=LENGTHS)[0], runs[0])  # masks do act


@pytest.mark.parametrize("lengths", [None, torch.tensor([2, 5, 1, 4])])
def test_scan_hands_tuple_inputs_row_aligned(lengths):
    """A step that accumulates a_t * b_t: the closed form is a masked cumulative sum."""
    a, b = _randn(5, 4, 3, seed=0), _randn(5, 4, 3, seed=1)
    start = (_randn(4, 3, seed=2),)

    def step(inputs, state):
        a_t, b_t = inputs
        return (state[0] + a_t * b_t,)

    out, (final,) = scan(step, (a, b), start, lengths)
    valid = (
        torch.ones(5, 4, 1, dtype=DT)
        if lengths is None
        else ((torch.arange(5)[:, None] < lengths[None, :]).to(DT)[..., None])
    )
    expected = start[0] + torch.cumsum(a * b * valid, 0)
    torch.testing.assert_close(out, expected * valid, atol=1e-13, rtol=0)
    torch.testing.assert_close(final, expected[-1], atol=1e-13, rtol=0)


def test_scan_gradient_of_inputs_is_per_step():
    """The inputs' gradient comes back through one unbind node: still right at every step."""
    x = _randn(4, 2, 3, seed=0).requires_grad_()
    out, _ = scan(lambda x_t, s: (s[0] * 0.5 + x_t**2,), x, (torch.zeros(2, 3, dtype=DT),))
    (grad,) = torch.autograd.grad(out.sum(), x)
    factor = torch.tensor([1 + 0.5 + 0.25 + 0.125, 1.75, 1.5, 1.0], dtype=DT)  # sum of 0.5^k
    torch.testing.assert_close(grad, 2 * x.detach() * factor[:, None, None], atol=1e-13, rtol=0)
