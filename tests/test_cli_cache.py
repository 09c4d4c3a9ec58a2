"""``rnnkit eval`` with the neural cache, end to end in subprocesses on a tiny word run: the
figures equal the library's (``rnnkit.training.cache``) on the same streams, lambda 0 equals the
plain evaluation, ``--tune-cache`` reports the grid's best point and the test text with and
without the cache; every bad flag is one line, exit status 2."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.config import RunConfig
from rnnkit.errors import UserError
from rnnkit.tasks import get_task
from rnnkit.tasks.lm_cache import MAX_SIZE, check_task
from rnnkit.tasks.saved import load_task
from rnnkit.training.cache import LAMBDAS, THETAS, cache_evaluate, tune_cache
from rnnkit.training.tbptt import evaluate
from subprocess_cli import rnnkit

WORDS = "the cat dog sat on a mat ran to old tree house my sister looked at".split()
TRAIN = ("--hidden", 24, "--embed", 16, "--layers", 1, "--batch-size", 4, "--seq-len", 10)
TRAIN += ("--max-steps", 40, "--eval-every", 40, "--sample-every", 0, "--seed", 3)
TRAIN += ("--threads", 1)


def lines(count: int, seed: int) -> list[str]:
    """Lines that repeat phrases from a small pool: text a cache can use."""
    rng = random.Random(seed)
    pool = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(12)]
    return [rng.choice(pool) for _ in range(count)]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A tiny word run (run/) and a test text (test.txt) with a word it never saw."""
    work = tmp_path_factory.mktemp("cache")
    (work / "corpus.txt").write_text("\n".join(lines(300, 0)) + "\n", encoding="utf-8")
    (work / "test.txt").write_text("\n".join(lines(40, 1) + ["a wombat sat"]) + "\n")
    ok(rnnkit("train", "corpus.txt", "--tokenizer", "word", "--out", "run", *TRAIN, cwd=work))
    return work


@pytest.fixture(scope="module")
def loaded(work):
    """The run as the library reads it: its task (validation prepared), the model, and the
    test text's streams."""
    old = Path.cwd()
    os.chdir(work)  # the run's data paths are relative to where it was trained
    try:
        torch.set_num_threads(1)
        task, model, _ = load_task(work / "run")
        task.prepare()
        return task, model, task.text_streams(["test.txt"])
    finally:
        os.chdir(old)


def test_cache_figures_equal_the_library_on_the_validation_split(work, loaded):
    task, model, _ = loaded
    cached = json.loads(
        ok(rnnkit("eval", "run", "--json", "--cache-size", 30, "--cache-theta", 0.5, cwd=work))
    )
    plain = task.evaluate(model)  # the figures of eval --json without the cache
    assert set(cached) == set(plain) | {"device", "cache_size", "cache_theta", "cache_lambda"}
    assert (cached["cache_size"], cached["cache_theta"], cached["cache_lambda"]) == (30, 0.5, 0.1)
    loss, count = cache_evaluate(model, task.val_text.streams, 30, 0.5, 0.1)
    assert cached["loss"] == pytest.approx(loss, rel=1e-6)
    assert cached["tokens"] == plain["tokens"] == count
    assert cached["chars"] == plain["chars"]
    assert cached["ppl"] == pytest.approx(math.exp(cached["loss"]), rel=1e-9)
    assert cached["bpc"] == pytest.approx(
        cached["loss"] * count / cached["chars"] / math.log(2), rel=1e-9
    )
    assert cached["loss"] != pytest.approx(plain["loss"], rel=1e-4)  # the cache did something


def test_lambda_zero_equals_the_plain_evaluation(work, loaded):
    task, model, test = loaded
    args = ("eval", "run", "test.txt", "--json", "--cache-lambda", 0)
    zero = json.loads(ok(rnnkit(*args, cwd=work)))
    loss, count = evaluate(model, test.streams)
    assert zero["loss"] == pytest.approx(loss, rel=1e-6) and zero["tokens"] == count
    assert zero["unk"] == 1  # "wombat"
    assert zero["cache_size"] == 2000 and zero["cache_theta"] == 0.3


def test_the_eval_line_says_the_settings(work, capsys, monkeypatch):
    """In-process: the same main() as the subprocesses above."""
    monkeypatch.chdir(work)
    assert main(["eval", "run", "test.txt", "--cache-size", "2000", "--cache-lambda", "0.2"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "perplexity" in out and "1 words became <unk>" in out
    assert out.rstrip().endswith("| cache size 2,000, theta 0.3, lambda 0.2")


def test_tune_cache_picks_the_grid_point_and_scores_the_test_text(work, loaded, capsys):
    task, model, test = loaded
    result = json.loads(ok(rnnkit("eval", "run", "test.txt", "--tune-cache", "--json", cwd=work)))
    tuned = tune_cache(model, task.val_text.streams, 2000, THETAS, LAMBDAS)
    assert (result["cache_theta"], result["cache_lambda"]) == (tuned.theta, tuned.lam)
    assert result["cache_size"] == 2000
    assert result["val"]["loss"] == pytest.approx(tuned.losses.min().item(), rel=1e-6)
    assert result["val_plain"]["loss"] == pytest.approx(evaluate(model, task.val_text.streams)[0])
    want, _ = cache_evaluate(model, test.streams, 2000, tuned.theta, tuned.lam)
    assert result["test"]["loss"] == pytest.approx(want, rel=1e-6)
    assert result["test"]["cache_theta"] == tuned.theta
    assert result["test_plain"]["loss"] == pytest.approx(evaluate(model, test.streams)[0])
    assert result["test"]["unk"] == result["test_plain"]["unk"] == 1

    old = Path.cwd()
    os.chdir(work)
    try:
        assert main(["eval", "run", "test.txt", "--tune-cache"]) == 0
    finally:
        os.chdir(old)
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 5
    assert text[0] == (
        "cache tuned on the validation split (theta 0..2 step 0.05 x lambda 0.05..0.5 step "
        f"0.05, size 2,000): theta {tuned.theta:g}, lambda {tuned.lam:g}"
    )
    names = ["validation, cache", "validation, no cache", "test, cache", "test, no cache"]
    assert [line.split(": ")[0] for line in text[1:]] == names
    assert f"perplexity {result['test']['ppl']:.2f}" in text[3]
    assert f"perplexity {result['test_plain']['ppl']:.2f}" in text[4]


def test_a_task_other_than_lm_is_refused(work, capsys, monkeypatch):
    runs = work / "frames"
    runs.mkdir()
    ok(rnnkit(
        "train", "--task", "frames", "--synthetic-size", 48, "--frame-size", 8, "--frames", 4,
        "--hidden", 8, "--layers", 1, "--batch-size", 8, "--max-steps", 1, "--eval-every", 1,
        "--threads", 1, "--out", "run", cwd=runs,
    ))  # fmt: skip
    monkeypatch.chdir(runs)
    assert main(["eval", "run", "--cache-size", "100"]) == 2
    assert capsys.readouterr() == (
        "",
        "rnnkit: error: --cache-size, --cache-theta, --cache-lambda and --tune-cache are for "
        "--task lm (a language model), this run is --task frames\n",
    )


@pytest.mark.parametrize("name", ["classify", "tag", "seq2seq", "forecast", "generate-from"])
def test_every_other_task_is_refused(name):
    config = RunConfig()
    config.task.name = name
    with pytest.raises(UserError, match=f"are for --task lm .*this run is --task {name}$"):
        check_task(get_task(name)(config))


def test_a_bad_flag_is_one_line_in_a_subprocess(work):
    result = rnnkit("eval", "run", "--cache-lambda", 1.5, cwd=work)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "rnnkit: error: --cache-lambda must be a number in [0, 1], got 1.5\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cache-size", 0], f"--cache-size must be an integer from 1 to {MAX_SIZE:,}"),
        (["--cache-size", -5], "got -5"),
        (["--cache-size", MAX_SIZE + 1], f"got {MAX_SIZE + 1}"),
        (["--cache-size", "2k"], "--cache-size: invalid int value: '2k'"),
        (["--cache-theta", -0.1], "--cache-theta must be a number >= 0, got -0.1"),
        (["--cache-theta", "nan"], "--cache-theta must be a number >= 0, got nan"),
        (["--cache-lambda", -0.01], "--cache-lambda must be a number in [0, 1], got -0.01"),
        (["--cache-lambda", 1.01], "--cache-lambda must be a number in [0, 1], got 1.01"),
        (["test.txt", "--tune-cache", "--cache-theta", 0.3], "--tune-cache chooses theta"),
        (["test.txt", "--tune-cache", "--cache-lambda", 0.1], "drop --cache-theta and"),
        (["--tune-cache"], "--tune-cache needs the test text: rnnkit eval RUN TEST_FILE"),
        (["--cache-size", 9, "--figures", "out"], "--figures draws the task's pictures without"),
        (["--cache-size", 9, "--split", "test"], "--task lm has a validation split only"),
    ],
)
def test_bad_cache_flags_are_one_line_errors(work, capsys, monkeypatch, args, message):
    """In-process (the same main() the subprocess runs; exit status and stderr checked)."""
    monkeypatch.chdir(work)
    assert main(["eval", "run", *map(str, args)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("rnnkit: error: ")
    assert message in err
    assert not (work / "out").exists()
