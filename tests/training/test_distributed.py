"""Multi-process training (torchrun + DDP on gloo, 2 processes): the same weights on every rank,
the same weights as one process with the same global batch, resume, stopping together, and the
flags it refuses. Each test starts real processes through ``rnnkit train --nproc 2``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.data.streams import TokenStreams
from rnnkit.training.distributed import World, strip_nproc

TINY = (
    "--hidden 16 --embed 8 --seq-len 16 --batch-size 4 --eval-every 3 --eval-batches 1 "
    "--sample-every 0 --log-every 1 --threads 1 --lr 0.01 --seed 3"
).split()
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def trained(*args: str, cwd: Path) -> str:
    """``rnnkit train ARGS``, which must succeed: its stdout."""
    run = rnnkit("train", *args, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return run.stdout


def rnnkit(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    words = ["the", "king", "shall", "speak", "and", "we", "hear", "him", "now", "O"]
    text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(600)) + "\n"
    (folder / "text.txt").write_text(text)
    return folder


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last", training=False).model_state


def assert_close_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:  # the sum over the batch is reduced in another order: float tolerance
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-5, msg=name)


def test_two_processes_equal_one_process_with_the_same_global_batch(corpus):
    two = trained("text.txt", "--nproc", "2", "--out", "two", *TINY, "--max-steps", "8", cwd=corpus)
    assert "parameters identical on all 2 ranks" in two
    trained("text.txt", "--out", "one", *TINY, "--max-steps", "8", cwd=corpus)
    assert_close_weights(corpus / "two", corpus / "one")
    # rank 0 alone writes: one row per logged step, as a one-process run has
    rows = (corpus / "two" / "metrics.csv").read_text().splitlines()
    assert len(rows) == len((corpus / "one" / "metrics.csv").read_text().splitlines())
    # the carried state is saved for the whole batch, in one process's order
    s2 = load_checkpoint(corpus / "two" / "last").training["state"]
    s1 = load_checkpoint(corpus / "one" / "last").training["state"]
    for a, b in zip(s2, s1, strict=True):
        assert a.shape == b.shape == (1, 4, 16)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_resume_in_two_processes_continues_exactly(corpus):
    trained("text.txt", "--nproc", "2", "--out", "resumed", *TINY, "--max-steps", "6", cwd=corpus)
    shutil.copytree(corpus / "resumed", corpus / "resumed-alone")
    trained("--resume", "resumed-alone", "--max-steps", "12", cwd=corpus)  # 2 processes' ckpt, in 1
    again = trained("--resume", "resumed", "--nproc", "2", "--max-steps", "12", cwd=corpus)
    assert "stopped (max_steps) at step 12" in again
    trained("text.txt", "--out", "whole", *TINY, "--max-steps", "12", cwd=corpus)
    assert_close_weights(corpus / "resumed", corpus / "whole")
    assert_close_weights(corpus / "resumed-alone", corpus / "whole")


def test_two_launchers_meet_at_a_rendezvous_as_two_machines_would(corpus):
    """The README's command for several machines, run twice on this one: torchrun --nnodes 2
    with a c10d rendezvous; rank 0 (either launcher) writes the run, weights agree."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
               f"127.0.0.1:{port}", "--rdzv-id", "test", "-m", "rnnkit", "train", "text.txt",
               "--out", "nodes", *TINY, "--max-steps", "6"]  # fmt: skip
    nodes = [subprocess.Popen(command, cwd=corpus, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [node.communicate(timeout=120)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sum("parameters identical on all 2 ranks" in out for out in outputs) == 1, outputs
    assert "stopped (max_steps) at step 6" in "".join(outputs)
    trained("text.txt", "--out", "nodes-alone", *TINY, "--max-steps", "6", cwd=corpus)
    assert_close_weights(corpus / "nodes", corpus / "nodes-alone")


def test_all_ranks_stop_together_on_max_time(corpus):
    run = trained("text.txt", "--nproc", "2", "--out", "timed", *TINY, "--max-steps", "1000000",
                  "--max-time", "2", cwd=corpus)  # fmt: skip
    assert "stopped (max_time)" in run
    assert "parameters identical on all 2 ranks" in run  # no rank ran ahead


def test_all_ranks_stop_together_on_early_stopping(corpus):
    """lr 1e-9 moves no float32 weight, so the second evaluation does not improve on the
    first: --patience 1 stops every rank after it (step 6), none running on."""
    run = trained("text.txt", "--nproc", "2", "--out", "early", *TINY, "--lr", "1e-9",
                  "--patience", "1", "--max-steps", "1000", cwd=corpus)  # fmt: skip
    assert "stopped (early_stopping) at step 6" in run
    assert "parameters identical on all 2 ranks" in run


def test_ctrl_c_stops_every_process_and_saves(corpus):
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "train", "text.txt", "--nproc", "2", "--out", "ctrlc",
         *TINY, "--max-steps", "1000000", "--eval-every", "1000"],
        cwd=corpus, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = corpus / "ctrlc" / "metrics.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not metrics.exists() or len(metrics.read_text().splitlines()) < 5
    ):
        time.sleep(0.2)  # training is under way
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "stopped (interrupted)" in out
    assert "Traceback" not in err
    step = load_checkpoint(corpus / "ctrlc" / "last").training["step"]
    assert f"stopped (interrupted) at step {step}:" in out  # saved where it stopped


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "3"], "--batch-size 3 must be divisible by the 2 processes"),
        (["--task", "classify"], "multi-process training supports --task lm"),
    ],
)
def test_refused_before_any_process_starts(corpus, flags, message):
    run = rnnkit("train", "text.txt", "--nproc", "2", "--out", "refused", *TINY, *flags,
                 cwd=corpus)  # fmt: skip
    assert run.returncode == 2
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (corpus / "refused").exists()


def test_nproc_checks_the_out_it_is_given_not_the_default(tmp_path):
    """Both directions, before any process starts: a run at the default ``runs/charlm`` does
    not block ``--nproc 2 --out other``; a run at ``--out X`` refuses ``--nproc 2 --out X`` in
    one line (it used to be checked against the default, then fail inside each rank)."""
    text = "\n".join(f"the king shall speak {i % 7} and we hear" for i in range(600)) + "\n"
    (tmp_path / "text.txt").write_text(text)
    (tmp_path / "runs" / "charlm" / "last").mkdir(parents=True)  # a plain `rnnkit train` ran
    (tmp_path / "runs" / "charlm" / "metrics.csv").write_text("step\n")
    trained("text.txt", "--nproc", "2", "--out", "other", *TINY, "--max-steps", "2",
            cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "other" / "last").is_dir()
    again = rnnkit("train", "text.txt", "--nproc", "2", "--out", "other", *TINY, cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert again.stderr.strip().splitlines() == [again.stderr.strip()]  # one line
    assert "other already holds a run" in again.stderr and "charlm" not in again.stderr


def test_nproc_must_be_positive(corpus):
    run = rnnkit("train", "text.txt", "--nproc", "0", cwd=corpus)
    assert run.returncode == 2
    assert "--nproc" in run.stderr and "positive integer" in run.stderr


def test_shards_are_contiguous_blocks_of_the_global_batch():
    tokens = np.arange(1000) % 37
    streams = TokenStreams(tokens, 6, 5)
    for rank in range(3):
        rows = World(rank, 3).rows(6)
        part = streams.shard(rows)
        assert part.batch_size == 2 and len(part) == len(streams)
        for index in (0, 7, len(streams) - 1):
            x, y = part.batch(index)
            gx, gy = streams.batch(index)
            assert torch.equal(x, gx[rows]) and torch.equal(y, gy[rows])


def test_workers_do_not_launch_again():
    argv = ["text.txt", "--nproc", "2", "--out", "r", "--nproc=3", "--hidden", "8"]
    assert strip_nproc(argv) == ["text.txt", "--out", "r", "--hidden", "8"]
