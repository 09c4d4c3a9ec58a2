"""Simple features of a text, and the units of a trace that track them (Karpathy et al. 2015).

What is here: :func:`text_features` -- one number per character for properties such as "inside
quotes", "parenthesis depth" or "position in the line" -- and :func:`discover_units`, which
correlates every unit of a :class:`~rnnkit.analysis.activations.Trace` with every feature and
returns the best-matching units as :class:`UnitMatch` records.

What is not here: running the model (:mod:`rnnkit.analysis.activations`) and drawing
(:mod:`rnnkit.analysis.activation_plots`).

Every feature at position ``t`` is a property of the text *up to and including* ``text[t]`` --
the state of a reader who has just read ``text[t]``, like ``Trace.hidden[k][t]`` -- never of
characters still to come.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from rnnkit.analysis.activations import Trace, UnitKey, unit_matrix
from rnnkit.errors import UserError

_OPEN_QUOTES, _CLOSE_QUOTES, _TOGGLE_QUOTES = "\u201c", "\u201d", '"'
VOWELS = frozenset("aeiouAEIOU")


class UnitMatch(NamedTuple):
    """A unit that tracks a feature: Pearson correlation ``r`` over the traced text."""

    feature: str
    layer: int
    kind: str  # "h" or "c"
    unit: int
    r: float

    @property
    def key(self) -> UnitKey:
        return UnitKey(self.layer, self.kind, self.unit)


def text_features(
    text: str, *, comment_prefixes: tuple[str, ...] = ("#", "//")
) -> dict[str, np.ndarray]:
    """Features of ``text``, each a float64 array (L,), value at ``t`` = after reading text[t].

    * ``in_quotes`` 1 inside a double-quoted span: the opening quote itself is inside, the
      closing quote is outside. ``"`` toggles, the curly ``\u201c`` opens and ``\u201d``
      closes. Newlines do not close a quote, and an unclosed quote stays open to the end of
      the text (a reader cannot know it will never close). Single quotes are not tracked
      (they are apostrophes too often).
    * ``paren_depth`` nesting depth of ``(`` ``)`` (an unmatched ``)`` leaves it at 0; the
      opening parenthesis counts as inside, the closing one as outside); ``in_parens`` depth > 0.
    * ``position_in_line`` characters read since the last newline: 0 right after reading a
      newline, 1 after its next character -- the 0-based column of the next character.
      The text is taken to start at the beginning of a line.
    * ``after_newline`` 1 where text[t] starts a line (t = 0 or text[t - 1] is a newline);
      ``newline`` 1 where text[t] is a newline.
    * ``in_comment`` 1 from the last character of a comment prefix (``#`` or the second ``/``
      of ``//``) to the end of its line, the newline excluded. A prefix inside a double-quoted
      string on the same line does not start a comment (strings end at a newline here).
    * ``in_word`` text[t] is alphabetic; ``position_in_word`` letters read so far in the
      current alphabetic run (0 outside one); ``vowel`` (aeiouAEIOU), ``upper``, ``digit``,
      ``space`` (any whitespace, newlines included), ``punctuation`` (none of the above).
    """
    if not isinstance(text, str):
        raise UserError(f"text must be a string, got {type(text).__name__}")
    prefixes = _check_prefixes(comment_prefixes)
    n = len(text)
    index = np.arange(n)

    def per_char(test) -> np.ndarray:
        return np.fromiter((test(ch) for ch in text), dtype=np.float64, count=n)

    newline = per_char(lambda ch: ch == "\n")
    alpha = per_char(str.isalpha)
    depth = _paren_depth(text)
    return {
        "in_quotes": _in_quotes(text),
        "paren_depth": depth,
        "in_parens": (depth > 0).astype(np.float64),
        "position_in_line": _run_length(index, newline == 0),
        "after_newline": np.concatenate(([1.0], newline[:-1]))[:n],
        "newline": newline,
        "in_comment": _in_comment(text, prefixes),
        "in_word": alpha,
        "position_in_word": _run_length(index, alpha > 0),
        "vowel": per_char(VOWELS.__contains__),
        "upper": per_char(str.isupper),
        "digit": per_char(str.isdigit),
        "space": per_char(str.isspace),
        "punctuation": per_char(lambda ch: not (ch.isalnum() or ch.isspace())),
    }


def discover_units(
    trace: Trace,
    features: Mapping[str, np.ndarray] | None = None,
    *,
    top: int = 3,
    min_std: float = 1e-6,
) -> list[UnitMatch]:
    """For every feature the ``top`` units (h of every layer, and c for an LSTM) with the
    largest Pearson ``|r|`` over the traced text.

    ``features`` defaults to :func:`text_features` of ``trace.text``; each must be (L,).
    Features and units whose standard deviation is below ``min_std`` (no quotes in the text, a
    dead unit) are skipped. Results are sorted by feature name, then by ``|r|``, largest first.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise UserError(f"top must be an integer >= 1, got {top!r}")
    if not min_std >= 0:
        raise UserError(f"min_std must be >= 0, got {min_std!r}")
    if features is None:
        features = text_features(trace.text)
    keys, matrix = unit_matrix(trace)  # (L, U)
    names = sorted(features)
    columns = [np.asarray(features[name], dtype=np.float64) for name in names]
    for name, column in zip(names, columns, strict=True):
        if column.shape != (matrix.shape[0],):
            raise UserError(
                f"features[{name!r}] must have shape ({matrix.shape[0]},) like the trace, "
                f"got {column.shape}"
            )
    if not columns:
        return []
    z_units, live_units = _zscores(matrix, min_std)  # (L, U'), (U',)
    z_features, live_features = _zscores(np.stack(columns, axis=1), min_std)  # (L, F'), (F',)
    if not live_units.size or not live_features.size:
        return []
    r = np.clip(z_features.T @ z_units / matrix.shape[0], -1.0, 1.0)  # (F', U')
    best = np.argsort(-np.abs(r), axis=1, kind="stable")[:, :top]  # (F', top)
    matches = []
    for row, f in enumerate(live_features):
        for col in best[row]:
            key = keys[live_units[col]]
            matches.append(UnitMatch(names[f], key.layer, key.kind, key.unit, float(r[row, col])))
    return matches


def _zscores(matrix: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Columns of (L, K) standardised (population std), and the indices of the kept ones."""
    std = matrix.std(axis=0)  # (K,)
    live = np.flatnonzero(std >= max(min_std, np.finfo(np.float64).tiny))
    kept = matrix[:, live]
    return (kept - kept.mean(axis=0)) / std[live], live


# ---- the stateful features -----------------------------------------------------------------
def _check_prefixes(prefixes: object) -> tuple[str, ...]:
    if isinstance(prefixes, str) or not isinstance(prefixes, tuple | list):
        raise UserError(f"comment_prefixes must be a tuple of strings, got {prefixes!r}")
    if not all(isinstance(p, str) and p and "\n" not in p for p in prefixes):
        raise UserError(
            f"comment_prefixes must be non-empty strings without newlines, got {prefixes!r}"
        )
    return tuple(prefixes)


def _run_length(index: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Length of the run of ``inside`` positions ending at t (0 where not inside)."""
    last_outside = np.maximum.accumulate(np.where(inside, -1, index))  # (L,)
    return (index - last_outside).astype(np.float64) * inside


def _in_quotes(text: str) -> np.ndarray:
    out, inside = np.zeros(len(text)), False
    for t, ch in enumerate(text):
        if ch == _TOGGLE_QUOTES:
            inside = not inside
        elif ch in _OPEN_QUOTES:
            inside = True
        elif ch in _CLOSE_QUOTES:
            inside = False
        out[t] = inside
    return out


def _paren_depth(text: str) -> np.ndarray:
    out, depth = np.zeros(len(text)), 0
    for t, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        out[t] = depth
    return out


def _in_comment(text: str, prefixes: tuple[str, ...]) -> np.ndarray:
    out = np.zeros(len(text))
    comment = string = False
    for t, ch in enumerate(text):
        if ch == "\n":
            comment = string = False
        elif not comment:
            if ch in _TOGGLE_QUOTES:
                string = not string
            elif not string and any(text.endswith(p, 0, t + 1) for p in prefixes):
                comment = True
        out[t] = comment
    return out
