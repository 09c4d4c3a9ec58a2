"""LanguageModel: shapes, loss, step == forward, state chaining, tying, init, training, dropout."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from rnnkit import LSTMState
from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel, LMOutput

V, E, H = 11, 7, 13  # odd sizes, so a transposition cannot hide
CELLS = [
    pytest.param({"cell": "lstm"}, id="lstm"),
    pytest.param({"cell": "gru"}, id="gru"),
    pytest.param({"cell": "rnn"}, id="rnn-tanh"),
    pytest.param({"cell": "rnn", "nonlinearity": "softplus"}, id="rnn-softplus"),
]


def make(dtype=torch.float32, seed: int = 0, **overrides) -> LanguageModel:
    torch.manual_seed(seed)
    options = {"vocab_size": V, "embed": E, "hidden": H, "layers": 2} | overrides
    return LanguageModel(ModelConfig(**options)).to(dtype)


def tokens(n: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (n, length), generator=torch.Generator().manual_seed(seed))


def states(state) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, LSTMState) else (state,)


@pytest.mark.parametrize("options", CELLS)
def test_shapes_with_and_without_targets(options):
    model = make(**options)
    idx = tokens(3, 5)
    out = model(idx)
    assert isinstance(out, LMOutput)
    assert out.logits.shape == (3, 5, V) and out.loss is None
    assert isinstance(out.state, LSTMState) == (options["cell"] == "lstm")
    for s in states(out.state):
        assert s.shape == (2, 3, H)
    with_targets = model(idx, tokens(3, 5, seed=2))
    assert with_targets.logits.shape == (3, 5, V)
    assert with_targets.loss.shape == () and with_targets.loss > 0


def test_softplus_rnn_runs_on_cells_path():
    model = make(cell="rnn", nonlinearity="softplus")
    assert model.rnn.nonlinearity == "softplus" and not model.rnn.use_fused


def test_loss_is_cross_entropy_by_hand():
    model = make()
    idx, targets = tokens(4, 6), tokens(4, 6, seed=3)
    out = model(idx, targets)
    log_probs = torch.log_softmax(out.logits, dim=-1)  # (N, L, V)
    by_hand = -log_probs.gather(-1, targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(out.loss, by_hand)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.transpose(1, 2), targets))


@pytest.mark.parametrize("options", CELLS)
def test_step_by_step_equals_one_forward_call(options):
    model = make(torch.float64, **options).eval()
    idx = tokens(3, 9)
    expected = model(idx).logits  # (N, L, V)
    state, logits = None, []
    for t in range(idx.size(1)):
        step_logits, state = model.step(idx[:, t], state)  # (N, V)
        logits.append(step_logits)
    torch.testing.assert_close(torch.stack(logits, dim=1), expected, rtol=0, atol=1e-10)
    for a, b in zip(states(state), states(model(idx).state), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("options", CELLS)
def test_state_chaining_over_two_halves_equals_one_call(options):
    model = make(torch.float64, **options).eval()
    idx = tokens(2, 10)
    whole = model(idx)
    first = model(idx[:, :4])
    second = model(idx[:, 4:], state=first.state)
    logits = torch.cat([first.logits, second.logits], dim=1)
    torch.testing.assert_close(logits, whole.logits, rtol=0, atol=1e-10)
    for a, b in zip(states(second.state), states(whole.state), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("options", CELLS)
def test_initial_state_is_zeros_like_none(options):
    model = make(torch.float64, **options).eval()
    state = model.initial_state(2)
    assert isinstance(state, LSTMState) == (options["cell"] == "lstm")
    for s in states(state):
        assert s.shape == (2, 2, H) and s.dtype == torch.float64 and not s.any()
    idx = tokens(2, 4)
    torch.testing.assert_close(model(idx, state=state).logits, model(idx).logits)


def test_weight_tying_shares_one_parameter():
    model = make(embed=H, tie_weights=True)
    assert model.head.weight is model.embedding.weight
    untied = make(embed=H)
    assert model.num_parameters() == untied.num_parameters() - V * H
    model(tokens(2, 3), tokens(2, 3)).loss.backward()
    assert model.embedding.weight.grad is not None


def test_weight_tying_needs_equal_sizes():
    with pytest.raises(UserError, match="--tie-weights"):
        make(embed=E, hidden=H, tie_weights=True)


def test_vocab_size_must_be_positive():
    with pytest.raises(UserError, match="vocab_size"):
        make(vocab_size=0)


def test_forget_bias_is_for_lstm_only():
    with pytest.raises(UserError, match="--forget-bias"):
        make(cell="gru", forget_bias=1.0)


def _hh_blocks(model: LanguageModel, gates: int):
    for name, param in model.rnn.named_parameters():
        if name.startswith("weight_hh"):
            yield from param.detach().chunk(gates, dim=0)


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_orthogonal_init(cell, gates):
    model = make(torch.float64, cell=cell, init="orthogonal")
    blocks = list(_hh_blocks(model, gates))
    assert len(blocks) == 2 * gates
    for q in blocks:  # (H, H)
        torch.testing.assert_close(q.T @ q, torch.eye(H, dtype=q.dtype), rtol=0, atol=1e-6)
    for name, param in model.rnn.named_parameters():
        if name.startswith("bias"):
            assert not param.any(), name
        if name.startswith("weight_ih"):  # xavier uniform bound sqrt(6 / (fan_in + fan_out))
            bound = math.sqrt(6 / sum(param.shape))
            assert param.abs().max() <= bound and param.std() > bound / 4


@pytest.mark.parametrize("init", ["torch", "orthogonal"])
def test_forget_bias_sets_the_effective_forget_bias(init):
    plain = make(init=init)
    model = make(init=init, forget_bias=1.0)
    for layer in range(2):
        b_ih, b_hh = (getattr(model.rnn, f"{k}_l{layer}").detach() for k in ("bias_ih", "bias_hh"))
        effective = (b_ih + b_hh).chunk(4)  # i, f, g, o
        assert torch.equal(effective[1], torch.ones(H))
        plain_effective = sum(
            getattr(plain.rnn, f"{k}_l{layer}").detach() for k in ("bias_ih", "bias_hh")
        )
        for gate in (0, 2, 3):
            assert torch.equal(effective[gate], plain_effective.chunk(4)[gate])
    for name, param in model.named_parameters():  # nothing else changed by the option
        if not name.startswith("rnn.bias"):
            assert torch.equal(param, dict(plain.named_parameters())[name]), name


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is fastest, and it avoids oversubscribing a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_training_drives_the_loss_down(cell, one_thread):
    text = "hello world " * 20
    symbols = sorted(set(text))
    data = torch.tensor([symbols.index(c) for c in text])
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, vocab_size=len(symbols), embed=16, hidden=48, layers=1)
    model = LanguageModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    starts = torch.arange(16) * 5  # 16 windows of 24 characters, at every phase of the period 12
    idx = torch.stack([data[s : s + 24] for s in starts])  # (N, L)
    targets = torch.stack([data[s + 1 : s + 25] for s in starts])
    first = None
    for _ in range(100):
        loss = model(idx, targets).loss
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 1.5  # about ln(8) = 2.08 nats at the start
    assert model(idx, targets).loss.item() < 0.2  # measured: about 0.02


def test_dropout_only_in_training_mode():
    model = make(dropout=0.5, embed_dropout=0.3)
    idx = tokens(4, 8)
    model.train()
    assert not torch.equal(model(idx).logits, model(idx).logits)
    model.eval()
    assert torch.equal(model(idx).logits, model(idx).logits)
    assert model.rnn.dropout == 0.5 and make(dropout=0.5, layers=1).rnn.dropout == 0.0


@pytest.mark.parametrize(
    "cell, nonlinearity, layers",
    [("lstm", "tanh", 2), ("gru", "tanh", 2), ("rnn", "tanh", 1), ("rnn", "relu", 2),
     ("rnn", "softplus", 1), ("mingru", "tanh", 2)],
)  # fmt: skip
def test_eval_step_uses_cell_kernels_and_equals_forward(cell, nonlinearity, layers):
    """In eval mode ``step`` runs one-step cell kernels (not the fused sequence kernel): the
    logits and states of T chained steps equal one forward call, in float64."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, embed=5, hidden=7, layers=layers, cell=cell)
    config.nonlinearity = nonlinearity
    model = LanguageModel(config).double().eval()
    idx = torch.randint(0, 11, (3, 9))
    whole = model(idx)
    if nonlinearity in ("tanh", "relu") and cell in ("lstm", "gru", "rnn"):

        def refuse(*args, **kwargs):
            raise AssertionError("eval step ran the sequence kernel")

        model.rnn.forward = refuse  # the step must not go through the layer's forward
    state, logits = None, []
    for t in range(idx.size(1)):
        step_logits, state = model.step(idx[:, t], state)
        logits.append(step_logits)
    torch.testing.assert_close(torch.stack(logits, 1), whole.logits, rtol=1e-10, atol=1e-10)
    for ours, theirs in zip(
        state if isinstance(state, tuple) else (state,),
        whole.state if isinstance(whole.state, tuple) else (whole.state,),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_zoneout_and_recurrent_dropout_reach_the_layer_and_eval_step_honours_them():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, embed=5, hidden=7, layers=2, cell="lstm")
    config.zoneout, config.recurrent_dropout = 0.3, 0.2
    model = LanguageModel(config).double().eval()
    assert model.rnn.zoneout == (0.3, 0.3) and model.rnn.recurrent_dropout == 0.2
    assert not model.rnn.use_fused  # the regularisers live on the cells path
    idx = torch.randint(0, 11, (2, 6))
    whole = model(idx)  # eval: zoneout's expectation, no dropout
    state, logits = None, []
    for t in range(idx.size(1)):
        step_logits, state = model.step(idx[:, t], state)
        logits.append(step_logits)
    torch.testing.assert_close(torch.stack(logits, 1), whole.logits, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"zoneout": 1.0}, "--zoneout must be in [0, 1)"),
        ({"recurrent_dropout": -0.1}, "--recurrent-dropout must be in [0, 1)"),
        ({"zoneout": 0.1, "cell": "minlstm"}, "applies to --cell lstm, gru, rnn, lnlstm"),
        ({"recurrent_dropout": 0.1, "impl": "fused"}, "drop --impl fused"),
    ],
)
def test_regulariser_flags_are_checked(changes, message):
    from rnnkit.config import RunConfig, validate

    config = RunConfig()
    for key, value in changes.items():
        setattr(config.model, key, value)
    with pytest.raises(UserError, match=re.escape(message)):
        validate(config)
