"""MinGRU / MinLSTM (rnnkit.nn.minimal): the scan and fused paths against the step equations
(outputs, final states, every gradient), a NumPy oracle, state carried across chunks with a
negative h0, gradcheck, lengths / PackedSequence against each sequence run alone, step(),
argument errors, and every task model built and trained with ``--cell mingru|minlstm``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit import MinGRU, MinLSTM
from rnnkit.config import ModelConfig, RunConfig, validate
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.generation import generate
from rnnkit.models import LanguageModel
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.common import recurrent
from rnnkit.models.conditional import ConditionalGenerator
from rnnkit.models.decoding import beam_search, greedy
from rnnkit.models.forecaster import Forecaster
from rnnkit.models.seq2seq import Seq2Seq
from rnnkit.models.tagger import SequenceTagger
from rnnkit.nn import minimal
from rnnkit.nn.minimal import SCAN_CHUNK, fused_recurrence, log_space_scan

D64 = torch.float64
CLASSES = [pytest.param(MinGRU, id="mingru"), pytest.param(MinLSTM, id="minlstm")]
CELLS = ["mingru", "minlstm"]
IN, H, L, N = 5, 7, 11, 3  # input, hidden, length, batch: odd primes, no transposition hides


def make(cls, seed=0, **options):
    torch.manual_seed(seed)
    return cls(IN, H, dtype=D64, **options)


def inputs(shape, seed=1):
    return torch.randn(shape, dtype=D64, generator=torch.Generator().manual_seed(seed))


def run(layer, impl, x, h0, lengths=None):
    """Output, h_n and the gradients of every parameter, the input and h0."""
    layer.impl = impl
    x, h0 = x.detach().requires_grad_(), h0.detach().requires_grad_()
    out, h_n = layer(x, h0, lengths=lengths)
    weights = torch.linspace(-1, 1, out.numel(), dtype=D64).view(out.shape)
    ((out * weights).sum() + (h_n**2).sum()).backward()
    grads = [p.grad.clone() for p in layer.parameters()] + [x.grad, h0.grad]
    layer.zero_grad()
    return out.detach(), h_n.detach(), grads


# ---- the three paths compute one function -----------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("ragged", [False, True])
def test_scan_and_fused_match_sequential(cls, bias, batch_first, num_layers, bidirectional, ragged):
    layer = make(cls, bias=bias, batch_first=batch_first, num_layers=num_layers,
                 bidirectional=bidirectional)  # fmt: skip
    x = inputs((N, L, IN) if batch_first else (L, N, IN))
    h0 = inputs((layer.num_directions * num_layers, N, H), seed=2) - 1  # mostly negative
    lengths = torch.tensor([L, 4, 9]) if ragged else None
    out, h_n, grads = run(layer, "sequential", x, h0, lengths)
    D = layer.num_directions
    assert out.shape == ((N, L, D * H) if batch_first else (L, N, D * H))
    for impl in ("scan", "fused", "auto"):
        other_out, other_h, other_grads = run(layer, impl, x, h0, lengths)
        torch.testing.assert_close(other_out, out, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(other_h, h_n, rtol=1e-10, atol=1e-10)
        for a, b in zip(other_grads, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def numpy_reference(cell, x, h0, weight, bias):
    """The paper's step equations in NumPy, float64: x (L, H_in), h0 (H,) -> h (L, H)."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    g = lambda v: np.where(v >= 0, v + 0.5, sigmoid(v))  # noqa: E731
    h, states = h0, []
    for x_t in x:
        p = weight @ x_t + bias
        if cell == "mingru":
            z, h_tilde = sigmoid(p[:H]), g(p[H:])
            h = (1 - z) * h + z * h_tilde
        else:
            i, f, h_tilde = sigmoid(p[:H]), sigmoid(p[H : 2 * H]), g(p[2 * H :])
            h = f / (f + i) * h + i / (f + i) * h_tilde
        states.append(h)
    return np.stack(states)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("impl", ["sequential", "scan", "fused"])
def test_matches_numpy_step_equations(cls, impl):
    layer = make(cls, impl=impl)
    with torch.no_grad():
        layer.bias_ih_l0.uniform_(-3, 3)  # reach both branches of g and saturated gates
        layer.weight_ih_l0.mul_(4)
    x, h0 = inputs((L, IN)), inputs((1, H), seed=2) * 3
    out, h_n = layer(x, h0)  # unbatched
    weight, bias = layer.weight_ih_l0.detach().numpy(), layer.bias_ih_l0.detach().numpy()
    expected = numpy_reference(layer.mode, x.numpy(), h0[0].numpy(), weight, bias)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n[0].detach().numpy(), expected[-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("impl", ["scan", "fused", "sequential"])
def test_state_carried_across_chunks_equals_one_call(cls, impl):
    """Truncated BPTT: forward(first) then forward(rest, h) == forward(whole), from a
    negative h0, with the split inside a scan block and the whole longer than one block."""
    layer = make(cls, num_layers=2, impl=impl)
    length = SCAN_CHUNK + 29
    x, h0 = inputs((length, 2, IN)), -2 - inputs((2, 2, H), seed=2).abs()
    whole, h_whole = layer(x, h0)
    first, h_mid = layer(x[:37], h0)
    rest, h_end = layer(x[37:], h_mid)
    torch.testing.assert_close(torch.cat([first, rest]), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_end, h_whole, rtol=1e-12, atol=1e-12)
    assert bool((whole[0] < 0).any())  # the negative h0 is really seen


@pytest.mark.parametrize("cell", CELLS)
def test_float32_scan_and_fused_stay_accurate_over_2048_steps(cell):
    torch.manual_seed(0)
    layer = (MinGRU if cell == "mingru" else MinLSTM)(8, 8, dtype=D64)
    x, h0 = inputs((2048, 2, 8)), inputs((1, 2, 8), seed=2)
    layer.impl = "fused"
    with torch.no_grad():
        exact, _ = layer(x, h0)
        single = layer.float()
        for impl in ("scan", "fused"):
            single.impl = impl
            out, _ = single(x.float(), h0.float())
            error = (out.double() - exact).abs().max() / exact.abs().max()
            assert error < 1e-5, (impl, float(error))


def test_gradcheck_scan_recurrence_and_layer(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    log_a = -torch.rand(9, 2, 3, dtype=D64, generator=gen).requires_grad_()
    log_b = torch.randn(9, 2, 3, dtype=D64, generator=gen).requires_grad_()
    h0 = torch.randn(2, 3, dtype=D64, generator=gen).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, h: log_space_scan(a, b, h, chunk=4), (log_a, log_b, h0)
    )
    for cell, gates in (("mingru", 2), ("minlstm", 3)):
        p = torch.randn(9, 2, gates * 3, dtype=D64, generator=gen).requires_grad_()
        with monkeypatch.context() as patch:
            patch.setattr(minimal, "BLOCK", 4)  # blocks of 4, 4, 1 steps
            fused = lambda p, h, cell=cell: fused_recurrence(cell, p, h)  # noqa: E731
            assert torch.autograd.gradcheck(fused, (p, h0))
    layer = make(MinLSTM, bidirectional=True, impl="scan")
    x = inputs((4, 2, IN)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=[4, 2])[0], (x,))


def test_log_space_scan_matches_the_loop():
    gen = torch.Generator().manual_seed(4)
    a, b = (
        torch.rand(150, 3, dtype=D64, generator=gen),
        torch.rand(150, 3, dtype=D64, generator=gen),
    )
    h0 = -torch.rand(3, dtype=D64, generator=gen)
    h, expected = h0, []
    for t in range(150):
        h = a[t] * h + b[t]
        expected.append(h)
    for chunk in (1, 7, 64, 1000):
        got = log_space_scan(a.log(), b.log(), h0, chunk=chunk)
        torch.testing.assert_close(got, torch.stack(expected), rtol=1e-12, atol=1e-12)


# ---- lengths, PackedSequence, unbatched, step ---------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("impl", ["scan", "fused", "sequential"])
def test_lengths_equal_each_sequence_run_alone(cls, impl):
    layer = make(cls, num_layers=2, bidirectional=True, batch_first=True, impl=impl)
    x, h0, lengths = inputs((N, L, IN)), inputs((4, N, H), seed=2), [6, L, 1]
    out, h_n = layer(x, h0, lengths=lengths)
    for k, length in enumerate(lengths):
        alone, h_alone = layer(x[k : k + 1, :length], h0[:, k : k + 1])
        torch.testing.assert_close(out[k, :length], alone[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h_n[:, k], h_alone[:, 0], rtol=1e-12, atol=1e-12)
        assert bool((out[k, length:] == 0).all())


@pytest.mark.parametrize("cls", CLASSES)
def test_packed_in_packed_out(cls):
    layer = make(cls, bidirectional=True)
    x, h0, lengths = inputs((L, N, IN)), inputs((2, N, H), seed=2), torch.tensor([5, L, 5])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = layer(packed, h0)
    assert out.sorted_indices.tolist() == packed.sorted_indices.tolist()
    assert out.batch_sizes.tolist() == packed.batch_sizes.tolist()
    padded, out_lengths = pad_packed_sequence(out, total_length=L)
    expected, h_expected = layer(x, h0, lengths=lengths)
    assert out_lengths.tolist() == lengths.tolist()
    torch.testing.assert_close(padded, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, h_expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", CLASSES)
def test_unbatched_equals_a_batch_of_one_and_step_equals_forward(cls):
    layer = make(cls, num_layers=2, impl="fused")
    x, h0 = inputs((L, IN)), inputs((2, H), seed=2)
    out, h_n = layer(x, h0)
    batched, h_batched = layer(x[:, None], h0[:, None])
    torch.testing.assert_close(out, batched[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(h_n, h_batched[:, 0], rtol=0, atol=0)
    h = h0[:, None]
    for t in range(L):
        h = layer.step(x[t : t + 1], h)  # (layers, 1, H)
        torch.testing.assert_close(h[-1, 0], out[t], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[:, 0], h_n, rtol=1e-12, atol=1e-12)
    assert layer.step(x[:1]).shape == (2, 1, H)  # h=None means zeros
    layer.impl = "auto"  # one step (generation): the step equations; longer on a CPU: fused
    assert layer._path(x[:1, None]) == "sequential" and layer._path(x[:, None]) == "fused"


def test_parameters_and_dropout():
    layer = make(MinLSTM, num_layers=2, bidirectional=True, dropout=0.5)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {
        "weight_ih_l0": (3 * H, IN), "bias_ih_l0": (3 * H,),
        "weight_ih_l0_reverse": (3 * H, IN), "bias_ih_l0_reverse": (3 * H,),
        "weight_ih_l1": (3 * H, 2 * H), "bias_ih_l1": (3 * H,),
        "weight_ih_l1_reverse": (3 * H, 2 * H), "bias_ih_l1_reverse": (3 * H,),
    }  # fmt: skip
    bound = 1 / math.sqrt(H)
    assert all(float(p.detach().abs().max()) <= bound for p in layer.parameters())
    assert [tuple(p.shape) for p in make(MinGRU, bias=False).parameters()] == [(2 * H, IN)]
    x = inputs((L, N, IN))
    layer.eval()
    quiet, _ = layer(x)
    undropped = make(MinLSTM, num_layers=2, bidirectional=True).eval()
    torch.testing.assert_close(quiet, undropped(x)[0], rtol=0, atol=0)
    layer.train()
    assert not torch.allclose(layer(x)[0], quiet)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MinGRU(0, H), "input_size must be an integer >= 1"),
        (lambda: MinGRU(IN, 2.5), "hidden_size must be an integer >= 1"),
        (lambda: MinLSTM(IN, H, num_layers=0), "num_layers must be an integer >= 1"),
        (lambda: MinGRU(IN, H, bias="yes"), "bias must be a bool"),
        (lambda: MinGRU(IN, H, bidirectional=1), "bidirectional must be a bool"),
        (lambda: MinGRU(IN, H, dropout=1.5), r"dropout must be a probability in \[0, 1\]"),
        (lambda: MinLSTM(IN, H, impl="cells"), "impl must be one of 'auto', 'scan', 'fused'"),
    ],
)
def test_bad_constructor_arguments(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


X = torch.randn(L, N, IN, dtype=D64)  # a valid (L, N, H_in) input for the checks below


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.randn(2, 3, 4, 5, dtype=D64),), {}, "input must be 3-D .* got 4-D"),
        ((X[..., :4],), {}, r"input.size\(-1\) must equal input_size=5, got 4"),
        ((X[:0],), {}, "at least one time step"),
        ((X.float(),), {}, "input dtype torch.float32 does not match"),
        ((X, torch.zeros(2, N, H, dtype=D64)), {}, r"hx must be a tensor of shape \(1, 3, 7\)"),
        ((X,), {"lengths": [1, 2]}, "lengths must be 3 integers"),
        ((X,), {"lengths": [0, 2, 3]}, r"lengths must lie in \[1, L=11\]"),
        ((X[:, 0],), {"lengths": [3]}, "lengths needs a batched"),
        ((pack_padded_sequence(X, [L, 3, 2]),), {"lengths": [1] * 3}, "lengths must be None"),
    ],
)
def test_bad_call_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(MinGRU)(*args, **kwargs)
    with pytest.raises(ValueError, match=r"x must be 2-D \(N, H_in\)"):
        make(MinGRU).step(X)


def test_step_needs_a_unidirectional_stack():
    with pytest.raises(ValueError, match="step needs bidirectional=False"):
        make(MinGRU, bidirectional=True).step(inputs((N, IN)))


# ---- integration: config, language model, every task model ------------------------------------
def config(cell, **overrides) -> ModelConfig:
    options = {"cell": cell, "vocab_size": 13, "embed": 8, "hidden": 11, "layers": 2}
    return ModelConfig(**(options | overrides))


@pytest.mark.parametrize("cell", CELLS)
def test_config_and_recurrent(cell):
    run_config = RunConfig()
    run_config.model.cell = cell
    validate(run_config)
    run_config.model.nonlinearity = "relu"
    with pytest.raises(UserError, match="--nonlinearity applies to --cell rnn only"):
        validate(run_config)
    layer = recurrent(config(cell, impl="cells"), 4, bidirectional=True)
    assert type(layer) is (MinGRU if cell == "mingru" else MinLSTM)
    assert (layer.impl, layer.batch_first, layer.num_layers, layer.bidirectional) == (
        "sequential",
        True,
        2,
        True,
    )
    assert recurrent(config(cell, impl="fused"), 4).impl == "fused"
    with pytest.raises(UserError, match="--forget-bias applies to --cell lstm or lnlstm only"):
        LanguageModel(config(cell, forget_bias=1.0))


@pytest.mark.parametrize("cell", CELLS)
def test_language_model_steps_chunks_and_trains(cell):
    torch.manual_seed(0)
    model = LanguageModel(config(cell, init="orthogonal")).double()
    biases = [b.detach() for name, b in model.rnn.named_parameters() if "bias" in name]
    assert len(biases) == 2 and all(float(b.abs().max()) == 0 for b in biases)
    idx = torch.randint(0, 13, (2, 9), generator=torch.Generator().manual_seed(1))
    full = model(idx)
    assert full.state.shape == (2, 2, 11) and torch.equal(
        model.initial_state(2), torch.zeros(2, 2, 11, dtype=D64)
    )
    first = model(idx[:, :4])
    torch.testing.assert_close(model(idx[:, 4:], state=first.state).logits, full.logits[:, 4:])
    state = None
    for t in range(9):
        logits, state = model.step(idx[:, t], state)
        torch.testing.assert_close(logits, full.logits[:, t])
    text = generate(
        model.float(), Vocab.from_text_chars("abcdefghijkl\n"), prime="ab", length=12, seed=0
    )
    assert len(text) == 1 and len(text[0]) <= 12
    # a tiny training run on a repeating pattern lowers the loss
    torch.manual_seed(0)
    model = LanguageModel(config(cell, hidden=16, embed=16))
    data = torch.tensor([[0, 1, 2, 3, 4, 5] * 4] * 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        loss = model(data[:, :-1], data[:, 1:]).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def backward_reaches_the_rnn(loss, *layers):
    loss.backward()
    for layer in layers:
        grads = [p.grad for p in layer.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().max()) > 0 for g in grads)


@pytest.mark.parametrize("cell", CELLS)
def test_classifier_and_tagger(cell):
    torch.manual_seed(0)
    tokens, lengths = torch.randint(1, 13, (3, 6)), torch.tensor([6, 2, 4])
    model = SequenceClassifier(config(cell), 13, 4, bidirectional=True, pooling="last")
    logits = model(tokens, lengths)
    assert logits.shape == (3, 4)
    backward_reaches_the_rnn(F.cross_entropy(logits, torch.tensor([0, 1, 3])), model.rnn)
    tagger = SequenceTagger(config(cell), 13, 9, num_tags=5, char_hidden=6)
    chars = torch.randint(1, 9, (3, 6, 4))
    char_lengths = torch.randint(1, 5, (3, 6))
    tags = tagger(tokens, lengths, chars, char_lengths)
    assert tags.shape == (3, 6, 5)
    backward_reaches_the_rnn(tags[0].sum() + tags[1, :2].sum(), tagger.rnn, tagger.char_rnn)


@pytest.mark.parametrize("cell", CELLS)
def test_seq2seq(cell):
    torch.manual_seed(0)
    model = Seq2Seq(config(cell), 13, 10, bidirectional=True, attention=True)
    src, src_lengths = torch.randint(3, 13, (3, 5)), torch.tensor([5, 3, 1])
    tgt_in = torch.randint(3, 10, (3, 4))
    forced = model(src, src_lengths, tgt_in)
    assert forced.shape == (3, 4, 10)
    stepwise = model.decode_stepwise(
        tgt_in, model.encode(src, src_lengths), torch.ones(3, 4, dtype=torch.bool)
    )
    torch.testing.assert_close(stepwise, forced, rtol=1e-5, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    backward_reaches_the_rnn(
        model(src, src_lengths, tgt_in, 0.5, gen).sum(), model.encoder, model.decoder
    )
    model.eval()
    with torch.no_grad():
        assert len(greedy(model, src, src_lengths, max_len=4)) == 3
        assert len(beam_search(model, src, src_lengths, beam_width=2, max_len=4)) == 3


@pytest.mark.parametrize("cell", CELLS)
def test_forecaster_and_conditional_generator(cell):
    torch.manual_seed(0)
    model = Forecaster(config(cell), channels=2)
    x = torch.randn(3, 8, 2)
    assert model(x).shape == (3, 8, 2) and model.forecast(x, horizon=4).shape == (3, 4, 2)
    backward_reaches_the_rnn(model.forecast(x, horizon=3).pow(2).mean(), model.rnn)
    gen = ConditionalGenerator(config(cell), 13, "class", 4, condition_input=True)
    cond, tokens = torch.tensor([0, 3]), torch.randint(0, 13, (2, 5))
    logits = gen(cond, tokens, torch.tensor([5, 3]))
    state = gen.initial_state(cond)
    assert state.shape == (2, 2, 11)
    for t in range(3):
        step_logits, state = gen.step(tokens[:, t], state, cond)
        torch.testing.assert_close(step_logits, logits[:, t], rtol=1e-5, atol=1e-6)
    backward_reaches_the_rnn(logits.sum(), gen.rnn)
