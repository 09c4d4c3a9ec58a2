"""rnnkit.RNNCell / LSTMCell / GRUCell against torch.nn cells, gradcheck and the cell contract."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit

IN, H, N = 7, 11, 3
DT = torch.float64

# (rnnkit class, torch class, kwargs); torch has kernels for tanh and relu only
PAIRS = {
    "rnn_tanh": (rnnkit.RNNCell, torch.nn.RNNCell, {}),
    "rnn_relu": (rnnkit.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (rnnkit.GRUCell, torch.nn.GRUCell, {}),
}


def make_pair(kind, bias=True, in_size=IN, hidden=H):
    ours_cls, torch_cls, kwargs = PAIRS[kind]
    theirs = torch_cls(in_size, hidden, bias=bias, **kwargs, dtype=DT)
    ours = ours_cls(in_size, hidden, bias=bias, **kwargs, dtype=DT)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


def random_state(kind, batch_shape, hidden=H):
    count = 2 if kind == "lstm" else 1
    states = [torch.randn(*batch_shape, hidden, dtype=DT, requires_grad=True) for _ in range(count)]
    return tuple(states) if kind == "lstm" else states[0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_step_and_gradients_match_torch(kind, bias):
    ours, theirs = make_pair(kind, bias)
    x = torch.randn(N, IN, dtype=DT, requires_grad=True)
    hx = random_state(kind, (N,))
    out_o, out_t = ours(x, hx), theirs(x, hx)
    w = [torch.randn_like(s) for s in as_list(out_t)]
    leaves = [x, *as_list(hx)]
    for a, b in zip(as_list(out_o), as_list(out_t), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)

    def grads(module, out):
        loss = sum((s * wi).sum() for s, wi in zip(as_list(out), w, strict=True))
        return torch.autograd.grad(loss, [*module.parameters(), *leaves])

    for a, b in zip(grads(ours, out_o), grads(theirs, out_t), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_unbatched_input_and_zero_state(kind):
    ours, theirs = make_pair(kind)
    x = torch.randn(IN, dtype=DT)
    for a, b in zip(as_list(ours(x)), as_list(theirs(x)), strict=True):
        assert a.shape == (H,)
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    zeros = random_state(kind, (N,))
    zeros = tuple(torch.zeros_like(z) for z in zeros) if kind == "lstm" else torch.zeros_like(zeros)
    xb = torch.randn(N, IN, dtype=DT)
    for a, b in zip(as_list(ours(xb)), as_list(ours(xb, zeros)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_same_seed_same_init_and_state_dict_both_ways(kind):
    ours_cls, torch_cls, kwargs = PAIRS[kind]
    torch.manual_seed(3)
    theirs = torch_cls(IN, H, **kwargs)
    torch.manual_seed(3)
    ours = ours_cls(IN, H, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[name]), name
    torch_cls(IN, H, **kwargs).load_state_dict(ours.state_dict())
    ours.load_state_dict(torch_cls(IN, H, **kwargs).state_dict())
    without_bias = ours_cls(IN, H, bias=False, **kwargs)
    assert without_bias.bias_ih is None and len(list(without_bias.parameters())) == 2


@pytest.mark.parametrize("nonlinearity", list(rnnkit.ACTIVATIONS))
def test_gradcheck_rnn_cell_every_activation(nonlinearity):
    torch.manual_seed(0)
    cell = rnnkit.RNNCell(4, 5, nonlinearity=nonlinearity, dtype=DT)
    x = torch.randn(3, 4, dtype=DT, requires_grad=True)
    h = torch.randn(3, 5, dtype=DT, requires_grad=True)
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    act = rnnkit.ACTIVATIONS[nonlinearity]
    assert torch.autograd.gradcheck(lambda *a: rnnkit.rnn_step(*a, activation=act), (x, h, *w))


def test_gradcheck_lstm_with_projection_and_gru():
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=DT, requires_grad=True)
    h, c, hp = (torch.randn(3, n, dtype=DT, requires_grad=True) for n in (5, 5, 2))
    lstm = rnnkit.LSTMCell(4, 5, dtype=DT)
    w = tuple(lstm.parameters())
    lstm_fn = lambda x, h, c, *w: rnnkit.lstm_step(x, (h, c), *w)  # noqa: E731
    assert torch.autograd.gradcheck(lstm_fn, (x, h, c, *w))
    w_ih = torch.randn(20, 4, dtype=DT, requires_grad=True)
    w_hh = torch.randn(20, 2, dtype=DT, requires_grad=True)
    w_hr = torch.randn(2, 5, dtype=DT, requires_grad=True)

    def projected(x, hp, c, w_ih, w_hh, w_hr):
        return rnnkit.lstm_step(x, (hp, c), w_ih, w_hh, weight_hr=w_hr)

    assert torch.autograd.gradcheck(projected, (x, hp, c, w_ih, w_hh, w_hr))
    gru = rnnkit.GRUCell(4, 5, dtype=DT)
    assert torch.autograd.gradcheck(rnnkit.gru_step, (x, h, *gru.parameters()))


def test_softplus_cell_is_its_equation():
    cell = rnnkit.RNNCell(IN, H, nonlinearity="softplus", dtype=DT)
    x, h = torch.randn(N, IN, dtype=DT), torch.randn(N, H, dtype=DT)
    pre = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    torch.testing.assert_close(cell(x, h), torch.log1p(torch.exp(pre)), atol=1e-12, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(list(PAIRS)),
    in_size=st.integers(1, 9),
    hidden=st.integers(1, 9),
    batch=st.integers(1, 4),
    bias=st.booleans(),
)
def test_any_size_matches_torch(kind, in_size, hidden, batch, bias):
    ours, theirs = make_pair(kind, bias, in_size, hidden)
    x = torch.randn(batch, in_size, dtype=DT)
    hx = random_state(kind, (batch,), hidden)
    for a, b in zip(as_list(ours(x, hx)), as_list(theirs(x, hx)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "build,call,message",
    [
        (
            lambda: rnnkit.LSTMCell(IN, H),
            lambda c: c(torch.randn(N, IN + 1)),
            "input_size=7, got 8",
        ),
        (lambda: rnnkit.GRUCell(IN, H), lambda c: c(torch.randn(2, N, IN)), "got 3-D"),
        (
            lambda: rnnkit.GRUCell(IN, H),
            lambda c: c(torch.randn(N, IN), torch.randn(N, H + 1)),
            "hx must have shape (3, 11) (N, hidden_size), got (3, 12)",
        ),
        (
            lambda: rnnkit.LSTMCell(IN, H),
            lambda c: c(torch.randn(N, IN), (torch.randn(N, H), torch.randn(N + 1, H))),
            "hx[1] must have shape (3, 11)",
        ),
        (lambda: rnnkit.RNNCell(IN, H, nonlinearity="sigmoid"), None, "got 'sigmoid'"),
        (lambda: rnnkit.RNNCell(IN, 0), None, "hidden_size must be an integer >= 1, got 0"),
        (lambda: rnnkit.LSTMCell(2.5, H), None, "input_size must be an integer >= 1, got 2.5"),
    ],
)
def test_errors_name_argument_expected_and_got(build, call, message):
    with pytest.raises(ValueError) as info:
        cell = build()
        call(cell)
    assert message in str(info.value)
