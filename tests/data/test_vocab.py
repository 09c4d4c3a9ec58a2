"""Vocab: char and byte round trips, unknown characters, JSON checks, streaming decode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data import vocab as vocab_module
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError

TEXT = "Héllo, wörld — 5€ 🙂\n\ttab"


def naive_encode(vocab: Vocab, text: str) -> list[int]:
    return [vocab.symbols.index(c) for c in text]


def test_char_vocab_is_sorted_distinct_and_round_trips():
    vocab = Vocab.from_text_chars(TEXT)
    assert vocab.kind == "char"
    assert vocab.symbols == sorted(set(TEXT))
    assert len(vocab) == len(set(TEXT))
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.int64
    assert ids.tolist() == naive_encode(vocab, TEXT)
    assert vocab.decode(ids) == TEXT
    assert vocab.decode(ids.tolist()) == TEXT


def test_char_encode_in_blocks_matches_naive(monkeypatch):
    monkeypatch.setattr(vocab_module, "ENCODE_BLOCK", 3)
    vocab = Vocab.from_text_chars(TEXT)
    assert vocab.encode(TEXT, dtype=np.uint16).tolist() == naive_encode(vocab, TEXT)
    assert vocab.encode(TEXT + "Z", unknown="skip").tolist() == naive_encode(vocab, TEXT)


def test_byte_round_trip_of_arbitrary_bytes():
    vocab = Vocab.byte()
    assert vocab.kind == "byte" and len(vocab) == 256
    assert vocab.symbols == [chr(b) for b in range(256)]
    data = bytes(range(256))
    assert vocab.decode(np.frombuffer(data, np.uint8)) == data.decode("utf-8", "replace")
    assert vocab.encode(TEXT).tolist() == list(TEXT.encode("utf-8"))
    assert vocab.encode(TEXT, dtype=np.uint8).dtype == np.uint8
    assert vocab.decode(vocab.encode(TEXT)) == TEXT
    assert vocab.decode([0xFF, 0x41]) == "\ufffdA"  # invalid UTF-8 becomes U+FFFD


def test_unknown_characters_are_named_or_skipped():
    vocab = Vocab.from_text_chars("abc")
    with pytest.raises(UserError) as info:
        vocab.encode("abZc€")
    message = str(info.value)
    assert "'Z'" in message and "'€'" in message and "--unknown skip" in message
    assert "\n" not in message
    assert vocab.encode("abZc€", unknown="skip").tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="unknown"):
        vocab.encode("abc", unknown="ignore")


def test_unknown_message_lists_at_most_ten():
    vocab = Vocab.from_text_chars("a")
    with pytest.raises(UserError, match="and 5 more"):
        vocab.encode("bcdefghijklmnop")


def test_decode_rejects_ids_outside_the_vocabulary():
    vocab = Vocab.from_text_chars("ab")
    with pytest.raises(UserError, match="token id 2"):
        vocab.decode([0, 2])
    with pytest.raises(UserError, match="token id -1"):
        vocab.decode([-1])


def test_json_round_trip():
    for vocab in (Vocab.from_text_chars(TEXT), Vocab.byte()):
        again = Vocab.from_json(vocab.kind, vocab.to_json())
        assert again == vocab
        assert again.encode(TEXT).tolist() == vocab.encode(TEXT).tolist()


def test_json_keeps_stored_order():
    vocab = Vocab.from_json("char", ["b", "a"])
    assert vocab.encode("ab").tolist() == [1, 0]
    assert vocab.decode([0, 1]) == "ba"


@pytest.mark.parametrize(
    ("kind", "data", "problem"),
    [
        ("char", {"a": 0}, "expected a list"),
        ("char", "abc", "expected a list"),
        ("char", ["a", 3], "not a string"),
        ("char", ["a", "b", "a"], "duplicate"),
        ("char", ["a", "bc"], "one character"),
        ("char", [], "empty"),
        ("byte", [chr(b) for b in range(255)], "256"),
        ("byte", [chr(b) for b in reversed(range(256))], "256"),
        ("word", ["a"], "kind"),
    ],
)
def test_from_json_rejects_bad_tables(kind, data, problem):
    with pytest.raises(UserError, match=problem) as info:
        Vocab.from_json(kind, data, source="run/last/vocab.json")
    assert "run/last/vocab.json" in str(info.value)


def test_stream_decoder_reassembles_multibyte_characters():
    vocab = Vocab.byte()
    decoder = vocab.decoder()
    pieces = [decoder.decode(b) for b in "a€🙂".encode()]
    assert pieces[0] == "a"
    assert pieces[1:4] == ["", "", "€"]
    assert pieces[4:] == ["", "", "", "🙂"]
    assert decoder.flush() == ""
    decoder.decode(0xE2)  # an incomplete character left at the end
    assert decoder.flush() == "\ufffd"


def test_stream_decoder_char_mode():
    vocab = Vocab.from_text_chars(TEXT)
    decoder = vocab.decoder()
    assert "".join(decoder.decode(int(i)) for i in vocab.encode(TEXT)) == TEXT
    assert decoder.flush() == ""


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_char_round_trip_property(text):
    vocab = Vocab.from_text_chars(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert ids.tolist() == naive_encode(vocab, text)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_round_trip_property(text):
    vocab = Vocab.byte()
    assert vocab.decode(vocab.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_byte_decode_matches_python(data):
    assert Vocab.byte().decode(list(data)) == data.decode("utf-8", errors="replace")
