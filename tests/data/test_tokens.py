"""Token vocabularies (specials first, UNK for the unseen) and the char/word tokenizers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.tokens import BOS, EOS, PAD, SPECIALS, UNK, TokenVocab, detokenize, tokenize
from rnnkit.errors import UserError


def test_tokenize_char_and_word():
    assert tokenize("Hi, yo", "char") == ["H", "i", ",", " ", "y", "o"]
    assert tokenize("Don't STOP!", "word") == ["don", "'", "t", "stop", "!"]
    assert detokenize(["a", "b"], "char") == "ab" and detokenize(["a", "b"], "word") == "a b"
    with pytest.raises(UserError, match="char or word"):
        tokenize("x", "byte")


def test_build_orders_by_frequency_and_honours_min_count():
    vocab = TokenVocab.build([["b", "a", "a"], ["c", "a", "b"]], min_count=2)
    assert vocab.symbols == [*SPECIALS, "a", "b"]
    assert vocab.encode(["a", "c", "zzz"]) == [4, UNK, UNK]
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


def test_decode_strips_specials_and_stops_at_eos():
    vocab = TokenVocab.build([["x", "y"]])
    ids = [BOS, *vocab.encode(["x", "y"]), EOS, *vocab.encode(["x"]), PAD]
    assert vocab.decode(ids) == ["x", "y"]
    assert vocab.decode(ids, strip=False)[0] == "<bos>"


def test_json_round_trip_and_hostile_json():
    vocab = TokenVocab.build([list("hello")])
    assert TokenVocab.from_json(vocab.to_json()).symbols == vocab.symbols
    for bad in ({"a": 1}, [1, 2], ["a", "b"], [*SPECIALS, "x", "x"]):
        with pytest.raises(UserError, match="meta.json"):
            TokenVocab.from_json(bad, source="meta.json")


@given(st.lists(st.text(max_size=8), max_size=6))
def test_encode_decode_round_trip_for_known_symbols(texts):
    sequences = [tokenize(t, "char") for t in texts]
    vocab = TokenVocab.build(sequences)
    for sequence in sequences:
        assert vocab.decode(vocab.encode(sequence)) == [s for s in sequence if s not in SPECIALS]
