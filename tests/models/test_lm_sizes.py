"""Per-layer hidden sizes of the language model (``--hidden 30,20 --layers 2``, AWD-LSTM's
stack whose last layer matches the embedding): forward equals stepping, the padded state,
outputs and every gradient equal a hand-built stack of torch.nn.LSTM layers, tying, the
regularisers, the checkpoint round trip and the CLI's refusals."""

from __future__ import annotations

import os
import random

import pytest
import torch
from torch import nn
from torch.func import functional_call

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import ModelConfig, RunConfig, apply_overrides
from rnnkit.errors import UserError
from rnnkit.generation import generate
from rnnkit.models.language_model import LanguageModel
from rnnkit.models.lm_layers import LayerStack, layer_state_sizes
from rnnkit.nn.awd import LockedDropout, WeightDrop
from rnnkit.nn.registry import CELLS
from rnnkit.tasks.saved import load_model
from rnnkit.trainer.loop import train
from subprocess_cli import rnnkit as run_rnnkit

V = 11


def sized(cell="lstm", sizes=(7, 5), embed=6, **extra) -> ModelConfig:
    return ModelConfig(cell=cell, vocab_size=V, embed=embed, hidden=sizes[-1],
                       hidden_sizes=list(sizes), layers=len(sizes), **extra)  # fmt: skip


def tokens(seed=0, shape=(3, 6)):
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def rnnkit(*args, cwd, timeout=300):
    return run_rnnkit(*args, cwd=cwd, timeout=timeout)


def parts(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize(
    ("cell", "sizes"),
    [(cell, (7, 5)) for cell in CELLS] + [("lstm", (5, 7)), ("gru", (3, 7, 5))],
)
def test_forward_equals_stepping_and_the_state_is_padded_with_zeros(cell, sizes):
    torch.manual_seed(0)
    model = LanguageModel(sized(cell, sizes)).eval()
    assert isinstance(model.rnn, LayerStack)
    assert [layer.hidden_size for layer in model.rnn.layers] == list(sizes)
    x = tokens(1)
    out = model(x)
    state, rows = None, []
    for t in range(x.size(1)):
        logits, state = model.step(x[:, t], state)  # the fast kernels where the cell has them
        rows.append(logits)
    torch.testing.assert_close(torch.stack(rows, 1), out.logits, rtol=1e-5, atol=1e-6)
    widths = model.state_widths()  # (Hmax,), (Hmax, Hmax), or a modern layer's (Hmax, Mmax)
    assert widths[0] == max(sizes)
    for i, (ours, theirs) in enumerate(zip(parts(out.state), parts(state), strict=True)):
        assert ours.shape == (len(sizes), 3, widths[i])
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        for k in range(len(sizes)):  # each layer's columns, zeros after
            size = layer_state_sizes(model.rnn, k)[i]
            assert torch.equal(ours[k, :, size:], torch.zeros_like(ours[k, :, size:]))
            assert ours[k, :, :size].abs().sum() > 0
    # the carried state goes on: two halves equal the whole
    first = model(x[:, :2])
    second = model(x[:, 2:], state=first.state)
    torch.testing.assert_close(second.logits, out.logits[:, 2:], rtol=1e-5, atol=1e-6)
    # stepping in training mode (dropout 0: deterministic) runs the layers' forward
    model.train()
    logits, _ = model.step(x[:, 0])
    torch.testing.assert_close(logits, out.logits[:, 0], rtol=1e-5, atol=1e-6)
    shapes = [s.shape for s in parts(model.initial_state(2))]
    assert shapes == [(len(sizes), 2, width) for width in widths]


def torch_stack(model: LanguageModel) -> nn.ModuleList:
    """A stack of torch.nn.LSTM layers with ``model``'s weights (float64)."""
    sizes = model.sizes
    inputs = [model.config.embed, *sizes[:-1]]
    layers = nn.ModuleList(
        nn.LSTM(i, h, batch_first=True, dtype=torch.float64)
        for i, h in zip(inputs, sizes, strict=True)
    )
    own = model.rnn.state_dict()  # the one-stack keys: weight_ih_l<k> ...
    for k, layer in enumerate(layers):
        layer.load_state_dict({f"{name}_l0": own[f"{name}_l{k}"] for name in
                               ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})  # fmt: skip
    return layers


def test_outputs_states_and_every_gradient_equal_a_stack_of_torch_lstms():
    torch.manual_seed(1)
    model = LanguageModel(sized("lstm", (7, 5, 3), embed=3)).double().eval()
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    assert list(model.rnn.state_dict()) == [f"{n}_l{k}" for k in range(3) for n in names]
    reference = torch_stack(model)
    x, y = tokens(2), tokens(3)
    h0 = torch.randn(3, 3, 7, dtype=torch.float64)
    c0 = torch.randn(3, 3, 7, dtype=torch.float64)
    for k, size in enumerate(model.sizes):  # the unused columns are not read: garbage there
        h0[k, :, size:], c0[k, :, size:] = 1e3, -1e3
    out = model(x, y, (h0, c0))
    out.loss.backward()
    emb = model.embedding(x).detach().requires_grad_()
    a, hs, cs = emb, [], []
    for k, (layer, size) in enumerate(zip(reference, model.sizes, strict=True)):
        a, (h, c) = layer(a, (h0[k : k + 1, :, :size], c0[k : k + 1, :, :size]))
        hs.append(h)
        cs.append(c)
    logits = model.head(a)
    torch.testing.assert_close(out.logits, logits, rtol=0, atol=1e-12)
    for k, size in enumerate(model.sizes):
        torch.testing.assert_close(out.state.h[k, :, :size], hs[k][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(out.state.c[k, :, :size], cs[k][0], rtol=0, atol=1e-12)
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    loss.backward()
    for k, layer in enumerate(reference):
        for name, param in layer.named_parameters():
            ours = getattr(model.rnn, name.replace("_l0", f"_l{k}")).grad
            torch.testing.assert_close(ours, param.grad, rtol=0, atol=1e-12)


def test_gradcheck_through_the_padded_state():
    torch.manual_seed(2)
    model = LanguageModel(sized("gru", (5, 3), embed=3)).double().eval()
    x = tokens(4, (2, 4))
    h0 = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    weight = model.rnn.weight_hh_l1

    def f(h, w):
        out = functional_call(model, {"rnn.layers.1.weight_hh_l0": w}, (x,), {"state": h})
        return out.logits, out.state

    assert torch.autograd.gradcheck(f, (h0, weight.detach().clone().requires_grad_()))
    # the padding of the incoming state is never read: its gradient is zero
    f(h0, weight)[0].sum().backward()
    assert torch.equal(h0.grad[1, :, 3:], torch.zeros(2, 2))
    assert h0.grad[1, :, :3].abs().sum() > 0


def test_tying_with_the_last_layer_and_the_one_line_refusals(tmp_path, capsys):
    from rnnkit.cli import main

    model = LanguageModel(sized("lstm", (30, 20), embed=20, tie_weights=True))
    assert model.head.weight is model.embedding.weight
    logits, _ = model.eval().step(tokens(0, (2,)))
    assert logits.shape == (2, V)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abc abd " * 50)
    for flags, message in [
        (("--hidden", "30,20", "--layers", "2", "--embed", "30", "--tie-weights"),
         "--tie-weights needs --embed == the last layer's size, got 30 and 20"),
        (("--hidden", "30,20", "--layers", "3"), "--hidden 30,20 gives 2 sizes but --layers is 3"),
        (("--hidden", "0,20", "--layers", "2"), "--hidden sizes must be positive integers"),
    ]:  # fmt: skip
        out = str(tmp_path / "run")
        assert main(["train", str(corpus), *flags, "--max-steps", "1", "--out", out]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not os.path.exists(out)


def test_the_regularisers_work_with_per_layer_sizes():
    flags = {"weight_drop": 0.5, "locked_dropout": True, "dropout": 0.3, "embed_dropout": 0.2}
    plain = LanguageModel(sized("lstm", (9, 5)))
    flagged = LanguageModel(sized("lstm", (9, 5), **flags))
    assert all(isinstance(layer, WeightDrop) for layer in flagged.rnn.layers)
    assert isinstance(flagged.rnn.between, LockedDropout) and flagged.rnn.between.p == 0.3
    assert type(plain.rnn.between) is nn.Dropout and plain.rnn.between.p == 0.0
    assert list(flagged.state_dict()) == list(plain.state_dict())
    flagged.load_state_dict(plain.state_dict())
    x = tokens(5)
    torch.manual_seed(0)
    a = flagged(x, x)
    torch.manual_seed(1)
    b = flagged(x, x)
    assert not torch.allclose(a.logits, b.logits)  # fresh masks every forward
    a.loss.backward()
    assert flagged.rnn.weight_hh_l1.grad.abs().sum() > 0  # to the undropped matrices
    # locked between the layers: one mask per sequence and unit, the same at every step
    seen = []
    flagged.rnn.layers[1].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    flagged(torch.full((4, 9), 3))
    zero = seen[0] == 0  # (N, L, 9)
    assert zero.any() and torch.equal(zero, zero[:, :1].expand_as(zero))
    plain.eval()
    flagged.eval()
    assert torch.equal(plain(x).logits, flagged(x).logits)


# ---- end to end -------------------------------------------------------------------------------


WORDS = "the cat sat on a mat and saw the dog run to his red hat".split()


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(2000)) + "\n")
    return path


def run_config(tmp_path, corpus, out, sizes, **train_options):
    config = RunConfig()
    settings = {
        "data": {"paths": [str(corpus)], "cache_dir": str(tmp_path / "cache")},
        "model": {"embed": 8, "hidden": sizes[-1], "hidden_sizes": list(sizes),
                  "layers": len(sizes), "dropout": 0.1, "weight_drop": 0.2,
                  "locked_dropout": True, "tie_weights": sizes[-1] == 8},
        "train": {"out": str(tmp_path / out), "seq_len": 12, "batch_size": 4, "lr": 0.01,
                  "max_steps": 10, "eval_every": 5, "eval_batches": 2, "sample_every": 0,
                  "log_every": 1, "threads": 1, "seed": 3, **train_options},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


@pytest.mark.parametrize("sizes", [(12, 8)])
def test_a_run_saves_loads_samples_and_resumes_exactly(tmp_path, corpus, sizes):
    def quiet(_line):
        pass

    straight = train(run_config(tmp_path, corpus, "straight", sizes), log=quiet)
    model, vocab, config = load_model(straight.out / "last")
    assert config.model.hidden_sizes == list(sizes) and model.sizes == list(sizes)
    assert model.head.weight is model.embedding.weight  # tied with the last layer
    text = generate(model, vocab, prime="the ", length=30, seed=1)[0]
    assert len(text) == 30 and set(text) <= set(corpus.read_text())
    saved = load_checkpoint(straight.out / "last").model_state
    fresh = LanguageModel(config.model)
    fresh.load_state_dict(saved)
    x = tokens(6, (2, 10)) % config.model.vocab_size
    assert torch.equal(fresh.eval()(x).logits, model(x).logits)
    train(run_config(tmp_path, corpus, "resumed", sizes, max_steps=4), log=quiet)
    resumed = train(run_config(tmp_path, corpus, "resumed", sizes), resume=True,
                    overrides={"train": {"max_steps": 10}}, log=quiet)  # fmt: skip
    other = load_checkpoint(resumed.out / "last").model_state
    assert all(torch.equal(saved[k], other[k]) for k in saved)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_onnx_graph_steps_like_the_model_with_per_layer_sizes(cell):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rnnkit.data.vocab import Vocab
    from rnnkit.export import OnnxLanguageModel, to_onnx
    from rnnkit.export.checked import max_difference

    vocab = Vocab.from_text_chars("abcdefghijk")
    torch.manual_seed(3)
    model = LanguageModel(sized(cell, (5, 9, 7))).eval()  # the middle layer is the widest
    proto = to_onnx(model, vocab)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert (meta["hidden"], meta["hidden_sizes"]) == ("9", "5,9,7")
    runtime = OnnxLanguageModel(proto.SerializeToString(), threads=1)
    assert max_difference(model, runtime, steps=6) <= 1e-5
    _, state = runtime.step(tokens(7, (3,)))
    h = state[0] if isinstance(state, tuple) else state
    assert h.shape == (3, 3, 9) and torch.equal(h[0, :, 5:], torch.zeros(3, 4))


def test_the_analyses_refuse_per_layer_sizes_in_one_line():
    from rnnkit.analysis.activations import trace
    from rnnkit.analysis.gradient_flow import lm_gradient_flow
    from rnnkit.data.vocab import Vocab

    model = LanguageModel(sized("lstm", (7, 5))).eval()
    vocab = Vocab.from_text_chars("abcdefghijk")
    with pytest.raises(UserError) as error:
        lm_gradient_flow(model, tokens(0, (2, 5)))
    assert str(error.value) == "gradient flow needs one size for every layer, got --hidden 7,5"
    with pytest.raises(UserError) as error:
        trace(model, vocab, "abc")
    assert str(error.value) == (
        "the activation trace needs one size for every layer, got --hidden 7,5"
    )
    even = LanguageModel(sized("lstm", (5, 5))).eval()  # equal sizes: the one-stack layer
    assert not isinstance(even.rnn, LayerStack)
    assert trace(even, vocab, "abc").layers == 2


def test_orthogonal_init_and_forget_bias_per_layer_size():
    model = LanguageModel(sized("lstm", (7, 5), init="orthogonal", forget_bias=1.0))
    for k, size in enumerate(model.sizes):
        for block in getattr(model.rnn, f"weight_hh_l{k}").detach().chunk(4):  # i, f, g, o
            assert block.shape == (size, size)
            torch.testing.assert_close(block @ block.t(), torch.eye(size), rtol=0, atol=1e-5)
        forget = getattr(model.rnn, f"bias_ih_l{k}").detach().chunk(4)[1]
        assert torch.equal(forget, torch.ones(size))


@pytest.mark.parametrize("sizes", [(7, 7), (9, 5)])
def test_layer_dropout_is_the_rate_between_layers_and_dropout_stays_on_the_output(sizes):
    """``--layer-dropout`` (AWD-LSTM's dropouth): the layers' own rate, the output keeps
    ``--dropout``. With it at 0, the stack's training-mode output equals its eval-mode output
    while the output dropout still drops; unset, the layers get ``--dropout`` as before."""
    flags = {"locked_dropout": True, "dropout": 0.5, "embed_dropout": 0.0}
    model = LanguageModel(sized("lstm", sizes, layer_dropout=0.0, **flags))
    assert model.rnn.between.p == 0.0 and model.dropout.p == 0.5
    x = model.embedding(tokens(3))
    train_out = model.rnn(x)[0]
    model.eval()
    assert torch.equal(train_out, model.rnn(x)[0])
    model.train()
    out, dropped, _ = model._recur(tokens(3), None)  # before and after the output dropout
    assert (dropped == 0).any() and not torch.equal(out, dropped)
    unset = LanguageModel(sized("lstm", sizes, **flags))
    assert unset.config.between_dropout() == 0.5 and unset.rnn.between.p == 0.5
    one_stack = LanguageModel(sized("gru", (6, 6), layer_dropout=0.25, dropout=0.4))
    assert one_stack.rnn.dropout == 0.25 and one_stack.dropout.p == 0.4


def test_layer_dropout_flag_and_its_refusal():
    from rnnkit.cli import build_parser
    from rnnkit.commands.args import config_flags

    args = build_parser().parse_args(["train", "--layer-dropout", "0.25"])
    assert config_flags(args)["model"]["layer_dropout"] == 0.25
    config = RunConfig()
    apply_overrides(config, {"model": {"layer_dropout": 0.25}}, "flags")
    assert config.model.layer_dropout == 0.25 and config.model.between_dropout() == 0.25
    apply_overrides(config, {"model": {"layer_dropout": None}}, "config.json")  # unset
    assert config.model.between_dropout() == config.model.dropout
    from rnnkit.config import validate

    for bad in (1.0, -0.1, float("nan")):
        config.model.layer_dropout = bad
        with pytest.raises(UserError, match="--layer-dropout must be in \\[0, 1\\)"):
            validate(config)
