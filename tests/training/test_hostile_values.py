"""Values a checkpoint, a TOML file or a flag may hold that the weights do not check: each is
bounded or refused with one line before anything runs, allocates or saves.

The sizes and loop counts the weights leave open (a frame's size, a forecast's horizon, the
synthetic data's size, the threads), floats JSON cannot hold (nan, inf), and a tampered
``training.json`` (counters of the wrong type or range, a carried state or an optimiser state
of the wrong shape) resumed through ``rnnkit train --resume``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_hostile import make_checkpoint, refused, set_config

from rnnkit.cli import main
from rnnkit.config import RunConfig, apply_overrides, validate
from rnnkit.tasks import get_task
from rnnkit.training.runs import load_task, save_run_checkpoint

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
    ("frames", "meta", "frame_size", 10**4299, "task_meta.frame_size must be at most 128"),
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
    expected = "in [-100, 100]" if math.isfinite(value) else "must be a finite number"
    refused(lambda: load_task(ckpt), "config.json", "--forget-bias", expected)


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
