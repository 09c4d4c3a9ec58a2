"""Labelled text on disk -> ``(label, text)`` pairs, for sequence classification.

Three formats, told apart by what the path is::

    names/            a directory: one LABEL.txt per class, one example per line
      English.txt       Abbott
      Italian.txt       Rossi
    reviews.tsv       label<TAB>text, one example per line (any file not ending in .csv)
    reviews.csv       label,text rows read with the csv module (a "label,text" header is skipped)

Lines are stripped and blank lines skipped. Every problem is a :class:`UserError` that names the
file and line: a missing path, an empty file or directory, invalid UTF-8 (with the byte offset),
a TSV line without a TAB, a ragged CSV row, an empty label or text.

Not here: tokenising and encoding (``tokens.py``), splitting and batching (``batching.py``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError

_EMPTY = "add examples to it or remove it from the inputs"


def read_labelled(paths: list[str]) -> list[tuple[str, str]]:
    """Every ``(label, text)`` pair of ``paths`` (directories, .tsv or .csv files), in order."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise UserError(
            "no labelled data given: name a directory of LABEL.txt files, a .tsv or a .csv"
        )
    pairs: list[tuple[str, str]] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            pairs.extend(_read_directory(path))
        elif path.is_file():
            reader = _read_csv if path.suffix.lower() == ".csv" else _read_tsv
            pairs.extend(reader(path, read_text(path, empty_hint=_EMPTY)))
        else:
            raise UserError(
                f"no such file or directory: {item} "
                "(give a directory of LABEL.txt files, a .tsv or a .csv)"
            )
    return pairs


def check_classes(labels: Iterable[str]) -> None:
    """Classification needs at least two distinct labels."""
    distinct = sorted(set(labels))
    if len(distinct) < 2:
        found = ", ".join(repr(label) for label in distinct)
        raise UserError(
            f"classification needs at least 2 classes, found {len(distinct)}"
            + (f": {found}" if found else "")
            + " (add examples of another label)"
        )


def _read_directory(directory: Path) -> list[tuple[str, str]]:
    """One class per ``*.txt`` file (label = file stem), sorted by name."""
    files = sorted(p for p in directory.glob("*.txt") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"directory {directory} has no *.txt files (give one LABEL.txt per class)")
    pairs = []
    for path in files:
        label = path.stem.strip()
        if not label:
            raise UserError(f"{path}: the file name gives an empty label (rename it LABEL.txt)")
        lines = read_text(path, empty_hint=_EMPTY).splitlines()
        pairs.extend((label, line.strip()) for line in lines if line.strip())
    return pairs


def _read_tsv(path: Path, text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise UserError(
                f"{path}:{number}: expected label<TAB>text, found no TAB in {line[:40]!r}"
            )
        label, example = line.split("\t", 1)
        pairs.append(_pair(label, example, path, number))
    return pairs


def _read_csv(path: Path, text: str) -> list[tuple[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    pairs: list[tuple[str, str]] = []
    width = None
    try:
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if width is None:
                width = len(row)
                if width < 2:
                    raise UserError(
                        f"{path}:{number}: expected 2 columns label,text, found {width}"
                    )
                if [c.strip().lower() for c in row[:2]] == ["label", "text"]:
                    continue
            elif len(row) != width:
                raise UserError(
                    f"{path}:{number}: ragged row: {len(row)} columns, the first row has {width}"
                )
            pairs.append(_pair(row[0], row[1], path, number))
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: bad CSV: {e}") from None
    if not pairs:
        raise UserError(f"{path} has a header but no examples (add label,text rows)")
    return pairs


def _pair(label: str, text: str, path: Path, number: int) -> tuple[str, str]:
    label, text = label.strip(), text.strip()
    if not label:
        raise UserError(f"{path}:{number}: empty label (every example needs a class)")
    if not text:
        raise UserError(f"{path}:{number}: empty text for label {label!r}")
    return label, text
