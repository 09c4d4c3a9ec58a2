"""What the parsers of every command share: one-line errors, argument types, help with defaults,
and the flags of ``rnnkit train`` built from the config dataclasses.

    parser = Parser(prog="rnnkit")  # one-line errors; help shows defaults (HelpFormatter)
    train.add_argument("--nproc", type=positive, default=1, help="...")   # help shows (default: 1)
    add_config_flags(train)        # one flag per config field, one argument group per task
    flags = config_flags(args)     # {"section": {"key": value}} for the flags given

What is not here: each command's own flags (``rnnkit.commands.NAME``) and the precedence
between presets, config files and flags (``rnnkit.config``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError
from rnnkit.io_errors import writing


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``rnnkit: error: ...``, exit status 2) and
    whose help shows each option's default (:class:`HelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # no usage dump; "rnnkit: error: rnnkit:" once
        raise UserError(message if self.prog == "rnnkit" else f"{self.prog}: {message}")


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (argparse's ArgumentDefaultsHelpFormatter, minus
    the defaults that say nothing: None, False, SUPPRESS, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        quiet = default is None or default is False or default in (argparse.SUPPRESS, [], "")
        quiet = quiet or "(default" in text
        if quiet or not action.option_strings:
            return text
        if isinstance(default, list | tuple):  # nargs="+": as it is typed
            shown = " ".join(map(str, default)).replace("%", "%%")  # help is %-formatted
            return f"{text} (default: {shown})"
        return f"{text} (default: %(default)s)"


def _at_least(text: str, minimum: int, expected: str) -> int:
    """``text`` as an integer >= ``minimum``, or argparse's error saying what was ``expected``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _at_least(text, 1, "a positive integer")


def non_negative(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _at_least(text, 0, "an integer >= 0")


def add_decoding(parser: argparse.ArgumentParser) -> None:
    """seq2seq's ``--decode`` and ``--beam-width`` (``eval`` and ``predict``)."""
    parser.add_argument(
        "--decode", choices=("greedy", "sample", "beam"), help="(seq2seq; default: the run's)"
    )
    parser.add_argument(
        "--beam-width", type=positive, help="(seq2seq --decode beam; default: the run's)"
    )


def deprecated(parser: argparse.ArgumentParser, old: str, new: str, **options: Any) -> None:
    """Accept ``old``, an option renamed ``new``, for one more release: it sets ``new``'s
    destination (or ``dest``) and says so in one line on stderr. Hidden from ``--help``."""
    dest = options.pop("dest", new.lstrip("-").replace("-", "_"))
    options.setdefault("default", argparse.SUPPRESS)  # the new option's default stands

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"rnnkit: note: {old} is deprecated, use {new}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    parser.add_argument(old, dest=dest, action=Renamed, help=argparse.SUPPRESS, **options)


def add_threads(parser: argparse.ArgumentParser, default: int = 0, help: str = "") -> None:
    """``--threads N``: torch's intra-op threads for the work (:func:`use_threads`)."""
    text = help or "torch threads (0: torch's default, one per core)"
    parser.add_argument("--threads", type=non_negative, default=default, metavar="N", help=text)


def use_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (0, or a namespace without it, leaves torch's default)."""
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)


def add_device(parser: argparse.ArgumentParser, help: str = "") -> None:
    """``--device auto|cpu|cuda|cuda:N|mps`` (:func:`use_device` resolves it)."""
    text = help or (
        "where to run: auto (CUDA if available, else MPS if available, else the CPU), cpu, "
        "cuda, cuda:N or mps"
    )
    parser.add_argument("--device", default="auto", metavar="DEVICE", help=text)


def use_device(args: argparse.Namespace):
    """The ``torch.device`` that ``--device`` names, checked to be there (one-line error,
    exit 2, otherwise): ``rnnkit.devices.resolve_device``."""
    from rnnkit.devices import resolve_device

    return resolve_device(getattr(args, "device", "auto"))


def check_writable(path: str | Path, flag: str) -> None:
    """A file to write: not a directory, in a directory that exists (checked before any work)."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    if not target.parent.is_dir():
        raise UserError(f"{flag} {path}: the directory {target.parent} does not exist")


def make_dir(path: str | Path, flag: str) -> Path:
    """Create the output directory ``path`` (and its parents) before any work is done."""
    target = Path(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot create the directory ({error.strerror})") from None
    return target


def write_json(path: Path, payload: dict) -> None:
    """Atomically (a temp file, then rename): a failed write leaves no half JSON behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path):
        try:
            tmp.write_text(json.dumps(payload, indent=1))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def run_name(run: str) -> str:
    """The name a run directory goes by in a figure (RUN for RUN, RUN/best or RUN/last)."""
    path = Path(run)
    return path.parent.name if path.name in ("best", "last") else path.name


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (its help from the field; SUPPRESS so that an unset flag stays
    unset and the preset or config file decides), ``--task`` and one group per task built from
    the task's options dataclass (an option several tasks share is one flag naming them)."""
    from rnnkit.config import SECTIONS
    from rnnkit.tasks import TASK_NAMES
    from rnnkit.tasks.options import option_classes

    parser.add_argument(
        "paths",
        nargs="*",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="training text: files, directories or globs (default: bundled Tiny Shakespeare)",
    )
    note = "defaults shown are the built-in ones; the preset (--preset) sets some of them"
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}]", note if section == "data" else None)
        for f in fields(cls):
            if f.name not in ("paths", "vocab_size", "hidden_sizes", "options", "sources"):
                _add_field(group, section, f, TASK_NAMES if f.name == "name" else None)
    classes = option_classes()
    users: dict[str, list[str]] = {}  # option -> the tasks that have it
    for name, cls in classes.items():
        for f in fields(cls):
            users.setdefault(f.name, []).append(name)
    for name, cls in classes.items():
        if not fields(cls):
            continue
        summary = (cls.__doc__ or "").strip().split("\n")[0]
        group = parser.add_argument_group(f"[task] options of --task {name}", summary)
        for f in fields(cls):
            if users[f.name][0] == name:
                shared = users[f.name] if len(users[f.name]) > 1 else ()
                _add_field(group, "task", f, tasks=shared)


def _add_field(group, section: str, f: Field, choices=None, tasks=()) -> argparse.Action:
    from rnnkit.config import flag_name

    kind = str(f.type).replace(" | None", "")
    default = f.default_factory() if f.default is MISSING else f.default
    text = f.metadata["help"] + (f" (--task {', '.join(tasks)})" if tasks else "")
    if not (default is None or default is False or default in ("", [])) and "(default" not in text:
        text += f" (default: {default})"
    options: dict[str, Any] = {"help": text, "default": argparse.SUPPRESS}
    options["dest"] = f"{section}.{f.name}"
    choices = choices or f.metadata.get("choices")
    if f.name == "hidden" and section == "model":
        options.update(type=hidden_sizes, metavar="H|H1,H2,...")
    elif kind == "bool":
        options["action"] = argparse.BooleanOptionalAction
    elif kind == "list[int]":
        options.update(type=int_list, metavar="N1,N2,...")
    elif kind == "list[float]":
        options.update(type=float_list, metavar="X1,X2,...")
    elif kind == "list[str]":
        options.update(nargs="+", metavar=f.name.upper())
    elif choices:
        options.update(type=str, choices=choices)
    else:
        options.update(type={"int": int, "float": float, "str": str}[kind], metavar=f.name.upper())
    return group.add_argument(f"--{flag_name(f)}", **options)


def int_list(text: str) -> list[int]:
    """``2000,10000`` -> [2000, 10000] (argparse turns the ValueError into a one-line error)."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None


def float_list(text: str) -> list[float]:
    """``0.1,0.5,0.9`` -> [0.1, 0.5, 0.9]: finite numbers only (argparse turns the error into
    a one-line message)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return values


def hidden_sizes(text: str) -> list[int]:
    """``--hidden``: one size for every layer (``512``) or one per layer (``1150,1150,400``)."""
    return int_list(text)


def config_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config flags given on the command line: ``{"section": {"key": value}}``."""
    flags: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".")
            flags.setdefault(section, {})[name] = value
    model = flags.get("model", {})
    if "hidden" in model:  # --hidden 512 (every layer) or --hidden 1150,1150,400 (each layer)
        sizes = model["hidden"]
        model["hidden"], model["hidden_sizes"] = sizes[-1], sizes if len(sizes) > 1 else []
    if "paths" in args:
        flags.setdefault("data", {})["paths"] = args.paths
    return flags
