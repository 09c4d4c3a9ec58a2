"""The ``rnnkit`` command line. Thin: each subcommand parses its flags and calls one library
function. Bad input ends with a one-line ``rnnkit: error: ...`` and exit status 2; Ctrl-C during
training saves the run and exits 130.

    rnnkit train [PATH ...] [--preset default] [--config FILE.toml] [--hidden 512 ...]
    rnnkit train --resume runs/charlm --max-steps 8000
    rnnkit sample runs/charlm --prime "ROMEO:" --temperature 0.8 --length 500
    rnnkit eval runs/charlm [PATH ...] [--json]
    rnnkit demo --cell gru --hidden-size 64 --bidirectional
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields

from rnnkit import __version__
from rnnkit.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UserError(f"{self.prog}: {message}")


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
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a character-level language model")
    train.add_argument("--preset", default="default", help="tiny, default or quality (configs/)")
    train.add_argument("--config", metavar="FILE.toml", help="TOML with [data] [model] [train]")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")
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
        "--unknown",
        choices=("error", "skip"),
        default="error",
        help="prime characters outside the vocabulary",
    )

    evaluate = commands.add_parser("eval", help="loss of a trained model on text")
    evaluate.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    evaluate.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="text to score (default: the run's validation text)",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    demo = commands.add_parser("demo", help="build a layer, print its shapes, check it vs torch.nn")
    demo.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    demo.add_argument("--input-size", type=_positive, default=8)
    demo.add_argument("--hidden-size", type=_positive, default=32)
    demo.add_argument("--num-layers", type=_positive, default=2)
    demo.add_argument("--batch", type=_positive, default=4)
    demo.add_argument("--length", type=_positive, default=12)
    demo.add_argument("--bidirectional", action="store_true")
    demo.add_argument("--seed", type=int, default=0)
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
            "PATH" if k == "paths" else f"--{k.replace('_', '-')}"
            for s in ("data", "model")
            for k in flags.get(s, {})
        )
        if fixed or args.config:
            what = ", ".join(fixed) or "--config"
            raise UserError(f"{what} cannot change when resuming (only [train] flags can)")
        flags.setdefault("train", {})["out"] = args.resume
    config = RunConfig()
    config.train.out = args.resume or config.train.out
    if not args.resume:
        apply_overrides(config, load_preset(args.preset), f"preset {args.preset}")
        if args.config:
            apply_overrides(config, load_toml(args.config), args.config)
    return config, flags


def _run_train(args: argparse.Namespace) -> int:
    from rnnkit.config import apply_overrides
    from rnnkit.training.loop import train

    config, flags = _run_config(args)
    if args.resume:  # the saved run's config, then the [train] flags given now
        result = train(config, resume=True, overrides=flags)
    else:
        apply_overrides(config, flags, "command line")
        result = train(config)
    return 130 if result.stopped == "interrupted" else 0


def _run_sample(args: argparse.Namespace) -> int:
    from rnnkit.generation import generate
    from rnnkit.training.runs import load_model

    model, vocab, _ = load_model(args.checkpoint)
    streaming = args.num_samples == 1

    def emit(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if streaming:
        emit(args.prime)  # the continuation follows the prime, as the model read it

    texts = generate(
        model,
        vocab,
        prime=args.prime,
        length=args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=args.stop,
        seed=args.seed,
        unknown=args.unknown,
        on_text=emit if streaming else None,
        num_samples=args.num_samples,
    )
    if streaming:
        print()
    else:
        for i, text in enumerate(texts):
            print(f"---- sample {i + 1} ----\n{args.prime}{text}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from rnnkit.data import TokenStreams, load_corpus, split
    from rnnkit.training.runs import load_model
    from rnnkit.training.tbptt import evaluate

    model, vocab, config = load_model(args.checkpoint)
    d, t = config.data, config.train
    if args.paths:
        tokens = load_corpus(args.paths, vocab.kind, vocab=vocab, cache_dir=d.cache_dir).tokens
    elif d.val:
        tokens = load_corpus([d.val], vocab.kind, vocab=vocab, cache_dir=d.cache_dir).tokens
    else:
        corpus = load_corpus(d.paths or None, vocab.kind, vocab=vocab, cache_dir=d.cache_dir)
        tokens = split(corpus.tokens, d.val_fraction)[1]
    streams = TokenStreams.for_evaluation(tokens, t.batch_size, t.seq_len, name="evaluation text")
    loss, chars = evaluate(model, streams)
    bpc = loss / math.log(2)
    if args.json:
        print(json.dumps({"loss": loss, "bpc": bpc, "chars": chars}))
    else:
        print(f"loss {loss:.4f} nats/char | {bpc:.4f} bits/char | {chars:,} chars")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from rnnkit.demo import demo

    options = vars(args).copy()
    del options["command"]
    print("\n".join(demo(**options)))
    return 0


COMMANDS = {"train": _run_train, "sample": _run_sample, "eval": _run_eval, "demo": _run_demo}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rnnkit sample ... | head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
