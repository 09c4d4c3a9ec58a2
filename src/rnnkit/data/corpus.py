"""Text corpora on disk -> one memory-mapped array of token ids, cached by content.

In this file: :func:`resolve_paths` (files, directories, globs -> a list of files),
:func:`load_corpus` and :func:`split`. Loading streams the files in chunks of
:data:`CHUNK_BYTES`, so a corpus far larger than memory trains with bounded memory::

    pass 1: read every file -> sha256 digest (+ the set of characters, strict UTF-8 check)
    cache:  <cache dir>/<digest>-<tokenizer>[-<vocab hash>].tokens (+ .json) exists? map it
    pass 2: otherwise encode chunk by chunk into a temp file, fsync, os.replace (atomic)

The ``.json`` beside the tokens (vocabulary, count, dtype) is written last and checked on
load; anything that does not match is rebuilt, so a crash never leaves a cache that is trusted.

Not in this file: the vocabulary itself (``vocab.py``) and batching (``streams.py``).
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rnnkit.data.vocab import (
    CORPUS_HINT,
    ENCODE_BLOCK,
    UNKNOWN_MODES,
    WORD_UNK,
    Vocab,
    WordVocab,
    code_points,
    unknown_message,
)
from rnnkit.errors import UserError

BUNDLED = Path(__file__).parent / "tinyshakespeare.txt"
CHUNK_BYTES = 8 << 20  # bytes read at a time; memory use is a small multiple of this
CACHE_FORMAT = 1
TOKENIZERS = ("char", "byte")
_NUM_CODE_POINTS = 0x110000
_GLOB_CHARS = frozenset("*?[")


# --------------------------------------------------------------------------- paths


def resolve_paths(inputs: Sequence[str] | None) -> list[Path]:
    """The files named by ``inputs``, in order, without duplicates.

    Each input is a file, a directory (its regular files, recursively, sorted, hidden files
    and directories skipped) or a glob pattern (``**`` allowed). ``None`` or ``[]`` means the
    bundled Tiny Shakespeare.
    """
    if not inputs:
        return [BUNDLED]
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [os.fspath(inputs)]
    found: dict[Path, Path] = {}
    for item in inputs:
        for path in _expand(str(item)):
            found.setdefault(path.resolve(), path)
    return list(found.values())


def _expand(item: str) -> list[Path]:
    path = Path(item).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = _walk(path)
        if not files:
            raise UserError(f"directory {path} has no readable files (add text files to it)")
        return files
    if path.exists():
        raise UserError(f"{path} is not a regular file or directory; give a text file")
    if _GLOB_CHARS & set(item):
        matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
        files = [f for m in matches for f in (_walk(Path(m)) if Path(m).is_dir() else [Path(m)])]
        files = [f for f in files if f.is_file()]
        if not files:
            raise UserError(f"glob {item!r} matched no files (check the pattern and directory)")
        return files
    raise UserError(f"no such file or directory: {item} (give a text file, directory or glob)")


def _walk(directory: Path) -> list[Path]:
    """Readable regular files below ``directory``, sorted, hidden names skipped."""
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            if not name.startswith(".") and path.is_file() and os.access(path, os.R_OK):
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(directory).parts)


# --------------------------------------------------------------------------- reading


def _read_chunks(path: Path, decode: bool, visit: Callable[[str | bytes], None]) -> str:
    """Call ``visit(chunk)`` for each chunk of ``path``; the file's ``"<size> <sha256>"``.

    With ``decode`` the chunk is the strict UTF-8 decoding (a character split between
    chunks is carried over), else the raw bytes. Empty, undecodable and binary files raise
    :class:`UserError`.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    file_hash = hashlib.sha256()
    offset = 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e} (check its permissions)") from e
    with f:
        while raw := _read(f, path):
            file_hash.update(raw)
            chunk = _decode(decoder, raw, offset, path) if decode else raw
            offset += len(raw)
            del raw  # hold one chunk at a time: visit's temporaries, then the next read
            visit(chunk)
            del chunk
    if offset == 0:
        raise UserError(f"{path} is empty (remove it from the inputs or add text to it)")
    if decode:
        _decode(decoder, b"", offset, path, final=True)
    return f"{offset} {file_hash.hexdigest()}"


def _read(f: Any, path: Path) -> bytes:
    try:
        return f.read(CHUNK_BYTES)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e} (check the file)") from e


def _decode(
    decoder: codecs.IncrementalDecoder, raw: bytes, offset: int, path: Path, final: bool = False
) -> str:
    """Decode the chunk that starts at byte ``offset`` of ``path``, naming exact offsets."""
    pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous chunk
    try:
        text = decoder.decode(raw, final)
    except UnicodeDecodeError as e:
        bad = offset - pending + e.start
        nul = raw.find(b"\x00", 0, max(0, bad - offset))
        if nul < 0:
            raise UserError(
                f"{path}: invalid UTF-8 at byte offset {bad} "
                "(use --tokenizer byte to read any file)"
            ) from None
    else:
        nul = raw.find(b"\x00")
        if nul < 0:
            return text
    raise UserError(
        f"{path} looks binary (NUL byte at offset {offset + nul}); use --tokenizer byte"
    )


def _scan(
    paths: list[Path], tokenizer: str, known: Vocab | None, unknown: str
) -> tuple[list[str], npt.NDArray[np.bool_]]:
    """Pass 1: each file's ``"<size> <sha256>"`` and, for characters, which code points occur.

    With a given vocabulary, characters outside it are an error (naming the file) unless
    ``unknown == "skip"``.
    """
    records = []
    char = tokenizer == "char"
    seen = np.zeros(_NUM_CODE_POINTS if char else 0, dtype=bool)
    allowed = None
    if char and known is not None:
        allowed = np.zeros(_NUM_CODE_POINTS, dtype=bool)
        allowed[code_points("".join(known.symbols))] = True

    def visit(chunk: str | bytes) -> None:
        if isinstance(chunk, str):
            for start in range(0, len(chunk), ENCODE_BLOCK):
                seen[code_points(chunk[start : start + ENCODE_BLOCK])] = True

    for path in paths:
        records.append(_read_chunks(path, char, visit))
        if allowed is not None and unknown == "error" and (seen & ~allowed).any():
            missing = np.flatnonzero(seen & ~allowed)
            message = unknown_message((chr(c) for c in missing), CORPUS_HINT)
            raise UserError(f"{path}: {message}")
    return records, seen


def _digest(tokenizer: str, records: list[str]) -> str:
    """sha256 over the tokenizer and every file's size and sha256, in order."""
    lines = [f"rnnkit-corpus {tokenizer}", *records, ""]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --------------------------------------------------------------------------- cache


def _cache_root(cache_dir: str | Path | None) -> Path:
    """``cache_dir``, else $RNNKIT_CACHE, else $XDG_CACHE_HOME/rnnkit, else ~/.cache/rnnkit."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    user = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: absolute
    default = os.environ.get("RNNKIT_CACHE") or user / "rnnkit"
    root = Path(cache_dir if cache_dir else default).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create the cache directory {root}: {e.strerror or e} "
            "(set --cache-dir or RNNKIT_CACHE to a writable directory)"
        ) from e
    return root


def _token_dtype(tokenizer: str, vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id: one byte per token for <= 256 symbols."""
    if tokenizer == "byte" or vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _open_cached(stem: Path, vocab: Vocab, dtype: np.dtype) -> np.memmap | None:
    """The cached tokens if ``stem.tokens`` and its ``.json`` are complete and agree."""
    tokens_path, meta_path = stem.with_suffix(".tokens"), stem.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        count = meta["count"]
        ok = (
            meta.get("format") == CACHE_FORMAT
            and meta.get("dtype") == dtype.name
            and meta.get("kind") == vocab.kind
            and meta.get("vocab") == vocab.to_json()
            and isinstance(count, int)
            and count > 0
            and tokens_path.stat().st_size == count * dtype.itemsize
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return np.memmap(tokens_path, dtype=dtype, mode="r", shape=(count,)) if ok else None


def _atomic_write(final: Path, write: Callable[[Any], None]) -> None:
    """Write ``final`` through a temp file in the same directory: fsync, then os.replace."""
    try:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    except OSError as e:
        raise _cache_error(final, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _cache_error(final, e) from e
        raise
    _fsync_dir(final.parent)


def _cache_error(path: Path, error: OSError) -> UserError:
    return UserError(
        f"cannot write the cache file {path}: {error.strerror or error} "
        "(free disk space or set --cache-dir / RNNKIT_CACHE to another directory)"
    )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_tokens(
    paths: list[Path], records: list[str], vocab: Vocab, unknown: str, dtype: np.dtype, stem: Path
) -> int:
    """Pass 2: encode every file chunk by chunk into ``stem.tokens``; the token count.

    The files are hashed again on the way, so a file edited since pass 1 cannot end up
    under the wrong name.
    """
    count = 0

    def write(f: Any) -> None:
        def visit(chunk: str | bytes) -> None:
            nonlocal count
            ids = vocab.encode(chunk, unknown, dtype=dtype) if isinstance(chunk, str) else chunk
            f.write(memoryview(ids).cast("B"))
            count += len(ids)

        for path, record in zip(paths, records, strict=True):
            if _read_chunks(path, vocab.kind == "char", visit) != record:
                raise UserError(f"{path} changed while it was being read; run again")
        if count == 0:
            raise UserError(
                f"no tokens left in {', '.join(map(str, paths[:3]))} after dropping characters "
                "not in the vocabulary (use a vocabulary that covers the text)"
            )

    _atomic_write(stem.with_suffix(".tokens"), write)
    return count


def _write_meta(stem: Path, vocab: Vocab, dtype: np.dtype, count: int, digest: str) -> None:
    meta = {
        "format": CACHE_FORMAT,
        "digest": digest,
        "kind": vocab.kind,
        "dtype": dtype.name,
        "count": count,
        "vocab": vocab.to_json(),
    }
    data = json.dumps(meta, ensure_ascii=True).encode("ascii")
    _atomic_write(stem.with_suffix(".json"), lambda f: f.write(data))


# --------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """A tokenised corpus: ``tokens`` is a read-only 1-D ``np.memmap`` of ids into ``vocab``
    (uint8 for bytes and for up to 256 characters, else uint16/uint32); ``digest`` is the
    sha256 of the files' bytes (with their lengths) and the tokenizer."""

    tokens: np.ndarray
    vocab: Vocab
    paths: list[Path]
    digest: str

    def __len__(self) -> int:
        return len(self.tokens)


def load_corpus(
    inputs: Sequence[str] | None,
    tokenizer: str = "char",
    *,
    vocab: Vocab | None = None,
    cache_dir: str | Path | None = None,
    unknown: str = "error",
) -> Corpus:
    """Read ``inputs`` (see :func:`resolve_paths`) as one token stream, files concatenated.

    ``tokenizer="char"`` reads strict UTF-8 and, without ``vocab``, builds the vocabulary from
    the characters found; ``"byte"`` reads any file as its bytes. A given ``vocab`` (resuming,
    evaluating) is used as is: characters outside it raise, or are dropped with
    ``unknown="skip"``. Encoded tokens are cached in ``cache_dir`` (default ``$RNNKIT_CACHE``
    or ``~/.cache/rnnkit``) under the content's digest, so a second load only maps the file.
    """
    if tokenizer not in TOKENIZERS:
        raise UserError(f"--tokenizer must be 'char' or 'byte', got {tokenizer!r}")
    if unknown not in UNKNOWN_MODES:
        raise UserError(f"--unknown must be 'error' or 'skip', got {unknown!r}")
    if vocab is not None and vocab.kind != tokenizer:
        raise UserError(
            f"--tokenizer {tokenizer} does not match the {vocab.kind} vocabulary being reused "
            f"(use --tokenizer {vocab.kind})"
        )
    paths = resolve_paths(inputs)
    records, seen = _scan(paths, tokenizer, vocab, unknown)
    digest = _digest(tokenizer, records)
    name = f"{digest}-{tokenizer}"
    if tokenizer == "byte":
        vocab = Vocab.byte()
    else:  # named by its vocabulary too, whether found in the text or given (resuming)
        if vocab is None:
            vocab = Vocab.from_text_chars(chr(c) for c in np.flatnonzero(seen))
        vocab_json = json.dumps(vocab.to_json(), ensure_ascii=True).encode("ascii")
        name += "-" + hashlib.sha256(vocab_json).hexdigest()[:12]
    del seen
    dtype = _token_dtype(tokenizer, len(vocab))
    stem = _cache_root(cache_dir) / name
    tokens = _open_cached(stem, vocab, dtype)
    if tokens is None:
        count = _write_tokens(paths, records, vocab, unknown, dtype, stem)
        _write_meta(stem, vocab, dtype, count, digest)
        tokens = np.memmap(stem.with_suffix(".tokens"), dtype=dtype, mode="r", shape=(count,))
    return Corpus(tokens=tokens, vocab=vocab, paths=paths, digest=digest)


def split(tokens: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous (train, validation) views: the first ``1 - val_fraction`` of the tokens and
    the last ``val_fraction`` (rounded to whole tokens). No copy."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(round(len(tokens) * val_fraction))
    cut = len(tokens) - n_val
    return tokens[:cut], tokens[cut:]


# --------------------------------------------------------------------------- words


@dataclass
class WordText:
    """Word ids of a text and, per token, the characters it stands for: a word its length
    plus one separator (the space after it, or the line end), ``<eos>`` 1 on an empty line
    else 0, so ``chars.sum()`` is the text's characters with single spaces and each line end
    counted once. ``oov``: words of the text outside the vocabulary (now ``<unk>``)."""

    tokens: np.ndarray
    chars: np.ndarray
    oov: int

    def __len__(self) -> int:
        return len(self.tokens)


def read_lines(inputs: Sequence[str] | None) -> list[str]:
    """The lines of ``inputs`` (see :func:`resolve_paths`), strict UTF-8, files in order."""
    lines: list[str] = []
    for path in resolve_paths(inputs):
        parts: list[str] = []
        _read_chunks(path, True, parts.append)  # type: ignore[arg-type]
        text = "".join(parts)
        lines.extend(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"))
    return lines


def encode_lines(lines: Sequence[str], vocab: WordVocab) -> WordText:
    """:class:`WordText` of ``lines``: each line's words, then ``<eos>`` (a dict lookup a word)."""
    index = vocab.index
    ids: list[int] = []
    chars: list[int] = []
    eos = vocab.index["<eos>"]
    for line in lines:
        words = line.split()
        ids.extend([index.get(w, WORD_UNK) for w in words])
        ids.append(eos)
        chars.extend([len(w) + 1 for w in words])
        chars.append(0 if words else 1)
    tokens = np.array(ids, dtype=_token_dtype("word", len(vocab)))
    oov = sum(1 for line in lines for w in line.split() if w not in index)
    return WordText(tokens=tokens, chars=np.array(chars, dtype=np.int32), oov=oov)


def split_lines(lines: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, validation) lines: the last ``val_fraction`` of the lines (rounded) held out."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    cut = len(lines) - int(round(len(lines) * val_fraction))
    return lines[:cut], lines[cut:]
