"""Byte-level BPE subwords for the language model (``--tokenizer bpe``), on Hugging Face
``tokenizers``.

In this file: :class:`BpeVocab`, a byte-level BPE tokenizer (``models.BPE`` +
``pre_tokenizers.ByteLevel`` + ``decoders.ByteLevel``, as GPT-2's) trained on the training
lines only, so any text round-trips: every one of the 256 bytes is a symbol, no ``<unk>``.
Its checkpoint form is the tokenizer's own JSON (``Tokenizer.to_str()``, never a pickle), held
as the one string of ``vocab.json``; a JSON that is not such a tokenizer is a one-line error.
Each token stands for bytes of the UTF-8 text; a character counts for the token holding its
first byte, so ``chars.sum()`` over a text's tokens is its number of characters (bpc per
character compares a BPE model with char, byte and word models of the same text).

Encoded text is cached like a char corpus (``corpus.py``): under the cache directory, named by
the sha256 of the tokenizer's JSON and the lines, written atomically, its ``.json`` last.

Not in this file: reading files (``corpus.py``), batching (``streams.py``).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rnnkit.errors import UserError, short

DEFAULT_VOCAB_SIZE = 4096  # --vocab-size 0 with --tokenizer bpe
ALPHABET = 256  # the byte-level alphabet: the least a BPE vocabulary holds


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in of each byte (what ``pre_tokenizers.ByteLevel`` writes):
    printable Latin-1 bytes stand for themselves, the other 68 take code points from 256 on."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


_BYTE_OF = {s: b for b, s in enumerate(byte_symbols())}


class BpeStreamDecoder:
    """BPE ids -> text one id at a time: a token's bytes through an incremental UTF-8 decoder,
    so a character split across tokens appears once complete (invalid bytes become U+FFFD)."""

    def __init__(self, vocab: BpeVocab) -> None:
        self._vocab = vocab
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, id: int) -> str:
        return self._utf8.decode(self._vocab.token_bytes(id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class BpeVocab:
    """A byte-level BPE tokenizer: ``symbols[id]`` is the token's byte-level spelling
    (``"Ġthe"`` is " the"), ``encode`` text -> ids, ``decode`` ids -> text."""

    kind = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        size = tokenizer.get_vocab_size()
        self.symbols = [tokenizer.id_to_token(i) for i in range(size)]
        self._bytes = [bytes(_BYTE_OF[c] for c in s) for s in self.symbols]
        # characters each token stands for: its bytes that start a UTF-8 character
        self.lead_counts = np.array(
            [sum((b & 0xC0) != 0x80 for b in t) for t in self._bytes], dtype=np.int32
        )

    # ---- building and reading back ---------------------------------------------------------
    @classmethod
    def build(cls, lines: Sequence[str], vocab_size: int = 0) -> BpeVocab:
        """Train on ``lines`` (each with its line end): ``vocab_size`` symbols at most (0:
        :data:`DEFAULT_VOCAB_SIZE`), the 256 bytes first, then merges, most frequent first.
        The same lines give the same tokenizer."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        size = vocab_size or DEFAULT_VOCAB_SIZE
        if size < ALPHABET:
            raise UserError(
                f"--vocab-size must be 0 (default {DEFAULT_VOCAB_SIZE}) or at least {ALPHABET} "
                f"with --tokenizer bpe (the byte alphabet), got {vocab_size}"
            )
        if not any(line.strip() for line in lines):
            raise UserError("--tokenizer bpe: the training text has no words to learn from")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=False,
        )
        tokenizer.train_from_iterator((f"{line}\n" for line in lines), trainer, length=len(lines))
        return cls(tokenizer)

    @classmethod
    def from_json(cls, data: object, source: str = "vocab.json") -> BpeVocab:
        """The tokenizer of :meth:`to_json`'s one-string list; anything else (another model,
        normaliser or decoder, a missing byte, ids with gaps) is a one-line UserError."""
        from tokenizers import Tokenizer

        if not (isinstance(data, list) and len(data) == 1 and isinstance(data[0], str)):
            raise UserError(f"{source}: a bpe vocabulary is a list of one string (its JSON)")
        try:
            spec = json.loads(data[0])
        except ValueError as error:
            raise UserError(f"{source}: the bpe tokenizer is not JSON ({error})") from None
        _check_spec(spec, source)
        try:
            tokenizer = Tokenizer.from_str(data[0])
        except Exception as error:  # tokenizers raises plain Exception on a bad spec
            raise UserError(f"{source}: not a tokenizer: {short(str(error))}") from None
        vocab = spec["model"]["vocab"]
        if tokenizer.get_vocab_size() != len(vocab) or tokenizer.get_vocab_size() < ALPHABET:
            raise UserError(f"{source}: the bpe vocabulary's ids are not 0..{len(vocab) - 1}")
        return cls(tokenizer)

    def to_json(self) -> list[str]:
        """``[tokenizer JSON]``: vocab.json's list of strings, holding one."""
        return [self.tokenizer.to_str()]

    # ---- text <-> ids ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BpeVocab):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BpeVocab(size={len(self)})"

    def encode(
        self, text: str, unknown: str = "error", *, dtype: npt.DTypeLike = np.int64
    ) -> npt.NDArray[Any]:
        """Ids of ``text``; every text has some (``unknown`` is moot: no symbol is missing)."""
        try:
            ids = self.tokenizer.encode(text).ids
        except Exception as error:  # a lone surrogate cannot reach the Rust side
            raise UserError(f"text is not encodable as UTF-8: {short(str(error))}") from None
        return np.array(ids, dtype=dtype)

    def encode_lines(
        self, lines: Sequence[str], *, cache_dir: str | Path | None = None, cache: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, chars)`` of ``lines``, each with its line end: ids as uint16/uint32 and,
        per token, the characters it stands for (``chars.sum()`` is the text's characters).
        With ``cache``, the tokens are read from (or written to) ``cache_dir`` (None: the
        default cache directory, see ``corpus.load_corpus``)."""
        dtype = np.dtype(np.uint16 if len(self) <= 1 << 16 else np.uint32)
        stem = self._cache_stem(lines, cache_dir) if cache else None
        tokens = _read_cached(stem, dtype) if stem is not None else None
        if tokens is None:
            encodings = self.tokenizer.encode_batch([f"{line}\n" for line in lines])
            count = sum(len(e.ids) for e in encodings)
            tokens = np.fromiter((i for e in encodings for i in e.ids), dtype=dtype, count=count)
            if stem is not None:
                _write_cached(stem, tokens)
        return tokens, self.lead_counts[tokens]

    def _cache_stem(self, lines: Sequence[str], cache_dir: str | Path | None) -> Path:
        """``<cache dir>/<sha256 of the tokenizer and the lines>-bpe``."""
        from rnnkit.data.corpus import _cache_root

        digest = hashlib.sha256(f"rnnkit-bpe {CACHE_FORMAT}\n".encode())
        digest.update(self.tokenizer.to_str().encode())
        for line in lines:
            digest.update(b"\n" + line.encode("utf-8", "surrogatepass"))
        return _cache_root(cache_dir) / f"{digest.hexdigest()}-bpe"

    def token_bytes(self, id: int) -> bytes:
        id = int(id)
        if not 0 <= id < len(self):
            raise UserError(f"token id {id} is outside the vocabulary of {len(self)}")
        return self._bytes[id]

    def decode(self, ids: Iterable[int] | npt.ArrayLike) -> str:
        """The text of ``ids``; bytes that are not UTF-8 become U+FFFD."""
        flat = np.asarray(ids, dtype=np.int64).reshape(-1)
        return b"".join(self.token_bytes(i) for i in flat).decode("utf-8", errors="replace")

    def decoder(self) -> BpeStreamDecoder:
        return BpeStreamDecoder(self)


CACHE_FORMAT = 1


def _read_cached(stem: Path, dtype: np.dtype) -> np.ndarray | None:
    """The cached tokens if ``stem.tokens`` and its ``.json`` are complete and agree."""
    try:
        meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        count = meta["count"]
        ok = (
            meta.get("format") == CACHE_FORMAT
            and meta.get("dtype") == dtype.name
            and isinstance(count, int)
            and stem.with_suffix(".tokens").stat().st_size == count * dtype.itemsize
        )
        return np.fromfile(stem.with_suffix(".tokens"), dtype=dtype) if ok else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_cached(stem: Path, tokens: np.ndarray) -> None:
    """``stem.tokens`` then ``stem.json``, each atomically (a crash leaves no trusted cache)."""
    from rnnkit.data.corpus import _atomic_write

    _atomic_write(stem.with_suffix(".tokens"), lambda f: f.write(tokens.tobytes()))
    meta = {"format": CACHE_FORMAT, "dtype": tokens.dtype.name, "count": len(tokens)}
    data = json.dumps(meta).encode("ascii")
    _atomic_write(stem.with_suffix(".json"), lambda f: f.write(data))


def _check_spec(spec: object, source: str) -> None:
    """The tokenizer JSON must be what :meth:`BpeVocab.build` writes: byte-level BPE with no
    normaliser, post-processor or added tokens, every byte a symbol."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise UserError(f"{source}: not a byte-level BPE tokenizer: {what}")

    need(isinstance(spec, dict), "expected a JSON object")
    assert isinstance(spec, dict)
    model = spec.get("model")
    need(isinstance(model, dict) and model.get("type") == "BPE", "model.type must be BPE")
    for key in ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"):
        need(model.get(key) is None, f"model.{key} must be null")
    need(not model.get("byte_fallback"), "model.byte_fallback must be false")
    vocab = model.get("vocab")
    need(isinstance(vocab, dict) and all(isinstance(v, int) for v in vocab.values()),
         "model.vocab must map tokens to ids")  # fmt: skip
    need(sorted(vocab.values()) == list(range(len(vocab))), "model.vocab ids must be 0..n-1")
    need(all(s in vocab for s in byte_symbols()), "model.vocab lacks some of the 256 bytes")
    need(all(c in _BYTE_OF for s in vocab for c in s), "a token is not byte-level text")
    for key in ("pre_tokenizer", "decoder"):
        part = spec.get(key)
        need(isinstance(part, dict) and part.get("type") == "ByteLevel", f"{key} must be ByteLevel")
    pre = spec["pre_tokenizer"]
    need(pre.get("add_prefix_space") is False, "pre_tokenizer.add_prefix_space must be false")
    for key in ("normalizer", "post_processor", "truncation", "padding"):
        need(spec.get(key) is None, f"{key} must be null")
    need(not spec.get("added_tokens"), "added_tokens must be empty")
