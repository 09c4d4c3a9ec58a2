"""The AWD-LSTM regularisers as LanguageModel flags (Merity et al. 2017): off is today's model,
each flag changes training and not eval, AR/TAR equal a hand computation, and a run with all of
them trains, resumes bit for bit, saves, loads and samples."""

from __future__ import annotations

import csv
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import ModelConfig, RunConfig, apply_overrides, validate
from rnnkit.errors import UserError
from rnnkit.generation import generate
from rnnkit.models.language_model import LanguageModel
from rnnkit.models.lm_layers import LayerStack
from rnnkit.nn.awd import LockedDropout, WeightDrop
from rnnkit.nn.registry import get_cell
from rnnkit.tasks.saved import load_model
from rnnkit.trainer.loop import train

V = 13
BASE = {"vocab_size": V, "embed": 8, "hidden": 8, "layers": 2, "dropout": 0.3,
        "embed_dropout": 0.2}  # fmt: skip
FLAGS = {"weight_drop": 0.5, "word_dropout": 0.4, "locked_dropout": True}


def tokens(seed=0, shape=(4, 7)):
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def test_defaults_are_todays_modules_names_and_numbers():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(**BASE))
    layer = get_cell("lstm").layer_class()
    assert type(model.rnn) is layer
    assert type(model.embed_dropout) is nn.Dropout and type(model.dropout) is nn.Dropout
    expected = ["embedding.weight", *(f"rnn.{k}" for k in model.rnn.state_dict()),
                "head.weight", "head.bias"]  # fmt: skip
    assert list(model.state_dict()) == expected
    assert [k for k in model.rnn.state_dict() if k.endswith("l1")]  # two layers in one module
    # the same forward, by hand, with the same seed: the flags at 0 add no random draw
    x, y = tokens(1), tokens(2)
    model.train()
    torch.manual_seed(5)
    out = model(x, y)
    torch.manual_seed(5)
    emb = F.dropout(model.embedding(x), 0.2, training=True)
    h, _ = model.rnn(emb)
    logits = model.head(F.dropout(h, 0.3, training=True))
    assert torch.equal(out.logits, logits)
    assert torch.equal(out.loss, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)))


@pytest.mark.parametrize("flag", list(FLAGS))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_each_flag_changes_training_and_leaves_eval_equal_to_the_same_weights(flag, cell):
    plain = LanguageModel(ModelConfig(**BASE, cell=cell))
    flagged = LanguageModel(ModelConfig(**BASE, cell=cell, **{flag: FLAGS[flag]}))
    assert set(flagged.state_dict()) == set(plain.state_dict())  # the same keys, every flag
    flagged.load_state_dict(plain.state_dict())
    x = tokens(3)
    torch.manual_seed(7)
    a = plain(x).logits
    torch.manual_seed(7)
    b = flagged(x).logits
    assert not torch.allclose(a, b)  # a different draw: the flag acts in training
    plain.eval()
    flagged.eval()
    assert torch.equal(plain(x).logits, flagged(x).logits)
    # generation's step in eval mode: the bare layers, equal to forward
    logits, state = flagged.step(x[:, 0])
    assert torch.allclose(logits, flagged(x[:, :1]).logits[:, 0], atol=1e-6)
    assert state.h.shape == (2, 4, 8) if cell == "lstm" else state.shape == (2, 4, 8)


def test_the_flags_build_the_awd_modules():
    model = LanguageModel(ModelConfig(**{**BASE, "layers": 3}, **FLAGS))
    assert isinstance(model.rnn, LayerStack) and len(model.rnn.layers) == 3
    assert all(isinstance(layer, WeightDrop) and layer.p == 0.5 for layer in model.rnn.layers)
    assert isinstance(model.embed_dropout, LockedDropout) and model.embed_dropout.p == 0.2
    assert model.dropout.p == 0.3 and model.rnn.between.p == 0.3
    # locked: the mask on the embedding output is the same at every time step
    seen = []
    model.rnn.layers[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = torch.full((4, 9), 3)  # one word everywhere: only the mask varies
    model(x)
    zero = seen[0] == 0  # (N, L, E)
    assert zero.any() and torch.equal(zero, zero[:, :1].expand_as(zero))
    one = LanguageModel(ModelConfig(**{**BASE, "layers": 1}, **FLAGS))
    assert isinstance(one.rnn, WeightDrop)  # one layer: no stack needed


def test_ar_and_tar_added_to_the_loss_equal_a_hand_computation():
    torch.manual_seed(0)
    config = ModelConfig(**BASE, **FLAGS, ar=2.0, tar=1.5)
    model = LanguageModel(config).double()
    seen = {}
    model.rnn.register_forward_hook(lambda m, args, out: seen.__setitem__("h", out[0]))
    model.dropout.register_forward_hook(lambda m, args, out: seen.__setitem__("o", out))
    x, y = tokens(4), tokens(5)
    out = model(x, y)
    h, o = seen["h"], seen["o"]  # (N, L, H): the last layer's output before / after dropout
    assert not torch.equal(h, o)
    ce = F.cross_entropy(out.logits.reshape(-1, V), y.reshape(-1))
    ar = 2.0 * (o**2).mean()
    tar = 1.5 * ((h[:, 1:] - h[:, :-1]) ** 2).mean()
    assert ar > 0 and tar > 0
    torch.testing.assert_close(out.loss, ce + ar + tar, rtol=1e-12, atol=1e-12)
    out.loss.backward()  # the penalties reach the recurrent weights
    assert model.rnn.layers[0].layer.weight_ih_l0.grad.abs().sum() > 0
    model.eval()  # evaluation: the plain cross-entropy
    out = model(x, y)
    ce = F.cross_entropy(out.logits.reshape(-1, V), y.reshape(-1))
    torch.testing.assert_close(out.loss, ce, rtol=0, atol=0)


WORDS = "the cat sat on a mat and saw the dog run to his red hat".split()


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    text = " ".join(rng.choice(WORDS) for _ in range(3000))
    path = tmp_path / "corpus.txt"
    path.write_text(text + "\n")
    return path


def run_config(tmp_path, corpus, out, **train_options):
    config = RunConfig()
    settings = {
        "data": {"paths": [str(corpus)], "cache_dir": str(tmp_path / "cache")},
        "model": {"embed": 16, "hidden": 16, "layers": 2, "dropout": 0.2, "embed_dropout": 0.1,
                  "weight_drop": 0.3, "word_dropout": 0.1, "locked_dropout": True,
                  "ar": 1.0, "tar": 0.5},
        "train": {"out": str(tmp_path / out), "seq_len": 16, "batch_size": 8, "lr": 0.01,
                  "max_steps": 60, "eval_every": 20, "eval_batches": 2, "sample_every": 0,
                  "log_every": 1, "threads": 1, "seed": 3, **train_options},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def train_losses(out):
    with open(out / "metrics.csv") as f:
        return [(r["step"], r["loss"]) for r in csv.DictReader(f) if r["kind"] == "train"]


def quiet(_line):
    pass


def test_a_run_with_every_flag_learns_saves_loads_and_samples(tmp_path, corpus):
    result = train(run_config(tmp_path, corpus, "run"), log=quiet)
    losses = [float(loss) for _, loss in train_losses(result.out)]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 0.5, (first, last)
    model, vocab, config = load_model(result.out / "last")
    assert config.model.locked_dropout and config.model.weight_drop == 0.3
    assert isinstance(model.rnn, LayerStack) and not model.training
    text = generate(model, vocab, prime="the ", length=40, seed=1)[0]
    assert len(text) == 40 and set(text) <= set(corpus.read_text())
    # the checkpoint has the plain model's keys: it loads into a model without the flags
    off = {"weight_drop": 0.0, "word_dropout": 0.0, "locked_dropout": False}
    plain = LanguageModel(ModelConfig(**{**vars(config.model), **off}))
    plain.load_state_dict(load_checkpoint(result.out / "last").model_state)
    plain.eval()
    x = tokens(6, (2, 10)) % config.model.vocab_size
    assert torch.equal(plain(x).logits, model(x).logits)


def test_resume_with_every_flag_equals_an_uninterrupted_run(tmp_path, corpus):
    straight = train(run_config(tmp_path, corpus, "straight", max_steps=24), log=quiet)
    first_leg = train(run_config(tmp_path, corpus, "resumed", max_steps=11), log=quiet)
    assert first_leg.step == 11
    resumed = train(
        run_config(tmp_path, corpus, "resumed"),
        resume=True,
        overrides={"train": {"max_steps": 24}},
        log=quiet,
    )
    assert resumed.step == 24
    assert train_losses(straight.out) == train_losses(resumed.out)
    a = load_checkpoint(straight.out / "last").model_state
    b = load_checkpoint(resumed.out / "last").model_state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"cell": "mingru", "weight_drop": 0.3},
         "--weight-drop applies to --cell lstm, gru, rnn, lnlstm or indrnn only, got --cell "
         "mingru"),
        ({"cell": "minlstm", "weight_drop": 0.3}, "got --cell minlstm"),
        ({"weight_drop": 1.0}, "--weight-drop must be in [0, 1), got 1.0"),
        ({"word_dropout": -0.1}, "--word-dropout must be in [0, 1), got -0.1"),
        ({"word_dropout": float("nan")}, "--word-dropout must be in [0, 1)"),
        ({"ar": -1.0}, "--ar must be a number >= 0, got -1.0"),
        ({"tar": float("inf")}, "--tar must be a number >= 0, got inf"),
    ],
)  # fmt: skip
def test_bad_flags_are_one_line_errors(model, message):
    config = RunConfig()
    apply_overrides(config, {"model": model}, "test")
    with pytest.raises(UserError) as error:
        validate(config)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_weight_drop_rows_follow_the_layers_parameters():
    from rnnkit.nn.registry import CELLS

    for cell in CELLS.values():
        layer = cell.layer_class()(3, 4, num_layers=1, batch_first=True)
        has = any(name.startswith("weight_hh") for name, _ in layer.named_parameters())
        assert cell.weight_drop == has, cell.name


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_locked_stack_reads_as_the_one_stack_layer_to_export(cell):
    from rnnkit.export.onnx import StepGraph

    plain = LanguageModel(ModelConfig(**BASE, cell=cell)).eval()
    flagged = LanguageModel(ModelConfig(**BASE, cell=cell, **FLAGS)).eval()
    flagged.load_state_dict(plain.state_dict())
    rnn = flagged.rnn
    assert rnn.num_layers == 2 and rnn.hidden_size == 8 and rnn.cell == cell
    assert rnn.weight_hh_l1 is rnn.layers[1].layer.weight_hh_l0
    assert rnn.layer_weight("bias_ih", 1) is rnn.layers[1].layer.bias_ih_l0
    tokens_, h = tokens(8, (3,)), torch.randn(2, 3, 8)
    extra = (torch.randn(2, 3, 8),) if cell == "lstm" else ()
    with torch.no_grad():
        a = StepGraph(plain)(tokens_, h, *extra)
        b = StepGraph(flagged)(tokens_, h, *extra)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
