"""IndRNN (Li et al. 2018): the layer against a plain Python loop of its equation, float64
gradients, step == sequence, stacking and directions, ``recurrent_max`` and its errors."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit.nn.cells import indrnn_recur, indrnn_step
from rnnkit.nn.indrnn import IndRNN

IN, H, L, N = 5, 7, 6, 3  # odd sizes: a transposition cannot hide
D64 = torch.float64


def loop(layer: IndRNN, x, h0=None):
    """h_t = act(W_ih x_t + b_ih + clip(w_hh) * h_{t-1} + b_hh), written out for a
    unidirectional stack over x (L, N, H_in); returns (outputs (L, N, H), h_n (layers, N, H))."""
    act = {"relu": torch.relu, "tanh": torch.tanh}[layer.nonlinearity]
    bound = layer.recurrent_max
    finals = []
    for k in range(layer.num_layers):
        w_ih, w_hh = getattr(layer, f"weight_ih_l{k}"), getattr(layer, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(layer, f"bias_ih_l{k}"), getattr(layer, f"bias_hh_l{k}")
        u = w_hh if bound is None else torch.clamp(w_hh, -bound, bound)
        h = torch.zeros(x.size(1), layer.hidden_size, dtype=x.dtype) if h0 is None else h0[k]
        outputs = []
        for t in range(x.size(0)):
            h = act(x[t] @ w_ih.T + b_ih + u * h + b_hh)
            outputs.append(h)
        x = torch.stack(outputs)
        finals.append(h)
    return x, torch.stack(finals)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
@pytest.mark.parametrize("recurrent_max", [None, 0.5])
def test_layer_equals_a_loop_of_the_equation(nonlinearity, recurrent_max):
    torch.manual_seed(0)
    layer = IndRNN(IN, H, 2, nonlinearity, dtype=D64, recurrent_max=recurrent_max)
    x, h0 = torch.randn(L, N, IN, dtype=D64), torch.randn(2, N, H, dtype=D64)
    out, h_n = layer(x, h0)
    want_out, want_h = loop(layer, x, h0)
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, want_h, rtol=0, atol=1e-12)


def test_step_is_recur_of_the_projection_and_clips_the_recurrent_weight():
    torch.manual_seed(1)
    x, h = torch.randn(N, IN, dtype=D64), torch.randn(N, H, dtype=D64)
    w_ih, w_hh = torch.randn(H, IN, dtype=D64), 3 * torch.randn(H, dtype=D64)
    b_ih, b_hh = torch.randn(H, dtype=D64), torch.randn(H, dtype=D64)
    step = indrnn_step(x, h, w_ih, w_hh, b_ih, b_hh, recurrent_max=1.0)
    proj = x @ w_ih.T + b_ih
    torch.testing.assert_close(step, indrnn_recur(proj, h, w_hh, b_hh, recurrent_max=1.0))
    torch.testing.assert_close(step, torch.relu(proj + w_hh.clamp(-1, 1) * h + b_hh))
    w = w_hh.clone().requires_grad_()
    indrnn_recur(proj, h, w, b_hh, torch.tanh, recurrent_max=1.0).sum().backward()
    assert torch.all(w.grad[w_hh.abs() > 1] == 0)  # past the bound the weight is the bound


def test_gradcheck_float64_bidirectional_with_lengths():
    torch.manual_seed(2)
    layer = IndRNN(3, 4, 2, "tanh", bidirectional=True, dtype=D64, recurrent_max=0.9)
    x = torch.randn(5, 2, 3, dtype=D64, requires_grad=True)
    h0 = torch.randn(4, 2, 4, dtype=D64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]

    def run(x, h0, *weights):
        params = dict(zip(names, weights, strict=True))
        return torch.func.functional_call(layer, params, (x, h0), {"lengths": [5, 3]})

    weights = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    assert torch.autograd.gradcheck(run, (x, h0, *weights))


def test_step_by_step_equals_the_sequence_and_the_state_carries():
    torch.manual_seed(3)
    layer = IndRNN(IN, H, num_layers=3)
    x = torch.randn(L, N, IN)
    whole, h_n = layer(x)
    h, outs = None, []
    for t in range(L):
        out, h = layer(x[t : t + 1], h)
        outs.append(out[0])
    torch.testing.assert_close(torch.stack(outs), whole)
    torch.testing.assert_close(h, h_n)
    step = layer.step_function(0)  # the public cell interface: (x_t, state) -> state
    torch.testing.assert_close(step(x[0], (torch.zeros(N, H),))[0], layer(x[:1], None)[1][0])


def test_shapes_batch_first_bidirectional_unbatched_packed_and_lengths():
    torch.manual_seed(4)
    layer = IndRNN(IN, H, num_layers=2, bidirectional=True, batch_first=True)
    out, h_n = layer(torch.randn(N, L, IN))
    assert out.shape == (N, L, 2 * H) and h_n.shape == (4, N, H)
    out, h_n = layer(torch.randn(L, IN))
    assert out.shape == (L, 2 * H) and h_n.shape == (4, H)
    x, lengths = torch.randn(N, L, IN), torch.tensor([L, 2, 4])
    padded, h_pad = layer(x, lengths=lengths)
    assert torch.all(padded[1, 2:] == 0)  # zeros past a sequence's end
    packed, h_pack = layer(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(h_pack, h_pad)
    alone, h_alone = layer(x[1:2, :2])  # the short sequence on its own
    torch.testing.assert_close(h_pad[:, 1], h_alone[:, 0])
    torch.testing.assert_close(padded[1, :2], alone[0])
    names = [n for n, _ in layer.named_parameters()][:4]
    assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert layer.weight_hh_l1_reverse.shape == (H,) and layer.weight_ih_l1.shape == (H, 2 * H)
    assert torch.all((layer.weight_hh_l0 >= 0) & (layer.weight_hh_l0 <= 1))  # uniform (0, 1)


def test_regularisers_and_repr():
    layer = IndRNN(IN, H, zoneout=0.2, recurrent_dropout=0.3, recurrent_max=2.0)
    assert layer.zoneout == (0.2,) and layer.recurrent_dropout == 0.3
    layer.eval()
    x = torch.randn(L, N, IN)
    torch.testing.assert_close(layer(x)[0], layer(x)[0])  # eval: deterministic
    assert repr(layer) == "IndRNN(5, 7, zoneout=0.2, recurrent_dropout=0.3, recurrent_max=2.0)"
    assert repr(IndRNN(2, 3, nonlinearity="tanh")) == "IndRNN(2, 3, nonlinearity='tanh')"


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: IndRNN(0, H), ValueError, "input_size must be an integer >= 1, got 0"),
        (lambda: IndRNN(IN, H, nonlinearity="gelu"), ValueError, "nonlinearity must be one of"),
        (lambda: IndRNN(IN, H, recurrent_max=0), ValueError, "recurrent_max must be None or a"),
        (lambda: IndRNN(IN, H, recurrent_max="1"), ValueError, "number > 0, got '1'"),
        (lambda: IndRNN(IN, H, bidirectional=1), TypeError, "bidirectional must be a bool, got 1"),
        (
            lambda: IndRNN(IN, H, dropout=2),
            ValueError,
            r"dropout must be a probability in \[0, 1\]",
        ),
    ],
)
def test_bad_constructor_arguments_are_one_line_errors(build, error, message):
    with pytest.raises(error, match=message) as info:
        build()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.randn(L, N, IN + 1),), {}, r"input.size\(-1\) must equal input_size=5, got 6"),
        ((torch.randn(L, N, 2, IN),), {}, "input must be 3-D"),
        ((torch.randn(0, N, IN),), {}, "at least one time step"),
        ((torch.randn(L, N, IN), torch.zeros(2, N, H)), {}, r"hx must be a tensor of shape"),
        ((torch.randn(L, N, IN),), {"lengths": [1, 2]}, "lengths must be 3 integers"),
        ((torch.randn(L, N, IN).double(),), {}, "input dtype torch.float64 does not match"),
    ],
)
def test_bad_call_arguments_are_one_line_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        IndRNN(IN, H)(*args, **kwargs)
    assert "\n" not in str(info.value)
