"""The modern recurrent layers (rnnkit.nn.xlstm, rnnkit.nn.linear on rnnkit.nn.modern): in
float64 the chunkwise training form equals the step form (outputs, final states and every
gradient) with random lengths, for any chunk size; a sequence fed in two parts with the carried
state equals it fed whole; gradcheck; an independent NumPy loop of each paper's recurrence;
bidirectional, batch_first, unbatched and packed input against each sequence run alone; the
argument errors; and a tiny training run that lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit import GLA, MLSTM, RWKV7, SLSTM, GatedDeltaNet, Mamba2
from rnnkit.nn import registry
from rnnkit.nn.chunked import causal_conv, conv_step, linear_recurrence, mlstm_recurrence

D64 = torch.float64
IN, H, L, N = 5, 8, 13, 3  # input, hidden, length, batch
#: small heads so that every head has several units, and Mamba-2 a small state
OPTIONS = {
    MLSTM: {"heads": 2},
    SLSTM: {"heads": 2},
    GLA: {"heads": 2},
    Mamba2: {"head_dim": 4, "state_size": 3},
    GatedDeltaNet: {"heads": 2},
    RWKV7: {"head_size": 4},
}
LAYERS = [pytest.param(cls, id=cls.__name__) for cls in OPTIONS]


def make(cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(IN, H, dtype=D64, **(OPTIONS[cls] | kwargs))


def randn(*shape, seed=1):
    return torch.randn(shape, dtype=D64, generator=torch.Generator().manual_seed(seed))


def initial(layer, seed=2):
    """A random (h0, c0): a modern layer's memory may start anywhere a run left it."""
    rows = layer.num_layers * layer.num_directions
    h0, c0 = (randn(rows, N, size, seed=seed + k) * 0.3 for k, size in
              enumerate(layer.state_spec().sizes))  # fmt: skip
    return h0, c0


def run(layer, impl, x, state, lengths=None):
    """Output, (h_n, c_n) and the gradients of every parameter, the input and the state."""
    layer.impl = impl
    x = x.detach().requires_grad_()
    state = tuple(s.detach().requires_grad_() for s in state)
    out, (h_n, c_n) = layer(x, state, lengths=lengths)
    weights = torch.linspace(-1, 1, out.numel(), dtype=D64).view(out.shape)
    ((out * weights).sum() + (h_n**2).sum() + (c_n.tanh() ** 2).sum()).backward()
    grads = [p.grad.clone() for p in layer.parameters()] + [x.grad, *(s.grad for s in state)]
    layer.zero_grad()
    return out.detach(), h_n.detach(), c_n.detach(), grads


def assert_close(a, b, tol=1e-10):
    assert a.shape == b.shape
    assert torch.allclose(a, b, rtol=0, atol=tol * max(1.0, float(b.detach().abs().max()))), float(
        (a - b).abs().max()
    )


# ---- the training form is the step form ------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("chunk", [1, 4, 5, 64])
def test_the_chunked_form_equals_the_step_form_with_lengths(cls, chunk):
    layer = make(cls, num_layers=2, chunk_size=chunk)
    x, state, lengths = randn(L, N, IN), initial(layer), torch.tensor([L, 6, 1])
    chunked = run(layer, "chunk", x, state, lengths)
    stepped = run(layer, "sequential", x, state, lengths)
    for a, b in zip(chunked[:3], stepped[:3], strict=True):
        assert_close(a, b)
    for a, b in zip(chunked[3], stepped[3], strict=True):
        assert (a is None) == (b is None)  # h0 reaches neither form: h is an output only
        if a is not None:
            assert_close(a, b)
    assert chunked[0][6:, 1].abs().max() == 0  # zeros past each sequence's end


@pytest.mark.parametrize("cls", LAYERS)
def test_a_sequence_in_two_parts_equals_it_whole(cls):
    layer = make(cls, chunk_size=4)
    x, state = randn(L, N, IN), initial(layer)
    whole, (h, c) = layer(x, state)
    first, carried = layer(x[:6], state)
    second, (h2, c2) = layer(x[6:], carried)
    assert_close(torch.cat([first, second]), whole)
    assert_close(h2, h)
    assert_close(c2, c)
    one_by_one, s = [], state  # generation: one step at a time (the step form)
    for t in range(L):
        y, s = layer(x[t : t + 1], s)
        one_by_one.append(y)
    assert_close(torch.cat(one_by_one), whole)


def test_the_chunk_size_is_settable_and_changes_no_number():
    layer = make(GatedDeltaNet, chunk_size=4)
    x = randn(L, N, IN)
    before = layer(x)[0]
    layer.chunk_size = 3
    assert all(block.mixer.chunk == 3 for block in layer.blocks) and layer.chunk_size == 3
    assert_close(layer(x)[0], before)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1, got 0"):
        layer.chunk_size = 0


@pytest.mark.parametrize("cls", LAYERS)
def test_gradcheck(cls):
    torch.manual_seed(0)
    layer = cls(3, 4, dtype=D64, chunk_size=2, **(OPTIONS[cls] | _tiny(cls)))
    x = randn(5, 2, 3).requires_grad_()
    c0 = (randn(1, 2, layer.state_spec().sizes[1]) * 0.2).requires_grad_()
    h0 = torch.zeros(1, 2, 4, dtype=D64)

    def f(x, c0):
        out, (_, c) = layer(x, (h0, c0), lengths=[5, 3])
        return out, c

    assert torch.autograd.gradcheck(f, (x, c0), eps=1e-6, atol=1e-7)


def _tiny(cls) -> dict:
    return {"head_dim": 2, "state_size": 2} if cls is Mamba2 else (
        {"head_size": 2} if cls is RWKV7 else {"heads": 2})  # fmt: skip


# ---- the kernels against independent loops ----------------------------------------------------
def numpy_linear(q, k, v, w, a, b, s):
    """S_t = diag(w_t) S + a_t (b_t^T S) + k_t v_t^T, o_t = S_t^T q_t, one head, in NumPy."""
    out = []
    for t in range(q.shape[0]):
        s = w[t][:, None] * s + np.outer(a[t], b[t] @ s) + np.outer(k[t], v[t])
        out.append(s.T @ q[t])
    return np.stack(out), s


@pytest.mark.parametrize("vector", [False, True], ids=["scalar-decay", "vector-decay"])
@pytest.mark.parametrize("low_rank", [False, True], ids=["diagonal", "delta-rule"])
def test_linear_recurrence_equals_a_numpy_loop(vector, low_rank):
    g = np.random.default_rng(0)
    steps, dk, dv = 11, 3, 4
    q, k, a, b = (g.normal(size=(steps, dk)) for _ in range(4))
    v = g.normal(size=(steps, dv))
    w = np.exp(-g.uniform(0, 2, size=(steps, dk if vector else 1)))
    if not low_rank:
        a = b = np.zeros_like(a)
    s0 = g.normal(size=(dk, dv))
    expected, s_end = numpy_linear(q, k, v, np.broadcast_to(w, (steps, dk)), a, b, s0)
    t = lambda x: torch.tensor(x)[None, None]  # noqa: E731  (1, 1, L, d)
    o, s = linear_recurrence(t(q), t(k), t(v), t(np.log(w)), torch.tensor(s0)[None, None],
                             *((t(a), t(b)) if low_rank else ()), chunk=4)  # fmt: skip
    np.testing.assert_allclose(o[0, 0].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(s[0, 0].numpy(), s_end, atol=1e-12)


def test_a_strong_vector_decay_neither_overflows_nor_loses_the_state():
    """log w = -60 per step: the factorised products would need e^{+1000}; the pairwise
    fallback gives the loop's numbers in float32."""
    steps, dk, dv = 9, 2, 3
    q, k = torch.randn(1, 1, steps, dk), torch.randn(1, 1, steps, dk)
    v = torch.randn(1, 1, steps, dv)
    log_w = torch.full((1, 1, steps, dk), -60.0)
    o, _ = linear_recurrence(q, k, v, log_w, torch.zeros(1, 1, dk, dv), chunk=8)
    expected, _ = numpy_linear(q[0, 0].double().numpy(), k[0, 0].double().numpy(),
                               v[0, 0].double().numpy(), np.exp(log_w[0, 0].double().numpy()),
                               np.zeros((steps, dk)), np.zeros((steps, dk)),
                               np.zeros((dk, dv)))  # fmt: skip
    assert torch.isfinite(o).all()
    np.testing.assert_allclose(o[0, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_mlstm_recurrence_equals_the_unstabilised_numpy_loop():
    """The paper's mLSTM without the stabiliser (exp gates, max(|n q|, 1)) in float64, on
    gates small enough not to overflow, against the stabilised chunked kernel."""
    g = np.random.default_rng(1)
    steps, d = 10, 3
    q, k, v = (g.normal(size=(steps, d)) for _ in range(3))
    i_tilde, f_tilde = g.normal(size=steps), g.normal(size=steps) + 2
    c, n, out = np.zeros((d, d)), np.zeros(d), []
    for t in range(steps):
        i, f = np.exp(i_tilde[t]), 1 / (1 + np.exp(-f_tilde[t]))
        c, n = f * c + i * np.outer(k[t], v[t]), f * n + i * k[t]
        out.append(c.T @ q[t] / max(abs(n @ q[t]), 1.0))
    t = lambda x: torch.tensor(x)[None, None]  # noqa: E731
    state = (torch.zeros(1, 1, d, d, dtype=D64), torch.zeros(1, 1, d, dtype=D64),
             torch.zeros(1, 1, dtype=D64))  # fmt: skip
    log_f = torch.nn.functional.logsigmoid(t(f_tilde))
    h, _ = mlstm_recurrence(t(q), t(k), t(v), log_f, t(i_tilde), state, chunk=4)
    np.testing.assert_allclose(h[0, 0].numpy(), np.stack(out), atol=1e-12)


def test_the_causal_convolution_steps_as_it_runs():
    x, history = randn(7, 2, 3), randn(2, 3, 3)
    weight, bias = randn(3, 4, seed=3), randn(3, seed=4)
    y, last = causal_conv(x, history, weight, bias, None)
    steps, h = [], history
    for x_t in x:
        y_t, h = conv_step(x_t, h, weight, bias)
        steps.append(y_t)
    assert_close(torch.stack(steps), y)
    assert_close(h, last)
    _, ended = causal_conv(x, history, weight, bias, torch.tensor([7, 2]))
    assert_close(ended[1], torch.cat([history[1, 2:], x[:2, 1]]))  # the last 3 inputs of 2


# ---- the layer contract ----------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS)
def test_padded_packed_and_bidirectional_batches_equal_each_sequence_alone(cls):
    layer = make(cls, num_layers=2, bidirectional=True, batch_first=True, chunk_size=4)
    x, lengths = randn(N, L, IN), [L, 7, 2]
    out, (h, c) = layer(x, lengths=lengths)
    packed_out, (hp, cp) = layer(pack_padded_sequence(x, lengths, batch_first=True))
    assert_close(hp, h)
    assert_close(cp, c)
    for n, length in enumerate(lengths):
        alone, (h1, c1) = layer(x[n : n + 1, :length])
        assert_close(out[n, :length], alone[0])
        if length < L:  # outputs past the end are zero
            assert out[n, length:].abs().max() == 0
        assert_close(h[:, n], h1[:, 0])
        assert_close(c[:, n], c1[:, 0])
    unbatched, _ = layer(x[1, :7])
    assert_close(unbatched, out[1, :7])


@pytest.mark.parametrize("cls", LAYERS)
def test_constructed_and_described_like_the_other_layers(cls):
    layer = cls(IN, H, num_layers=2, batch_first=True)
    assert getattr(rnnkit, cls.__name__) is cls
    row = registry.get_cell(layer.cell)
    assert row.layer_class() is cls and row.has_cell_state
    assert layer.state_spec().names == ("h", "c") and layer.state_spec().sizes[0] == H
    out, (h, c) = layer(torch.randn(2, 4, IN))
    assert out.shape == (2, 4, H) and h.shape == (2, 2, H)
    assert c.shape == (2, 2, layer.state_spec().sizes[1])
    assert cls.__name__ in repr(layer)


def test_the_memory_sizes_are_the_papers():
    sizes = {cls: cls(4, 256).state_spec().sizes[1] for cls in OPTIONS}
    assert sizes[MLSTM] == 4 * (64 * 64 + 64 + 1)  # C, n, m per head
    assert sizes[SLSTM] == 4 * 256  # h, c, n, m per unit
    assert sizes[GLA] == 4 * 32 * 64  # d_k = d_v / 2
    assert sizes[Mamba2] == 8 * 64 * 64 + 3 * (512 + 2 * 64)  # S and the conv window
    assert sizes[GatedDeltaNet] == 4 * 64 * 64 + 3 * 3 * 256
    assert sizes[RWKV7] == 4 * 64 * 64 + 256  # S and the token shift


@pytest.mark.parametrize(
    ("make_layer", "message"),
    [
        (lambda: MLSTM(4, 6, heads=4), "heads must be a positive divisor of 6, got 4"),
        (lambda: GLA(4, 6, heads=0), "heads must be a positive divisor of 6, got 0"),
        (lambda: Mamba2(4, 6, head_dim=5), "head_dim must be a positive divisor of 12, got 5"),
        (lambda: RWKV7(4, 6, head_size=4), "head_size must be a positive divisor of 6, got 4"),
        (lambda: Mamba2(4, 6, conv=0), "conv must be an integer >= 1, got 0"),
        (lambda: SLSTM(4, 6, impl="fused"), "impl must be one of 'auto', 'chunk', 'sequential'"),
        (lambda: GatedDeltaNet(4, 6, chunk_size=0), "chunk_size must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_named(make_layer, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_layer()


def test_an_option_of_another_layer_is_refused():
    with pytest.raises(TypeError, match=r"MLSTM got unknown options \['state_size'\]"):
        MLSTM(4, 8, state_size=3)


def test_a_wrong_state_shape_is_named():
    layer = MLSTM(4, 8)
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\) must be a tensor of shape"):
        layer(torch.randn(3, 2, 4), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))


@pytest.mark.parametrize("cls", LAYERS)
def test_a_tiny_model_learns_the_running_mean(cls):
    """y_t = mean(x_1..x_t), a memory every one of these layers can keep: after 100 Adam steps
    the loss is under 0.75 of the best memoryless guess's (0, whose loss is E[y^2] =
    mean_t 1/t = 0.259 over 12 steps)."""
    torch.manual_seed(0)
    layer, head = cls(4, 16, **_tiny(cls)), torch.nn.Linear(16, 4)
    optimiser = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.02)
    steps = torch.arange(1, 13).view(12, 1, 1)
    losses = []
    for _ in range(100):
        x = torch.randn(12, 8, 4)
        loss = ((head(layer(x)[0]) - x.cumsum(0) / steps) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    trivial = float((1 / steps.double()).mean())  # E[y_t^2] = 1/t for unit-variance x
    assert np.mean(losses[-5:]) < 0.75 * trivial, losses[::10]


@pytest.mark.parametrize(
    "cell",
    [
        name
        for name in registry.names()
        if name in ("mlstm", "slstm", "deltanet", "mamba2", "gla", "rwkv7")
    ],
)
def test_the_memory_experiment_runs_a_modern_layer_within_its_budget(cell):
    from rnnkit.analysis.memory import MemoryModel, run_trial, task_sizes

    trial = run_trial("copy", cell, 6, 0, steps=4, budget=3000, batch=4, stop_early=False)
    model = MemoryModel(cell, *task_sizes("copy"), trial.hidden)
    assert trial.params == sum(p.numel() for p in model.parameters()) <= 3000
    assert np.isfinite(trial.loss) and trial.steps_run == 4


# ---- in a language model ---------------------------------------------------------------------
MODERN = ["mlstm", "slstm", "deltanet", "mamba2", "gla", "rwkv7"]


def language_model(cell: str, **overrides):
    from rnnkit.config import ModelConfig
    from rnnkit.models import LanguageModel

    torch.manual_seed(0)
    options = {"cell": cell, "vocab_size": 11, "embed": 6, "hidden": 8, "layers": 2} | overrides
    return LanguageModel(ModelConfig(**options)).double().eval()


@pytest.mark.parametrize("cell", MODERN)
def test_a_language_model_generates_step_by_step_what_it_computes_at_once(cell):
    """``step`` (the step form, one token) == ``forward`` (the chunkwise form), logits and the
    carried (h, memory); ``initial_state`` is the zeros of that structure."""
    model = language_model(cell)
    idx = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(0))
    whole = model(idx)
    state, logits = model.initial_state(3), []
    for t in range(idx.size(1)):
        step_logits, state = model.step(idx[:, t], state)
        logits.append(step_logits)
    assert_close(torch.stack(logits, 1), whole.logits)
    for a, b in zip(state, whole.state, strict=True):
        assert_close(a, b)
    widths = model.rnn.state_spec().sizes
    assert [tuple(s.shape) for s in model.initial_state(3)] == [(2, 3, w) for w in widths]


@pytest.mark.parametrize("cell", ["mlstm", "rwkv7"])
def test_per_layer_sizes_and_locked_dropout_stack_modern_layers(cell):
    """``--hidden 8,6`` with locked dropout: a LayerStack of modern layers whose state keeps one
    tensor per kind, each as wide as its widest layer's (h: 8; c: the larger memory)."""
    model = language_model(cell, hidden=6, hidden_sizes=[8, 6], locked_dropout=True, embed=6)
    widths = model.state_widths()
    assert widths[0] == 8 and widths[1] == max(m.state_spec().sizes[1] for m in model.rnn.layers)
    idx = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(1))
    whole = model(idx)
    first = model(idx[:, :3])
    second = model(idx[:, 3:], state=first.state)
    assert_close(torch.cat([first.logits, second.logits], 1), whole.logits)
    assert [tuple(s.shape) for s in whole.state] == [(2, 2, w) for w in widths]


def test_the_carried_state_is_checked_against_the_memory_width():
    from rnnkit.config import ModelConfig
    from rnnkit.models.common import state_widths

    config = ModelConfig(cell="mamba2", vocab_size=11, embed=6, hidden=8, layers=2)
    model = language_model("mamba2")
    assert state_widths(config, 6) == model.state_widths()
    assert state_widths(ModelConfig(cell="lstm", hidden=8), 6) == (8, 8)
    assert state_widths(ModelConfig(cell="gru", hidden=8), 6) == (8,)
