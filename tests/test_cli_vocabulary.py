"""One table of commands, one vocabulary: the table and ``rnnkit --help`` agree, every option
has help text, the same things have the same names, and the old spellings still work for one
release with a one-line note on stderr."""

from __future__ import annotations

import argparse
import inspect

import pytest

from rnnkit.cli import COMMANDS, build_parser, main
from rnnkit.commands import report

# the commands that do work, and what each keeps its own reason for not having
# eval: the run's seed, which also fixes its data split; export: nothing random; serve: a seed
# per request; experiment memory: --seeds N seeds per setting
NO_SEED = {"eval", "export", "serve", "experiment memory"}
NO_THREADS = set()


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser by its command line: ``train``, ``analyze gradients``..."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[name] = parser
        for action in subs:
            for sub, child in action.choices.items():
                walk(child, f"{name} {sub}".strip())

    walk(build_parser(), "")
    return found


def test_the_table_of_commands_and_rnnkit_help_agree(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    listed = [
        line.split()[0]
        for line in text.split("commands:")[1].splitlines()[2:]
        if line[4:5] != " " and line.strip()
    ]
    assert listed == list(COMMANDS)
    for name, module in COMMANDS.items():
        assert callable(module.add_parser) and callable(module.run), name
        assert module.__name__ == f"rnnkit.commands.{name}"


def test_every_option_has_help_and_no_choice_is_empty():
    for name, parser in parsers().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"rnnkit {name} {action.option_strings or action.dest}: no help"
            assert "" not in (action.choices or ()), f"rnnkit {name} {action.option_strings}"


def test_defaults_are_shown_in_the_help():
    help_text = {name: parser.format_help() for name, parser in parsers().items()}
    assert "(default: 500)" in help_text["sample"]  # --length
    assert "(default: 0.8)" in help_text["sample"]  # --temperature
    assert "(default: 512)" in help_text["train"]  # --hidden, from the config dataclass
    assert "(default: 32)" in help_text["demo"]  # --hidden


def test_threads_and_seed_wherever_work_is_done():
    for name, parser in parsers().items():
        flags = {s for a in parser._actions for s in a.option_strings}
        if name not in NO_THREADS:
            assert "--threads" in flags, name
        if name not in NO_SEED:
            assert "--seed" in flags, name


def test_hidden_and_layers_mean_the_same_in_train_and_demo():
    found = parsers()
    for name in ("train", "demo"):
        flags = {s for a in found[name]._actions for s in a.option_strings}
        assert {"--hidden", "--layers"} <= flags, name


def test_a_file_written_is_dash_o_output_a_directory_is_out():
    found = parsers()
    for name in ("export", "predict", "analyze gradients", "report"):
        flags = {
            s for a in found[name]._actions for s in a.option_strings if a.help != "==SUPPRESS=="
        }
        assert {"-o", "--output"} <= flags, name
    for name in ("train", "experiment memory", "experiment exploding", "report"):
        flags = {s for a in found[name]._actions for s in a.option_strings}
        assert "--out" in flags, name


def test_sample_and_generate_share_their_defaults():
    """`rnnkit sample` and generate() draw the same text for the same seed by default."""
    from rnnkit.generation import DEFAULT_TEMPERATURE, generate

    args = build_parser().parse_args(["sample", "runs/x"])
    assert args.temperature == DEFAULT_TEMPERATURE
    parameters = inspect.signature(generate).parameters
    for name in ("temperature", "length", "top_k", "top_p", "num_samples"):
        assert getattr(args, name) == parameters[name].default, name


@pytest.mark.parametrize(
    "old, new, dest",
    [
        (["demo", "--hidden-size", "16"], ["demo", "--hidden", "16"], "hidden"),
        (["demo", "--num-layers", "3"], ["demo", "--layers", "3"], "layers"),
        (["predict", "r", "--out", "p.png"], ["predict", "r", "-o", "p.png"], "output"),
        (
            ["analyze", "gradients", "--fresh", "rnn", "--out", "g.png"],
            ["analyze", "gradients", "--fresh", "rnn", "--output", "g.png"],
            "output",
        ),
    ],
)
def test_old_spellings_still_work_with_a_one_line_note(capsys, old, new, dest):
    parser = build_parser()
    assert getattr(parser.parse_args(old), dest) == getattr(parser.parse_args(new), dest)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnkit: note:") and "deprecated" in err[0]
    assert old[-2] in err[0] and new[-2] in err[0]


def test_report_old_spelling_still_works_with_a_note(capsys):
    parser = build_parser()
    assert report.output(parser.parse_args(["report", "r", "--out", "a.html"])) == "a.html"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnkit: note:") and "-o/--output" in err[0]
    assert report.output(parser.parse_args(["report", "r", "-o", "b.html"])) == "b.html"
    for spelling in ("-o", "--out"):  # the PNGs' directory: the file it writes, or results dir
        args = parser.parse_args(["report", "r", "--format", "png", spelling, "d"])
        assert report.output(args) == "d"
    assert capsys.readouterr().err == ""


def test_demo_with_the_old_spellings_prints_the_same(capsys):
    assert main(["demo", "--hidden", "8", "--layers", "1", "--length", "3"]) == 0
    new = capsys.readouterr()
    assert main(["demo", "--hidden-size", "8", "--num-layers", "1", "--length", "3"]) == 0
    old = capsys.readouterr()
    assert old.out == new.out and new.err == ""
    assert old.err.splitlines() == [
        "rnnkit: note: --hidden-size is deprecated, use --hidden",
        "rnnkit: note: --num-layers is deprecated, use --layers",
    ]
