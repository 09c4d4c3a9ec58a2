"""Tagged sentences on disk -> ``[(words, tags), ...]``, for the aligned tagging task.

Two formats, chosen per file by its extension:

* ``.conllu`` / ``.conll``: CoNLL-U, 10 tab-separated columns per token; the word is FORM
  (column 2) and the tag UPOS (column 4). ``#`` comment lines, multiword-token lines (ID a
  range such as ``3-4``) and empty nodes (ID such as ``5.1``) are skipped; a blank line ends a
  sentence.
* anything else: ``token<TAB>tag`` lines, a blank line between sentences.

Every problem is a :class:`~rnnkit.errors.UserError` naming ``file:line`` (the byte offset for
invalid UTF-8). Not here: vocabularies and tensors (``tokens.py``, ``tasks/tag.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from rnnkit.data.corpus import resolve_paths
from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError

Sentence = tuple[list[str], list[str]]
CONLLU_SUFFIXES = (".conllu", ".conll")
_INTEGER = re.compile(r"[0-9]+")
_RANGE = re.compile(r"[0-9]+-[0-9]+")
_EMPTY_NODE = re.compile(r"[0-9]+\.[0-9]+")


def read_tagged(paths: list[str]) -> list[Sentence]:
    """Every sentence of every file in ``paths`` (files, directories or globs), in order."""
    if not paths:
        raise UserError("--task tag needs data files: give .conllu files or token<TAB>tag files")
    sentences: list[Sentence] = []
    for path in resolve_paths(paths):
        sentences += read_file(path)
    return sentences


def read_file(path: str | Path) -> list[Sentence]:
    """The sentences of one file, in the format its extension says."""
    path = Path(path)
    text = read_text(path, empty_hint="remove it from the inputs or add sentences to it")
    conllu = path.suffix.lower() in CONLLU_SUFFIXES
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        parse = _conllu_token if conllu else _tsv_token
        token = parse(line, f"{path}:{number}")
        if token is not None:
            words.append(token[0])
            tags.append(token[1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        kind = "CoNLL-U token lines" if conllu else "token<TAB>tag lines"
        raise UserError(f"{path}: no sentences found (expected {kind})")
    return sentences


def _conllu_token(line: str, where: str) -> tuple[str, str] | None:
    """(FORM, UPOS) of a CoNLL-U line, or None for comments, multiword ranges, empty nodes."""
    if line.startswith("#"):
        return None
    columns = line.split("\t")
    if len(columns) != 10:
        raise UserError(f"{where}: expected 10 tab-separated CoNLL-U columns, got {len(columns)}")
    ident, form, upos = columns[0], columns[1], columns[3]
    if _RANGE.fullmatch(ident) or _EMPTY_NODE.fullmatch(ident):
        return None  # multiword token (3-4) or empty node (5.1): not a word of the sentence
    if not _INTEGER.fullmatch(ident):
        raise UserError(f"{where}: ID must be an integer, got {ident!r}")
    if not form:
        raise UserError(f"{where}: FORM (column 2) is empty")
    if not upos:
        raise UserError(f"{where}: UPOS (column 4) is empty")
    return form, upos


def _tsv_token(line: str, where: str) -> tuple[str, str]:
    columns = line.split("\t")
    if len(columns) != 2:
        raise UserError(f"{where}: expected token<TAB>tag (2 columns), got {len(columns)}")
    if not columns[0] or not columns[1]:
        raise UserError(f"{where}: token and tag must be non-empty, got {line!r}")
    return columns[0], columns[1]
