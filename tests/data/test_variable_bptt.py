"""--variable-bptt (AWD-LSTM's variable truncation length): the lengths follow the paper's rule
(and a transcription of AWD's main.py), every stream position is a target once per epoch, a
batch is a pure function of (epoch, index) on every shard, and the trainer steps at
lr * length / T, with epochs of different lengths."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rnnkit.config import RunConfig, apply_overrides
from rnnkit.data.streams import TokenStreams, VariableLengthStreams
from rnnkit.trainer.loop import Trainer, train


def awd_lengths(seed: int, epoch: int, seq_len: int, usable: int) -> list[int]:
    """AWD-LSTM's main.py loop (``while i < len``: bptt, then seq_len), with this generator and
    the cap at max(2T, 5) and at the end of the streams."""
    rng, i, out = np.random.default_rng([seed, epoch]), 0, []
    while i < usable:
        bptt = seq_len if rng.random() < 0.95 else seq_len / 2.0
        drawn = max(5, int(rng.normal(bptt, 5)))
        out.append(min(drawn, max(2 * seq_len, 5), usable - i))
        i += out[-1]
    return out


def streams(n=20_000, batch=3, seq_len=30, seed=7) -> VariableLengthStreams:
    return TokenStreams(np.arange(n, dtype=np.int64), batch, seq_len).varying(seed)


def test_lengths_are_awd_lstms_and_sum_to_the_streams():
    s = streams()
    for epoch in range(3):
        lengths = s.lengths(epoch)
        assert list(lengths) == awd_lengths(7, epoch, 30, s.streams.usable)
        assert lengths.sum() == s.streams.usable == 20_000 // 3
        assert s.epoch_steps(epoch) == len(lengths)
    assert list(s.lengths(0)) != list(s.lengths(1))  # each epoch its own draw


def test_length_distribution_follows_the_rule():
    """T w.p. 0.95 else T/2, then normal(sd 5) truncated to an int, at least 5, at most 2T."""
    seq_len = 80  # T and T/2 lie 8 sd apart: a length tells which was drawn
    s = streams(n=3 * 200_000, seq_len=seq_len)
    lengths = np.concatenate([s.lengths(e)[:-1] for e in range(4)])  # the last is cut short
    assert lengths.min() >= 5 and lengths.max() <= 2 * seq_len
    short = lengths < 0.75 * seq_len
    assert abs(short.mean() - 0.05) < 0.01  # the T/2 draws
    long = lengths[~short]
    # int() truncates towards zero: the mean of int(normal(T, 5)) is about T - 0.5
    assert abs(long.mean() - (seq_len - 0.5)) < 0.2
    assert abs(long.std() - 5) < 0.3
    assert abs(lengths[short].mean() - (seq_len / 2 - 0.5)) < 1.0


def test_short_seq_len_is_capped_and_at_least_five():
    s = streams(n=3000, seq_len=3)
    lengths = s.lengths(0)
    assert set(lengths[:-1]) <= {5, 6} and s.max_len == 6  # max(5, ...) then at most max(2T, 5)


def test_every_position_is_a_target_once_per_epoch_and_streams_continue():
    s = streams(n=5000, batch=4, seq_len=11)
    usable, stream_len = s.streams.usable, s.streams.stream_len
    for epoch in range(2):
        targets, previous = [], None
        for index in range(s.epoch_steps(epoch)):
            x, y = s.epoch_batch(epoch, index)
            assert x.shape == y.shape and x.shape[0] == 4 and x.dtype == torch.int64
            assert torch.equal(y, x + 1)  # the token after each input (tokens are positions)
            if previous is not None:  # row b goes on where it stopped: the carried state fits
                assert torch.equal(x[:, 0], previous[:, -1])
            previous = y
            targets.append(y)
        got = torch.cat(targets, dim=1)  # (B, usable)
        expected = torch.arange(4)[:, None] * stream_len + torch.arange(1, usable + 1)
        assert torch.equal(got, expected)


def test_a_batch_is_a_pure_function_of_epoch_and_index_on_every_shard():
    full = streams(n=6000, batch=4, seq_len=9, seed=11)
    order = [(1, 3), (0, 5), (1, 0), (2, 7), (0, 5)]
    first = {key: full.epoch_batch(*key) for key in order}
    fresh = streams(n=6000, batch=4, seq_len=9, seed=11)
    for key in reversed(order):
        assert all(
            torch.equal(a, b) for a, b in zip(first[key], fresh.epoch_batch(*key), strict=True)
        )
    for rows in (slice(0, 2), slice(2, 4)):  # two processes: the same lengths, their rows
        part = TokenStreams(np.arange(6000, dtype=np.int64), 4, 9).shard(rows).varying(11)
        for epoch in range(3):
            assert part.epoch_steps(epoch) == full.epoch_steps(epoch)
        for key in order:
            x, y = part.epoch_batch(*key)
            assert torch.equal(x, first[key][0][rows]) and torch.equal(y, first[key][1][rows])
    with pytest.raises(IndexError, match="out of range"):
        full.epoch_batch(0, full.epoch_steps(0))


# ---- the trainer -------------------------------------------------------------------------------


def run_config(tmp_path, out: str, **train_options) -> RunConfig:
    text = tmp_path / "text.txt"
    if not text.exists():
        rng = np.random.default_rng(0)
        words = ["alpha", "beta", "gamma", "delta", "epsilon"]
        text.write_text(" ".join(rng.choice(words, 300)) + "\n", encoding="utf-8")
    config = RunConfig()
    settings = {
        "data": {"paths": [str(text)]},
        "model": {"embed": 8, "hidden": 8, "layers": 1, "dropout": 0.0, "embed_dropout": 0.0},
        "train": {"out": str(tmp_path / out), "seq_len": 20, "batch_size": 4, "lr": 0.5,
                  "optimizer": "sgd", "momentum": 0.0, "clip_norm": 0.0, "variable_bptt": True,
                  "eval_every": 1000, "sample_every": 0, "log_every": 1, "threads": 1,
                  "seed": 5, **train_options},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def test_each_step_runs_at_lr_times_length_over_t_and_the_schedule_is_unchanged(tmp_path):
    trainer = Trainer(run_config(tmp_path, "scaled", max_steps=3), log=lambda _: None)
    try:
        task, model = trainer.task, trainer.model
        for index in range(3):
            x, y = task.train_batch(0, index)
            shadow = copy.deepcopy(model)  # the same forward from the same carried state
            output = shadow(x, y, copy.deepcopy(task.state))
            output.loss.backward()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            trainer._train_step()
            scale = x.shape[1] / 20
            assert trainer.optimizer.param_groups[0]["lr"] == 0.5  # put back after the step
            for name, p in model.named_parameters():
                grad = dict(shadow.named_parameters())[name].grad
                expected = before[name] - 0.5 * scale * grad
                assert torch.allclose(p, expected, rtol=0, atol=1e-6), name
        assert {x.shape[1] for x, _ in map(lambda i: task.train_batch(0, i), range(3))} != {20}
    finally:
        trainer.lock.release()


def test_max_epochs_counts_epochs_of_different_lengths(tmp_path):
    result = train(run_config(tmp_path, "epochs", max_epochs=2), log=lambda _: None)
    assert result.stopped == "max_epochs"
    check = Trainer(run_config(tmp_path, "count", max_steps=1), log=lambda _: None)
    try:
        counts = [check.task.epoch_steps(e) for e in range(2)]
    finally:
        check.lock.release()
    assert counts[0] != counts[1] and result.step == sum(counts)
