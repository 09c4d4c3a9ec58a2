"""The ``rnnkit`` command line. Thin: each subcommand parses its flags and calls one library
function. Bad input ends with a one-line ``rnnkit: error: ...`` and exit status 2.

    rnnkit demo --cell gru --hidden-size 64 --bidirectional
"""

from __future__ import annotations

import argparse
import sys

from rnnkit import __version__


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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


def _run_demo(args: argparse.Namespace) -> int:
    from rnnkit.demo import demo

    options = vars(args).copy()
    del options["command"]
    print("\n".join(demo(**options)))
    return 0


COMMANDS = {"demo": _run_demo}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (CLIError, ValueError) as error:
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
