"""Token vocabularies for labelled data: characters or words, with reserved special symbols.

    >>> vocab = TokenVocab.build([tokenize("the cat", "word"), tokenize("the dog", "word")])
    >>> vocab.symbols[:6], vocab.encode(["the", "bird"])
    (['<pad>', '<unk>', '<bos>', '<eos>', 'the', 'cat'], [4, 1])

Ids 0-3 are always ``<pad>`` (padding, never predicted), ``<unk>`` (unseen or rare symbols),
``<bos>`` and ``<eos>`` (sequence start and end, for decoders). The char-level language model
uses :class:`rnnkit.data.vocab.Vocab` instead (no specials, code points, byte fallback).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from rnnkit.errors import UserError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str, kind: str) -> list[str]:
    """``char``: every character (spaces included); ``word``: runs of letters/digits and single
    punctuation marks, lower-cased (``"Don't!" -> ["don", "'", "t", "!"]``)."""
    if kind == "char":
        return list(text)
    if kind == "word":
        return _WORD.findall(text.lower())
    raise UserError(f"--tokenizer must be char or word here, got {kind!r}")


def detokenize(tokens: Sequence[str], kind: str) -> str:
    return "".join(tokens) if kind == "char" else " ".join(tokens)


class TokenVocab:
    """symbol <-> id, with the four specials first; unknown symbols encode to ``UNK``."""

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if tuple(symbols[: len(SPECIALS)]) != SPECIALS:
            raise UserError(f"a token vocabulary must start with {list(SPECIALS)}")
        if len(set(symbols)) != len(symbols):
            raise UserError("a token vocabulary must not repeat a symbol")
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> TokenVocab:
        """Symbols seen at least ``min_count`` times, most frequent first (ties: first seen)."""
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        kept = [s for s, n in counts.most_common() if n >= min_count and s not in SPECIALS]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.index

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int], *, strip: bool = True) -> list[str]:
        """Symbols of ``ids``; with ``strip``, stop at ``<eos>`` and drop pad/bos."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == EOS:
                break
            if strip and i in (PAD, BOS):
                continue
            out.append(self.symbols[i])
        return out

    def to_json(self) -> list[str]:
        return list(self.symbols)

    @classmethod
    def from_json(cls, data: object, source: str = "vocabulary") -> TokenVocab:
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise UserError(f"{source}: a token vocabulary must be a JSON list of strings")
        try:
            return cls(data)
        except UserError as error:
            raise UserError(f"{source}: {error}") from None
