"""Turning a trained :class:`~rnnkit.models.seq2seq.Seq2Seq` into output token ids.

    ids = greedy(model, src, lengths, max_len=50)                    # argmax each step
    ids = sample(model, src, lengths, 50, temperature=0.8, generator=g)
    ids = beam_search(model, src, lengths, beam_width=5, max_len=50, length_penalty=1.0)
    hyps = beam_hypotheses(model, src, lengths, 5, 50)   # per input: [(score, ids), ...] best first

Each returns one list of target ids per input, without BOS and EOS: generation stops at EOS or
after ``max_len`` tokens. ``<pad>`` and ``<bos>`` are never generated. The decoder carries its
state and never re-reads its prefix. Call under ``torch.no_grad()`` with the model in eval mode.

Beam search keeps ``beam_width`` live hypotheses per input (batched over inputs and beams);
a hypothesis that emits EOS among the step's top ``beam_width`` candidates is finished with
score ``sum log p / length ** length_penalty`` (length counts the EOS); an input stops when it
has ``beam_width`` finished hypotheses (or at ``max_len``, when the live ones are finished as
they are) and returns its best-scoring one (``beam_hypotheses``: all of them, at most
``beam_width``, best first, with their scores). With ``beam_width=1`` this is greedy decoding.

Devices: everything runs where ``src`` is (the model's device). Per step the host reads only
what it decides on -- greedy and sampling: whether every row is done; beam search: the scores
and indices of each input's 2K best candidates, whose bookkeeping is Python -- and beam search
sends the chosen rows, tokens and scores back in pinned, non-blocking copies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rnnkit.data.tokens import BOS, EOS, PAD
from rnnkit.devices import to_device
from rnnkit.models.seq2seq import Seq2Seq, select_state

Choose = Callable[[Tensor], Tensor]  # logits (N, V) -> chosen ids (N,)


def _step_logits(model: Seq2Seq, token: Tensor, state, encoded) -> tuple[Tensor, object]:
    """One decoder step: logits (N, V) in float32 with PAD and BOS forbidden, and the state."""
    logits, state = model.decode(token[:, None], state, encoded)
    logits = logits[:, 0].float()  # (N, V)
    logits[:, PAD] = logits[:, BOS] = float("-inf")
    return logits, state


def _run(model: Seq2Seq, src: Tensor, lengths: Tensor, max_len: int, choose: Choose):
    encoded = model.encode(src, lengths)
    n = src.size(0)
    token = torch.full((n,), BOS, dtype=torch.long, device=src.device)
    state, done, out = encoded.state, torch.zeros(n, dtype=torch.bool, device=src.device), []
    for _ in range(max_len):
        logits, state = _step_logits(model, token, state, encoded)
        token = choose(logits).masked_fill(done, EOS)  # (N,)
        out.append(token)
        done |= token == EOS
        if bool(done.all()):
            break
    return _strip(torch.stack(out, 1).tolist()) if out else [[] for _ in range(n)]


def _strip(rows: list[list[int]]) -> list[list[int]]:
    return [row[: row.index(EOS)] if EOS in row else row for row in rows]


def greedy(model: Seq2Seq, src: Tensor, lengths: Tensor, max_len: int) -> list[list[int]]:
    """The most probable next token at every step."""
    return _run(model, src, lengths, max_len, lambda logits: logits.argmax(-1))


def sample(
    model: Seq2Seq,
    src: Tensor,
    lengths: Tensor,
    max_len: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Each next token drawn from softmax(logits / temperature)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")

    def choose(logits: Tensor) -> Tensor:
        probs = (logits / temperature).softmax(-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _run(model, src, lengths, max_len, choose)


def beam_search(
    model: Seq2Seq,
    src: Tensor,
    lengths: Tensor,
    beam_width: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """The best hypothesis per input under ``sum log p / length ** length_penalty``."""
    found = beam_hypotheses(model, src, lengths, beam_width, max_len, length_penalty)
    return [hyps[0][1] if hyps else [] for hyps in found]


def beam_hypotheses(
    model: Seq2Seq,
    src: Tensor,
    lengths: Tensor,
    beam_width: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> list[list[tuple[float, list[int]]]]:
    """Per input, the finished hypotheses ``(score, ids)``, best first (at most
    ``beam_width``; the first of equal scores is the one found first)."""
    if beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    n, k, device = src.size(0), beam_width, src.device
    encoded = model.encode(src, lengths)
    encoded = encoded.select(torch.arange(n, device=device).repeat_interleave(k))  # N*K rows
    state, token = encoded.state, torch.full((n * k,), BOS, dtype=torch.long, device=device)
    scores = torch.full((n, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per input at the start
    beams = _Beams(n, k, max_len, length_penalty)
    for t in range(max_len):
        logits, state = _step_logits(model, token, state, encoded)
        logp = logits.log_softmax(-1)  # (N*K, V)
        vocab = logp.size(-1)
        candidates = (scores[:, :, None] + logp.view(n, k, vocab)).view(n, k * vocab)
        top, index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (N, 2K), best first
        top, index = top.tolist(), index.tolist()
        live = [beams.advance(i, t, top[i], _beam_and_token(index[i], vocab)) for i in range(n)]
        if not any(beams.active):
            break
        rows = [i * k + beam for i, hyps in enumerate(live) for _, beam, _ in hyps]
        tokens = [tok for hyps in live for _, _, tok in hyps]
        beams.prefixes = [beams.prefixes[r] + [tok] for r, tok in zip(rows, tokens, strict=True)]
        chosen = torch.tensor([rows, tokens]), torch.tensor([s for h in live for s, _, _ in h])
        (rows_now, token), scores = to_device(chosen, device)  # (2, N*K) ids, (N*K,) scores
        state = select_state(state, rows_now)
        scores = scores.view(n, k)
    return [sorted(done, key=lambda d: -d[0])[:k] for done in beams.finished]


def _beam_and_token(flat: list[int], vocab: int) -> list[tuple[int, int]]:
    """Flat candidate indices over (beam, token) -> (beam, token) pairs."""
    return [divmod(f, vocab) for f in flat]


class _Beams:
    """Per-input bookkeeping of beam search: prefixes of the N*K live rows, finished
    hypotheses as (normalised score, tokens), and which inputs are still searching."""

    def __init__(self, n: int, k: int, max_len: int, alpha: float) -> None:
        self.k, self.max_len, self.alpha = k, max_len, alpha
        self.prefixes: list[list[int]] = [[] for _ in range(n * k)]
        self.finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
        self.active = [True] * n

    def advance(self, i: int, t: int, scores: list[float], candidates: list[tuple[int, int]]):
        """Input ``i`` at step ``t`` (candidates best first): finish those ending in EOS among
        the top ``k``, keep the first ``k`` others live. Returns ``k`` (score, beam, token)."""
        k, finished = self.k, self.finished[i]
        dummy = [(float("-inf"), 0, PAD)] * k
        if not self.active[i]:
            return dummy
        live = []
        for rank, (score, (beam, tok)) in enumerate(zip(scores, candidates, strict=True)):
            if score == float("-inf"):
                break
            prefix = self.prefixes[i * k + beam]
            if tok == EOS:
                if rank < k:
                    finished.append((score / (t + 1) ** self.alpha, prefix))
            elif len(live) < k:
                live.append((score, beam, tok))
        if t == self.max_len - 1:  # out of steps: the live hypotheses finish as they are
            for score, beam, tok in live:
                finished.append(
                    (score / (t + 1) ** self.alpha, self.prefixes[i * k + beam] + [tok])
                )
        if len(finished) >= k or t == self.max_len - 1:
            self.active[i] = False
            return dummy
        return live + dummy[len(live) :]
