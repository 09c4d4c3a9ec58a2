"""The text a language model is scored on: its token streams and the characters behind them.

In this file: :class:`ScoredText` (streams, characters per token, words that became
``<unk>``), :func:`char_counts` (the characters per token of a char or byte corpus) and
:func:`scored_chars` (the characters of the targets an evaluation scores), so every tokenizer
reports bits per character of the same text. Not here: the figures themselves
(``rnnkit.tasks.lm``), reading and encoding text (``corpus.py``, ``vocab.py``, ``bpe.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnnkit.data.streams import TokenStreams


class ScoredText(NamedTuple):
    """Token streams to score and, laid out like the tokens, the characters of the original
    text each token stands for (``chars[i]`` for ``streams.tokens[i]``); ``unk``: the words
    of the text that became ``<unk>`` (word vocabularies), None where nothing is unknown."""

    streams: TokenStreams
    chars: np.ndarray
    unk: int | None


def char_counts(tokens: np.ndarray, kind: str) -> np.ndarray:
    """Characters per token of a ``char`` corpus (1 each: a read-only broadcast, no memory)
    or a ``byte`` corpus (1 for a byte that starts a UTF-8 character, 0 for a continuation
    byte ``10xxxxxx``)."""
    if kind == "char":
        return np.broadcast_to(np.uint8(1), (len(tokens),))
    if kind == "byte":
        return ((np.asarray(tokens) & 0xC0) != 0x80).astype(np.uint8)
    raise ValueError(f"char_counts reads char or byte tokens, not {kind!r}")


def scored_chars(text: ScoredText, max_batches: int = 0) -> int:
    """The characters of the targets that scoring ``text.streams`` reads (its first
    ``max_batches`` batches; 0: all): ``text.chars`` cut into the same streams and chunks."""
    s = text.streams
    layout = TokenStreams(text.chars, s.batch_size, s.seq_len, name="characters")
    count = len(layout) if max_batches <= 0 else min(max_batches, len(layout))
    if text.chars.strides == (0,):  # one count for every token (char_counts of char text)
        return int(text.chars[0]) * count * s.batch_size * s.seq_len
    return int(sum(int(layout.batch(i)[1].sum()) for i in range(count)))
