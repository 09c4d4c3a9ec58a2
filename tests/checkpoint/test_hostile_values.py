"""Values a checkpoint, a TOML file or a flag may hold that the weights do not check: each is
bounded or refused with one line before anything runs, allocates or saves.

The sizes and loop counts the weights leave open (a frame's size, a forecast's horizon, the
synthetic data's size, the threads), floats JSON cannot hold (nan, inf), and a tampered
``training.json`` (counters of the wrong type or range, a carried state or an optimiser state
of the wrong shape) resumed through ``rnnkit train --resume``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_hostile import make_checkpoint, refused, set_config

from rnnkit.checkpoint.state import (
    check_like,
    check_optimizer_state,
    flatten_state,
    unflatten_state,
)
from rnnkit.cli import main
from rnnkit.config import RunConfig, apply_overrides, validate
from rnnkit.tasks import get_task
from rnnkit.tasks.saved import load_task, save_run_checkpoint
from rnnkit.training.optim import build_optimizer, build_scheduler

# --- sizes the weights do not fix ------------------------------------------------------------

TASKS = {
    "frames": (
        {"model": {"hidden": 4, "layers": 1}, "task": {"frame_size": 8, "frames": 3}},
        {"frame_size": 8, "frames": 3, "channels": 1},
    ),
    "forecast": (
        {"model": {"embed": 4, "hidden": 4, "layers": 1}, "task": {"window": 4, "horizon": 2}},
        {"columns": ["a"], "mean": [0.0], "std": [1.0]},
    ),
}


def task_checkpoint(path: Path, name: str) -> Path:
    """A valid untrained checkpoint of ``--task name`` (weights and meta), as training saves."""
    settings, meta = TASKS[name]
    config = RunConfig()
    apply_overrides(config, {**settings, "task": {**settings["task"], "name": name}}, "test")
    validate(config)
    task = get_task(name)(config, meta)
    save_run_checkpoint(path, config, task.build_model(), task, None)
    load_task(path)  # loads as saved
    return path


def set_meta(path: Path, key: str, value: object) -> None:
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    meta["config"]["task_meta"][key] = value
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


SIZES = [
    ("frames", "meta", "frame_size", 450, "task_meta.frame_size must be at most 128"),
    ("frames", "meta", "frame_size", 10**6, "task_meta.frame_size must be at most 128"),
    ("frames", "meta", "frames", 10**5, "task_meta.frames must be at most 100"),
    ("frames", "meta", "frame_size", 10**4299, "frame_size"),  # the JSON reader or the schema
    ("frames", "task", "frames", 10**9, "--frames must be at most 100"),
    ("frames", "data", "synthetic_size", 10**6, "pixels; the limit is 268,435,456"),
    ("forecast", "task", "horizon", 10**9, "--horizon must be at most 10,000"),
    ("forecast", "task", "window", 10**9, "--window must be at most 100,000"),
    ("forecast", "data", "synthetic_size", 10**9, "--synthetic-size must be at most 1,000,000"),
    ("forecast", "train", "threads", 10**6, "--threads must be at most 1024"),
    ("forecast", "train", "sample_length", 10**12, "--sample-length must be at most 1,000,000"),
]


@pytest.mark.parametrize(
    "task, section, key, value, fragment",
    SIZES,
    ids=[f"{c[0]}-{c[2]}-{len(str(c[3]))}digits" for c in SIZES],
)
def test_sizes_the_weights_do_not_fix_are_bounded(tmp_path, task, section, key, value, fragment):
    ckpt = task_checkpoint(tmp_path / "ckpt", task)
    if key == "synthetic_size" and task == "frames":
        set_meta(ckpt, "frame_size", 64)  # in range, and so is the size: not both together
    if section == "meta":
        set_meta(ckpt, key, value)
    else:
        set_config(ckpt, section, key, value)
    refused(lambda: load_task(ckpt), "config.json", fragment)


def test_the_same_bounds_hold_for_flags(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--task", "frames", "--frame-size", "450", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert "--frame-size must be at most 128" in capsys.readouterr().err


# --- floats JSON cannot hold ---------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e6])
def test_non_finite_or_absurd_forget_bias_in_a_checkpoint_is_refused(tmp_path, value):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    set_config(ckpt, "model", "forget_bias", value)  # json.dumps writes NaN, Infinity
    if math.isfinite(value):
        refused(lambda: load_task(ckpt), "config.json", "--forget-bias must be in [-100, 100]")
    else:  # the JSON reader refuses it, or else the config check does
        refused(lambda: load_task(ckpt), "config.json", "forget")


@pytest.mark.parametrize(
    "args",
    [
        ["--forget-bias", "nan"],
        ["--forget-bias=-inf"],
    ],
)
def test_non_finite_floats_from_flags_are_refused(tmp_path, capsys, args):
    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{args[0].split('=')[0]} must be" in err, err
    assert not out.exists()


def test_non_finite_floats_from_toml_are_refused(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("[model]\nforget_bias = nan\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "bad.toml"), "--out", str(out)]) == 2
    assert "--forget-bias must be a finite number, got nan" in capsys.readouterr().err
    assert not out.exists()


# --- a tampered training.json, resumed -----------------------------------------------------

TEXT = "".join(f"{w}: the {x} is {y}.\n" for w in "AB" for x in ("moon", "rose") for y in "xyz")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny language-model run with a carried state and an Adam state in last/."""
    root = tmp_path_factory.mktemp("resume")
    (root / "t.txt").write_text(TEXT * 20)
    args = ["train", str(root / "t.txt"), "--preset", "tiny", "--threads", "1", "--hidden", "8"]
    args += ["--embed", "4", "--seq-len", "8", "--batch-size", "4", "--max-steps", "4"]
    args += ["--eval-every", "2", "--eval-batches", "1", "--cache-dir", str(root / "cache")]
    assert main([*args, "--out", str(root / "run")]) == 0
    return root / "run"


def tamper(run_dir: Path, change) -> None:
    """Apply ``change(skeleton, tensors)`` to last/training.*, forging the digests."""
    last = run_dir / "last"
    skeleton = json.loads((last / "training.json").read_text())
    tensors = load_file(last / "training.safetensors")
    change(skeleton["$dict"], tensors)
    (last / "training.json").write_text(json.dumps(skeleton))
    save_file(tensors, last / "training.safetensors")
    meta = json.loads((last / "config.json").read_text())
    for name in ("training.json", "training.safetensors"):
        meta["files"][name] = hashlib.sha256((last / name).read_bytes()).hexdigest()
    (last / "config.json").write_text(json.dumps(meta))


def put(key, value):
    return lambda s, tensors: s.__setitem__(key, value)


def reshape(name):
    """Give the tensors under ``name`` (state, optimizer exp_avg) a wrong shape."""

    def change(skeleton, tensors):
        for key in [k for k in tensors if k.startswith(name)]:
            tensors[key] = torch.zeros(3, 5)

    return change


TAMPERED = {
    "batch_index -5": (put("batch_index", -5), "batch_index must be an integer >= 0, got -5"),
    "step abc": (put("step", "abc"), "step must be an integer >= 0, got 'abc'"),
    "step 1.5": (put("step", 1.5), "step must be an integer >= 0, got 1.5"),
    "epoch true": (put("epoch", True), "epoch must be an integer >= 0, got True"),
    "best_val x": (put("best_val", "x"), "best_val must be a number, got 'x'"),
    "best_val nan": (put("best_val", {"$float": "nan"}), "best_val must be a number or inf"),
    "last_eval_step ahead": (put("last_eval_step", 99), "last_eval_step must be at most step"),
    "state shape": (reshape("state."), "state must be 2 float tensor(s) of shape (1, 4, 8)"),
    "exp_avg shape": (reshape("optimizer.state.0.exp_avg"), "exp_avg of parameter 0"),
    "lr abc": (
        lambda s, t: s["optimizer"]["$dict"]["param_groups"][0]["$dict"].__setitem__("lr", "x"),
        "optimizer.param_groups[0].lr must be a number, got 'x'",
    ),
    "scheduler attribute": (
        lambda s, t: s["scheduler"]["$dict"].__setitem__("optimizer", 5),
        "scheduler has an unknown key 'optimizer'",
    ),
}


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_training_json_is_refused_before_anything_trains(run, tmp_path, capsys, case):
    change, fragment = TAMPERED[case]
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    tamper(copy, change)
    before = snapshot(copy)
    assert main(["train", "--resume", str(copy), "--max-steps", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training.json" in err and fragment in err, err
    assert snapshot(copy) == before  # nothing trained, nothing saved


def test_tampered_step_is_one_line_from_the_command(run, tmp_path):
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    tamper(copy, put("step", 1.5))
    result = subprocess.run(
        [sys.executable, "-m", "rnnkit", "train", "--resume", str(copy), "--max-steps", "8"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("rnnkit: error: ") and result.stderr.count("\n") == 1
    assert "last/training.json: step must be an integer >= 0, got 1.5" in result.stderr


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop", "adagrad"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "plateau"])
def test_every_saved_optimiser_and_schedule_passes_the_checks(optimizer, schedule):
    config = RunConfig()
    apply_overrides(
        config, {"train": {"optimizer": optimizer, "schedule": schedule, "max_steps": 9}}, "test"
    )
    model = torch.nn.Linear(3, 2)

    def build():
        opt = build_optimizer(model, config.train)
        return opt, build_scheduler(opt, config.train, 10)

    opt, sched = build()
    for _ in range(3):
        model(torch.randn(4, 3)).square().sum().backward()
        opt.step()
        sched.step(1.0) if schedule == "plateau" else sched.step()
    saved = unflatten_state(*flatten_state({"o": opt.state_dict(), "s": sched.state_dict()}))
    fresh_opt, fresh_sched = build()
    check_like(fresh_opt.state_dict(), saved["o"], "optimizer")
    check_like(fresh_sched.state_dict(), saved["s"], "scheduler", strict_keys=True)
    fresh_opt.load_state_dict(saved["o"])
    check_optimizer_state(fresh_opt)


# --- what a checkpoint may choose for rnnkit eval ------------------------------------------


def test_eval_never_writes_where_the_checkpoint_says(tmp_path, monkeypatch, capsys):
    """data.cache_dir of a checkpoint is ignored (the user's cache, or --cache-dir); its
    data.paths are read for the run's own validation split only, and named."""
    text = "the moon is bright. the rose is red!\n" * 250
    (tmp_path / "own.txt").write_text(text)
    (tmp_path / "other.txt").write_text(text[::-1])
    ckpt = make_checkpoint(tmp_path / "ckpt")
    set_config(ckpt, "data", "cache_dir", str(tmp_path / "planted"))
    set_config(ckpt, "data", "paths", [str(tmp_path / "own.txt")])
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "user-cache"))
    assert main(["eval", str(ckpt), str(tmp_path / "other.txt")]) == 0
    assert main(["eval", str(ckpt)]) == 0
    err = capsys.readouterr().err
    assert f"the val split of {tmp_path / 'own.txt'} (data.paths from the checkpoint)" in err
    assert main(["eval", str(ckpt), "--cache-dir", str(tmp_path / "mine")]) == 0
    assert not (tmp_path / "planted").exists()
    assert len(list((tmp_path / "user-cache").glob("*.tokens"))) == 2  # own.txt, other.txt
    assert len(list((tmp_path / "mine").glob("*.tokens"))) == 1
