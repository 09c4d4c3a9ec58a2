"""--optimizer nt-asgd (Merity et al. 2017): the non-monotone rule against a transcription of
AWD-LSTM's loop, SGD before the switch, the average of the raw weights after it (by hand), the
learning rate of each step, the weight swap, and an end-to-end run that switches where its own
metrics.csv says the rule does, saving the averaged weights that `rnnkit eval` scores."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.errors import UserError
from rnnkit.trainer.loop import train
from rnnkit.trainer.state import TrainProgress
from rnnkit.training.ntasgd import NTASGD, Averaging, should_switch
from rnnkit.training.optim import build_optimizer, scaled_learning_rate
from subprocess_cli import rnnkit as run_rnnkit


def awd_first_switch(losses: list[float], nonmono: int) -> int | None:
    """AWD-LSTM's main.py, transcribed: the index of the evaluation that switches."""
    best_val_loss = []
    for index, val_loss in enumerate(losses):
        if len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono]):
            return index
        best_val_loss.append(val_loss)
    return None


def first_switch(losses: list[float], nonmono: int) -> int | None:
    return next((k for k in range(len(losses)) if should_switch(losses[: k + 1], nonmono)), None)


def test_rule_on_hand_sequences():
    # n = 2: v_k is compared with the best of v_1 .. v_{k-3}
    assert not should_switch([5.0, 4.0, 3.0], 2)  # k - 1 = 2, not > 2
    assert not should_switch([5.0, 4.0, 3.0, 4.9], 2)  # 4.9 < min(5)
    assert should_switch([5.0, 4.0, 3.0, 5.1], 2)  # 5.1 > min(5)
    assert not should_switch([5.0, 4.0, 3.0, 3.5, 4.0], 2)  # 4.0 == min(5, 4): not above
    assert should_switch([5.0, 4.0, 3.0, 3.5, 4.1], 2)
    assert not should_switch([5.0, 4.0, 3.0, 3.5, math.nan], 2)  # nan never switches
    assert should_switch([1.0, 2.0, 2.0], 1) and not should_switch([1.0, 2.0], 1)


def test_rule_equals_awd_lstm_on_random_sequences():
    rng = random.Random(0)
    switched = 0
    for _ in range(2000):
        nonmono = rng.randint(1, 6)
        losses = [round(rng.uniform(0, 3), 1) for _ in range(rng.randint(1, 20))]
        expected = awd_first_switch(losses, nonmono)
        assert first_switch(losses, nonmono) == expected, (losses, nonmono)
        switched += expected is not None
    assert 200 < switched < 1800  # both outcomes are exercised


def params64(seed: int) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))
            for shape in ((3, 5), (7,))]  # fmt: skip


def grads64(params, step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)


def test_before_the_switch_it_is_plain_sgd_with_weight_decay():
    """Bit for bit at a rate float32 holds exactly (ASGD keeps its rate as a float32 tensor)."""
    a, b = params64(1), params64(1)
    ours = NTASGD(a, lr=0.25, weight_decay=2**-7)
    sgd = torch.optim.SGD(b, lr=0.25, weight_decay=2**-7)
    for step in range(6):
        grads64(a, step)
        grads64(b, step)
        ours.step()
        sgd.step()
    assert not ours.switched
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_after_the_switch_the_average_is_the_mean_of_the_raw_weights_since():
    params = params64(2)
    opt = NTASGD(params, lr=0.125, weight_decay=2**-6)
    for step in range(4):
        grads64(params, step)
        opt.step()
    opt.switch()
    assert opt.switched
    history = []
    for step in range(4, 11):
        grads64(params, step)
        # the raw weights follow SGD: w <- w - lr * (g + wd * w)
        expected = [(p - 0.125 * (p.grad + 2**-6 * p)).detach() for p in params]
        opt.step()
        pairs = zip(params, expected, strict=True)
        assert all(torch.allclose(p, e, rtol=0, atol=1e-14) for p, e in pairs)
        history.append([p.detach().clone() for p in params])
        for (p, average), i in zip(opt.averages(), range(len(params)), strict=True):
            mean = sum(h[i] for h in history) / len(history)
            assert average is opt.state[p]["ax"]
            # ASGD keeps mu = 1 / s as a float32 scalar: float32's precision, not float64's
            assert torch.allclose(average, mean, rtol=0, atol=1e-6)


def test_each_step_runs_at_its_own_learning_rate():
    """torch's ASGD takes a step's rate from the previous step; ours from this one's group."""
    params = params64(3)
    opt = NTASGD(params, lr=0.5)
    for step, factor in enumerate([1.0, 0.25, 2.0, 1.0]):
        grads64(params, step)
        before = [p.detach().clone() for p in params]
        with scaled_learning_rate(opt, factor):
            assert opt.param_groups[0]["lr"] == 0.5 * factor
            opt.step()
        assert opt.param_groups[0]["lr"] == 0.5  # put back exactly
        for p, w in zip(params, before, strict=True):
            assert torch.allclose(p, w - 0.5 * factor * p.grad, rtol=0, atol=1e-14)


def test_build_optimizer_gives_nt_asgd_not_adagrad():
    config = RunConfig()
    config.train.optimizer, config.train.lr, config.train.weight_decay = "nt-asgd", 30.0, 1.2e-6
    opt = build_optimizer(nn.Linear(2, 3), config.train)
    assert type(opt) is NTASGD and not opt.switched
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["lambd"]) == (30.0, 1.2e-6, 0.0)


def test_averaged_swaps_the_averages_in_and_the_raw_weights_back_bit_for_bit():
    model = nn.Linear(3, 2).double()
    opt = NTASGD(model.parameters(), lr=0.1)
    averaging, progress = Averaging(opt, nonmono=1), TrainProgress()
    with averaging.averaged():  # not switched: nothing moves
        pass
    assert averaging.raw_weights() is None
    for step in range(5):
        grads64(list(model.parameters()), step)
        opt.step()
    lines = []
    for step, loss in enumerate([2.0, 3.0, 2.5]):  # n = 1: v_3 = 2.5 > min(v_1) = 2.0
        progress.step = 5 + step
        lines.append(averaging.observe(progress, loss))
    assert lines == [None, None, (
        "step 7: nt-asgd switches to averaged SGD (validation loss 2.5000 above 2.0000, "
        "the best before the last 1 evaluation)"
    )]  # fmt: skip
    assert progress.averaged_from == 7 and progress.val_losses == [2.0, 3.0, 2.5]
    assert averaging.observe(progress, 9.0) is None and progress.val_losses == [2.0, 3.0, 2.5]
    for step in range(5, 8):
        grads64(list(model.parameters()), step)
        opt.step()
    raw = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(4, 3, dtype=torch.float64)
    with averaging.averaged():
        assert all(torch.equal(p, opt.state[p]["ax"]) for p in model.parameters())
        averaged_out = model(x)
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), raw, strict=True))
    assert not torch.equal(averaged_out, model(x))
    saved = averaging.raw_weights()
    with torch.no_grad():  # a resume: the model's files hold the averages
        for p in model.parameters():
            p.copy_(opt.state[p]["ax"])
    averaging.restore(saved)
    assert all(torch.equal(p, r) for p, r in zip(model.parameters(), raw, strict=True))


def test_bad_raw_weights_are_one_line_errors():
    model = nn.Linear(3, 2)
    opt = NTASGD(model.parameters(), lr=0.1)
    averaging = Averaging(opt, nonmono=1)
    with pytest.raises(UserError, match="raw_weights without an nt-asgd switch"):
        averaging.restore([torch.zeros(2, 3)], "run/last/training.json")
    model(torch.randn(1, 3)).sum().backward()
    opt.step()
    opt.switch()
    for bad in (None, [torch.zeros(2, 3)], [torch.zeros(3, 2), torch.zeros(2)], "x",
                [torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2)]):  # fmt: skip
        with pytest.raises(UserError, match="raw_weights must be 2 float tensors") as error:
            averaging.restore(bad, "run/last/training.json")
        assert "\n" not in str(error.value)


def test_progress_checks_the_nt_asgd_record():
    base = {"step": 4, "epoch": 0, "batch_index": 4, "best_val": 1.0, "last_val": 1.0,
            "bad_evals": 0, "last_eval_step": 4}  # fmt: skip
    ok = TrainProgress.from_saved({**base, "val_losses": [2, 1.5], "averaged_from": 4})
    assert ok.val_losses == [2.0, 1.5] and ok.averaged_from == 4
    assert TrainProgress.from_saved(base).averaged_from == -1  # older checkpoints
    cases = (({"val_losses": "x"}, "val_losses must be a list of numbers"),
             ({"val_losses": [1, "a"]}, "val_losses must be a list of numbers"),
             ({"averaged_from": 5}, r"averaged_from must be an integer in \[-1, step\]"),
             ({"averaged_from": True}, "averaged_from must be an integer"))  # fmt: skip
    for bad, message in cases:
        with pytest.raises(UserError, match=message):
            TrainProgress.from_saved({**base, **bad})


# ---- end to end -------------------------------------------------------------------------------

SUBJECTS = ("the cat", "a dog", "my friend", "the old man")
VERBS = ("sat on", "looked at", "ran to", "slept near")
OBJECTS = ("the mat", "a tree", "the house", "our car")


def rnnkit(*args, cwd):
    return run_rnnkit(*args, cwd=cwd)


def word_corpus(work: Path) -> tuple[Path, Path]:
    """Subject-verb-object lines to train on, and the same words reversed to validate on: the
    better the model learns the training order, the worse validation gets (a sure switch)."""
    rng = random.Random(0)
    lines = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ."
             for _ in range(300)]  # fmt: skip
    (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    reversed_lines = [" ".join(reversed(line.split())) for line in lines[:40]]
    (work / "val.txt").write_text("\n".join(reversed_lines) + "\n", encoding="utf-8")
    return work / "corpus.txt", work / "val.txt"


@pytest.fixture(scope="module")
def switched_run(tmp_path_factory):
    """A tiny word model trained with nt-asgd (n = 1) whose validation gets worse: it switches."""
    work = tmp_path_factory.mktemp("nt_asgd")
    corpus, val = word_corpus(work)
    config = RunConfig()
    settings = {
        "data": {"paths": [str(corpus)], "tokenizer": "word", "val": str(val)},
        "model": {"embed": 12, "hidden": 12, "layers": 1, "dropout": 0.0},
        "train": {"out": str(work / "run"), "seq_len": 8, "batch_size": 4, "lr": 1.0,
                  "optimizer": "nt-asgd", "nonmono": 1, "max_steps": 27, "eval_every": 3,
                  "sample_every": 0, "log_every": 1, "threads": 1, "seed": 3},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    lines = []
    train(config, log=lines.append)
    return work, lines


def test_the_run_switches_where_the_rule_says_and_says_so(switched_run):
    work, lines = switched_run
    with open(work / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    vals = [(int(r["step"]), float(r["loss"])) for r in rows if r["kind"] == "val"]
    index = awd_first_switch([loss for _, loss in vals], 1)
    assert index is not None and 2 < index < len(vals) - 2, vals  # during the run
    step = vals[index][0]
    switches = [r for r in rows if r["kind"] == "nt-asgd"]
    assert [int(r["step"]) for r in switches] == [step]
    said = [line for line in lines if "nt-asgd" in line]
    assert len(said) == 1 and f"step {step}: nt-asgd switches to averaged SGD" in said[0]
    training = json.loads((work / "run" / "last" / "training.json").read_text())["$dict"]
    assert training["averaged_from"] == step
    expected = [loss for _, loss in vals[: index + 1]]  # metrics.csv: 6 significant digits
    assert training["val_losses"] == pytest.approx(expected, rel=1e-5)


def test_the_checkpoint_holds_the_averages_and_eval_scores_them(switched_run):
    work, _ = switched_run
    ckpt = load_checkpoint(work / "run" / "last", training=True)
    raw = ckpt.training["raw_weights"]
    state = ckpt.training["optimizer"]["state"]
    averages = [state[i]["ax"] for i in range(len(raw))]
    weights = [ckpt.model_state[name] for name in ("embedding.weight",)]
    assert any(torch.equal(weights[0], a) for a in averages)  # the model file: the averages
    assert not any(torch.equal(weights[0], r) for r in raw)  # the raw weights elsewhere
    # `rnnkit eval` of the run scores the averaged weights: the last evaluation's figure
    with open(work / "run" / "metrics.csv", newline="") as f:
        vals = [r for r in csv.DictReader(f) if r["kind"] == "val"]
    result = rnnkit("eval", "run/last", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["loss"] == pytest.approx(float(vals[-1]["loss"]), rel=1e-6)
