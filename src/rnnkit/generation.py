"""Sampling text from a language model.

What is here: pure sampling functions of logits (``apply_temperature``, ``top_k_filter``,
``top_p_filter``, ``sample_next``) and the stateful ``generate``, which runs the prime through
the model once and then carries the recurrent state one token at a time -- it never re-runs the
prefix. Streaming (``on_text``) and stop strings are handled here too. What is not here: the
model (``rnnkit.models``), the vocabulary (``rnnkit.data``) and the command line (``cli.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.errors import UserError

# ---- pure functions of logits (..., V) ---------------------------------------------------------


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature`` (temperature > 0): below 1 sharpens, above 1 flattens."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r} (use 0 for greedy)")
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, set the others to -inf.

    ``k <= 0`` or ``k >= V`` returns ``logits`` unchanged. Ties at the k-th largest value are
    all kept, so a row may keep more than ``k`` entries when values are equal.
    """
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass is
    >= ``p`` (the most likely token always stays), set the others to -inf. ``p >= 1``
    returns ``logits`` unchanged.

    A token is kept when the mass of the tokens ranked above it is below ``p``; that mass is
    summed in float64 and compared with a 1e-6 tolerance, so that [0.5, 0.3, ...] with p=0.8
    keeps exactly two tokens despite rounding. Ties are ranked arbitrarily.
    """
    if p >= 1:
        return logits
    probs = torch.softmax(logits.double(), dim=-1)  # (..., V)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_above = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # (..., V)
    keep_sorted = mass_above < p - 1e-6
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token id per row of ``logits`` (N, V) -> (N,).

    ``temperature == 0`` is greedy (argmax). Otherwise: temperature, then top-k, then top-p,
    then ``torch.multinomial`` with ``generator`` (the global RNG if None).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits, temperature)
    logits = top_p_filter(top_k_filter(logits, top_k), top_p)
    probs = torch.softmax(logits.float(), dim=-1)  # (N, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (N,)


# ---- stateful generation -------------------------------------------------------------------------


class Decoder(Protocol):
    """Incremental decoding: ``decode`` may return "" mid UTF-8 sequence; ``flush`` the rest."""

    def decode(self, id: int) -> str: ...

    def flush(self) -> str: ...


class Vocabulary(Protocol):
    """What ``generate`` needs of ``rnnkit.data.vocab.Vocab``."""

    symbols: list[str]
    kind: str

    def __len__(self) -> int: ...

    def encode(self, text: str, unknown: str = "error") -> np.ndarray: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def decoder(self) -> Decoder: ...


class _Stream:
    """One generated text: incremental decoding, stop strings, and the part that is final.

    Text is final once no stop string can still begin inside it: the longest suffix that is a
    proper prefix of a stop string is held back (at most ``max(len(s)) - 1`` characters).
    """

    def __init__(self, decoder: Decoder, stop: tuple[str, ...]) -> None:
        self.decoder, self.stop = decoder, stop
        self.text = ""
        self.emitted = 0  # text[:emitted] has been handed out and can no longer change
        self.stopped = False

    def feed(self, token: int) -> str:
        """Add one token; return the newly final text (maybe "")."""
        before = len(self.text)
        self.text += self.decoder.decode(token)
        return self._advance(before)

    def finish(self) -> str:
        """End of generation: flush the decoder and release whatever was held back."""
        if self.stopped:
            return ""
        before = len(self.text)
        self.text += self.decoder.flush()
        piece = self._advance(before)
        piece += self.text[self.emitted :]
        self.emitted, self.stopped = len(self.text), True
        return piece

    def _advance(self, before: int) -> str:
        """Cut at a stop string that ends after ``before``, else hold back a possible start."""
        starts = [self.text.find(s, max(0, before - len(s) + 1)) for s in self.stop]
        starts = [i for i in starts if i >= 0]
        if starts:
            self.text, self.stopped = self.text[: min(starts)], True
            end = len(self.text)
        else:
            end = len(self.text) - self._held()
        piece = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return piece

    def _held(self) -> int:
        longest = max((len(s) for s in self.stop), default=1)
        for k in range(min(longest - 1, len(self.text)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0


def generate(
    model: nn.Module,
    vocab: Vocabulary,
    *,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    unknown: str = "error",
    on_text: Callable[[str], None] | None = None,
    num_samples: int = 1,
) -> list[str]:
    """Sample ``num_samples`` continuations of ``prime``, ``length`` tokens each at most.

    ``model`` is a :class:`rnnkit.models.LanguageModel` or anything with the same
    ``model(idx) -> .logits, .state`` and ``model.step(token, state) -> (logits, state)``.
    The prime is encoded with ``vocab.encode(prime, unknown=unknown)`` and run through the
    model in one forward call; the first token is sampled from the prime's last logits, then
    each further token from one ``model.step`` carrying the state: one forward + ``length - 1``
    steps, never re-running the prefix. The model first reads a start token, the vocabulary's
    "\\n" (or id 0 if it has none), then the prime: a model trained by truncated BPTT rarely
    sees its zero state, and text after a line break is what the zero state should stand for.
    The start token is not part of the output.

    Sampling follows :func:`sample_next` with a private ``torch.Generator`` seeded with
    ``seed`` (the same seed gives the same text; the global RNG is left alone). The model runs
    in eval mode under ``torch.inference_mode()``; its training mode is restored afterwards.

    Returns the generated texts without the prime. A text ends right before the first
    occurrence of any ``stop`` string (excluded); each sample stops on its own. ``on_text``
    (only with ``num_samples == 1``) receives each piece of text as soon as it is final, and
    the pieces join to exactly the returned text: nothing that may belong to a stop string is
    emitted early.
    """
    stop = _check_arguments(length, temperature, top_k, top_p, stop, unknown, on_text, num_samples)
    ids = np.concatenate([_start_token(vocab), vocab.encode(prime, unknown=unknown)])
    streams = [_Stream(vocab.decoder(), stop) for _ in range(num_samples)]
    if length == 0:
        return ["" for _ in streams]

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            _sample(model, ids, streams, length, temperature, top_k, top_p, seed, on_text)
    finally:
        model.train(was_training)
    for stream in streams:
        piece = stream.finish()
        if on_text is not None and piece:
            on_text(piece)
    return [stream.text for stream in streams]


def _start_token(vocab: Vocabulary) -> np.ndarray:
    """The id of "\\n" (id 0 if the vocabulary has no newline), as a length-1 array."""
    newline = vocab.encode("\n", unknown="skip")
    return newline.astype(np.int64) if len(newline) == 1 else np.zeros(1, dtype=np.int64)


def _sample(model, ids, streams, length, temperature, top_k, top_p, seed, on_text) -> None:
    """The loop: one forward over the prime, then ``length - 1`` steps carrying the state."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    idx = torch.as_tensor(ids, dtype=torch.long, device=device)
    idx = idx.unsqueeze(0).expand(len(streams), -1)  # (N, P)
    out = model(idx)
    logits, state = out.logits[:, -1], out.state  # (N, V)
    generator = torch.Generator(device=logits.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    draw = partial(
        sample_next, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    token = draw(logits)  # (N,)
    for produced in range(1, length + 1):
        for stream, t in zip(streams, token.tolist(), strict=True):
            if not stream.stopped:
                piece = stream.feed(t)
                if on_text is not None and piece:
                    on_text(piece)
        if produced == length or all(stream.stopped for stream in streams):
            return
        logits, state = model.step(token, state)  # (N, V)
        token = draw(logits)  # (N,)


def _check_arguments(length, temperature, top_k, top_p, stop, unknown, on_text, num_samples):
    """Reject impossible arguments, naming the flag; return the stop strings as a tuple."""

    def need(ok: bool, flag: str, expected: str, value) -> None:
        if not ok:
            raise UserError(f"--{flag} must be {expected}, got {value!r}")

    need(isinstance(length, int) and length >= 0, "length", "an integer >= 0", length)
    ok = isinstance(temperature, int | float) and math.isfinite(temperature) and temperature >= 0
    need(ok, "temperature", "a number >= 0 (0: greedy)", temperature)
    need(isinstance(top_k, int) and top_k >= 0, "top-k", "an integer >= 0 (0: off)", top_k)
    need(0 < top_p <= 1, "top-p", "in (0, 1] (1: off)", top_p)
    need(isinstance(num_samples, int) and num_samples >= 1, "num-samples", ">= 1", num_samples)
    if on_text is not None:
        need(num_samples == 1, "num-samples", "1 when streaming (on_text)", num_samples)
    need(unknown in ("error", "skip"), "unknown", "'error' or 'skip'", unknown)
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    need(all(isinstance(s, str) and s for s in stop), "stop", "non-empty strings", stop)
    return stop
