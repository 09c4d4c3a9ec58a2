"""load_corpus / resolve_paths / split: inputs, UTF-8 checks, the cache, streaming memory."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import corpus as corpus_module
from rnnkit.data.corpus import BUNDLED, load_corpus, resolve_paths, split
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def naive(vocab: Vocab, text: str) -> list[int]:
    return [vocab.symbols.index(c) for c in text]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_one_file_matches_naive_encoding(tmp_path, cache):
    text = "To be, or not to be — ça 🙂\n"
    path = write(tmp_path / "a.txt", text)
    corpus = load_corpus([str(path)], cache_dir=cache)
    assert corpus.vocab.symbols == sorted(set(text))
    assert (
        isinstance(corpus.tokens, np.memmap) and corpus.tokens.dtype == np.uint8
    )  # <= 256 symbols
    assert not corpus.tokens.flags.writeable
    assert corpus.tokens.tolist() == naive(corpus.vocab, text)
    assert len(corpus) == len(text) and corpus.paths == [path]
    assert len(corpus.digest) == 64


def test_several_files_are_concatenated_in_order(tmp_path, cache):
    b = write(tmp_path / "b.txt", "bbb")
    a = write(tmp_path / "a.txt", "aé")
    corpus = load_corpus([str(b), str(a), str(b)], cache_dir=cache)
    assert corpus.paths == [b, a]  # duplicates removed, order kept
    assert corpus.vocab.decode(corpus.tokens) == "bbbaé"


def test_directory_is_recursive_sorted_and_skips_hidden(tmp_path, cache):
    root = tmp_path / "texts"
    write(root / "b.txt", "2")
    write(root / "a.txt", "1")
    write(root / "sub" / "c.txt", "3")
    write(root / ".hidden.txt", "H")
    write(root / ".git" / "objects" / "x", "G")
    assert resolve_paths([str(root)]) == [root / "a.txt", root / "b.txt", root / "sub" / "c.txt"]
    corpus = load_corpus([str(root)], cache_dir=cache)
    assert corpus.vocab.decode(corpus.tokens) == "123"


def test_glob(tmp_path, cache):
    write(tmp_path / "x1.txt", "one")
    write(tmp_path / "x2.txt", "two")
    write(tmp_path / "deep" / "x3.txt", "three")
    write(tmp_path / "x.md", "no")
    assert resolve_paths([str(tmp_path / "x*.txt")]) == [tmp_path / "x1.txt", tmp_path / "x2.txt"]
    found = resolve_paths([str(tmp_path / "**" / "x*.txt")])
    assert set(found) == {tmp_path / n for n in ("x1.txt", "x2.txt", "deep/x3.txt")}
    corpus = load_corpus([str(tmp_path / "x*.txt")], cache_dir=cache)
    assert corpus.vocab.decode(corpus.tokens) == "onetwo"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: str(d / "missing.txt"), "no such file or directory: {}"),
        (lambda d: str(write(d / "empty.txt", b"")), "{} is empty"),
        (lambda d: str(_mkdir(d / "nothing")), "directory {} has no readable files"),
        (lambda d: str(d / "*.nomatch"), "glob '{}' matched no files"),
    ],
)
def test_bad_inputs_name_the_path(tmp_path, cache, make, expected):
    name = make(tmp_path)
    with pytest.raises(UserError) as info:
        load_corpus([name], cache_dir=cache)
    assert expected.format(name) in str(info.value)
    assert "\n" not in str(info.value)


def _mkdir(path: Path) -> Path:
    (path / ".hidden").mkdir(parents=True)
    write(path / ".hidden" / "x.txt", "x")
    return path


def test_empty_file_among_others_is_named(tmp_path, cache):
    good = write(tmp_path / "good.txt", "abc")
    empty = write(tmp_path / "empty.txt", b"")
    with pytest.raises(UserError, match=f"{empty} is empty"):
        load_corpus([str(good), str(empty)], cache_dir=cache)


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"hello \xff world", 6),  # a byte that never starts a character
        ("abc€".encode() + b"\xe2\x28\xa1 rest", 6),  # bad continuation byte
        ("é".encode() * 5 + b"\xc3", 10),  # truncated sequence at the end of the file
    ],
)
def test_invalid_utf8_reports_the_exact_offset(tmp_path, cache, monkeypatch, data, offset):
    path = write(tmp_path / "bad.txt", data)
    for chunk in (corpus_module.CHUNK_BYTES, 3, 1):  # the error may span chunk boundaries
        monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk)
        with pytest.raises(UserError) as info:
            load_corpus([str(path)], cache_dir=cache)
        message = str(info.value)
        assert f"{path}: invalid UTF-8 at byte offset {offset} " in message
        assert "--tokenizer byte" in message
    corpus = load_corpus([str(path)], "byte", cache_dir=cache)
    assert corpus.tokens.dtype == np.uint8 and corpus.vocab == Vocab.byte()
    assert bytes(corpus.tokens) == data


def test_nul_byte_is_refused_in_char_mode(tmp_path, cache):
    path = write(tmp_path / "data.bin", b"abc\x00def")
    with pytest.raises(UserError, match=r"looks binary \(NUL byte at offset 3\).*--tokenizer byte"):
        load_corpus([str(path)], cache_dir=cache)
    assert bytes(load_corpus([str(path)], "byte", cache_dir=cache).tokens) == b"abc\x00def"


def test_chunk_boundary_inside_a_character(tmp_path, cache, monkeypatch):
    text = "ab€cd🙂é" * 50 + "xyz"
    path = write(tmp_path / "t.txt", text)
    whole = load_corpus([str(path)], cache_dir=cache / "whole")
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 7)
    chunked = load_corpus([str(path)], cache_dir=cache / "chunked")
    assert chunked.digest == whole.digest
    assert chunked.tokens.tolist() == whole.tokens.tolist() == naive(whole.vocab, text)


def test_second_load_uses_the_cache(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "t.txt", "cached text ü\n" * 100)
    first = load_corpus([str(path)], cache_dir=cache)
    (tokens_file,) = cache.glob("*.tokens")
    stamp = tokens_file.stat().st_mtime_ns

    def no_encoding(*args, **kwargs):
        raise AssertionError("the cached corpus was encoded again")

    monkeypatch.setattr(corpus_module, "_write_tokens", no_encoding)
    second = load_corpus([str(path)], cache_dir=cache)
    assert tokens_file.stat().st_mtime_ns == stamp
    assert second.digest == first.digest and second.vocab == first.vocab
    assert np.array_equal(second.tokens, first.tokens)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".tokens"]  # no temp left


@pytest.mark.parametrize("damage", ["truncate", "meta"])
def test_damaged_cache_is_rebuilt(tmp_path, cache, damage):
    path = write(tmp_path / "t.txt", "some text to cache\n" * 20)
    expected = load_corpus([str(path)], cache_dir=cache).tokens.tolist()
    (tokens_file,) = cache.glob("*.tokens")
    if damage == "truncate":
        tokens_file.write_bytes(tokens_file.read_bytes()[:-6])
    else:
        next(cache.glob("*.json")).write_text("{not json")
    again = load_corpus([str(path)], cache_dir=cache)
    assert again.tokens.tolist() == expected
    assert tokens_file.stat().st_size == len(expected)  # one byte per token


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", "env")
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "envcache"))
    load_corpus([str(path)])
    assert len(list((tmp_path / "envcache").glob("*.tokens"))) == 1


def test_content_change_gives_a_new_digest(tmp_path, cache):
    path = write(tmp_path / "t.txt", "version one")
    one = load_corpus([str(path)], cache_dir=cache)
    write(path, "version two")
    two = load_corpus([str(path)], cache_dir=cache)
    assert one.digest != two.digest
    assert two.vocab.decode(two.tokens) == "version two"
    # same bytes split differently across files is a different corpus
    a, b = write(tmp_path / "a", "ab"), write(tmp_path / "b", "c")
    c, d = write(tmp_path / "c", "a"), write(tmp_path / "d", "bc")
    assert load_corpus([str(a), str(b)], cache_dir=cache).digest != (
        load_corpus([str(c), str(d)], cache_dir=cache).digest
    )


def test_given_vocab_is_used_and_checked(tmp_path, cache):
    vocab = Vocab.from_text_chars("abcdefgh ")
    path = write(tmp_path / "t.txt", "bad cafe")
    corpus = load_corpus([str(path)], vocab=vocab, cache_dir=cache)
    assert corpus.vocab == vocab
    assert corpus.tokens.tolist() == naive(vocab, "bad cafe")
    other = write(tmp_path / "u.txt", "bad Zoo")
    with pytest.raises(UserError, match=rf"{other}: characters not in the vocabulary: 'Z', 'o'"):
        load_corpus([str(other)], vocab=vocab, cache_dir=cache)
    with pytest.raises(UserError) as refused:  # data has no --unknown: say what does help
        load_corpus([str(other)], vocab=vocab, cache_dir=cache)
    assert "--unknown" not in str(refused.value) and "--tokenizer byte" in str(refused.value)
    skipped = load_corpus([str(other)], vocab=vocab, cache_dir=cache, unknown="skip")
    assert vocab.decode(skipped.tokens) == "bad "
    with pytest.raises(UserError, match="--tokenizer char does not match"):
        load_corpus([str(path)], vocab=Vocab.byte(), cache_dir=cache)
    with pytest.raises(UserError, match="no tokens left"):
        load_corpus(
            [str(write(tmp_path / "z", "ZZZ"))], vocab=vocab, cache_dir=cache, unknown="skip"
        )


def test_reused_vocab_shares_the_cache(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "t.txt", "resume me")
    first = load_corpus([str(path)], cache_dir=cache)
    byte = load_corpus([str(path)], "byte", cache_dir=cache)
    monkeypatch.setattr(corpus_module, "_write_tokens", None)  # must not encode again
    again = load_corpus([str(path)], vocab=first.vocab, cache_dir=cache)
    assert np.array_equal(again.tokens, first.tokens)
    assert np.array_equal(
        load_corpus([str(path)], "byte", vocab=Vocab.byte(), cache_dir=cache).tokens, byte.tokens
    )


def test_file_edited_between_the_passes_is_not_cached(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "t.txt", "original")
    scan = corpus_module._scan

    def scan_then_edit(*args, **kwargs):
        result = scan(*args, **kwargs)
        write(path, "lanigiro")  # same characters, different text
        return result

    monkeypatch.setattr(corpus_module, "_scan", scan_then_edit)
    with pytest.raises(UserError, match=f"{path} changed while it was being read"):
        load_corpus([str(path)], cache_dir=cache)
    assert list(cache.iterdir()) == []  # the temp file is gone, nothing half-written


def test_bad_tokenizer_is_named(tmp_path, cache):
    with pytest.raises(UserError, match="--tokenizer must be 'char' or 'byte', got 'word'"):
        load_corpus([str(write(tmp_path / "t", "x"))], "word", cache_dir=cache)


def test_split_is_contiguous_views():
    tokens = np.arange(100, dtype=np.uint16)
    train, val = split(tokens, 0.1)
    assert len(train) == 90 and len(val) == 10
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    assert np.shares_memory(train, tokens) and np.shares_memory(val, tokens)
    assert len(split(tokens, 0.0)[1]) == 0
    with pytest.raises(UserError, match="--val-fraction"):
        split(tokens, 1.0)


def test_default_is_the_bundled_corpus(tmp_path, cache):
    assert resolve_paths(None) == resolve_paths([]) == [BUNDLED]
    assert BUNDLED.name == "tinyshakespeare.txt"
    corpus = load_corpus(None, cache_dir=cache)
    assert len(corpus) == 1_115_394 and len(corpus.vocab) == 65
    assert corpus.vocab.decode(corpus.tokens[:14]) == "First Citizen:"


def test_memory_stays_bounded_while_streaming(tmp_path, cache, monkeypatch):
    """A 30 MB file read in 1 MB chunks: peak Python/NumPy allocation stays a few chunks."""
    chunk = 1 << 20
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk)
    line = "The quick brown fox jumps over the lazy dog — ünïcödé 🙂\n"
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(30 * chunk // len(line.encode())):
            f.write(line)
    size = path.stat().st_size
    gc.collect()
    tracemalloc.start()
    try:
        corpus = load_corpus([str(path)], cache_dir=cache)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(corpus) > 25 * chunk and size > 29 * chunk
    print(f"peak {peak / 2**20:.2f} MiB")
    assert peak < 5 * chunk + 8 * (1 << 20), f"peak {peak / 2**20:.1f} MiB for a {size} B file"


def test_token_width_grows_with_the_vocabulary(tmp_path, cache):
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 2  # 300 distinct CJK characters
    corpus = load_corpus([str(write(tmp_path / "wide.txt", text))], cache_dir=cache)
    assert len(corpus.vocab) == 300 and corpus.tokens.dtype == np.uint16
    assert corpus.tokens.tolist() == naive(corpus.vocab, text)
