"""The training loop through the library: loss falls, resume is exact, NaNs never land."""

from __future__ import annotations

import csv
import math
import random
import time

import pytest
import torch

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.errors import UserError
from rnnkit.trainer.loop import Trainer, train

WORDS = "the cat sat on a mat and saw the dog run to his red hat while birds sang".split()


def make_corpus(path, n_words=6000, seed=0):
    rng = random.Random(seed)
    lines, line = [], []
    for _ in range(n_words):
        line.append(rng.choice(WORDS))
        if len(line) >= rng.randint(5, 9):
            lines.append(" ".join(line).capitalize() + ".")
            line = []
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus.txt")


def config_for(tmp_path, corpus, out="run", **train):
    config = RunConfig()
    settings = {
        "data": {"paths": [str(corpus)], "cache_dir": str(tmp_path / "cache")},
        "model": {"embed": 16, "hidden": 32, "layers": 2, "dropout": 0.1},
        "train": {"out": str(tmp_path / out), "seq_len": 16, "batch_size": 8, "lr": 0.01,
                  "max_steps": 40, "eval_every": 10, "eval_batches": 4, "sample_every": 0,
                  "log_every": 1, "threads": 1, "seed": 3, **train},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def train_rows(out):
    with open(out / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "train"]


def test_loss_falls_and_run_directory_is_complete(tmp_path, corpus):
    result = train(config_for(tmp_path, corpus, max_steps=120, eval_every=40), log=lambda s: None)
    rows = train_rows(result.out)
    first = sum(float(r["loss"]) for r in rows[:10]) / 10
    last = sum(float(r["loss"]) for r in rows[-10:]) / 10
    assert last < first - 1.0, (first, last)  # from ~ln(V) towards the text's entropy
    assert result.stopped == "max_steps" and result.step == 120
    assert math.isfinite(result.best_val) and result.best_val < first
    for name in ("last", "best"):
        ckpt = load_checkpoint(result.out / name)
        assert ckpt.config["model"]["hidden"] == 32
    assert (result.out / "loss.png").stat().st_size > 1000


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, corpus):
    quiet = lambda s: None  # noqa: E731
    straight = train(config_for(tmp_path, corpus, "straight", max_steps=30), log=quiet)
    first_leg = train(config_for(tmp_path, corpus, "resumed", max_steps=17), log=quiet)
    assert first_leg.step == 17
    resumed = train(
        config_for(tmp_path, corpus, "resumed"),
        resume=True,
        overrides={"train": {"max_steps": 30}},
        log=quiet,
    )
    assert resumed.step == 30
    losses = lambda out: [(r["step"], r["loss"]) for r in train_rows(out)]  # noqa: E731
    assert losses(straight.out) == losses(resumed.out)
    a = load_checkpoint(straight.out / "last").model_state
    b = load_checkpoint(resumed.out / "last").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_in_a_thread_trains_and_stop_ends_it_with_last_saved(tmp_path, corpus):
    """Only the main thread may install signal handlers: a run in another thread (a notebook,
    a web server) installs none and trains; Trainer.stop(), from any thread, ends it after the
    step it is in, as Ctrl-C would, with ``last`` saved."""
    import signal
    import threading

    handler = signal.getsignal(signal.SIGINT)
    whole = Trainer(config_for(tmp_path, corpus, "whole", max_steps=8), log=lambda s: None)
    long = Trainer(config_for(tmp_path, corpus, "long", max_steps=100_000), log=lambda s: None)
    results = {}
    threads = [threading.Thread(target=lambda t=t: results.update({t: t.run()}))
               for t in (whole, long)]  # fmt: skip
    for thread in threads:
        thread.start()
    while long.progress.step < 3 and threads[1].is_alive():
        time.sleep(0.01)
    long.stop()  # from the main thread, while the run goes on in its own
    for thread in threads:
        thread.join()
    assert results[whole].stopped == "max_steps" and results[whole].step == 8
    stopped = results[long]
    assert stopped.stopped == "interrupted" and 3 <= stopped.step < 1000
    assert load_checkpoint(stopped.out / "last").config["train"]["max_steps"] == 100_000
    assert signal.getsignal(signal.SIGINT) is handler  # the process's own, untouched


def test_refuses_to_clobber_an_existing_run(tmp_path, corpus):
    train(config_for(tmp_path, corpus, max_steps=5), log=lambda s: None)
    before = (tmp_path / "run" / "metrics.csv").read_text()
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        Trainer(config_for(tmp_path, corpus, max_steps=5))
    assert (tmp_path / "run" / "metrics.csv").read_text() == before


def test_non_finite_steps_are_skipped_then_the_last_good_checkpoint_is_reloaded(tmp_path, corpus):
    trainer = Trainer(config_for(tmp_path, corpus, max_steps=30, nan_tolerance=3))
    trainer.log = lambda s: None
    forward = trainer.model.forward
    calls = {"n": 0}

    def poisoned(idx, targets=None, state=None):
        output = forward(idx, targets, state)
        if trainer.model.training:
            calls["n"] += 1
            if 12 <= calls["n"] <= 14:  # three training steps in a row go non-finite
                return output._replace(loss=output.loss * math.nan)
        return output

    trainer.model.forward = poisoned
    lr_before = trainer.optimizer.param_groups[0]["lr"]
    result = trainer.run()
    assert result.step == 30
    with open(result.out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    kinds = [r["kind"] for r in rows]
    assert kinds.count("skip") == 3 and kinds.count("reload") == 1
    # after the reload the loop goes on from where the data was, evaluating every 10 steps
    assert [int(r["step"]) for r in rows if r["kind"] == "val"] == [10, 20, 30]
    assert [int(r["step"]) for r in rows if r["kind"] == "train"][-1] == 30
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr_before / 2)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_early_stopping_and_max_epochs(tmp_path, corpus):
    result = train(
        config_for(tmp_path, corpus, "lazy", lr=1e-9, max_steps=400, eval_every=5, patience=2),
        log=lambda s: None,
    )
    assert result.stopped == "early_stopping" and result.step < 400
    small = make_corpus(tmp_path / "small.txt", n_words=400)
    result = train(config_for(tmp_path, small, "epochs", max_steps=0, max_epochs=2), log=print)
    assert result.stopped == "max_epochs"


def test_tensorboard_is_used_when_installed_and_reported_when_not(tmp_path, corpus):
    lines = []
    result = train(config_for(tmp_path, corpus, max_steps=10, tensorboard=True), log=lines.append)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert any("tensorboard package is not installed" in line for line in lines)
    else:
        assert (result.out / "tensorboard").is_dir()
    assert result.step == 10
