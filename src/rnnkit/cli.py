"""The ``rnnkit`` command line: ``main()`` and the table of commands.

Each command is one module of ``rnnkit.commands`` with ``add_parser(subparsers)`` and
``run(args) -> int``; a new command is one module and one row of :data:`COMMANDS`. Bad input
ends with a one-line ``rnnkit: error: ...`` and exit status 2; Ctrl-C exits 130 (training saves
the run first).

    rnnkit train [PATH ...] [--preset default] [--config FILE.toml] [--hidden 512 ...]
    rnnkit sample runs/charlm --prime "ROMEO:" --temperature 0.8 --length 500
    rnnkit eval runs/charlm [PATH ...] [--split val|test] [--json]
    rnnkit predict runs/names Rossi Nakamura --top 3
    rnnkit demo --cell gru --hidden 64 --bidirectional
    rnnkit analyze gradients runs/charlm -o gradient_flow.png
    rnnkit experiment memory --out docs/
    rnnkit report runs/charlm -o report.html
    rnnkit bench [--quick] [--json]
    rnnkit export runs/charlm --format onnx -o model.onnx
    rnnkit serve runs/charlm --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from rnnkit import __version__
from rnnkit.commands import (
    analyze,
    bench,
    demo,
    experiment,
    export,
    predict,
    report,
    sample,
    serve,
    train,
)
from rnnkit.commands import eval as evaluate
from rnnkit.commands.args import Parser
from rnnkit.errors import UserError
from rnnkit.io_errors import os_error_line

#: every command, in the order ``rnnkit --help`` lists them
COMMANDS = {
    "train": train,
    "sample": sample,
    "eval": evaluate,
    "predict": predict,
    "demo": demo,
    "analyze": analyze,
    "experiment": experiment,
    "report": report,
    "bench": bench,
    "export": export,
    "serve": serve,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, title="commands", metavar="COMMAND"
    )
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


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
        args.argv = None if argv is None else list(argv[1:])  # after the command (--nproc)
        return COMMANDS[args.command].run(args)
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
