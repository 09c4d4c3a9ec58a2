"""Vocabularies that turn text into token ids and back: characters or UTF-8 bytes.

In this file: :class:`Vocab` (``"char"``: one id per distinct character; ``"byte"``: the 256
byte values of the UTF-8 encoding), its JSON form (a list of symbols, as stored in a
checkpoint's ``vocab.json``) and :class:`StreamDecoder`, which turns ids into text one at a time
while generating. Encoding is vectorised (a lookup table indexed by code point), so a large
corpus never goes through a Python loop per character.

Not in this file: reading files (``corpus.py``) and batching (``streams.py``).
"""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from rnnkit.errors import UserError, short

KINDS = ("char", "byte")
UNKNOWN_MODES = ("error", "skip")
ENCODE_BLOCK = 1 << 16  # characters converted at a time: bounds the temporary arrays
_MAX_LISTED = 10


#: what a text read as data (``train --val``, ``eval FILE``) can do about unknown characters
CORPUS_HINT = (
    "a char model knows only its training text's characters: train with --tokenizer byte, "
    "or with this text among the training files"
)


def unknown_message(chars: Iterable[str], hint: str = "use --unknown skip to drop them") -> str:
    """The one-line message for characters missing from a vocabulary (at most 10 listed), with
    what to do about them: a prime's ``--unknown skip`` (sample, serve) or ``hint``."""
    ordered = sorted(set(chars))
    listed = ", ".join(repr(c) for c in ordered[:_MAX_LISTED])
    more = f" and {len(ordered) - _MAX_LISTED} more" if len(ordered) > _MAX_LISTED else ""
    return f"characters not in the vocabulary: {listed}{more} ({hint})"


def code_points(text: str) -> npt.NDArray[np.uint32]:
    """The Unicode code points of ``text`` as a uint32 array (no Python loop)."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


class StreamDecoder:
    """Turns token ids into text one id at a time, for printing while generating.

    In byte mode an id may be part of a multi-byte UTF-8 character: ``decode`` then returns
    ``""`` until the character is complete; ``flush`` returns what is left (invalid or
    incomplete sequences become U+FFFD).
    """

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, id: int) -> str:
        """The text that ``id`` completes (possibly ``""``)."""
        id = int(id)
        if not 0 <= id < len(self._vocab):
            raise UserError(f"token id {id} is outside the vocabulary of {len(self._vocab)}")
        if self._vocab.kind == "char":
            return self._vocab.symbols[id]
        return self._bytes.decode(bytes([id]))

    def flush(self) -> str:
        """The text still pending at the end of the stream."""
        if self._vocab.kind == "char":
            return ""
        return self._bytes.decode(b"", final=True)


class Vocab:
    """A mapping between symbols and ids: ``symbols[id]`` is the symbol of ``id``.

    ``kind == "char"``: each symbol is one character; ``Vocab.from_text_chars`` sorts them by
    code point (a vocabulary read back from JSON keeps its stored order).
    ``kind == "byte"``: ``symbols == [chr(b) for b in range(256)]`` and text is encoded as its
    UTF-8 bytes, so any text (and any file) can be represented.
    """

    def __init__(self, kind: str, symbols: list[str]) -> None:
        if kind not in KINDS:
            raise UserError(f"vocabulary kind must be 'char' or 'byte', got {short(kind)}")
        self.kind = kind
        self.symbols = list(symbols)
        self._codes = code_points("".join(self.symbols)) if kind == "char" else None
        self._lut: npt.NDArray[np.int32] | None = None

    @classmethod
    def byte(cls) -> Vocab:
        """The 256-symbol byte vocabulary."""
        return cls("byte", [chr(b) for b in range(256)])

    @classmethod
    def from_text_chars(cls, chars: Iterable[str]) -> Vocab:
        """A character vocabulary of the distinct ``chars``, sorted by code point."""
        distinct = set(chars)
        bad = [c for c in distinct if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise UserError(f"vocabulary symbols must be single characters, got {bad[0]!r}")
        if not distinct:
            raise UserError("cannot build a character vocabulary from no text (input is empty)")
        return cls("char", sorted(distinct))

    @classmethod
    def from_json(cls, kind: str, data: object, source: str = "vocab.json") -> Vocab:
        """Rebuild a vocabulary from :meth:`to_json`'s list, checking it; ``source`` names the
        file in error messages."""
        if kind not in KINDS:
            raise UserError(
                f"{source}: vocabulary kind must be 'char' or 'byte', got {short(kind)}"
            )
        if not isinstance(data, list):
            raise UserError(f"{source}: expected a list of symbols, got {type(data).__name__}")
        for i, symbol in enumerate(data):
            if not isinstance(symbol, str):
                raise UserError(f"{source}: symbol {i} is not a string: {short(symbol)}")
            if kind == "char" and len(symbol) != 1:
                raise UserError(f"{source}: symbol {i} must be one character, got {short(symbol)}")
            if kind == "char" and "\ud800" <= symbol <= "\udfff":  # not text: cannot be printed
                raise UserError(f"{source}: symbol {i} is a lone surrogate U+{ord(symbol):04X}")
        if kind == "byte":
            if data != [chr(b) for b in range(256)]:
                raise UserError(
                    f"{source}: a byte vocabulary must list the 256 characters chr(0)..chr(255) "
                    f"in order, got {len(data)} symbols that differ (re-save the checkpoint)"
                )
            return cls.byte()
        if not data:
            raise UserError(f"{source}: the vocabulary is empty; expected at least one symbol")
        if len(set(data)) != len(data):
            dups = sorted(s for s, n in Counter(data).items() if n > 1)
            raise UserError(f"{source}: duplicate symbols {', '.join(map(repr, dups[:10]))}")
        return cls("char", data)

    def to_json(self) -> list[str]:
        """The symbols, id order, for ``vocab.json``."""
        return list(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.kind == other.kind and self.symbols == other.symbols

    __hash__ = None  # type: ignore[assignment]  # mutable symbols list

    def __repr__(self) -> str:
        return f"Vocab(kind={self.kind!r}, size={len(self)})"

    def encode(
        self, text: str, unknown: str = "error", *, dtype: npt.DTypeLike = np.int64
    ) -> npt.NDArray[Any]:
        """Token ids of ``text``, shape ``(n,)``, int64 unless ``dtype`` says otherwise.

        ``unknown="error"`` raises :class:`UserError` naming characters missing from a char
        vocabulary; ``"skip"`` drops them. Byte vocabularies know every character.
        """
        if unknown not in UNKNOWN_MODES:
            raise UserError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        if self.kind == "byte":
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise UserError(f"text is not encodable as UTF-8: {e.reason} at {e.start}") from e
            return np.frombuffer(data, dtype=np.uint8).astype(dtype)
        return self._encode_chars(text, unknown, np.dtype(dtype))

    def _encode_chars(self, text: str, unknown: str, dtype: np.dtype) -> npt.NDArray[Any]:
        """Char encoding, block by block: code points -> lookup table -> ids (-1 = unknown)."""
        lut = self._lookup()
        out = np.empty(len(text), dtype=dtype)
        written, missing = 0, set()
        for start in range(0, len(text), ENCODE_BLOCK):
            codes = code_points(text[start : start + ENCODE_BLOCK])
            ids = lut.take(codes, mode="clip")  # codes past the table hit its final -1
            bad = ids < 0
            if bad.any():
                missing.update(np.unique(codes[bad]).tolist())
                ids = ids[~bad]
            out[written : written + len(ids)] = ids
            written += len(ids)
        if missing and unknown == "error":
            raise UserError(unknown_message(chr(c) for c in missing))
        return out[:written]

    def _lookup(self) -> npt.NDArray[np.int32]:
        """``lut[code point] = id``, ``-1`` for characters outside the vocabulary."""
        if self._lut is None:
            assert self._codes is not None
            size = int(self._codes.max()) + 2 if len(self._codes) else 1
            lut = np.full(size, -1, dtype=np.int32)
            lut[self._codes] = np.arange(len(self._codes), dtype=np.int32)
            self._lut = lut
        return self._lut

    def decode(self, ids: Iterable[int] | npt.ArrayLike) -> str:
        """The text of ``ids``; in byte mode invalid UTF-8 becomes U+FFFD."""
        array = np.asarray(ids, dtype=np.int64).reshape(-1)
        if array.size and (array.min() < 0 or array.max() >= len(self)):
            bad = int(array.min()) if array.min() < 0 else int(array.max())
            raise UserError(f"token id {bad} is outside the vocabulary of {len(self)} symbols")
        if self.kind == "byte":
            return array.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        assert self._codes is not None
        return self._codes[array].tobytes().decode("utf-32-le", errors="surrogatepass")

    def decoder(self) -> StreamDecoder:
        """A fresh :class:`StreamDecoder` for this vocabulary."""
        return StreamDecoder(self)


WORD_SPECIALS = ("<unk>", "<eos>")
WORD_UNK, WORD_EOS = 0, 1


class WordStreamDecoder:
    """Word ids -> text one id at a time: words separated by spaces, ``<eos>`` a line break."""

    def __init__(self, vocab: WordVocab) -> None:
        self._vocab, self._in_line = vocab, False

    def decode(self, id: int) -> str:
        id = int(id)
        if not 0 <= id < len(self._vocab):
            raise UserError(f"token id {id} is outside the vocabulary of {len(self._vocab)}")
        if id == WORD_EOS:
            self._in_line = False
            return "\n"
        text = (" " if self._in_line else "") + self._vocab.symbols[id]
        self._in_line = True
        return text

    def flush(self) -> str:
        return ""


class WordVocab:
    """Whitespace-separated words of pre-tokenised text (PTB, WikiText) for the language model.

    Ids 0 and 1 are ``<unk>`` (words outside the vocabulary) and ``<eos>`` (each line end);
    the words follow, most frequent in the training text first, ties in order of first
    appearance, so the same text always gives the same ids. ``encode`` maps unseen words to
    ``<unk>``, never raises on them.
    """

    kind = "word"

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, lines: Iterable[str], vocab_size: int = 0, min_count: int = 1) -> WordVocab:
        """The vocabulary of ``lines``: words seen at least ``min_count`` times, the
        ``vocab_size - 2`` most frequent of them when ``vocab_size`` > 0 (the two specials
        count towards it). A literal ``<unk>`` or ``<eos>`` in the text is that special."""
        if vocab_size < 0 or 0 < vocab_size < 3:
            raise UserError(f"--vocab-size must be 0 (all) or at least 3, got {vocab_size}")
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update(line.split())
        kept = [w for w, n in counts.most_common() if n >= min_count and w not in WORD_SPECIALS]
        if not kept:
            raise UserError(
                f"--min-count {min_count} leaves no words in the vocabulary "
                f"(the most frequent word is seen {max(counts.values(), default=0)} times)"
            )
        if vocab_size:
            kept = kept[: vocab_size - len(WORD_SPECIALS)]
        return cls([*WORD_SPECIALS, *kept])

    @classmethod
    def from_json(cls, data: object, source: str = "vocab.json") -> WordVocab:
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise UserError(f"{source}: a word vocabulary must be a JSON list of strings")
        if tuple(data[:2]) != WORD_SPECIALS or len(data) < 3:
            raise UserError(f"{source}: a word vocabulary starts with <unk>, <eos> and a word")
        bad = [s for s in data if not s or any(c.isspace() for c in s)]
        if bad:
            raise UserError(f"{source}: a word must be non-empty without spaces, got {bad[0]!r}")
        if len(set(data)) != len(data):
            dups = sorted(s for s, n in Counter(data).items() if n > 1)
            raise UserError(f"{source}: duplicate symbols {', '.join(map(repr, dups[:10]))}")
        return cls(data)

    def to_json(self) -> list[str]:
        return list(self.symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WordVocab):
            return NotImplemented
        return self.symbols == other.symbols

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WordVocab(size={len(self)})"

    def encode(
        self, text: str, unknown: str = "error", *, dtype: npt.DTypeLike = np.int64
    ) -> npt.NDArray[Any]:
        """Ids of the words of ``text``, ``<eos>`` after each line ending in a newline;
        unseen words are ``<unk>`` whatever ``unknown`` says (see :meth:`unknown_words`)."""
        index, ids = self.index, []
        lines = text.split("\n")
        for i, line in enumerate(lines):
            ids.extend([index.get(w, WORD_UNK) for w in line.split()])
            if i < len(lines) - 1:
                ids.append(WORD_EOS)
        return np.array(ids, dtype=dtype)

    def unknown_words(self, text: str) -> list[str]:
        """The distinct words of ``text`` outside the vocabulary, in order of appearance."""
        return list(dict.fromkeys(w for w in text.split() if w not in self.index))

    def decode(self, ids: Iterable[int] | npt.ArrayLike) -> str:
        decoder = self.decoder()
        return "".join(decoder.decode(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1))

    def decoder(self) -> WordStreamDecoder:
        return WordStreamDecoder(self)
