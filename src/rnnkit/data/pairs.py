"""Sentence pairs for the encoder-decoder task: TSV files on disk and three synthetic datasets.

    pairs = read_pairs(["eng-fra.tsv"])               # [("Go.", "Va !"), ...]
    pairs = synthetic_pairs("date", n=5000, seed=1)   # [("March 5, 2021", "2021-03-05"), ...]

A TSV file holds one pair a line, ``source<TAB>target``; further TAB-separated columns (e.g.
Tatoeba's attribution) are ignored, blank lines are skipped, and each side is stripped of
surrounding spaces. The synthetic sets (``kind``):

* ``reverse``: a random lowercase string of 3-12 letters -> the same string reversed;
* ``add``: ``"123+45"`` -> ``"168"``; each operand has 1-4 digits (the digit count is drawn
  uniformly first, so small numbers are as common as large ones), i.e. 0-9999;
* ``date``: a date between 1950-01-01 and 2049-12-31 written one of :data:`DATE_FORMATS` ways
  (``"March 5, 2021"``, ``"5 Mar 2021"``, ``"05/03/2021"``...) -> ISO ``"2021-03-05"``.
  **Numeric formats are day first** (DD/MM/YYYY, as in Europe): ``"05/03/2021"`` is 5 March;
  the only month-first numeric format is year first as well (``"2021/03/05"``, ISO order).

Sources are unique within a synthetic set (no test source is also a training source).
What is not here: tokenising, vocabularies and batching (``tokens.py``, ``batching.py``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rnnkit.data.corpus import resolve_paths
from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError

SYNTHETIC_KINDS = ("reverse", "add", "date")

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIRST_DAY = datetime.date(1950, 1, 1).toordinal()
_LAST_DAY = datetime.date(2049, 12, 31).toordinal()


def read_pairs(paths: Sequence[str]) -> list[tuple[str, str]]:
    """Every ``(source, target)`` pair of the TSV files (or directories, globs) in ``paths``.

    Raises UserError for: no paths, a missing, empty or non-UTF-8 file (naming it, and the byte
    offset), a line without a TAB or with an empty source or target (``file:line``), and files
    that hold no pair at all.
    """
    if not paths:
        raise UserError("no data: give TSV files of source<TAB>target pairs")
    pairs: list[tuple[str, str]] = []
    for path in resolve_paths(list(paths)):
        pairs.extend(_read_file(path))
    if not pairs:
        raise UserError(f"no source<TAB>target pairs in {', '.join(map(str, paths))}")
    return pairs


def _read_file(path: Path) -> list[tuple[str, str]]:
    text = read_text(path, empty_hint="remove it from the inputs or add pairs to it")
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise UserError(f"{path}:{number}: expected source<TAB>target, found no TAB")
        source, target = (column.strip() for column in line.split("\t")[:2])
        if not source or not target:
            side = "source" if not source else "target"
            raise UserError(f"{path}:{number}: empty {side} (expected source<TAB>target)")
        pairs.append((source, target))
    return pairs


# --------------------------------------------------------------------------- synthetic


def synthetic_pairs(kind: str, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` pairs of the synthetic task ``kind`` (reverse, add, date) with unique sources;
    the same arguments always give the same pairs."""
    makers: dict[str, Callable[[np.random.Generator], tuple[str, str]]] = {
        "reverse": _reverse,
        "add": _add,
        "date": _date,
    }
    if kind not in makers:
        raise UserError(f"--synthetic must be one of {SYNTHETIC_KINDS} for seq2seq, got {kind!r}")
    if n < 1:
        raise UserError(f"--synthetic-size must be a positive integer, got {n}")
    rng = np.random.default_rng([seed, SYNTHETIC_KINDS.index(kind)])
    pairs: dict[str, str] = {}
    for _ in range(20 * n):
        source, target = makers[kind](rng)
        pairs.setdefault(source, target)
        if len(pairs) == n:
            return list(pairs.items())
    raise UserError(f"--synthetic-size {n} is more distinct {kind} examples than can be drawn")


def _reverse(rng: np.random.Generator) -> tuple[str, str]:
    letters = rng.integers(0, 26, size=int(rng.integers(3, 13)))
    text = "".join(chr(ord("a") + int(i)) for i in letters)
    return text, text[::-1]


def _number(rng: np.random.Generator) -> int:
    digits = int(rng.integers(1, 5))
    return int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10**digits))


def _add(rng: np.random.Generator) -> tuple[str, str]:
    a, b = _number(rng), _number(rng)
    return f"{a}+{b}", str(a + b)


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


#: How a date may be written; ``{d}`` day, ``{dd}`` two-digit day, ``{m}``/``{mm}`` month
#: number, ``{month}``/``{mon}`` name / three letters, ``{nth}`` "5th", ``{wd}``/``{wdy}``
#: weekday name / three letters, ``{y}`` four-digit year. Day first wherever both are numbers.
DATE_FORMATS = (
    "{month} {d}, {y}",  # March 5, 2021
    "{mon} {d}, {y}",  # Mar 5, 2021
    "{d} {month} {y}",  # 5 March 2021
    "{d} {mon} {y}",  # 5 Mar 2021
    "{dd} {mon} {y}",  # 05 Mar 2021
    "{dd}/{mm}/{y}",  # 05/03/2021
    "{d}/{m}/{y}",  # 5/3/2021
    "{dd}.{mm}.{y}",  # 05.03.2021
    "{dd}-{mm}-{y}",  # 05-03-2021
    "{y}/{mm}/{dd}",  # 2021/03/05
    "{wd}, {month} {d}, {y}",  # Friday, March 5, 2021
    "{wdy} {d} {mon} {y}",  # Fri 5 Mar 2021
    "the {nth} of {month}, {y}",  # the 5th of March, 2021
    "{month} {nth} {y}",  # March 5th 2021
    "{nth} {month} {y}",  # 5th March 2021
)


def format_date(date: datetime.date, pattern: str) -> str:
    """``date`` written as ``pattern`` (one of :data:`DATE_FORMATS`), locale-independent."""
    month, weekday = MONTHS[date.month - 1], WEEKDAYS[date.weekday()]
    return pattern.format(
        d=date.day, dd=f"{date.day:02d}", m=date.month, mm=f"{date.month:02d}", y=date.year,
        month=month, mon=month[:3], nth=_ordinal(date.day), wd=weekday, wdy=weekday[:3],
    )  # fmt: skip


def _date(rng: np.random.Generator) -> tuple[str, str]:
    date = datetime.date.fromordinal(int(rng.integers(_FIRST_DAY, _LAST_DAY + 1)))
    text = format_date(date, DATE_FORMATS[int(rng.integers(len(DATE_FORMATS)))])
    case = int(rng.integers(4))  # as written half the time, else all lower or all upper case
    text = text.lower() if case == 1 else text.upper() if case == 2 else text
    return text, date.isoformat()
