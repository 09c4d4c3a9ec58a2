"""The ``rnnkit`` command line. Thin: each subcommand parses its flags and calls one library
function. Bad input ends with a one-line ``rnnkit: error: ...`` and exit status 2; Ctrl-C during
training saves the run and exits 130.

    rnnkit train [PATH ...] [--preset default] [--config FILE.toml] [--hidden 512 ...]
    rnnkit train --resume runs/charlm --max-steps 8000
    rnnkit sample runs/charlm --prime "ROMEO:" --temperature 0.8 --length 500
    rnnkit eval runs/charlm [PATH ...] [--split val|test] [--json]
    rnnkit train --task classify data/names/ --out runs/names
    rnnkit predict runs/names Rossi Nakamura --top 3               (rnnkit.sample_command)
    rnnkit sample runs/names-gen --condition Italian --num-samples 5
    rnnkit demo --cell gru --hidden-size 64 --bidirectional
    rnnkit analyze gradients runs/charlm -o gradient_flow.png      (rnnkit.analysis.commands)
    rnnkit experiment memory --out docs/                           (        "              )
    rnnkit report runs/charlm -o report.html                       (        "              )
    rnnkit bench [--quick] [--json]                                (rnnkit.benchmark.command)
    rnnkit export runs/charlm --format onnx -o model.onnx          (rnnkit.export.command)
    rnnkit sample model.onnx --runtime onnx --prime "ROMEO:"
    rnnkit serve runs/charlm --host 127.0.0.1 --port 8000          (rnnkit.serve.command)
    rnnkit train --nproc 2 ...        (torchrun + DistributedDataParallel: training/distributed.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from dataclasses import fields
from pathlib import Path

from rnnkit import __version__
from rnnkit.analysis.commands import add_commands
from rnnkit.benchmark.command import add_parser as add_bench
from rnnkit.benchmark.command import run_bench
from rnnkit.errors import UserError
from rnnkit.export.command import add_parser as add_export
from rnnkit.export.command import run_export
from rnnkit.io_errors import os_error_line
from rnnkit.sample_command import run_predict, run_sample
from rnnkit.serve.command import add_parser as add_serve
from rnnkit.serve.command import run_serve


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump; "rnnkit: error: rnnkit:" once
        raise UserError(message if self.prog == "rnnkit" else f"{self.prog}: {message}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; help text from the field, SUPPRESS so unset flags stay unset."""
    from rnnkit.config import SECTIONS, flag_name

    parser.add_argument(
        "paths",
        nargs="*",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="training text: files, directories or globs (default: bundled Tiny Shakespeare)",
    )
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}]")
        for f in fields(cls):
            if f.name in ("paths", "vocab_size"):
                continue
            kind = str(f.type).replace(" | None", "")
            options = {
                "help": f.metadata["help"],
                "default": argparse.SUPPRESS,
                "dest": f"{section}.{f.name}",
            }
            if kind == "bool":
                options["action"] = argparse.BooleanOptionalAction
            elif kind == "list[str]":
                options["nargs"] = "+"
                options["metavar"] = f.name.upper()
            else:
                options["type"] = {"int": int, "float": float, "str": str}[kind]
                options["metavar"] = f.name.upper()
                if f.metadata.get("choices"):
                    options["choices"] = f.metadata["choices"]
                    options.pop("metavar")
            group.add_argument(f"--{flag_name(f)}", **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, title="commands", metavar="COMMAND"
    )

    train = commands.add_parser(
        "train", help="train a model (default: a character-level language model)"
    )
    train.add_argument(
        "--preset",
        help="a preset from rnnkit/configs (default: 'default' for --task lm, else the task's own)",
    )
    train.add_argument(
        "--config", metavar="FILE.toml", help="TOML with [data] [model] [train] [task]"
    )
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")
    train.add_argument(
        "--nproc",
        type=_positive,
        default=1,
        metavar="N",
        help="train in N processes on this machine (torchrun + DistributedDataParallel; "
        "--batch-size is the global batch, split evenly)",
    )
    _add_config_flags(train)

    sample = commands.add_parser("sample", help="generate text from a trained model")
    sample.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    sample.add_argument("--prime", default="", help="text to start from (default: a newline)")
    sample.add_argument("--length", type=int, default=500, help="characters to generate")
    sample.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    sample.add_argument("--top-k", type=int, default=0, help="sample among the k most likely")
    sample.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    sample.add_argument("--stop", action="append", default=[], help="stop at this string")
    sample.add_argument("--seed", type=int, default=None, help="random seed")
    sample.add_argument("--num-samples", type=_positive, default=1, help="independent samples")
    sample.add_argument(
        "--condition", help="class name or vector to generate from (--task generate-from runs)"
    )
    sample.add_argument(
        "--unknown",
        choices=("error", "skip"),
        default="error",
        help="prime characters outside the vocabulary",
    )
    sample.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default=None,
        help="run the model on PyTorch or on onnxruntime (default: onnx for a .onnx file, "
        "else torch; a run directory is exported on the fly unless it holds model.onnx)",
    )

    evaluate = commands.add_parser("eval", help="metrics of a trained model on data")
    evaluate.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    evaluate.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="data in the training format (default: the run's --split of its own data)",
    )
    evaluate.add_argument(
        "--split", choices=("val", "test"), default="val", help="which held-out split to score"
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--figures", metavar="DIR", help="also write the task's pictures of --split into DIR"
    )
    evaluate.add_argument("--decode", choices=("greedy", "sample", "beam"), help="(seq2seq)")
    evaluate.add_argument("--beam-width", type=_positive, help="(seq2seq --decode beam)")
    evaluate.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where encoded text is cached (default: $RNNKIT_CACHE, else $XDG_CACHE_HOME/rnnkit "
        "or ~/.cache/rnnkit; never the checkpoint's data.cache_dir)",
    )

    predict = commands.add_parser("predict", help="apply a trained task model to inputs")
    predict.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    predict.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="texts (classify, tag, seq2seq), conditions (generate-from) or CSV files (forecast)",
    )
    predict.add_argument("--top", type=_positive, help="classes shown per input (classify)")
    predict.add_argument("--decode", choices=("greedy", "sample", "beam"), help="(seq2seq)")
    predict.add_argument("--beam-width", type=_positive, help="(seq2seq --decode beam)")
    predict.add_argument("--temperature", type=float, help="(seq2seq, generate-from)")
    predict.add_argument("--num-samples", type=_positive, help="(generate-from)")
    predict.add_argument("--seed", type=int, help="random seed")
    predict.add_argument(
        "-o", "--out", help="the picture to write (frames; default: RUN/frames_predict.png)"
    )

    demo = commands.add_parser("demo", help="build a layer, print its shapes, check it vs torch.nn")
    demo.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    demo.add_argument("--input-size", type=_positive, default=8)
    demo.add_argument("--hidden-size", type=_positive, default=32)
    demo.add_argument("--num-layers", type=_positive, default=2)
    demo.add_argument("--batch", type=_positive, default=4)
    demo.add_argument("--length", type=_positive, default=12)
    demo.add_argument("--bidirectional", action="store_true")
    demo.add_argument("--seed", type=int, default=0)
    COMMANDS.update(add_commands(commands))  # analyze, experiment, report (rnnkit.analysis)
    add_bench(commands)
    COMMANDS["bench"] = run_bench
    add_export(commands)
    COMMANDS["export"] = run_export
    add_serve(commands)
    COMMANDS["serve"] = run_serve
    return parser


def _run_config(args: argparse.Namespace):
    """defaults -> preset -> --config file -> flags (on --resume: the saved config -> flags)."""
    from rnnkit.config import RunConfig, apply_overrides, load_preset, load_toml

    flags: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".")
            flags.setdefault(section, {})[name] = value
    if "paths" in args:
        flags.setdefault("data", {})["paths"] = args.paths
    if args.resume:
        fixed = sorted(
            "PATH"
            if k == "paths"
            else "--task"
            if (s, k) == ("task", "name")
            else f"--{k.replace('_', '-')}"  # noqa: E501
            for s in ("data", "model", "task")
            for k in flags.get(s, {})
        )
        if fixed or args.config:
            what = ", ".join(fixed) or "--config"
            raise UserError(f"{what} cannot change when resuming (only [train] flags can)")
        flags.setdefault("train", {})["out"] = args.resume
    config = RunConfig()
    config.train.out = args.resume or config.train.out
    if not args.resume:
        toml = load_toml(args.config) if args.config else {}
        preset = args.preset or _preset_for(flags, toml)
        if preset:
            apply_overrides(config, load_preset(preset), f"preset {preset}")
        if args.config:
            apply_overrides(config, toml, args.config)
    return config, flags


def _launch_torchrun(args: argparse.Namespace, config, flags: dict) -> int:
    """``rnnkit train --nproc N ...``: check the flags here (one-line errors before any process
    starts), then run ``torchrun --standalone --nproc-per-node N -m rnnkit train ...``."""
    from rnnkit.checkpoint.lock import check_unlocked
    from rnnkit.checkpoint.runs import check_new_run_dir
    from rnnkit.config import apply_overrides, validate
    from rnnkit.tasks.saved import read_run_checkpoint
    from rnnkit.training import distributed

    if distributed.launched_by_torchrun():
        raise UserError("--nproc cannot be used inside torchrun (torchrun starts the processes)")
    if args.resume:
        _, config, _ = read_run_checkpoint(Path(args.resume) / "last")
    apply_overrides(config, flags, "command line")
    if not args.resume:
        check_new_run_dir(Path(config.train.out))  # --out is among the flags just applied
    check_unlocked(config.train.out)  # rank 0 locks it; refused here, before any process starts
    validate(config)
    world = distributed.World(0, args.nproc)
    distributed.check_divisible(world, config.train.batch_size, config.task.name)
    argv = distributed.strip_nproc(sys.argv[2:] if args.argv is None else args.argv)
    code = distributed.launch(args.nproc, argv, share_cores=not config.train.threads)
    if code not in (0, 130):
        raise UserError(
            f"training in {args.nproc} processes failed (torchrun exit status {code}; the "
            "processes' messages are above)"
        )
    return code


def _preset_for(flags: dict, toml: dict) -> str | None:
    """The preset of the task named by --task (or the --config file): 'default' for lm, the
    task's own configs/TASK.toml otherwise (None if it has none)."""
    from rnnkit.config import preset_names

    section = toml.get("task") if isinstance(toml.get("task"), dict) else {}
    task = flags.get("task", {}).get("name") or section.get("name") or "lm"
    if task == "lm":
        return "default"
    return task if task in preset_names() else None


def _run_train(args: argparse.Namespace) -> int:
    from rnnkit.config import apply_overrides
    from rnnkit.training import distributed
    from rnnkit.training.loop import train

    config, flags = _run_config(args)
    if args.nproc > 1:
        return _launch_torchrun(args, config, flags)
    if args.resume:  # the saved run's config, then the [train] flags given now
        result = train(config, resume=True, overrides=flags)
    else:
        apply_overrides(config, flags, "command line")
        result = train(config)
    if result.stopped == "interrupted":  # under torchrun, 0: the launcher reports the signal
        return 0 if distributed.launched_by_torchrun() else 130
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from rnnkit.tasks.base import own_data, summary
    from rnnkit.tasks.saved import load_task

    task, model, config = load_task(args.checkpoint)
    config.data.cache_dir = args.cache_dir  # never the checkpoint's: it would choose our writes
    if args.decode is not None:  # the task reads its decoding options from the run's config
        config.task.decode = args.decode
    if args.beam_width is not None:
        config.task.beam_width = args.beam_width
    task.show_progress = True  # a whole corpus takes minutes: never silent
    if args.paths:
        figures = task.evaluate_paths(model, args.paths)
    else:
        print(f"rnnkit eval: scoring {own_data(config, args.split)}", file=sys.stderr)
        task.prepare()  # the run's own data, split as in training
        figures = task.evaluate(model, args.split)
        if args.figures:
            Path(args.figures).mkdir(parents=True, exist_ok=True)
            for path in task.write_figures(model, Path(args.figures), args.split):
                print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(figures))
    elif config.task.name == "lm":
        loss, bpc, chars = figures["loss"], figures["bpc"], figures["chars"]
        print(f"loss {loss:.4f} nats/char | {bpc:.4f} bits/char | {chars:,} chars")
    else:
        print(summary(figures, task.metric_names))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from rnnkit.demo import demo

    options = vars(args).copy()
    del options["command"]
    print("\n".join(demo(**options)))
    return 0


COMMANDS = {
    "train": _run_train,
    "sample": run_sample,
    "eval": _run_eval,
    "predict": run_predict,
    "demo": _run_demo,
}


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGXFSZ"):  # past ulimit -f, write() fails with EFBIG (one line) ...
        with contextlib.suppress(ValueError):  # ... not a kill; ValueError: not the main thread
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        parser = build_parser()
        if not (sys.argv[1:] if argv is None else argv):  # plain `rnnkit`: what it can do
            parser.print_help(sys.stderr)
            raise UserError("no command given: pick one above (rnnkit COMMAND --help for more)")
        args = parser.parse_args(argv)
        if args.command == "train":  # what follows the subcommand, for --nproc to pass on
            args.argv = None if argv is None else list(argv[1:])
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rnnkit sample ... | head`
        return 0
    except OSError as error:  # disk full, read-only, permissions...: see rnnkit.io_errors
        print(f"rnnkit: error: {os_error_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
