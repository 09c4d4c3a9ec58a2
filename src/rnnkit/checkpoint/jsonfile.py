"""Reading files a stranger made: a regular file, at most so many bytes, JSON of bounded shape.

Every loader of rnnkit (checkpoints' JSON and safetensors, exported .onnx files) opens its files
through :func:`read_regular` / :func:`open_regular`, and parses JSON through :func:`loads`:

* a file must be a regular file after its links are resolved: ``os.stat`` before it is opened
  (a FIFO would block ``open``, ``/dev/zero`` never ends), opened ``O_NONBLOCK`` and checked again
  with ``fstat`` (the path may have been swapped in between), and read to a byte cap;
* JSON is checked before Python builds a single object from it: the bytes outside strings are
  counted (values, arrays and objects) and its nesting measured, against :class:`Limits` sized to
  what the file can legitimately hold -- ``[[],[],...]`` costs ~20 bytes of memory per byte of
  file once parsed, so the counts, not the bytes, bound what parsing allocates;
* then parsed once: a repeated key, an integer of 2**64 or more (never converted: CPython turns
  up to 4,300 digits into an int), ``NaN``/``Infinity`` or a number that overflows to infinity
  (JSON cannot hold them; rnnkit never writes them), or a lone surrogate is refused, naming
  where it is (``config.train.lr``).

Every refusal is a ``ValueError`` (:class:`Refused`) whose message reads after the file's name
(``"is not a regular file (a FIFO)"``); callers prefix the path. What is not here: what the
parsed values mean (the loaders check that).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rnnkit.errors import short
from rnnkit.io_errors import reason

MAX_DEPTH = 64  # a checkpoint's JSON nests <= 8 deep; json's C parser recurses per level
MAX_INT = 2**64  # integers at or beyond this are refused before int() sees their digits
MAX_SYMBOLS = 0x110000  # every Unicode code point: the most a character vocabulary can hold


class Refused(ValueError):
    """A file or its JSON refused; the message reads after the file's name."""


@dataclass(frozen=True)
class Limits:
    """What one kind of JSON file may hold: bytes, values (numbers, strings, literals, arrays
    and objects -- an object's keys included), arrays and objects, nesting."""

    max_bytes: int
    max_values: int
    max_containers: int
    max_depth: int = MAX_DEPTH


# A vocabulary is a list of at most MAX_SYMBOLS strings: a character one holds <= 1,114,112
# (one per code point), a word one far fewer in any real run (min_count > 1 keeps it small);
# 30 bytes a symbol on disk ('    "a word",\n') is generous.
VOCAB = Limits(max_bytes=MAX_SYMBOLS * 30, max_values=MAX_SYMBOLS + 1, max_containers=64)
# config.json: the run's config (~60 values) and its task_meta, which holds at most two
# vocabularies (seq2seq source + target, tag words + chars, classify vocab + labels). A word
# takes ~24 bytes there (indented), so a 100k-word vocabulary is ~2.4 MB and 16 MiB holds two
# of ~350k words; a run whose vocabularies would not fit is refused when it saves
# (``checkpoint._check_loadable``), never written unloadable.
CONFIG = Limits(max_bytes=16 << 20, max_values=2 * MAX_SYMBOLS + 65536, max_containers=65536)
# training.json: the optimiser's state (~8 containers a parameter tensor), scheduler, RNG
# states and counters; a 1,000-tensor model writes ~300 KB.
TRAINING = Limits(max_bytes=16 << 20, max_values=1 << 21, max_containers=1 << 18)

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# --- files --------------------------------------------------------------------------------


def regular_stat(path: Path) -> os.stat_result:
    """``os.stat(path)`` (links followed) if it is a regular file, else Refused.

    Raises:
        FileNotFoundError: nothing there (or a dangling link); the caller says "missing".
        Refused: a FIFO, device, directory or socket; or stat failed (permission ...).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise Refused(f"cannot be read ({reason(err)})") from None
    _check_regular(info)
    return info


@contextlib.contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading without ever blocking on, or reading, anything else.

    ``stat`` first (a FIFO or a device is never opened), then ``O_NONBLOCK`` (should the path
    become a FIFO in between, ``open`` returns at once) and ``fstat`` on what was opened.
    Raises FileNotFoundError or Refused, as :func:`regular_stat`.
    """
    regular_stat(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as err:
        raise Refused(f"cannot be read ({reason(err)})") from None
    try:
        _check_regular(os.fstat(fd))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refused unread if over ``max_bytes``."""
    with open_regular(path) as f:
        if (size := os.fstat(f.fileno()).st_size) > max_bytes:
            raise Refused(f"is {size} bytes; the limit is {max_bytes}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read
        raise Refused(f"is over {max_bytes} bytes, the limit")
    return data


def _check_regular(info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
        raise Refused(f"is not a regular file ({kind})")


# --- JSON ---------------------------------------------------------------------------------


def check_shape(data: bytes, limits: Limits) -> None:
    """Refuse ``data`` whose parse would build more than ``limits`` allows, before parsing.

    Strings are cut out (each becomes one ``"``); what is left is structure and scalars, so
    the counts are C-speed ``bytes.count``: values <= commas + colons + brackets + 1, and
    nesting is measured by removing innermost ``[]`` pairs ``max_depth`` times.
    """
    if len(data) > limits.max_bytes:
        raise Refused(f"is {len(data)} bytes; the limit is {limits.max_bytes}")
    skeleton = _STRING.sub(b'"', data)
    brackets = skeleton.translate(_BRACKETS, _NOT_BRACKETS)
    depth_left = brackets
    for _ in range(limits.max_depth):
        if not depth_left:
            break
        shorter = depth_left.replace(b"[]", b"")
        if len(shorter) == len(depth_left):
            break  # unbalanced: the parser says where
        depth_left = shorter
    if b"[]" in depth_left:
        raise Refused(f"nests deeper than {limits.max_depth} levels")
    containers = len(brackets) // 2
    if containers > limits.max_containers:
        raise Refused(
            f"holds {containers} arrays and objects; at most {limits.max_containers} fit in "
            "this file"
        )
    values = skeleton.count(b",") + skeleton.count(b":") + containers + 1
    if values > limits.max_values:
        raise Refused(f"holds {values} values; at most {limits.max_values} fit in this file")


def loads(data: bytes, limits: Limits) -> object:
    """Parse ``data`` (UTF-8 JSON) once :func:`check_shape` passes; see the module docstring.

    Raises:
        Refused: on one line, naming the offending value's place (``config.train.lr``).
    """
    check_shape(data, limits)
    bad: list[_Bad] = []
    try:
        text = data.decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_unique,
            parse_int=lambda s: _int(s, bad),
            parse_float=lambda s: _float(s, bad),
            parse_constant=lambda s: _note(bad, f"{s} (JSON has no such number)"),
        )
    except Refused:
        raise
    except (ValueError, RecursionError) as err:
        raise Refused(f"is not valid JSON ({' '.join(str(err).split())[:300]})") from None
    if bad or _SURROGATE_ESCAPE.search(data):
        _refuse_bad_values(obj)
    return obj


class _Bad:
    """What a parse hook returns for a refused scalar; :func:`_refuse_bad_values` reports it."""

    def __init__(self, what: str) -> None:
        self.what = what


def _note(bad: list[_Bad], what: str) -> _Bad:
    bad.append(_Bad(what))
    return bad[-1]


def _int(text: str, bad: list[_Bad]) -> int | _Bad:
    digits = len(text.lstrip("-"))
    if digits > 20 or abs(value := int(text)) >= MAX_INT:
        return _note(bad, f"an integer of {digits} digits (integers must be below 2**64)")
    return value


def _float(text: str, bad: list[_Bad]) -> float | _Bad:
    value = float(text)
    if not math.isfinite(value):
        return _note(bad, f"{short(text)}, which overflows to infinity")
    return value


def _unique(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object without repeated keys (json keeps the last; another reader the first)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Refused(f"repeats a key, {short(key)}, in one object")
            seen.add(key)
    return out


def _refuse_bad_values(obj: object) -> None:
    """Raise Refused for the first refused scalar or lone surrogate, naming its place."""
    stack: list[tuple[object, str]] = [(obj, "")]
    while stack:
        node, where = stack.pop()
        place = f"at {where}" if where else "at the top level"
        if isinstance(node, _Bad):
            raise Refused(f"holds {node.what} {place}")
        if isinstance(node, str) and not _encodable(node):
            raise Refused(f"holds a lone surrogate (\\ud800-\\udfff), not text, {place}")
        if isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in reversed(list(enumerate(node))))
        elif isinstance(node, dict):
            for key, value in reversed(node.items()):
                if not _encodable(key):
                    raise Refused(f"holds a lone surrogate (\\ud800-\\udfff), not text, {place}")
                name = key if re.fullmatch(r"[\w$-]{1,60}", key) else short(key)
                stack.append((value, f"{where}.{name}" if where else name))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
