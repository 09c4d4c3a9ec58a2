"""Conditioning data for ``--task generate-from``: real-valued vectors paired with texts.

    vectors, texts = read_vector_pairs(["features.tsv"])   # (N, D) float32, N strings
    detect_condition_kind(["data/names"])                   # "class" or "vector"

The vector format is a TSV whose every non-blank line is ``v1,v2,...,vD<TAB>text``, the same
``D`` on every line (the captioning pattern without images: the vector stands for whatever
the text describes). Blank lines are skipped; the text is stripped of surrounding whitespace.
Every bad line raises :class:`UserError` naming ``file:line``.

What is not here: class-labelled data (one file per class, or ``label<TAB>text``), which
``rnnkit.data.labelled`` reads, and the encoding of texts to ids (``rnnkit.data.tokens``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnkit.data.corpus import resolve_paths
from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError


def read_vector_pairs(paths: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(vectors (N, D) float32, texts) from the files, directories or globs in ``paths``."""
    vectors: list[list[float]] = []
    texts: list[str] = []
    dim: int | None = None
    first: str = ""  # file:line that fixed D, for the mismatch message
    for path in _files(paths):
        text = read_text(path, empty_hint="remove it from the inputs or add lines to it")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            field, tab, text = line.partition("\t")
            if not tab:
                raise UserError(f"{where}: expected 'v1,v2,...,vD<TAB>text', found no TAB")
            vector = parse_vector(field, where)
            if dim is None:
                dim, first = len(vector), where
            elif len(vector) != dim:
                raise UserError(
                    f"{where}: expected {dim} numbers (as on {first}), got {len(vector)}"
                )
            text = text.strip()
            if not text:
                raise UserError(f"{where}: no text after the TAB")
            vectors.append(vector)
            texts.append(text)
    if not texts:
        raise UserError(f"no 'vector<TAB>text' lines in {', '.join(map(str, paths))}")
    return np.asarray(vectors, dtype=np.float32), texts


def detect_condition_kind(paths: Sequence[str]) -> str:
    """``"vector"`` when the first field (before any TAB) of the first non-blank line of the
    first non-empty file parses as comma-separated numbers, else ``"class"``."""
    for path in _files(paths):
        for line in read_text(path).splitlines():
            if line.strip():
                try:
                    parse_vector(line.partition("\t")[0], str(path))
                except UserError:
                    return "class"
                return "vector"
    raise UserError(f"no text in {', '.join(map(str, paths))} (add examples to the files)")


def parse_vector(field: str, where: str) -> list[float]:
    """``"0.5,-1,2e3"`` -> ``[0.5, -1.0, 2000.0]``; UserError naming ``where`` for anything
    that is not a finite number."""
    values = []
    for position, item in enumerate(field.split(","), start=1):
        try:
            value = float(item)
        except ValueError:
            raise UserError(
                f"{where}: vector element {position} must be a number, got {item.strip()!r}"
            ) from None
        if not math.isfinite(value):
            raise UserError(f"{where}: vector element {position} must be finite, got {item!r}")
        values.append(value)
    return values


def _files(paths: Sequence[str]) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [str(paths)]
    if not paths:
        raise UserError("--task generate-from needs data: give files or a directory as PATH")
    return resolve_paths([str(p) for p in paths])
