"""Sampling functions (pure) and generate(): seeds, state carrying, stop strings, streaming."""

from __future__ import annotations

import codecs
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.generation import (
    apply_temperature,
    generate,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from rnnkit.models import LanguageModel, LMOutput

# ---- stand-ins ---------------------------------------------------------------------------------


class _CharDecoder:
    def __init__(self, symbols):
        self.symbols = symbols

    def decode(self, id: int) -> str:
        return self.symbols[id]

    def flush(self) -> str:
        return ""


class _ByteDecoder:
    def __init__(self):
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, id: int) -> str:
        return self.utf8.decode(bytes([id]))

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


class StandInVocab:
    """The API of rnnkit.data.vocab.Vocab, for these tests only."""

    def __init__(self, symbols: str | None = None, kind: str = "char"):
        self.kind = kind
        self.symbols = [chr(i) for i in range(256)] if kind == "byte" else list(symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        missing = sorted(set(text) - set(self.symbols))
        if missing and unknown == "error":
            raise UserError(f"characters not in the vocabulary: {missing}")
        return np.array([self.symbols.index(c) for c in text if c in self.symbols], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.decoder().decode(int(i)) for i in ids)

    def decoder(self):
        return _ByteDecoder() if self.kind == "byte" else _CharDecoder(self.symbols)


class ScriptedModel(nn.Module):
    """Plays fixed scripts whatever it is fed: row n emits scripts[n][0], scripts[n][1], ...

    The state is the position in the script (N,); calls are counted and recorded.
    """

    def __init__(self, scripts: list[list[int]], vocab_size: int):
        super().__init__()
        self.scripts = torch.tensor(scripts)  # (N, T)
        self.vocab_size = vocab_size
        self.forward_inputs: list[torch.Tensor] = []
        self.steps = 0
        self.modes: list[bool] = []

    def _logits(self, position: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(position))
        ids = self.scripts[rows, position.clamp(max=self.scripts.size(1) - 1)]  # (N,)
        logits = torch.full((len(position), self.vocab_size), -100.0)  # (N, V)
        return logits.scatter_(1, ids[:, None], 100.0)

    def forward(self, idx, targets=None, state=None):
        self.forward_inputs.append(idx.clone())
        self.modes.append(self.training)
        position = torch.zeros(idx.size(0), dtype=torch.long)
        logits = self._logits(position).unsqueeze(1).expand(-1, idx.size(1), -1)  # (N, L, V)
        return LMOutput(logits, None, position)

    def step(self, token, state=None):
        self.steps += 1
        self.modes.append(self.training)
        position = state + 1
        return self._logits(position), position


VOCAB = StandInVocab("abcd\nxyz")


def scripted(*texts: str, vocab: StandInVocab = VOCAB) -> ScriptedModel:
    return ScriptedModel([list(vocab.encode(t)) for t in texts], len(vocab))


def small_model(vocab: StandInVocab, seed: int = 0, cell: str = "lstm") -> LanguageModel:
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, vocab_size=len(vocab), embed=8, hidden=16, layers=2)
    return LanguageModel(config)


# ---- pure sampling functions -------------------------------------------------------------------


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    out = top_k_filter(logits, 2)
    kept = torch.isfinite(out)
    assert kept.tolist() == [[False, True, False, True, False], [True, True, False, False, False]]
    assert torch.equal(out[kept], logits[kept]) and (out[~kept] == -math.inf).all()
    assert torch.equal(top_k_filter(logits, 0), logits)
    assert torch.equal(top_k_filter(logits, 5), logits)


def test_top_k_keeps_all_ties_at_the_kth_value():
    out = top_k_filter(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), 2)
    assert torch.isfinite(out).tolist() == [[False, True, True, False]]
    out = top_k_filter(torch.tensor([[3.0, 2.0, 2.0, 0.0]]), 2)
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "p, expected",
    [(0.3, [1, 0, 0, 0]), (0.5, [1, 0, 0, 0]), (0.8, [1, 1, 0, 0]), (0.81, [1, 1, 1, 0]),
     (0.95, [1, 1, 1, 0]), (0.96, [1, 1, 1, 1]), (1.0, [1, 1, 1, 1])],
)  # fmt: skip
def test_top_p_keeps_the_nucleus(p, expected, dtype):
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]], dtype=dtype)  # ranked 0.5, 0.3, 0.15, 0.05
    order = [1, 3, 0, 2]
    out = top_p_filter(probs.log(), p)
    assert torch.isfinite(out)[0, order].long().tolist() == expected
    kept = torch.isfinite(out)
    assert torch.equal(out[kept], probs.log()[kept])


def test_top_p_always_keeps_the_most_likely():
    out = top_p_filter(torch.tensor([[0.0, 10.0, 1.0]]), 1e-9)
    assert torch.isfinite(out).tolist() == [[False, True, False]]


def test_temperature_math():
    logits = torch.tensor([[1.0, 2.0, 4.0]])
    torch.testing.assert_close(apply_temperature(logits, 2.0), logits / 2)
    cold = torch.softmax(apply_temperature(logits, 0.5), -1)
    expected = torch.exp(2 * logits) / torch.exp(2 * logits).sum()
    torch.testing.assert_close(cold, expected)
    assert cold.max() > torch.softmax(logits, -1).max()  # below 1 sharpens
    with pytest.raises(ValueError):
        apply_temperature(logits, 0.0)


def test_temperature_zero_is_argmax():
    logits = torch.randn(50, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, temperature=0, top_k=3, top_p=0.5), logits.argmax(-1))


def _chi_square(ids: torch.Tensor, probs: list[float]) -> float:
    counts = torch.bincount(ids, minlength=len(probs)).double()
    expected = torch.tensor(probs, dtype=torch.float64) * len(ids)
    nonzero = expected > 0
    assert (counts[~nonzero] == 0).all()
    return float(((counts - expected)[nonzero] ** 2 / expected[nonzero]).sum())


def test_sampling_frequencies_match_probabilities():
    probs = [0.1, 0.2, 0.3, 0.4]
    logits = torch.tensor(probs).log().expand(40_000, -1)  # (N, V)
    generator = torch.Generator().manual_seed(0)
    # chi-square with 3 degrees of freedom: 16.3 is its 99.9 % quantile
    assert _chi_square(sample_next(logits, generator=generator), probs) < 16.3
    hot = sample_next(logits, temperature=2.0, generator=generator)
    flat = torch.tensor(probs).sqrt()
    assert _chi_square(hot, (flat / flat.sum()).tolist()) < 16.3
    top2 = sample_next(logits, top_k=2, generator=generator)
    assert _chi_square(top2, [0, 0, 3 / 7, 4 / 7]) < 10.8  # 1 dof
    nucleus = sample_next(logits, top_p=0.75, generator=generator)
    assert _chi_square(nucleus, [0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9]) < 13.8  # 2 dof


def test_sampling_with_a_seeded_generator_is_reproducible():
    logits = torch.randn(8, 20)
    a = sample_next(logits, generator=torch.Generator().manual_seed(3))
    b = sample_next(logits, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# ---- generate: seeds, state carrying, modes ------------------------------------------------


def test_same_seed_same_text_and_global_rng_untouched():
    vocab = StandInVocab("abcdefgh \n")
    model = small_model(vocab)
    rng = torch.get_rng_state()
    first = generate(model, vocab, prime="abc", length=60, seed=1)
    assert torch.equal(rng, torch.get_rng_state())
    assert first == generate(model, vocab, prime="abc", length=60, seed=1)
    assert first != generate(model, vocab, prime="abc", length=60, seed=2)
    assert len(first) == 1 and len(first[0]) == 60 and set(first[0]) <= set(vocab.symbols)


def test_greedy_equals_rerunning_the_whole_prefix():
    vocab = StandInVocab("abcdefgh \n")
    model = small_model(vocab, seed=4, cell="gru").eval()
    [text] = generate(model, vocab, prime="bad cafe", length=25, temperature=0)
    ids = list(vocab.encode("bad cafe"))
    for _ in range(25):  # the naive way: the whole prefix through forward at every step
        ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert text == vocab.decode(ids[len("bad cafe") :])


def test_prime_runs_once_then_length_minus_one_steps():
    model = scripted("abcdabcdabcd")
    [text] = generate(model, VOCAB, prime="xyzzy", length=10)
    assert text == "abcdabcdab"
    assert len(model.forward_inputs) == 1
    newline = VOCAB.symbols.index("\n")  # the start token, read before the prime
    assert model.forward_inputs[0].tolist() == [[newline, *VOCAB.encode("xyzzy")]]
    assert model.steps == 9  # the first token comes from the prime's last logits


def test_real_model_processes_each_position_once():
    vocab = StandInVocab("abcdefgh \n")
    model = small_model(vocab)
    lengths: list[int] = []
    # the embedding sees every token the model reads (the eval step bypasses the layer's forward)
    model.embedding.register_forward_hook(lambda module, args, out: lengths.append(args[0].numel()))
    generate(model, vocab, prime="abcabc", length=30, seed=0)
    assert lengths == [7] + [1] * 29  # start token + the 6 prime characters, then one each


def test_eval_mode_during_generation_and_training_mode_restored():
    model = scripted("abcd").train()
    generate(model, VOCAB, length=3)
    assert model.modes == [False, False, False] and model.training
    model.eval()
    generate(model, VOCAB, length=3)
    assert not model.training


def test_empty_prime_starts_from_newline_else_id_zero():
    model = scripted("ab")
    assert generate(model, VOCAB, length=2) == ["ab"]
    assert model.forward_inputs[0].tolist() == [[VOCAB.symbols.index("\n")]]
    no_newline = StandInVocab("xab")
    model = scripted("ab", vocab=no_newline)
    assert generate(model, no_newline, length=2) == ["ab"]
    assert model.forward_inputs[0].tolist() == [[0]]


def test_length_zero_returns_empty_text_without_running_the_model():
    model = scripted("ab")
    assert generate(model, VOCAB, prime="ab", length=0, num_samples=2) == ["", ""]
    assert model.forward_inputs == [] and model.steps == 0


def test_unknown_prime_characters():
    with pytest.raises(UserError, match="Q"):
        generate(scripted("ab"), VOCAB, prime="aQb", length=3)
    model = scripted("ab")
    generate(model, VOCAB, prime="aQb", length=2, unknown="skip")
    assert model.forward_inputs[0].tolist() == [[VOCAB.symbols.index("\n"), *VOCAB.encode("ab")]]


def test_num_samples_are_independent_streams():
    vocab = StandInVocab("abcdefgh \n")
    texts = generate(small_model(vocab), vocab, prime="ab", length=40, seed=0, num_samples=4)
    assert len(texts) == 4 and all(len(t) == 40 for t in texts)
    assert len(set(texts)) == 4


@pytest.mark.parametrize(
    "kwargs, flag",
    [({"length": -1}, "--length"), ({"temperature": -0.5}, "--temperature"),
     ({"temperature": math.nan}, "--temperature"), ({"top_p": 0.0}, "--top-p"),
     ({"top_p": 1.5}, "--top-p"), ({"top_k": -1}, "--top-k"), ({"num_samples": 0}, "--num-samples"),
     ({"num_samples": 2, "on_text": print}, "--num-samples"), ({"stop": ["a", ""]}, "--stop"),
     ({"unknown": "ignore"}, "--unknown")],
)  # fmt: skip
def test_bad_arguments_name_the_flag(kwargs, flag):
    with pytest.raises(UserError, match=flag):
        generate(scripted("ab"), VOCAB, **kwargs)


# ---- generate: stop strings and streaming --------------------------------------------------


def run(script: str, stop, length: int = 50, vocab: StandInVocab = VOCAB) -> tuple[str, list[str]]:
    pieces: list[str] = []
    model = ScriptedModel([list(vocab.encode(script))], len(vocab))
    [text] = generate(model, vocab, length=length, stop=stop, on_text=pieces.append)
    assert "".join(pieces) == text
    return text, pieces


def reference_stop(text: str, stops: list[str]) -> str:
    """The text up to the first stop string to complete, cut at its start (the spec, slowly)."""
    for end in range(1, len(text) + 1):
        found = [text[:end].find(s) for s in stops if s in text[:end]]
        if found:
            return text[: min(found)]
    return text


def test_stop_string_is_excluded_and_never_streamed():
    text, pieces = run("ababcdd", ["abc"])
    assert text == "ab" and "c" not in "".join(pieces)


def test_stop_string_overlapping_its_own_prefix():
    text, pieces = run("xababcab", ["abc"])
    assert text == "xab"
    assert pieces[0] == "x"  # "x" is final at once; "a", "ab" are held back


def test_without_a_stop_everything_is_streamed():
    text, pieces = run("abcdxyz", ["zz", "ca"], length=7)
    assert text == "abcdxyz" and len(pieces) >= 4
    text, pieces = run("abcd", [], length=4)
    assert pieces == ["a", "b", "c", "d"]


def test_the_earliest_stop_string_wins():
    assert run("xyabcd", ["bc", "yabcd", "abc"])[0] == "xy"
    assert run("xyabcd", "bc")[0] == "xya"  # a single string is one stop string


def test_held_back_text_is_flushed_at_the_end():
    text, pieces = run("dab", ["abc"], length=3)
    assert text == "dab" and pieces == ["d", "ab"]


def test_each_sample_stops_on_its_own():
    model = scripted("aaxbb", "xaaaa", "aaaaa")
    texts = generate(model, VOCAB, length=5, stop=["x"], num_samples=3)
    assert texts == ["aa", "", "aaaaa"]
    model = scripted("aax", "xaa")
    assert generate(model, VOCAB, length=5, stop=["x"], num_samples=2) == ["aa", ""]
    assert model.steps == 2  # every stream stopped: no further sampling


def test_byte_mode_streams_whole_characters():
    vocab = StandInVocab(kind="byte")
    text, pieces = run("héllo wörld", ["wö"], vocab=vocab)
    assert text == "héllo " and all("\ufffd" not in p for p in pieces)
    text, pieces = run("aé", ["zz"], length=2, vocab=vocab)  # cut mid-character: flushed
    assert text == "a\ufffd"


@settings(max_examples=60, deadline=None)
@given(
    script=st.text(alphabet="abc", min_size=1, max_size=20),
    stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=3),
)
def test_stop_strings_match_the_reference(script, stops):
    expected = reference_stop(script, stops)
    text, pieces = run(script, stops, length=len(script))
    assert text == expected
    emitted = ""
    for piece in pieces:  # every streamed piece is final: a prefix of the returned text
        emitted += piece
        assert expected.startswith(emitted)
