"""The adaptive softmax head of the language model (``--softmax adaptive --cutoffs A,B``, torch's
AdaptiveLogSoftmaxWithLoss): its log-probabilities equal torch's head on copied weights and a
hand computation, the training loss equals -mean log p(target) in value and gradient, step and
log_probs agree with forward, cutoffs are checked against the vocabulary, a word run trains,
samples, evaluates and resumes exactly."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import ModelConfig, RunConfig, apply_overrides, validate
from rnnkit.errors import UserError
from rnnkit.models.language_model import LanguageModel
from rnnkit.trainer.loop import train
from subprocess_cli import rnnkit as run_rnnkit

V, H, CUTOFFS = 23, 32, [5, 13]


def adaptive(**extra) -> LanguageModel:
    config = {"vocab_size": V, "embed": 6, "hidden": H, "layers": 1, "softmax": "adaptive",
              "cutoffs": CUTOFFS, **extra}  # fmt: skip
    return LanguageModel(ModelConfig(**config))


def tokens(seed=0, shape=(3, 7)):
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def by_hand(head: nn.AdaptiveLogSoftmaxWithLoss, h: torch.Tensor) -> torch.Tensor:
    """log p(w) (..., V) from the head's weights: the shortlist from the head softmax; word w of
    cluster i: log p_head(cluster i) + log softmax(O_i P_i h)_w (Grave et al. 2017)."""
    head_lp = F.log_softmax(h @ head.head.weight.t(), dim=-1)  # (..., shortlist + clusters)
    shortlist = CUTOFFS[0]
    columns = [head_lp[..., :shortlist]]
    for i, (project, out) in enumerate(head.tail):
        cluster = F.log_softmax(h @ project.weight.t() @ out.weight.t(), dim=-1)
        columns.append(cluster + head_lp[..., shortlist + i : shortlist + i + 1])
    return torch.cat(columns, dim=-1)


def test_log_probabilities_equal_torchs_head_on_copied_weights_and_a_hand_computation():
    torch.manual_seed(0)
    model = adaptive().double().eval()
    assert isinstance(model.head, nn.AdaptiveLogSoftmaxWithLoss)
    assert model.head.div_value == 4.0 and model.head.cutoffs == [*CUTOFFS, V]
    torchs = nn.AdaptiveLogSoftmaxWithLoss(H, V, CUTOFFS, div_value=4.0).double()
    torchs.load_state_dict(model.head.state_dict())
    x, y = tokens(1), tokens(2)
    out = model(x, y)  # eval: the full log-probabilities as "logits"
    assert out.logits.shape == (3, 7, V)
    flat = out.hidden.reshape(-1, H)
    torch.testing.assert_close(out.logits.reshape(-1, V), torchs.log_prob(flat), rtol=0, atol=0)
    torch.testing.assert_close(out.logits, by_hand(model.head, out.hidden), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(3, 7, dtype=torch.float64))
    # eval loss == -mean log p(target) == torch's loss
    picked = out.logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out.loss, -picked.mean(), rtol=0, atol=1e-14)
    torch.testing.assert_close(out.loss, torchs(flat, y.reshape(-1)).loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.log_probs(out.hidden), out.logits, rtol=0, atol=0)


def test_the_training_loss_is_torchs_without_the_full_matrix_in_value_and_gradient():
    torch.manual_seed(1)
    model = adaptive(layers=2).double().train()  # dropout 0: training computes what eval does
    x, y = tokens(3), tokens(4)
    out = model(x, y)
    assert out.logits is None  # the (N, L, V) matrix is never built in training
    out.loss.backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    full = model.eval()(x)  # the full log-probabilities
    loss = -full.logits.gather(-1, y.unsqueeze(-1)).mean()
    torch.testing.assert_close(out.loss, loss, rtol=0, atol=1e-12)
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=0, atol=1e-12, msg=name)
    # AR and TAR are still added in training (dropout 0: the output before and after is h)
    regularised = adaptive(layers=2, ar=2.0, tar=1.0).double()
    regularised.load_state_dict(model.state_dict())
    penalised = regularised.train()(x, y)
    h = penalised.hidden  # (N, L, H)
    expected = loss + 2.0 * (h**2).mean() + 1.0 * ((h[:, 1:] - h[:, :-1]) ** 2).mean()
    torch.testing.assert_close(penalised.loss, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(regularised.eval()(x, y).loss, loss, rtol=0, atol=1e-12)


def test_step_and_sampling_read_the_log_probabilities():
    from rnnkit.generation import sample_next

    torch.manual_seed(2)
    model = adaptive(layers=2).eval()
    x = tokens(5)
    out = model(x)
    state, rows = None, []
    for t in range(x.size(1)):
        logits, state = model.step(x[:, t], state)
        rows.append(logits)
    torch.testing.assert_close(torch.stack(rows, 1), out.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.state, state, rtol=1e-5, atol=1e-6)
    # softmax of log-probabilities is the distribution itself: temperature 1 samples from p
    rows = out.logits[:1, -1].expand(20000, V)
    draws = sample_next(rows, temperature=1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=V).double() / 20000
    torch.testing.assert_close(freq, out.logits[0, -1].exp().double(), rtol=0, atol=0.02)


@pytest.mark.parametrize(
    ("cutoffs", "hidden", "message"),
    [
        ([5, 23], H, "--cutoffs 5,23 must each be below the vocabulary size 23"),
        ([30], H, "--cutoffs 30 must each be below the vocabulary size 23"),
        ([2, 4, 8], 40, "--cutoffs 2,4,8 makes 3 tail clusters of H / 4^i units: the last "
                        "layer's 40 units leave the last one none"),
    ],
)  # fmt: skip
def test_bad_cutoffs_are_one_line_errors(cutoffs, hidden, message):
    with pytest.raises(UserError) as error:
        adaptive(cutoffs=cutoffs, hidden=hidden)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"softmax": "adaptive", "cutoffs": [10, 5]}, "--cutoffs must be positive and increasing"),
        ({"softmax": "adaptive"}, "--softmax adaptive needs --cutoffs"),
        ({"softmax": "adaptive", "cutoffs": [5], "tie_weights": True, "embed": 512},
         "--tie-weights needs --softmax full"),
        ({"cutoffs": [5]}, "--cutoffs is for --softmax adaptive"),
    ],
)  # fmt: skip
def test_the_configs_refusals_are_one_line(model, message):
    config = RunConfig()
    apply_overrides(config, {"model": model}, "test")
    with pytest.raises(UserError) as error:
        validate(config)
    assert message in str(error.value) and "\n" not in str(error.value)


# ---- end to end -------------------------------------------------------------------------------

WORDS = [f"w{i}" for i in range(40)]


def rnnkit(*args, cwd, timeout=300):
    return run_rnnkit(*args, cwd=cwd, timeout=timeout)


@pytest.fixture
def corpus(tmp_path):
    """Lines of words w0..w39, the low numbers far more frequent (a Zipf-like vocabulary)."""
    rng = random.Random(0)
    weights = [1 / (i + 1) for i in range(len(WORDS))]
    lines = [" ".join(rng.choices(WORDS, weights, k=8)) for _ in range(300)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


TRAIN = ("--tokenizer", "word", "--softmax", "adaptive", "--hidden", 32, "--embed", 16,
         "--layers", 1, "--batch-size", 4, "--seq-len", 10, "--eval-every", 10,
         "--eval-batches", 2, "--sample-every", 0, "--threads", 1, "--seed", 3)  # fmt: skip


def test_train_sample_and_eval_a_word_run_through_the_cli(tmp_path, corpus, capsys, monkeypatch):
    from rnnkit.cli import main

    monkeypatch.chdir(tmp_path)  # the run directory "run" and the encoded-text cache land here
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    train_args = ["train", str(corpus), *map(str, TRAIN), "--max-steps", "20", "--out", "run"]
    assert main([*train_args, "--cutoffs", "20"]) == 0
    sample = rnnkit("sample", "run", "--prime", "w0", "--length", 20, "--temperature", 0.7,
                    "--seed", 1, cwd=tmp_path)  # fmt: skip
    assert sample.returncode == 0, sample.stderr
    words = sample.stdout.split()
    assert len(words) > 10 and set(words) <= {*WORDS, "<unk>"}
    capsys.readouterr()
    assert main(["eval", "run", str(corpus), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert 1 < figures["ppl"] < 42 and figures["bpc"] > 0
    assert main([*train_args, "--cutoffs", "50", "--out", "bad"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "rnnkit: error: --cutoffs 50 must each be below the vocabulary size 42"
    ]
    assert not (tmp_path / "bad").exists()


def run_config(tmp_path, corpus, out, **train_options):
    config = RunConfig()
    settings = {
        "data": {"paths": [str(corpus)], "cache_dir": str(tmp_path / "cache"),
                 "tokenizer": "word"},
        "model": {"embed": 16, "hidden": 32, "layers": 2, "dropout": 0.2, "softmax": "adaptive",
                  "cutoffs": [8, 20]},
        "train": {"out": str(tmp_path / out), "seq_len": 10, "batch_size": 4, "lr": 0.01,
                  "max_steps": 10, "eval_every": 5, "eval_batches": 2, "sample_every": 0,
                  "log_every": 1, "threads": 1, "seed": 3, **train_options},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def test_resume_is_exact_with_the_adaptive_head(tmp_path, corpus):
    def quiet(_line):
        pass

    straight = train(run_config(tmp_path, corpus, "straight"), log=quiet)
    train(run_config(tmp_path, corpus, "resumed", max_steps=4), log=quiet)
    resumed = train(run_config(tmp_path, corpus, "resumed"), resume=True,
                    overrides={"train": {"max_steps": 10}}, log=quiet)  # fmt: skip
    a = load_checkpoint(straight.out / "last").model_state
    b = load_checkpoint(resumed.out / "last").model_state
    assert any(key.startswith("head.tail.") for key in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_onnx_export_refuses_the_adaptive_head_in_one_line():
    pytest.importorskip("onnx")
    from rnnkit.data.vocab import Vocab
    from rnnkit.export import to_onnx
    from rnnkit.export.onnx import check_exportable

    config = RunConfig()
    apply_overrides(config, {"model": {"softmax": "adaptive", "cutoffs": [5]}}, "test")
    message = "--softmax adaptive cannot be exported to ONNX (--softmax full only)"
    with pytest.raises(UserError, match=re.escape(message)):
        check_exportable(config)
    vocab = Vocab.from_text_chars("abcdefghijklmnopqrstuvw")  # V = 23
    with pytest.raises(UserError, match="--softmax adaptive cannot be exported"):
        to_onnx(adaptive(), vocab)


def test_the_analyses_refuse_the_adaptive_head_in_one_line():
    from rnnkit.analysis.activations import trace
    from rnnkit.analysis.gradient_flow import lm_gradient_flow
    from rnnkit.data.vocab import Vocab

    model = adaptive().eval()
    with pytest.raises(UserError) as error:
        lm_gradient_flow(model, tokens(0, (2, 5)))
    assert str(error.value) == "gradient flow needs --softmax full, got --softmax adaptive"
    with pytest.raises(UserError, match="the activation trace needs --softmax full"):
        trace(model, Vocab.from_text_chars("abcdefghijklmnopqrstuvw"), "abc")
