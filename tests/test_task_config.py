"""The [task] section: each task's own options (validated by the task), the flat [task] table
of older config files, and the preset each --task picks."""

from __future__ import annotations

import pytest

from rnnkit.cli import build_parser
from rnnkit.config import RunConfig, apply_overrides, preset_for, preset_names, validate
from rnnkit.errors import UserError
from rnnkit.tasks import task_options


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
        task_options(config)


def test_val_and_test_fractions_must_leave_training_data():
    config = RunConfig()
    apply_overrides(config, {"data": {"val_fraction": 0.5, "test_fraction": 0.5}}, "test")
    with pytest.raises(UserError, match="--val-fraction must be < 1 - test-fraction"):
        validate(config)


def test_each_task_picks_its_own_preset():
    assert preset_for({}, {}) == "default"
    assert preset_for({"task": {"name": "lm"}}, {}) == "default"
    for name in ("classify", "tag", "seq2seq", "forecast", "frames", "generate-from"):
        assert name in preset_names()
        assert preset_for({"task": {"name": name}}, {}) == name
        assert preset_for({}, {"task": {"name": name}}) == name


def test_every_task_preset_names_its_task_and_validates():
    from rnnkit.config import load_preset

    for name in preset_names():
        config = RunConfig()
        apply_overrides(config, load_preset(name), name)
        validate(config)
        task_options(config)
        lm = ("tiny", "default", "quality", "gpu", "ptb", "ptb-awd", "warpeace")
        expected = "lm" if name in lm else {"ucr": "classify"}.get(name, name.split("-fra")[0])
        assert config.task.name == expected


def test_list_flags_parse():
    args = build_parser().parse_args(["train", "--task", "forecast", "--columns", "x", "y"])
    assert vars(args)["task.columns"] == ["x", "y"] and vars(args)["task.name"] == "forecast"


def test_each_task_declares_its_options_and_reads_only_them():
    config = RunConfig()
    apply_overrides(config, {"task": {"name": "classify", "pooling": "max"}}, "test")
    options = task_options(config)
    assert type(options).__name__ == "ClassifyOptions" and options.pooling == "max"
    assert not hasattr(options, "beam_width")  # a seq2seq option


def test_a_flat_task_table_of_every_task_loads_and_keeps_only_its_own_keys():
    """config.json files written before per-task options list every task's keys."""
    import json
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures/release-0.1.0-lm/last/config.json"
    saved = json.loads(fixture.read_text())["config"]
    saved.pop("vocab_kind")
    config = RunConfig.from_dict(saved, "config.json")
    assert len(config.task.options) > 15
    options = task_options(config)
    assert type(options).__name__ == "LanguageModelOptions"
    wrong = {**saved, "task": {**saved["task"], "beam_width": 0}}  # another task's key: checked
    with pytest.raises(UserError, match="--beam-width must be a positive integer"):
        task_options(RunConfig.from_dict(wrong, "config.json"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "classify", "--crf"], "--crf is an option of --task tag, not of --task class"),
        (["--beam-width", "3"], "--beam-width is an option of --task seq2seq, not of --task lm"),
    ],
)
def test_a_flag_of_another_task_is_refused_on_the_command_line(argv, message):
    """A config file may hold every task's keys (they are checked, then left out); a flag the
    chosen task does not take is a mistake, named in one line."""
    from rnnkit.commands.args import config_flags
    from rnnkit.config import fresh_config

    args = build_parser().parse_args(["train", *argv])
    config = fresh_config(config_flags(args))
    with pytest.raises(UserError, match=message):
        task_options(config)


def test_an_unknown_task_key_names_the_file():
    config = RunConfig()
    apply_overrides(config, {"task": {"name": "tag", "poolin": "max"}}, "my.toml")
    with pytest.raises(UserError, match="my.toml: unknown key task.poolin"):
        task_options(config)


def test_every_task_option_has_a_flag_in_its_group():
    from dataclasses import fields

    from rnnkit.tasks.options import option_classes

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for name, cls in option_classes().items():
        assert f"options of --task {name}" in text or not fields(cls)  # lm has none
        for f in fields(cls):
            assert f"--{f.name.replace('_', '-')}" in text


def test_precedence_defaults_preset_config_file_flags(tmp_path):
    from rnnkit.config import fresh_config

    toml = tmp_path / "c.toml"
    toml.write_text(
        '[model]\nhidden = 48\nlayers = 3\n[task]\nname = "classify"\npooling = "mean"\n'
    )
    config = fresh_config({"model": {"layers": 4}})
    assert (config.model.hidden, config.model.layers) == (320, 4)  # the default preset, a flag
    config = fresh_config({"model": {"layers": 4}}, config_file=str(toml))
    assert config.task.name == "classify"  # the file names the task: its preset comes first
    assert (config.model.hidden, config.model.layers) == (48, 4)
    assert task_options(config).pooling == "mean"
    flags = {"task": {"pooling": "max"}}
    assert task_options(fresh_config(flags, "classify", str(toml))).pooling == "max"


def test_resuming_takes_train_flags_only():
    from rnnkit.config import resume_overrides

    flags = resume_overrides({"train": {"max_steps": 9}}, "runs/x")
    assert flags == {"train": {"max_steps": 9, "out": "runs/x"}}
    for given, named in [
        ({"model": {"hidden": 8}}, "--hidden"),
        ({"data": {"paths": ["a"]}}, "PATH"),
        ({"task": {"name": "tag"}}, "--task"),
        ({"task": {"pooling": "max"}}, "--pooling"),
    ]:
        with pytest.raises(UserError, match=f"{named} cannot change when resuming"):
            resume_overrides(given, "runs/x")
    with pytest.raises(UserError, match="--config cannot change when resuming"):
        resume_overrides({}, "runs/x", "c.toml")


def test_a_new_run_saves_its_tasks_options_in_the_flat_task_table():
    from rnnkit.tasks import get_task

    config = RunConfig()
    apply_overrides(config, {"task": {"name": "classify", "pooling": "max", "window": 9}}, "t")
    get_task("classify")(config)
    saved = config.to_dict()["task"]
    assert saved == {
        "name": "classify",
        "bidirectional": False,
        "pooling": "max",
        "min_count": 1,
        "inputs": "auto",
        "label_column": "label",
        "project": False,
    }
    again = RunConfig.from_dict(config.to_dict())
    assert again == config and task_options(again).pooling == "max"


@pytest.mark.parametrize("task", ["classify", "tag", "seq2seq", "generate-from", "forecast"])
@pytest.mark.parametrize("key,value", [("weight_drop", 0.3), ("locked_dropout", True), ("ar", 2.0)])
def test_the_language_models_own_options_are_refused_by_other_tasks(task, key, value):
    from rnnkit.tasks import get_task

    config = RunConfig()
    apply_overrides(config, {"task": {"name": task}, "model": {key: value}}, "test")
    with pytest.raises(UserError) as error:
        get_task(task)(config)
    flag = "--" + key.replace("_", "-")
    assert (
        str(error.value) == f"{flag} applies to the language model (--task lm), not --task {task}"
    )
    config.model = type(config.model)()
    get_task(task)(config)  # without it, the same task is built


def test_float_lists_are_finite_numbers_from_a_file_or_a_flag():
    """``list[float]`` options (forecast quantiles): ints become floats; a bool, a string, NaN
    or inf is refused naming the key; the flag's parser wants numbers separated by commas."""
    import argparse

    from rnnkit.commands.args import float_list
    from rnnkit.config import _coerce

    assert _coerce([0.1, 1], "list[float]", "q", "f.toml") == [0.1, 1.0]
    assert _coerce([], "list[float]", "q", "f.toml") == []
    for bad in ([True], ["0.5"], [float("nan")], [float("inf")], 0.5):
        with pytest.raises(UserError, match="f.toml: q must be list\\[float\\]"):
            _coerce(bad, "list[float]", "q", "f.toml")
    assert float_list("0.1,0.5,0.9") == [0.1, 0.5, 0.9]
    for bad in ("", "0.1,,0.9", "a", "nan", "0.1,inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="numbers separated by commas"):
            float_list(bad)
