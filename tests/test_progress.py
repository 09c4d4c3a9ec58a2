"""What a run says while it runs (``rnnkit.training.progress``) and the schedule that follows
``--max-time`` (``rnnkit.training.optim``): the time left, progress lines when the output is not a
terminal, the note of a run the clock stopped, the small-data hint, ``rnnkit eval``'s progress,
the forecast task's figures. Clocks are fake where time matters; no test asserts a duration."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.config import RunConfig, validate
from rnnkit.tasks import get_task
from rnnkit.training import progress
from rnnkit.training.metrics import log_scale
from rnnkit.training.optim import TimeBudget, build_scheduler, time_budget
from rnnkit.training.progress import (
    Progress,
    counted,
    figure,
    small_data_hint,
    time_left,
    time_limit_note,
)
from subprocess_cli import rnnkit as run_rnnkit

TINY = ["--preset", "tiny", "--threads", "1", "--eval-batches", "2", "--sample-every", "0"]
TEXT = "".join(f"{w}: the {x} is here, and so the {x} shall be.\n" for w in "ABCD" for x in "xyz")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rnnkit(*args, cwd):
    return run_rnnkit(*args, cwd=cwd)  # stdout a pipe: not a terminal


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- the time left ------------------------------------------------------------------------
def test_time_left_is_the_smaller_of_the_steps_and_the_time_limit():
    # 10 steps in 10 s of 1,700 planned: 1,690 s by the steps, but --max-time 120 leaves 110 s
    assert time_left(10, 1700, 0, 10.0, 120.0) == pytest.approx(110.0)
    assert time_left(10, 1700, 0, 10.0, 0.0) == pytest.approx(1690.0)
    assert time_left(1690, 1700, 0, 100.0, 120.0) == pytest.approx(100 / 1690 * 10)
    assert time_left(0, None, 0, 0.0, 0.0) is None


def test_the_bar_shows_the_time_limited_eta():
    clock, out = FakeClock(), io.StringIO()
    bar = Progress(
        total=1700,
        first=0,
        max_time=120.0,
        unit="char",
        log_every=10,
        interactive=True,
        log=print,
        clock=clock,
        file=out,
    )
    for step in range(1, 11):
        clock.now += 1.0
        bar.update(step, 0, 4.0, 0.01, 2048)
    shown = str(bar.bar)
    bar.close()
    assert "<01:50" in shown, shown  # 110 s left, not 28 minutes
    assert "28:10" not in shown


def test_lines_come_at_least_every_ten_seconds_when_not_a_terminal():
    clock, lines = FakeClock(), []
    shown = Progress(
        total=None,
        first=0,
        max_time=0.0,
        unit="char",
        log_every=100,  # every 1,000 steps by the steps: none in this slow run
        interactive=False,
        log=lines.append,
        clock=clock,
    )
    for step in range(1, 31):
        clock.now += 4.0  # 4 s a step
        shown.update(step, 0, 2.5, 0.01, 100)
    assert [line.split(" |")[0] for line in lines] == [f"step {s}" for s in range(3, 31, 3)]
    assert "loss 2.5000" in lines[0] and "25 chars/s" in lines[0]


def test_a_piped_training_run_prints_progress_lines(tmp_path):
    """A subprocess with stdout a pipe prints time-based lines (--progress-every)."""
    (tmp_path / "t.txt").write_text(TEXT * 20)
    run = rnnkit(
        "train",
        "t.txt",
        *TINY,
        "--max-steps",
        "6",
        "--log-every",
        "1000",
        "--progress-every",
        "1e-9",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    steps = [
        line for line in run.stdout.splitlines() if line.startswith("step ") and "/6 |" in line
    ]
    assert [s.split(" |")[0] for s in steps] == [f"step {i}/6" for i in range(1, 7)], run.stdout
    assert all(" left" in s for s in steps)


# ---- a run the clock stopped --------------------------------------------------------------
def test_the_time_limit_note_says_how_far_the_run_got():
    assert (
        time_limit_note(1700, 1700, 0, 118.0)
        == "stopped at step 1,700 of 1,700 planned (time limit)"
    )
    note = time_limit_note(70, 1700, 0, 120.0, followed=True)
    assert note.startswith("stopped at step 70 of 1,700 planned (time limit): the machine is")
    assert "complete but shorter run" in note and "--max-time 2920" in note
    assert "complete" not in time_limit_note(70, 1700, 0, 120.0)  # a schedule by steps


def test_the_cosine_schedule_follows_the_time_budget():
    config = RunConfig().train
    config.schedule, config.lr, config.warmup, config.min_lr_ratio = "cosine", 1.0, 10, 0.1
    config.max_steps, config.max_time = 1000, 60.0
    budget = time_budget(config)
    assert budget is not None
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, config, 100, budget)
    lrs = []
    for elapsed in (0.3, 0.6, 30.0, 59.9, 60.0):  # 5 steps: the clock runs out first
        budget.advance(elapsed)
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.5)  # 0.5% of the time: half the warm-up's 1%
    assert lrs[1] == pytest.approx(1.0)  # warm-up done by the clock (10/1000 of the time)
    progress = (0.5 - 0.01) / 0.99  # half the time: about half the decay, at step 3
    assert lrs[2] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert lrs[-1] == pytest.approx(0.1)  # the whole schedule, in 5 steps
    config.max_time = 0.0
    assert time_budget(config) is None  # by the step alone: a resume stays bit-exact


def test_a_resumed_budget_spreads_the_rest_over_the_new_session():
    budget = TimeBudget(100.0, done=0.5)
    assert budget.advance(50.0) == pytest.approx(0.75)
    assert budget.advance(500.0) == 1.0


def test_a_time_limited_run_ends_its_schedule_and_says_so(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT * 20)
    args = [*TINY, "--schedule", "cosine", "--min-lr-ratio", "0.05", "--lr", "0.01"]
    args += ["--max-steps", "1000000", "--max-time", "2", "--log-every", "1"]
    run = rnnkit("train", "t.txt", *args, "--out", "run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "of 1,000,000 planned (time limit): the machine is slower" in run.stdout
    train = [r for r in rows(tmp_path / "run" / "metrics.csv") if r["kind"] == "train"]
    assert float(train[-1]["lr"]) < 0.005  # a step schedule would still be at 0.01
    state = json.loads((tmp_path / "run" / "last" / "training.json").read_text())["$dict"]
    assert 0.5 < state["time_used"] <= 1.0, state.get("time_used")  # resume goes on from here


# ---- a small training set -----------------------------------------------------------------
def test_small_data_hint_fires_for_a_tiny_corpus_only():
    hint = small_data_hint(
        parameters=524_000,
        steps_per_epoch=8,
        planned=1700,
        eval_every=425,
        train_units=16_384,
        unit="char",
    )
    assert hint and hint.startswith("hint: the training data is small for this run")
    assert "212 epochs" in hint and "after 53 epochs" in hint and "--eval-every 8" in hint
    # the default preset on Tiny Shakespeare; the tag preset's 23 epochs
    assert small_data_hint(
        parameters=519_105, steps_per_epoch=490, planned=1700, eval_every=425, train_units=1_003_520
    ) is None  # fmt: skip
    assert (
        small_data_hint(parameters=300_000, steps_per_epoch=87, planned=2000, eval_every=250)
        is None
    )


def test_a_tiny_corpus_gets_the_hint(tmp_path, capsys):
    (tmp_path / "small.txt").write_text(TEXT * 20)  # about 19 KB
    out = tmp_path / "run"
    code = main(["train", str(tmp_path / "small.txt"), "--threads", "1", "--max-steps", "1",
                 "--eval-batches", "1", "--sample-every", "0", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert "hint: the training data is small for this run" in capsys.readouterr().out


# ---- rnnkit eval's progress ----------------------------------------------------------------
def test_counted_prints_a_line_every_ten_seconds_when_not_a_terminal():
    clock, err = FakeClock(), io.StringIO()
    items = []
    for item in counted(range(7), "rnnkit eval", show=True, clock=clock, file=err):
        clock.now += 4.0
        items.append(item)
    assert items == list(range(7))
    assert err.getvalue().splitlines() == [
        "rnnkit eval: batch 3 of 7, 12s",
        "rnnkit eval: batch 6 of 7, 24s",
    ]
    assert list(counted(range(3), "x", show=False, file=err)) == [0, 1, 2]


def test_rnnkit_eval_shows_progress(tmp_path, capsys, monkeypatch):
    (tmp_path / "t.txt").write_text(TEXT * 20)
    out = str(tmp_path / "run")
    assert main(["train", str(tmp_path / "t.txt"), *TINY, "--max-steps", "2", "--out", out]) == 0
    capsys.readouterr()
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)  # every batch, not every 10 s
    assert main(["eval", out, str(tmp_path / "t.txt")]) == 0
    assert "rnnkit eval: batch 1 of" in capsys.readouterr().err


# ---- the forecast task's figures ------------------------------------------------------------
def test_figures_keep_significant_digits():
    assert figure(1.23456) == "1.2346"
    assert figure(1.2e-5) == "1.2e-05"
    assert figure(0.0) == "0.0000"


def test_a_loss_over_decades_gets_a_log_axis():
    assert log_scale([1.0, 0.1, 1e-4, 2e-5])
    assert not log_scale([4.2, 2.0, 1.5])
    assert not log_scale([])


def test_forecast_names_its_units_and_picks_best_by_mae(tmp_path, capsys):
    config = RunConfig()
    config.task.name, config.task.options["loss"] = "forecast", "mae"
    validate(config)
    task = get_task("forecast")(config)
    assert task.unit == "timestep" and task.loss_name == "normalised MAE"
    assert task.selection == ("mae", "min")
    out = tmp_path / "run"
    args = ["train", "--preset", "forecast", "--synthetic", "sine", "--synthetic-size", "400"]
    args += ["--window", "8", "--horizon", "4", "--hidden", "8", "--embed", "8", "--threads", "1"]
    args += ["--max-steps", "12", "--eval-every", "4", "--log-every", "4", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    vals = [r for r in rows(out / "metrics.csv") if r["kind"] == "val"]
    best = min(vals, key=lambda r: float(r["mae"]))
    assert [r["step"] for r in vals if r["note"] == "best"][-1] == best["step"]
    assert f"best val mae {figure(float(best['mae']))}" in text
    assert "timesteps_per_s" in rows(out / "metrics.csv")[0]
    assert "0.0000" not in text


def test_a_tampered_time_used_is_one_line(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(TEXT * 20)
    run = tmp_path / "run"
    assert (
        main(["train", str(tmp_path / "t.txt"), *TINY, "--max-steps", "2", "--out", str(run)]) == 0
    )
    last = run / "last"
    skeleton = json.loads((last / "training.json").read_text())
    skeleton["$dict"]["time_used"] = "abc"
    (last / "training.json").write_text(json.dumps(skeleton))
    meta = json.loads((last / "config.json").read_text())  # the digest forged to match
    meta["files"]["training.json"] = hashlib.sha256(
        (last / "training.json").read_bytes()
    ).hexdigest()
    (last / "config.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max-steps", "4", "--max-time", "60"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "time_used must be a number in [0, 1], got 'abc'" in err, err
