"""``rnnkit train``, ``sample`` and ``eval`` end to end in subprocesses, and every bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from subprocess_cli import rnnkit

CUDA_BUILT = torch.backends.cuda.is_built()
NO_CUDA = pytest.mark.skipif(CUDA_BUILT, reason="this PyTorch has CUDA: --device cuda is valid")
TEXT = (
    "".join(
        f"{who}: the {what} is {how}, and so the {what} shall be.\n"
        for who in ("ROMEO", "JULIET", "NURSE", "FRIAR")
        for what in ("night", "moon", "rose", "sword", "tomb")
        for how in ("sweet", "dark", "cold", "bright")
    )
    * 3
)  # about 13,000 characters


TINY = ["--preset", "tiny", "--threads", "1", "--eval-batches", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small run shared by the sample/eval tests: 80 steps on the fixture text."""
    root = tmp_path_factory.mktemp("run")
    (root / "plays.txt").write_text(TEXT)
    result = rnnkit("train", "plays.txt", *TINY, "--max-steps", 80, "--out", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def test_train_lowers_loss_and_writes_the_run(trained):
    run = trained / "run"
    assert {"last", "best", "metrics.csv", "loss.png"} <= {p.name for p in run.iterdir()}
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    losses = [float(r[3]) for r in rows if r[2] == "train"]
    assert losses[-1] < losses[0] - 0.8, losses
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["format"] == "rnnkit-checkpoint" and config["config"]["model"]["hidden"] == 32


def test_eval_on_validation_split_and_on_a_file(trained):
    result = rnnkit("eval", "run", "--json", cwd=trained)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {"loss", "ppl", "tokens", "bpc", "chars", "device"}
    assert figures["device"] == "cpu" or figures["device"].startswith("cuda")  # --device auto
    assert figures["bpc"] == pytest.approx(figures["loss"] / 0.6931471805599453)
    assert figures["ppl"] == pytest.approx(math.exp(figures["loss"]))
    assert figures["tokens"] == figures["chars"]  # a char model: one character a token
    assert 0 < figures["loss"] < 3.0 and figures["chars"] > 500
    result = rnnkit("eval", "run", "plays.txt", cwd=trained)
    assert result.returncode == 0 and "nats/char" in result.stdout and "bits/char" in result.stdout


def test_sample_is_seeded_streamed_and_stops(trained):
    first = rnnkit("sample", "run", "--seed", 7, "--length", 120, "--prime", "ROMEO:", cwd=trained)
    again = rnnkit("sample", "run", "--seed", 7, "--length", 120, "--prime", "ROMEO:", cwd=trained)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout and len(first.stdout.strip()) > 50
    greedy = rnnkit(
        "sample", "run", "--temperature", 0, "--length", 200, "--stop", "\n", cwd=trained
    )  # noqa: E501
    assert greedy.returncode == 0 and "\n" not in greedy.stdout.rstrip("\n")
    many = rnnkit("sample", "run", "--num-samples", 3, "--length", 30, "--top-k", 5, cwd=trained)
    assert many.returncode == 0 and many.stdout.count("---- sample") == 3


def test_resume_continues_the_run(trained, tmp_path):
    (tmp_path / "plays.txt").write_text(TEXT)
    first = rnnkit("train", "plays.txt", *TINY, "--max-steps", 20, "--out", "r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = rnnkit("train", "--resume", "r", "--max-steps", 30, "--device", "cpu", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "stopped (max_steps) at step 30" in again.stdout
    assert "; on cpu; run directory" in again.stdout  # the header names the device


def test_ctrl_c_saves_and_exits_130_then_resumes(tmp_path):
    (tmp_path / "plays.txt").write_text(TEXT)
    args = ["train", "plays.txt", *TINY, "--max-steps", 100000, "--eval-every", 100000]
    env = {**os.environ, "RNNKIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *map(str, args), "--out", "r"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "r" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count("\n") < 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped (interrupted)" in out and "Traceback" not in err
    saved = json.loads((tmp_path / "r" / "last" / "training.json").read_text())
    assert "step" in json.dumps(saved)
    resumed = rnnkit("train", "--resume", "r", "--max-steps", 1, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # already past step 1: stops at once


def one_line_error(result, *needles):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "setup,args,needles",
    [
        (None, ["train", "nowhere.txt"], ["nowhere.txt"]),
        (lambda d: (d / "e.txt").write_text(""), ["train", "e.txt"], ["e.txt", "empty"]),
        (
            lambda d: (d / "s.txt").write_text("short text"),
            ["train", "s.txt"],
            ["too short for one batch", "need at least batch_size*seq_len+1"],
        ),  # noqa: E501
        (lambda d: (d / "dir").mkdir(), ["train", "dir"], ["dir", "no readable files"]),
        (
            lambda d: (d / "b.txt").write_bytes(b"abc\xff\xfedef" * 50),
            ["train", "b.txt"],
            ["b.txt", "byte offset 3", "--tokenizer byte"],
        ),  # noqa: E501
        (None, ["train", "--hidden", "0"], ["--hidden", "positive", "0"]),
        (None, ["train", "--seq-len", "-5"], ["--seq-len", "-5"]),
        (None, ["train", "--dropout", "1.0"], ["--dropout", "[0, 1)", "1.0"]),
        (None, ["train", "--lr", "nan"], ["--lr", "nan"]),
        (None, ["train", "--cell", "transformer"], ["--cell", "transformer"]),
        (
            lambda d: (d / "c.toml").write_text("[model]\nsize = 3\n"),
            ["train", "--config", "c.toml"],
            ["c.toml", "unknown key model.size"],
        ),  # noqa: E501
        (
            lambda d: (d / "c.toml").write_text('[model]\nhidden = "big"\n'),
            ["train", "--config", "c.toml"],
            ["model.hidden must be int", "'big'"],
        ),  # noqa: E501
        (None, ["train", "--preset", "huge"], ["unknown preset 'huge'"]),
        (None, ["train", "--precision", "fp8"], ["--precision", "fp8"]),
        (None, ["train", "--device", "bogus"], ["--device must be", "'bogus'"]),
        (None, ["train", "--device", "cuda:x"], ["--device must be", "'cuda:x'"]),
        pytest.param(
            None,
            ["train", "--device", "cuda"],
            ["--device cuda: this PyTorch has no CUDA support"],
            marks=NO_CUDA,
        ),
        pytest.param(
            None,
            ["train", "--nproc", "2", "--device", "cuda"],
            ["--device cuda: this PyTorch has no CUDA support"],
            marks=NO_CUDA,
        ),
        pytest.param(
            None,
            ["train", "--resume", "r", "--device", "cuda:1"],
            ["--device cuda:1: this PyTorch has no CUDA support"],  # before the run is read
            marks=NO_CUDA,
        ),
        (None, ["sample", "missing-run"], ["missing-run"]),
        (None, ["eval", "missing-run"], ["missing-run"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, setup, args, needles):
    if setup:
        setup(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = (
        rnnkit(*args, "--out", "r", cwd=tmp_path)
        if args[0] == "train"
        else rnnkit(*args, cwd=tmp_path)
    )  # noqa: E501
    one_line_error(result, *needles)
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "cache")
    assert after == [n for n in before if n != "cache"]


def test_existing_run_is_never_clobbered(trained):
    before = (trained / "run" / "metrics.csv").read_bytes()
    result = rnnkit("train", "plays.txt", *TINY, "--out", "run", cwd=trained)
    one_line_error(result, "--out run already holds a run", "--resume")
    assert (trained / "run" / "metrics.csv").read_bytes() == before


def test_prime_with_unknown_characters_is_named(trained):
    result = rnnkit("sample", "run", "--prime", "ROMEO€", cwd=trained)
    one_line_error(result, "'€'")
    skipped = rnnkit(
        "sample", "run", "--prime", "ROMEO€", "--unknown", "skip", "--length", 5, cwd=trained
    )  # noqa: E501
    assert skipped.returncode == 0, skipped.stderr


@pytest.mark.parametrize("damage", ["truncate", "flip", "version", "missing"])
def test_damaged_checkpoints_are_refused(trained, tmp_path, damage):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained / "run" / "last", ckpt)
    weights, config = ckpt / "model.safetensors", ckpt / "config.json"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "version":
        config.write_text(config.read_text().replace('"format_version": 1', '"format_version": 9'))
    else:
        weights.unlink()
    expected = {
        "truncate": "corrupted or truncated",
        "flip": "corrupted or truncated",
        "version": "format version 9 is not supported",
        "missing": "missing",
    }[damage]
    for command in ("sample", "eval"):
        one_line_error(
            rnnkit(command, ckpt, cwd=tmp_path),
            "model.safetensors" if damage in ("truncate", "flip", "missing") else "version",
            expected,
        )  # noqa: E501


def test_resume_refuses_to_change_the_model_or_data(trained):
    result = rnnkit("train", "--resume", "run", "--hidden", 64, "--embed-dropout", 0.1, cwd=trained)
    one_line_error(result, "--embed-dropout, --hidden cannot change when resuming")
    missing = rnnkit("train", "--resume", "no-such-run", cwd=trained)
    one_line_error(missing, "no-such-run")
