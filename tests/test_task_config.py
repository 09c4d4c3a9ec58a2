"""The [task] section: validation of every task option and the preset each --task picks."""

from __future__ import annotations

import pytest

from rnnkit.cli import _preset_for, build_parser
from rnnkit.config import RunConfig, apply_overrides, preset_names, validate
from rnnkit.errors import UserError


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("task", "name", "poetry", "--task must be one of"),
        ("task", "pooling", "median", "--pooling must be one of"),
        ("task", "beam_width", 0, "--beam-width must be a positive integer"),
        ("task", "window", 0, "--window must be a positive integer"),
        ("task", "frames", 1, "--frames must be an integer >= 2"),
        ("task", "kernel", 4, "--kernel must be an odd positive integer"),
        ("task", "tf_min", 1.5, "--tf-min must be in"),
        ("task", "tf_k", 2.0, "--tf-k must be in \\(0, 1\\) for --teacher-forcing exponential"),
        ("task", "char_hidden", -1, "--char-hidden must be an integer >= 0"),
        ("data", "test_fraction", 1.0, "--test-fraction must be in"),
        ("data", "synthetic", "mnist", "--synthetic must be one of"),
        ("data", "tokenizer", "word", "--tokenizer word is for the classify and seq2seq"),
    ],
)
def test_impossible_task_options_name_the_flag(section, key, value, message):
    config = RunConfig()
    overrides = {section: {key: value}}
    if key == "tf_k":
        overrides["task"]["teacher_forcing"] = "exponential"
    apply_overrides(config, overrides, "test")
    with pytest.raises(UserError, match=message):
        validate(config)


def test_val_and_test_fractions_must_leave_training_data():
    config = RunConfig()
    apply_overrides(config, {"data": {"val_fraction": 0.5, "test_fraction": 0.5}}, "test")
    with pytest.raises(UserError, match="--val-fraction must be < 1 - test-fraction"):
        validate(config)


def test_each_task_picks_its_own_preset():
    assert _preset_for({}, {}) == "default"
    assert _preset_for({"task": {"name": "lm"}}, {}) == "default"
    for name in ("classify", "tag", "seq2seq", "forecast", "frames", "generate-from"):
        assert name in preset_names()
        assert _preset_for({"task": {"name": name}}, {}) == name
        assert _preset_for({}, {"task": {"name": name}}) == name


def test_every_task_preset_names_its_task_and_validates():
    from rnnkit.config import load_preset

    for name in preset_names():
        config = RunConfig()
        apply_overrides(config, load_preset(name), name)
        validate(config)
        expected = name.split("-fra")[0] if name not in ("tiny", "default", "quality") else "lm"
        assert config.task.name == expected


def test_list_flags_parse():
    args = build_parser().parse_args(["train", "--task", "forecast", "--columns", "x", "y"])
    assert vars(args)["task.columns"] == ["x", "y"] and vars(args)["task.name"] == "forecast"
