"""rnnkit.RNN / LSTM / GRU against torch.nn with copied weights, on both execution paths.

Every comparison runs in float64 at odd prime sizes (input 7, hidden 11, batch 3, length 5) so a
transposed matrix cannot hide, and checks outputs, final states and every gradient.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit

IN, H, N, L, P = 7, 11, 3, 5, 5
DT = torch.float64
LENGTHS = torch.tensor([5, 2, 4])  # unsorted on purpose; one full, one short

# (name, rnnkit class, torch class, extra constructor kwargs)
MODES = {
    "rnn_tanh": (rnnkit.RNN, torch.nn.RNN, {}),
    "rnn_relu": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": P}),
    "gru": (rnnkit.GRU, torch.nn.GRU, {}),
}


def make_pair(mode, impl="auto", **kwargs):
    """An rnnkit layer and a torch.nn layer holding the same weights (copied torch -> rnnkit)."""
    ours_cls, torch_cls, extra = MODES[mode]
    torch.manual_seed(0)
    theirs = torch_cls(IN, H, **extra, **kwargs, dtype=DT)
    ours = ours_cls(IN, H, **extra, **kwargs, dtype=DT, impl=impl)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def make_inputs(mode, layer, batch_first, seed=1):
    """A random input and a random initial state, all requiring gradients."""
    gen = torch.Generator().manual_seed(seed)
    shape = (N, L, IN) if batch_first else (L, N, IN)
    x = torch.randn(shape, generator=gen, dtype=DT, requires_grad=True)
    rows = layer.num_layers * (2 if layer.bidirectional else 1)
    h0 = torch.randn(rows, N, layer.proj_size or H, generator=gen, dtype=DT, requires_grad=True)
    if mode.startswith("lstm"):
        c0 = torch.randn(rows, N, H, generator=gen, dtype=DT, requires_grad=True)
        return x, (h0, c0)
    return x, h0


def states(hx):
    return list(hx) if isinstance(hx, tuple) else [hx]


def run_torch_padded(layer, x, hx, lengths, batch_first):
    """torch.nn over a padded batch: packed when lengths are given, padded back with zeros."""
    if lengths is None:
        return layer(x, hx)
    packed = pack_padded_sequence(x, lengths, batch_first, enforce_sorted=False)
    out, state = layer(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first, total_length=L)
    return out, state


def loss_of(out, state, seed=2):
    """A random linear functional of the outputs and final states, so every gradient is used."""
    gen = torch.Generator().manual_seed(seed)
    total = (out * torch.randn(out.shape, generator=gen, dtype=DT)).sum()
    for s in states(state):
        total = total + (s * torch.randn(s.shape, generator=gen, dtype=DT)).sum()
    return total


def grads(module, leaves, loss):
    params = [p for _, p in sorted(module.named_parameters())]
    return torch.autograd.grad(loss, params + leaves)


def assert_same_run(ours, theirs, mode, batch_first, lengths, atol=1e-10):
    x, hx = make_inputs(mode, ours, batch_first)
    out_t, state_t = run_torch_padded(theirs, x, hx, lengths, batch_first)
    out_o, state_o = ours(x, hx, lengths=lengths)
    torch.testing.assert_close(out_o, out_t, atol=atol, rtol=0)
    for a, b in zip(states(state_o), states(state_t), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    leaves = [x, *states(hx)]
    g_o = grads(ours, leaves, loss_of(out_o, state_o))
    g_t = grads(theirs, leaves, loss_of(out_t, state_t))
    for a, b in zip(g_o, g_t, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


GRID = list(
    itertools.product(MODES, [True, False], [False, True], [False, True], [1, 3], [None, LENGTHS])
)


@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize(
    "mode,bias,bidirectional,batch_first,num_layers,lengths",
    GRID,
    ids=[
        f"{m}-bias{b}-bi{d}-bf{f}-l{n}-{'var' if v is not None else 'full'}"
        for m, b, d, f, n, v in GRID
    ],
)
def test_matches_torch_nn(mode, bias, bidirectional, batch_first, num_layers, lengths, impl):
    ours, theirs = make_pair(
        mode,
        impl,
        bias=bias,
        bidirectional=bidirectional,
        batch_first=batch_first,
        num_layers=num_layers,
    )
    assert ours.use_fused == (impl == "fused")
    assert_same_run(ours, theirs, mode, batch_first, lengths)


@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize("mode", list(MODES))
def test_packed_sequence_in_packed_sequence_out(mode, impl):
    ours, theirs = make_pair(mode, impl, num_layers=2, bidirectional=True)
    x, hx = make_inputs(mode, ours, batch_first=False)
    for enforce_sorted, lengths in [(False, LENGTHS), (True, torch.tensor([5, 4, 2]))]:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        out_o, state_o = ours(packed, hx)
        out_t, state_t = theirs(packed, hx)
        assert type(out_o) is type(out_t)
        torch.testing.assert_close(out_o.data, out_t.data, atol=1e-10, rtol=0)
        assert torch.equal(out_o.batch_sizes, out_t.batch_sizes)
        for a, b in zip(states(state_o), states(state_t), strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_and_default_state(mode, impl, batch_first):
    ours, theirs = make_pair(mode, impl, num_layers=2, batch_first=batch_first)
    x = torch.randn(L, IN, dtype=DT)
    out_o, state_o = ours(x)
    out_t, state_t = theirs(x)
    assert out_o.shape == out_t.shape == (L, ours.proj_size or H)
    torch.testing.assert_close(out_o, out_t, atol=1e-12, rtol=0)
    for a, b in zip(states(state_o), states(state_t), strict=True):
        assert a.dim() == 2
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    # an explicit unbatched state is accepted too
    out_o2, _ = ours(x, state_o)
    out_t2, _ = theirs(x, state_t)
    torch.testing.assert_close(out_o2, out_t2, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", list(MODES))
def test_fused_equals_cells_on_one_module(mode):
    layer, _ = make_pair(mode, "fused", num_layers=3, bidirectional=True, batch_first=True)
    results = []
    for impl in ("fused", "cells"):
        layer.impl = impl
        x, hx = make_inputs(mode, layer, batch_first=True)
        out, state = layer(x, hx, lengths=LENGTHS)
        results.append([out, *states(state), *grads(layer, [x, *states(hx)], loss_of(out, state))])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", list(MODES))
def test_dropout_between_layers_on_both_paths(mode):
    """dropout=1 zeroes what each upper layer receives, so both paths must agree exactly in
    training mode; in eval mode dropout is off and the layer equals torch.nn."""
    layer, theirs = make_pair(mode, "fused", num_layers=2, dropout=1.0)
    x, hx = make_inputs(mode, layer, batch_first=False)
    layer.train()
    fused_out, _ = layer(x, hx)
    layer.impl = "cells"
    cells_out, _ = layer(x, hx)
    torch.testing.assert_close(fused_out, cells_out, atol=1e-12, rtol=0)
    layer.eval()
    theirs.eval()
    torch.testing.assert_close(layer(x, hx)[0], theirs(x, hx)[0], atol=1e-12, rtol=0)
    layer.train()
    assert not torch.allclose(layer(x, hx)[0], theirs.eval()(x, hx)[0])


@pytest.mark.parametrize("nonlinearity", list(rnnkit.ACTIVATIONS))
def test_rnn_any_activation_matches_a_plain_loop(nonlinearity):
    """The cells path serves activations torch has no kernel for; check it against a loop."""
    torch.manual_seed(0)
    layer = rnnkit.RNN(IN, H, nonlinearity=nonlinearity, dtype=DT)
    assert layer.use_fused == (nonlinearity in ("tanh", "relu"))
    x = torch.randn(L, N, IN, dtype=DT)
    out, h_n = layer(x)
    act = rnnkit.ACTIVATIONS[nonlinearity]
    h = torch.zeros(N, H, dtype=DT)
    for t in range(L):
        h = act(
            x[t] @ layer.weight_ih_l0.T
            + layer.bias_ih_l0
            + h @ layer.weight_hh_l0.T
            + layer.bias_hh_l0
        )
        torch.testing.assert_close(out[t], h, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_n[0], h, atol=1e-12, rtol=0)


@pytest.mark.parametrize("nonlinearity", list(rnnkit.ACTIVATIONS))
def test_gradcheck_rnn_layer_every_activation(nonlinearity):
    torch.manual_seed(0)
    layer = rnnkit.RNN(3, 4, num_layers=2, nonlinearity=nonlinearity, bidirectional=True, dtype=DT)
    x = torch.randn(4, 2, 3, dtype=DT, requires_grad=True)
    params = tuple(layer.parameters())

    def f(x, *weights):
        named = dict(zip((n for n, _ in layer.named_parameters()), weights, strict=True))
        out, h_n = torch.func.functional_call(layer, named, (x,), {"lengths": [4, 3]})
        return out, h_n

    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("mode", list(MODES))
def test_state_dict_loads_both_ways_and_same_seed_same_init(mode):
    ours_cls, torch_cls, extra = MODES[mode]
    kwargs = dict(num_layers=2, bidirectional=True, **extra)
    torch.manual_seed(7)
    theirs = torch_cls(IN, H, **kwargs)
    torch.manual_seed(7)
    ours = ours_cls(IN, H, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[name]), name
    fresh = torch_cls(IN, H, **kwargs)
    fresh.load_state_dict(ours.state_dict())  # rnnkit -> torch.nn, strict
    ours.load_state_dict(torch_cls(IN, H, **kwargs).state_dict())  # torch.nn -> rnnkit, strict


def test_lengths_final_state_is_taken_at_the_true_end():
    torch.manual_seed(0)
    for impl in ("fused", "cells"):
        layer = rnnkit.GRU(IN, H, batch_first=True, impl=impl, dtype=DT)
        x = torch.randn(N, L, IN, dtype=DT)
        out, h_n = layer(x, lengths=LENGTHS.tolist())  # a list is accepted too
        for b, n in enumerate(LENGTHS.tolist()):
            alone, h_alone = layer(x[b : b + 1, :n])
            torch.testing.assert_close(h_n[:, b], h_alone[:, 0], atol=1e-12, rtol=0)
            assert torch.all(out[b, n:] == 0)


def test_repr_and_defaults():
    layer = rnnkit.LSTM(7, 11, num_layers=2, proj_size=3, impl="cells")
    assert repr(layer) == "LSTM(7, 11, proj_size=3, num_layers=2, impl='cells')"
    assert rnnkit.GRU(7, 11).impl == "auto" and rnnkit.GRU(7, 11).use_fused
    assert len(layer.all_weights) == 2 and layer.all_weights[0][0] is layer.weight_ih_l0


def _lstm(**kwargs):
    return rnnkit.LSTM(IN, H, **kwargs)


# torch.nn's own exception types and messages, word for word, where torch.nn checks the same
# thing (tests/test_torch_module_info.py runs torch's error inputs); rnnkit's own for its additions.
@pytest.mark.parametrize(
    "build,error,message",
    [
        (
            lambda: rnnkit.GRU(IN, H, proj_size=3),
            ValueError,
            "proj_size argument is only supported for LSTM, not RNN or GRU",
        ),
        (
            lambda: rnnkit.RNN(IN, H, proj_size=3),
            ValueError,
            "proj_size argument is only supported for LSTM, not RNN or GRU",
        ),
        (lambda: _lstm(proj_size=H), ValueError, "proj_size has to be smaller than hidden_size"),
        (
            lambda: _lstm(proj_size=-1),
            ValueError,
            "proj_size should be a positive integer or zero to disable projections",
        ),
        (
            lambda: rnnkit.RNN(IN, H, nonlinearity="gelu"),
            ValueError,
            "Unknown nonlinearity 'gelu'. Select from 'tanh', 'relu', 'leaky_relu', 'hardtanh', "
            "'softplus'.",
        ),
        (
            lambda: rnnkit.RNN(IN, H, nonlinearity="softplus", impl="fused"),
            ValueError,
            "got nonlinearity='softplus'",
        ),
        (
            lambda: _lstm(impl="cuda"),
            ValueError,
            "impl must be one of 'auto', 'fused', 'cells'; got 'cuda'",
        ),
        (lambda: _lstm(num_layers=0), ValueError, "num_layers must be greater than zero"),
        (
            lambda: rnnkit.LSTM(IN, "11"),
            TypeError,
            "hidden_size should be of type int, got: str",
        ),
        (
            lambda: _lstm(dropout=1.5),
            ValueError,
            "dropout should be a number in range [0, 1] representing the probability of an "
            "element being zeroed",
        ),
        (
            lambda: _lstm(zoneout=1.5),
            ValueError,
            "zoneout must be a probability in [0, 1], got 1.5",
        ),
    ],
)
def test_constructor_errors_name_argument_expected_and_got(build, error, message):
    with pytest.raises(error) as info:
        build()
    assert message in str(info.value)


def test_bool_flags_must_be_bool():
    with pytest.raises(TypeError, match="batch_first should be of type bool, got: int"):
        _lstm(batch_first=1)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="but got dropout=0.5 and num_layers=1"):
        _lstm(dropout=0.5)


@pytest.mark.parametrize("impl", ["fused", "cells"])
@pytest.mark.parametrize(
    "call,error,message",
    [
        (
            lambda m: m(torch.randn(L, N, IN + 1)),
            RuntimeError,
            "input.size(-1) must be equal to input_size. Expected 7, got 8",
        ),
        (
            lambda m: m(torch.randn(L, N, 2, IN)),
            ValueError,
            "LSTM: Expected input to be 2D or 3D, got 4D instead",
        ),
        (
            lambda m: m(torch.randn(L, N, IN), (torch.randn(2, N, H), torch.randn(1, N, H))),
            RuntimeError,
            "Expected hidden[0] size (1, 3, 11), got [2, 3, 11]",
        ),
        (
            lambda m: m(torch.randn(L, N, IN), (torch.randn(1, N, H), torch.randn(1, N, 4))),
            RuntimeError,
            "Expected hidden[1] size (1, 3, 11), got [1, 3, 4]",
        ),
        (
            lambda m: m(torch.randn(L, N, IN), torch.randn(1, N, H)),
            ValueError,
            "hx must be a pair (h_0, c_0)",
        ),
        (
            lambda m: m(torch.randn(L, IN), (torch.randn(1, N, H), torch.randn(1, N, H))),
            RuntimeError,
            "For unbatched 2-D input, hx and cx should also be 2-D but got (3-D, 3-D) tensors",
        ),
        (
            lambda m: m(torch.randn(L, N, IN), lengths=[5, 0, 2]),
            ValueError,
            "lengths must lie in [1, L=5], got min 0",
        ),
        (lambda m: m(torch.randn(L, N, IN), lengths=[5, 6, 2]), ValueError, "got min 2 and max 6"),
        (
            lambda m: m(torch.randn(L, N, IN), lengths=[5, 2]),
            ValueError,
            "lengths must be 3 integers",
        ),
        (
            lambda m: m(torch.randn(L, N, IN), lengths=[5.0, 2.0, 1.0]),
            ValueError,
            "lengths must be 3 integers",
        ),
        (
            lambda m: m(torch.randn(L, IN), lengths=[5]),
            ValueError,
            "lengths needs a batched (3-D) input",
        ),
        (
            lambda m: m(torch.randn(L, N, IN, dtype=DT)),
            ValueError,
            "RNN input dtype (torch.float64) does not match weight dtype (torch.float32)",
        ),
        (
            lambda m: m(torch.randn(0, N, IN)),
            RuntimeError,
            "Expected sequence length to be larger than 0 in RNN",
        ),
    ],
)
def test_forward_errors_name_argument_expected_and_got(impl, call, error, message):
    layer = _lstm(impl=impl)
    with pytest.raises(error) as info:
        call(layer)
    assert message in str(info.value)


def test_gru_hx_shape_error_and_packed_with_lengths():
    layer = rnnkit.GRU(IN, H, num_layers=2, bidirectional=True)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(4, 3, 11\), got \[2, 3, 11\]"):
        layer(torch.randn(L, N, IN), torch.randn(2, N, H))
    packed = pack_padded_sequence(torch.randn(L, N, IN), [5, 4, 2])
    with pytest.raises(ValueError, match="lengths must be None for a PackedSequence"):
        layer(packed, lengths=[5, 4, 2])
