"""generate() after the speed work: determinism, batched streams, streaming order, greedy
decoding, no leaks out of inference mode, host syncs per step, and the benchmark's own checks.

Behaviour only: no timing is asserted (``rnnkit bench --only generation`` and
benchmarks/generation.py measure speed).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnnkit.config import ModelConfig
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.generation import generate, sample_next
from rnnkit.models import LanguageModel, LMOutput

VOCAB = Vocab("char", list("abcdefgh \nxyz"))


def small_model(seed: int = 0, cell: str = "lstm", dtype=torch.float32) -> LanguageModel:
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, vocab_size=len(VOCAB), embed=8, hidden=16, layers=2)
    return LanguageModel(config).to(dtype)


class Scripted(nn.Module):
    """Row n emits scripts[n][0], scripts[n][1], ... whatever it reads; the state is the
    position (N,). Records the token tensors ``step`` receives. Does no host sync itself."""

    def __init__(self, scripts: list[str], vocab: Vocab = VOCAB) -> None:
        super().__init__()
        encoded = [list(vocab.encode(s)) for s in scripts]
        width = max(len(ids) for ids in encoded)
        rows = [ids + [0] * (width - len(ids)) for ids in encoded]
        self.scripts = torch.tensor(rows)  # (N, T)
        self.vocab_size = len(vocab)
        self.tokens: list[torch.Tensor] = []

    def _logits(self, position: torch.Tensor) -> torch.Tensor:
        ids = self.scripts.gather(1, position.clamp(max=self.scripts.size(1) - 1)[:, None])
        return torch.full((len(position), self.vocab_size), -50.0).scatter_(1, ids, 50.0)

    def forward(self, idx, targets=None, state=None):
        position = torch.zeros(idx.size(0), dtype=torch.long)
        logits = self._logits(position)[:, None].expand(-1, idx.size(1), -1)  # (N, L, V)
        return LMOutput(logits, None, position)

    def step(self, token, state):
        self.tokens.append(token)
        return self._logits(state + 1), state + 1


def reference_pieces(text: str, stops: list[str]) -> list[str]:
    """What on_text must receive, token by token (one character each): after token k the final
    text is text[:k] cut at the first completed stop string, or text[:k] less its longest
    suffix that begins a stop string; at the end whatever is held back is released."""
    pieces, final = [], ""
    for k in range(1, len(text) + 1):
        found = [text[:k].find(s) for s in stops if s in text[:k]]
        if found:
            pieces.append(text[len(final) : min(found)])
            return [p for p in pieces if p]
        longest = max((len(s) for s in stops), default=1)
        suffixes = [j for j in range(1, min(k, longest - 1) + 1)
                    if any(s.startswith(text[k - j : k]) for s in stops)]  # fmt: skip
        held = max(suffixes, default=0)
        pieces.append(text[len(final) : k - held])
        final = text[: k - held]
    pieces.append(text[len(final) :])
    return [p for p in pieces if p]


# ---- determinism and the batched path ------------------------------------------------------


@pytest.mark.parametrize("num_samples", [1, 4])
@pytest.mark.parametrize("kwargs", [{}, {"stop": ["zz"]}, {"temperature": 0.7, "top_k": 5}])
def test_same_seed_same_texts(num_samples, kwargs):
    model = small_model()
    run = lambda seed: generate(model, VOCAB, prime="ab", length=50, seed=seed,  # noqa: E731
                                num_samples=num_samples, **kwargs)  # fmt: skip
    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert len(first) == num_samples


@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(1.0, 0, 1.0), (0.8, 6, 1.0), (2.0, 0, 0.9), (0.5, 4, 0.7)]
)
def test_batched_streams_equal_an_independent_loop(temperature, top_k, top_p):
    """Each of N streams equals a loop written from the parts: forward over "\\n" + prime, then
    model.step on the whole batch and sample_next with a generator seeded the same way."""
    model = small_model(seed=1).eval()
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    texts = generate(model, VOCAB, prime="bad", length=40, seed=7, num_samples=3, **settings)
    generator = torch.Generator().manual_seed(7)
    ids = torch.tensor([list(VOCAB.encode("\nbad"))] * 3)  # (N, P)
    with torch.no_grad():
        out = model(ids)
        logits, state, rows = out.logits[:, -1], out.state, []
        for _ in range(40):
            token = sample_next(logits, **settings, generator=generator)  # (N,)
            rows.append(token)
            logits, state = model.step(token, state)
    expected = [VOCAB.decode(row) for row in torch.stack(rows, 1).tolist()]
    assert texts == expected
    assert len(set(texts)) == 3


def test_temperature_zero_is_argmax_step_by_step():
    model = small_model(seed=2, cell="gru", dtype=torch.float64).eval()
    texts = generate(model, VOCAB, prime="cafe", length=30, temperature=0, num_samples=2)
    with torch.no_grad():
        out = model(torch.tensor([list(VOCAB.encode("\ncafe"))]))
        logits, state, ids = out.logits[:, -1], out.state, []
        for _ in range(30):
            ids.append(int(logits[0].argmax()))
            logits, state = model.step(torch.tensor(ids[-1:]), state)
    assert texts == [VOCAB.decode(ids)] * 2


@pytest.mark.parametrize("vocab", [VOCAB, Vocab.byte()], ids=["char", "byte"])
def test_read_at_the_end_equals_read_every_step(vocab):
    """Without stop strings the ids are decoded once at the end; with a stop string that never
    occurs, every step: both give the same texts (byte mode: whole characters, and a cut
    multi-byte character flushed as U+FFFD)."""
    scripts = ["héllo wörld", "wé"] if vocab.kind == "byte" else ["abcxyz", "hgfedc"]
    width = len(scripts[0].encode())
    for model_kind in ("scripted", "real"):
        model = Scripted(scripts, vocab) if model_kind == "scripted" else None
        if model is None:
            torch.manual_seed(0)
            model = LanguageModel(ModelConfig(vocab_size=len(vocab), embed=8, hidden=16))
        free = generate(model, vocab, length=width, seed=1, num_samples=2)
        watched = generate(model, vocab, length=width, seed=1, num_samples=2, stop=["\x00\x01"])
        assert free == watched
    assert all(len(text) > 0 for text in free)
    texts = generate(Scripted(scripts, vocab), vocab, length=width, num_samples=2)
    assert texts[0] == scripts[0]
    if vocab.kind == "byte":  # cut after the first byte of "é": flushed as U+FFFD
        assert generate(Scripted(["wé"], vocab), vocab, length=2) == ["w\ufffd"]


# ---- stop strings and streaming -----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    scripts=st.lists(st.text(alphabet="abcx", min_size=1, max_size=15), min_size=2, max_size=4),
    stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=3), min_size=1, max_size=3),
    length=st.integers(1, 15),
)
def test_each_batched_stream_stops_on_its_own(scripts, stops, length):
    scripts = [(s + "y" * 16)[:16] for s in scripts]  # "y" is in no stop string
    model = Scripted(scripts)
    texts = generate(model, VOCAB, length=length, stop=stops, num_samples=len(scripts))
    for text, script in zip(texts, scripts, strict=True):
        assert text == "".join(reference_pieces(script[:length], stops))
        assert len(text) <= length
    # the loop ends with the token on which the last stream stopped (or at length)
    ends = [next((k for k in range(1, length + 1) if any(s in script[:k] for s in stops)), length)
            for script in scripts]  # fmt: skip
    assert len(model.tokens) == max(ends) - 1


@settings(max_examples=60, deadline=None)
@given(
    script=st.text(alphabet="abc", min_size=1, max_size=20),
    stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=0, max_size=3),
)
def test_streamed_pieces_arrive_as_soon_as_final(script, stops):
    pieces: list[str] = []
    [text] = generate(Scripted([script]), VOCAB, length=len(script), stop=stops,
                      on_text=pieces.append)  # fmt: skip
    assert pieces == reference_pieces(script, stops)
    assert "".join(pieces) == text


def test_streaming_a_long_text_with_a_stop_string():
    script = "abcab" * 400 + "xyz" + "ab" * 50
    pieces: list[str] = []
    [text] = generate(Scripted([script]), VOCAB, length=len(script), stop=["cx", "xy"],
                      on_text=pieces.append)  # fmt: skip
    assert text == "abcab" * 400 and "".join(pieces) == text
    assert pieces == reference_pieces(script[:2010], ["cx", "xy"])


# ---- inference mode, syncs, buffers -----------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_inference_mode_does_not_leak(training):
    model = small_model(seed=3).train(training)
    grads = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = grads[name].clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generate(model, VOCAB, prime="ab", length=20, seed=0, num_samples=2, stop=["zz"])
    assert model.training == training
    for name, p in model.named_parameters():
        assert p.requires_grad and not p.is_inference()
        assert torch.equal(p.grad, grads[name]) and torch.equal(p.detach(), before[name])
    model.zero_grad()
    loss = model(torch.tensor([[0, 1, 2]]), targets=torch.tensor([[1, 2, 3]])).loss
    loss.backward()  # the model still trains after generating
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.rnn.parameters())


SYNCS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


def count_syncs(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("watch", ["stop", "on_text", None])
def test_one_host_sync_per_step_at_most(monkeypatch, watch):
    length, n = 30, 1 if watch == "on_text" else 3
    model = Scripted(["abcd" * 8] * n)
    kwargs = {"stop": ["zz"]} if watch == "stop" else {}
    if watch == "on_text":
        kwargs["on_text"] = lambda piece: None
    calls = count_syncs(monkeypatch)
    texts = generate(model, VOCAB, length=length, num_samples=n, **kwargs)
    monkeypatch.undo()
    assert texts == [("abcd" * 8)[:length]] * n
    assert len(model.tokens) == length - 1
    # one check of the prime's logits, then one read per step -- or one at the end
    assert calls == ["__bool__"] + ["tolist"] * (length if watch else 1)


def test_tokens_live_in_one_preallocated_buffer():
    model = Scripted(["abcdefgh"] * 2)
    generate(model, VOCAB, length=8, num_samples=2)
    storages = {t.untyped_storage().data_ptr() for t in model.tokens}
    assert len(model.tokens) == 7 and len(storages) == 1
    assert [t.tolist() for t in model.tokens] == [[VOCAB.symbols.index(c)] * 2 for c in "abcdefg"]


def test_non_finite_logits_are_an_error():
    model = small_model()
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    with pytest.raises(UserError, match="not finite"):
        generate(model, VOCAB, length=5)


# ---- the benchmark's own pieces (no timing asserted) ------------------------------------------


def test_benchmark_contenders_draw_the_same_text():
    """The hand-written nn.LSTM and nn.LSTMCell loops of rnnkit.benchmark.generation, given the
    model's weights and the same seed, write what generate() writes: the benchmark compares
    like with like."""
    from rnnkit.benchmark import generation as bench

    model = bench.make_model({"vocab": 65, "embed": 8, "hidden": 16, "layers": 2})
    vocab = bench.make_vocab(65)
    for seed in (2, 5):
        lstm, cells = bench.hand_parts(model), bench.hand_parts(model, cells=True)
        text = bench.hand_loop(lstm, vocab, 30, seed)
        assert text == bench.hand_cell_loop(cells, vocab, 30, seed)
        assert text == generate(model, vocab, length=30, temperature=1.0, seed=seed)[0]
    other = bench.hand_loop(bench.hand_parts(model), vocab, 30, 3)
    assert other != text  # the seed matters: the equality above is not a constant text
