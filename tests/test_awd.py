"""rnnkit.nn.awd: AWD-LSTM's weight drop, locked dropout, embedding dropout, AR and TAR.

Weight drop is checked against a manual functional_call of the bare layer over the same mask,
run ONE STEP AT A TIME (so one mask at every step is proved, not assumed), in float64; locked
and embedding dropout by their zero patterns and scaling; AR/TAR against hand computations.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch.func import functional_call

import rnnkit
from rnnkit.errors import UserError
from rnnkit.nn import registry
from rnnkit.nn.awd import (
    LockedDropout,
    WeightDrop,
    activation_regularisation,
    embedding_dropout,
    temporal_activation_regularisation,
)

IN, H, N, L = 3, 5, 2, 6
D64 = torch.float64

LAYERS = {
    "lstm_fused": lambda: rnnkit.LSTM(IN, H, 2, impl="fused", dtype=D64),
    "lstm_cells": lambda: rnnkit.LSTM(IN, H, 2, impl="cells", dtype=D64),
    "gru_fused": lambda: rnnkit.GRU(IN, H, 2, impl="fused", dtype=D64),
    "rnn_cells": lambda: rnnkit.RNN(IN, H, 2, impl="cells", dtype=D64),
    "lstm_bidirectional": lambda: rnnkit.LSTM(IN, H, 2, bidirectional=True, dtype=D64),
    "torch_lstm": lambda: torch.nn.LSTM(IN, H, 2, dtype=D64),
    "lnlstm": lambda: rnnkit.nn.LayerNormLSTM(IN, H, 2, dtype=D64),
    "indrnn": lambda: rnnkit.nn.IndRNN(IN, H, 2, dtype=D64),
}


def _x(batch_first: bool = False) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn((N, L, IN) if batch_first else (L, N, IN), dtype=D64)


def _stepwise(layer: torch.nn.Module, weights: dict, x: torch.Tensor) -> torch.Tensor:
    """The bare layer over ``weights``, one time step per call, the state carried."""
    outputs, state = [], None
    for t in range(x.size(0)):
        out, state = functional_call(layer, weights, (x[t : t + 1], state))
        outputs.append(out)
    return torch.cat(outputs)


# ---- WeightDrop --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LAYERS)
def test_weight_drop_eval_is_the_bare_layer(kind):
    layer = LAYERS[kind]()
    wrapped = WeightDrop(layer, 0.5).eval()
    x = _x()
    assert torch.equal(wrapped(x)[0], layer.eval()(x)[0])


@pytest.mark.parametrize("kind", ["lstm_fused", "lstm_cells", "torch_lstm"])
def test_weight_drop_two_training_forwards_draw_different_masks(kind):
    wrapped = WeightDrop(LAYERS[kind](), 0.5).train()
    x = _x()
    first, second = wrapped(x)[0], wrapped(x)[0]
    assert not torch.allclose(first, second)
    # and neither is the undropped layer's output
    assert not torch.allclose(first, wrapped.layer(x)[0])


@pytest.mark.parametrize("kind", LAYERS)
def test_weight_drop_uses_one_mask_at_every_step(kind):
    layer = LAYERS[kind]()
    wrapped = WeightDrop(layer, 0.4).train()
    x = _x()
    torch.manual_seed(7)
    masks = wrapped.masks()
    torch.manual_seed(7)
    output = wrapped(x)[0]
    own = dict(layer.named_parameters())
    dropped = {name: own[name] * mask for name, mask in masks.items()}
    for name, mask in masks.items():  # a real DropConnect mask: zeros and 1/(1-p) only
        assert mask.shape == own[name].shape
        assert set(mask.unique().tolist()) == {0.0, 1 / 0.6}
    if getattr(layer, "bidirectional", False):  # no stepping backwards: one whole call
        torch.testing.assert_close(output, functional_call(layer, dropped, (x,))[0])
    else:
        torch.testing.assert_close(output, _stepwise(layer, dropped, x))


@pytest.mark.parametrize("kind", ["lstm_fused", "lstm_cells", "gru_fused", "torch_lstm", "indrnn"])
def test_weight_drop_gradients_reach_the_undropped_weights(kind):
    layer = LAYERS[kind]()
    wrapped = WeightDrop(layer, 0.5).train()
    x = _x()
    torch.manual_seed(3)
    masks = wrapped.masks()
    torch.manual_seed(3)
    wrapped(x)[0].pow(2).sum().backward()
    got = {name: p.grad.clone() for name, p in layer.named_parameters()}

    # by hand: the dropped matrices as leaves; d loss / d W_hh = mask * d loss / d W_hh'
    layer.zero_grad()
    own = dict(layer.named_parameters())
    leaves = {n: (own[n] * m).detach().requires_grad_() for n, m in masks.items()}
    functional_call(layer, leaves, (x,))[0].pow(2).sum().backward()
    for name, param in own.items():
        want = masks[name] * leaves[name].grad if name in masks else param.grad
        torch.testing.assert_close(got[name], want)
        assert got[name].abs().sum() > 0
    for name, mask in masks.items():
        assert torch.all(got[name][mask == 0] == 0)
        assert torch.all(got[name][mask != 0] != 0)


def test_weight_drop_fused_and_cells_agree_for_the_same_mask():
    fused = rnnkit.LSTM(IN, H, 2, impl="fused", dtype=D64)
    cells = rnnkit.LSTM(IN, H, 2, impl="cells", dtype=D64)
    cells.load_state_dict(fused.state_dict())
    x = _x(batch_first=False)
    results = []
    for layer in (fused, cells):
        torch.manual_seed(11)
        output, (h, c) = WeightDrop(layer, 0.3).train()(x)
        (output.sum() + c.sum()).backward()
        results.append((output, h, c, [p.grad for p in layer.parameters()]))
    (o1, h1, c1, g1), (o2, h2, c2, g2) = results
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close((h1, c1), (h2, c2))
    torch.testing.assert_close(g1, g2)


def test_weight_drop_keeps_the_layers_state_dict_keys():
    layer = rnnkit.LSTM(IN, H, 2)
    wrapped = WeightDrop(layer, 0.5)
    assert list(wrapped.state_dict()) == list(layer.state_dict())
    # nested in a model: a checkpoint loads with or without the wrapper, both ways
    with_drop = torch.nn.Sequential(wrapped)
    without = torch.nn.Sequential(rnnkit.LSTM(IN, H, 2))
    assert list(with_drop.state_dict()) == list(without.state_dict())
    without.load_state_dict(with_drop.state_dict())
    torch.testing.assert_close(without.state_dict(), with_drop.state_dict())
    fresh = torch.nn.Sequential(WeightDrop(rnnkit.LSTM(IN, H, 2), 0.2))
    fresh.load_state_dict(without.state_dict())
    torch.testing.assert_close(fresh.state_dict(), with_drop.state_dict())
    torch.testing.assert_close(fresh[0].state_dict(), layer.state_dict())
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict({})
    # the wrapper reads what it lacks from the layer
    assert wrapped.hidden_size == H and wrapped.num_layers == 2


def test_weight_drop_copies_and_pickles():
    wrapped = WeightDrop(rnnkit.LSTM(IN, H, 2), 0.5)
    buffer = io.BytesIO()
    torch.save(wrapped, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(wrapped), torch.load(buffer, weights_only=False)):
        assert clone.p == 0.5 and clone.hidden_size == H
        torch.testing.assert_close(clone.state_dict(), wrapped.state_dict())
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_attribute


def test_weight_drop_names_picks_the_matrices():
    layer = rnnkit.GRU(IN, H, 2)
    assert WeightDrop(layer, 0.5).names == ("weight_hh_l0", "weight_hh_l1")
    assert WeightDrop(layer, 0.5, names=["weight_hh_l1"]).names == ("weight_hh_l1",)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, True, "0.5", float("nan")])
def test_weight_drop_rejects_a_rate_outside_0_1(p):
    with pytest.raises(UserError, match=r"WeightDrop p must be a dropout rate in \[0, 1\)") as e:
        WeightDrop(rnnkit.LSTM(IN, H), p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "layer", [rnnkit.nn.MinGRU(IN, H), torch.nn.Linear(IN, H)], ids=["mingru", "linear"]
)
def test_weight_drop_rejects_a_layer_without_weight_hh(layer):
    with pytest.raises(UserError, match="needs a layer with weight_hh_\\* parameters") as e:
        WeightDrop(layer, 0.5)
    assert "\n" not in str(e.value)


def test_weight_drop_rejects_unknown_names():
    with pytest.raises(UserError, match="names must be parameters of LSTM.*weight_hh_l9"):
        WeightDrop(rnnkit.LSTM(IN, H), 0.5, names=("weight_hh_l9",))


@pytest.mark.parametrize("name", registry.names())
def test_weight_drop_wraps_every_registered_layer_that_has_weight_hh(name):
    layer = registry.get_cell(name).layer_class()(IN, H, 2)
    has = any(n.startswith("weight_hh") for n, _ in layer.named_parameters())
    if not has:
        with pytest.raises(UserError, match="has none"):
            WeightDrop(layer, 0.5)
        return
    wrapped = WeightDrop(layer, 0.5).train()
    output = wrapped(_x().float())[0]
    assert output.shape == (L, N, H)
    output.sum().backward()
    assert all(layer.get_parameter(n).grad is not None for n in wrapped.names)


# ---- LockedDropout ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_one_mask_for_every_step(batch_first):
    torch.manual_seed(0)
    shape = (4, L, 8) if batch_first else (L, 4, 8)
    y = LockedDropout(0.5, batch_first=batch_first).train()(torch.ones(shape))
    steps = y.unbind(1 if batch_first else 0)
    for step in steps[1:]:
        assert torch.equal(step, steps[0])
    assert set(y.unique().tolist()) == {0.0, 2.0}
    # masks differ between sequences and features (not one draw for the whole tensor)
    assert 0 < (steps[0] == 0).sum() < steps[0].numel()


def test_locked_dropout_unbatched_input():
    torch.manual_seed(0)
    y = LockedDropout(0.5).train()(torch.ones(L, 16))
    assert all(torch.equal(row, y[0]) for row in y)


def test_locked_dropout_eval_and_zero_rate_are_the_identity():
    x = _x()
    assert LockedDropout(0.5).eval()(x) is x
    assert LockedDropout(0.0).train()(x) is x


def test_locked_dropout_preserves_the_expectation():
    torch.manual_seed(5)
    x = torch.rand(3, 2, 4, dtype=D64) + 0.5
    drop = LockedDropout(0.5).train()
    mean = sum(drop(x) for _ in range(4000)) / 4000
    torch.testing.assert_close(mean, x, atol=0.1, rtol=0)


def test_locked_dropout_rejects_bad_input():
    with pytest.raises(UserError, match=r"LockedDropout p must be a dropout rate in \[0, 1\)"):
        LockedDropout(1.0)
    with pytest.raises(ValueError, match="expected a 2-D or 3-D input, got 4-D"):
        LockedDropout(0.5).train()(torch.ones(2, 2, 2, 2))


# ---- embedding dropout -------------------------------------------------------------------------


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(2)
    embedding = torch.nn.Embedding(20, 6)
    words = torch.arange(20).repeat(3).reshape(6, 10)  # every word, three times
    out = embedding_dropout(embedding, words, 0.5, training=True)
    flat, ids = out.reshape(-1, 6), words.reshape(-1)
    dropped = kept = 0
    for v in range(20):
        rows = flat[ids == v]
        if torch.all(rows == 0):
            dropped += 1
        else:
            kept += 1
            for row in rows:  # every occurrence kept, scaled 1/(1-p)
                torch.testing.assert_close(row, embedding.weight[v] * 2)
    assert dropped > 0 and kept > 0


def test_embedding_dropout_not_training_is_the_embedding():
    embedding = torch.nn.Embedding(20, 6)
    words = torch.randint(0, 20, (4, 5))
    assert torch.equal(embedding_dropout(embedding, words, 0.5, training=False), embedding(words))
    assert torch.equal(embedding_dropout(embedding, words, 0.0, training=True), embedding(words))
    with pytest.raises(UserError, match="embedding dropout p must be a dropout rate"):
        embedding_dropout(embedding, words, 1.0)


# ---- AR and TAR --------------------------------------------------------------------------------

OUTPUTS = torch.tensor([[[1.0, 2.0]], [[3.0, 5.0]], [[0.0, -1.0]]])  # (L=3, N=1, H=2)


def test_activation_regularisation_by_hand():
    # squares 1, 4, 9, 25, 0, 1: mean 40/6; alpha 2
    torch.testing.assert_close(activation_regularisation(OUTPUTS, 2.0), torch.tensor(40 / 3))
    assert activation_regularisation(OUTPUTS, 0.0) == 0


@pytest.mark.parametrize("batch_first", [False, True])
def test_temporal_activation_regularisation_by_hand(batch_first):
    # h_2 - h_1 = (2, 3), h_3 - h_2 = (-3, -6): squares 4, 9, 9, 36, mean 14.5; beta 0.5
    outputs = OUTPUTS.transpose(0, 1) if batch_first else OUTPUTS
    got = temporal_activation_regularisation(outputs, 0.5, batch_first=batch_first)
    torch.testing.assert_close(got, torch.tensor(7.25))
    assert temporal_activation_regularisation(OUTPUTS[:1], 1.0) == 0  # one step: no difference


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "1"])
def test_ar_and_tar_reject_bad_coefficients(value):
    with pytest.raises(UserError, match="alpha must be a finite number >= 0"):
        activation_regularisation(OUTPUTS, value)
    with pytest.raises(UserError, match="beta must be a finite number >= 0"):
        temporal_activation_regularisation(OUTPUTS, value)
