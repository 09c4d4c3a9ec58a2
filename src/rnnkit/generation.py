"""Sampling text from a language model.

What is here: pure sampling functions of logits (``apply_temperature``, ``top_k_filter``,
``top_p_filter``, ``sample_next``) and the stateful ``generate``, which runs the prime through
the model once and then carries the recurrent state one token at a time -- it never re-runs the
prefix. Streaming (``on_text``) and stop strings are handled here too. What is not here: the
model (``rnnkit.models``), the vocabulary (``rnnkit.data``) and the command line
(``rnnkit.commands.sample``).

Speed: all samples run as one batch (one ``model.step`` and one draw per step), every drawn id
goes into one preallocated buffer that is also the next step's input, and the host reads the
ids at most once per step (only when stop strings or streaming need them, else once at the
end). The step itself is the model's: ``benchmarks/generation.py`` measures both.

Devices: generation runs where the model's parameters are. The prime goes there once, the id
buffer is allocated there and the draws use a ``torch.Generator`` on that device (a CUDA
generator for a model on CUDA), so nothing but the ids read above crosses to the host. A seed
therefore gives the same text on the same kind of device (the CPU's texts are those of every
earlier release); a CUDA generator draws other numbers than the CPU's, so the same seed gives
a different -- equally likely -- text on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError

#: the temperature of ``generate()``, ``rnnkit sample``, ``rnnkit serve`` and the samples
#: printed during training: a little below 1 (the model's own distribution), which reads better
DEFAULT_TEMPERATURE = 0.8
#: the length of ``generate()`` and ``rnnkit sample`` (tokens): one default for Python and the CLI
DEFAULT_LENGTH = 500

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
    proper prefix of a stop string is held back in ``pending`` (at most ``max(len(s)) - 1``
    characters). Final pieces are kept in a list and joined once, and a new token is matched
    against ``pending`` only, so each token costs O(stop lengths), not O(text so far).
    """

    def __init__(self, decoder: Decoder, stop: tuple[str, ...]) -> None:
        self.decoder, self.stop = decoder, stop
        self.prefixes = {s[:k] for s in stop for k in range(1, len(s))}  # proper prefixes
        self.longest = max((len(s) for s in stop), default=1)
        self.chars = set("".join(stop))  # text without these cannot start or end a stop string
        self.pieces: list[str] = []  # the final text, in pieces
        self.pending = ""  # decoded, not yet final: may be the start of a stop string
        self.stopped = False
        self.met_stop = False  # a stop string ended the text (not the length)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def feed(self, token: int) -> str:
        """Add one token; return the newly final text (maybe "")."""
        return self._advance(self.decoder.decode(token))

    def finish(self) -> str:
        """End of generation: flush the decoder and release whatever was held back."""
        if self.stopped:
            return ""
        piece = self._advance(self.decoder.flush())
        if not self.stopped:
            piece += self.pending
            self.pieces.append(self.pending)
        self.pending, self.stopped = "", True
        return piece

    def _advance(self, new: str) -> str:
        """Cut at the earliest stop string in ``pending + new``, else hold back a possible start.

        A stop string that ends inside ``new`` starts inside ``pending``: the part of it before
        ``new`` is a suffix of the text that is a proper prefix of a stop string, which is
        exactly what was held back.
        """
        if not new:
            return ""
        text = self.pending + new
        if self.chars.isdisjoint(new):  # no stop string ends in ``new`` or starts in it: final
            self.pieces.append(text)
            self.pending = ""
            return text
        starts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if starts:
            piece, self.pending, self.stopped = text[: min(starts)], "", True
            self.met_stop = True
        else:
            held = self._held(text)
            piece, self.pending = text[: len(text) - held], text[len(text) - held :]
        self.pieces.append(piece)
        return piece

    def _held(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that a stop string starts with."""
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            if text[-k:] in self.prefixes:
                return k
        return 0


class _Sampler:
    """:func:`sample_next` for a whole generation loop: the same ids from the same generator,
    written into a preallocated row (``out``) instead of a new tensor.

    What ``sample_next`` would do for nothing is decided once, not per step: the division by a
    temperature of 1, the top-k / top-p filters when they are off. The draw is the algorithm
    ``torch.multinomial`` uses for one sample -- the exponential race ``argmax(p / E)`` with
    ``E ~ Exp(1)`` per entry, which picks entry i with probability p_i -- done here without
    multinomial's checks of ``p`` (three reductions and three host syncs every call); the
    caller checks the logits once instead.
    """

    def __init__(
        self, temperature: float, top_k: int, top_p: float, generator: torch.Generator
    ) -> None:
        self.temperature, self.generator = temperature, generator
        self.filters = []
        if 0 < top_k:
            self.filters.append(partial(top_k_filter, k=top_k))
        if top_p < 1:
            self.filters.append(partial(top_p_filter, p=top_p))
        self.race: Tensor | None = None  # (N, V) float32, reused every step

    def __call__(self, logits: Tensor, out: Tensor) -> None:
        """Draw one id per row of ``logits`` (N, V) into ``out`` (N,) int64."""
        if self.temperature == 0:
            torch.argmax(logits, dim=-1, out=out)
            return
        if self.temperature != 1:
            logits = logits / self.temperature
        for keep in self.filters:
            logits = keep(logits)
        probs = torch.softmax(logits.float(), dim=-1)  # (N, V)
        if self.race is None or self.race.shape != probs.shape:
            self.race = torch.empty_like(probs)
        race = self.race.exponential_(generator=self.generator)  # E ~ Exp(1), (N, V)
        torch.argmax(torch.div(probs, race, out=race), dim=-1, out=out)


def generate(
    model: nn.Module,
    vocab: Vocabulary,
    *,
    prime: str = "",
    length: int = DEFAULT_LENGTH,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | None = None,
    unknown: str = "error",
    on_text: Callable[[str], None] | None = None,
    num_samples: int = 1,
    finish_reasons: list[str] | None = None,
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

    ``temperature`` defaults to :data:`DEFAULT_TEMPERATURE` (0.8), as in ``rnnkit sample``: the
    same seed gives the same text from Python and from the command line (``sample_next``, the
    pure function, keeps 1.0: the model's distribution unchanged).

    The ``num_samples`` streams run as one batch: one ``model.step`` and one draw per step for
    all of them. Sampling follows :func:`sample_next` with a private ``torch.Generator``
    seeded with ``seed`` (the global RNG is left alone). The same seed, ``num_samples`` and
    arguments give the same texts on the same machine; the streams share the generator, so a
    stream's text also depends on ``num_samples``. The model runs in eval mode under
    ``torch.inference_mode()``; its training mode is restored afterwards.

    Host syncs: with ``stop`` or ``on_text``, one per step (the N new ids, read together);
    without, none until the end.

    Returns the generated texts without the prime. A text ends right before the first
    occurrence of any ``stop`` string (excluded); each sample stops on its own. ``on_text``
    (only with ``num_samples == 1``) receives each piece of text as soon as it is final, and
    the pieces join to exactly the returned text: nothing that may belong to a stop string is
    emitted early. ``finish_reasons``, if given, receives each sample's reason: ``"stop"`` (a
    stop string ended it) or ``"length"`` (``length`` tokens drawn), in order.
    """
    stop = _check_arguments(length, temperature, top_k, top_p, stop, unknown, on_text, num_samples)
    ids = np.concatenate([_start_token(vocab), vocab.encode(prime, unknown=unknown)])
    if length == 0:
        if finish_reasons is not None:
            finish_reasons.extend(["length"] * num_samples)
        return ["" for _ in range(num_samples)]
    watch = bool(stop) or on_text is not None  # else nothing needs the text before the end
    streams = [_Stream(vocab.decoder(), stop) for _ in range(num_samples)] if watch else None

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            settings = (temperature, top_k, top_p)
            rows = _sample(model, ids, num_samples, length, streams, on_text, settings, seed)
    finally:
        model.train(was_training)
    if streams is None:
        if finish_reasons is not None:
            finish_reasons.extend(["length"] * num_samples)
        return [_decode(vocab.decoder(), row) for row in rows]
    for stream in streams:
        piece = stream.finish()
        if on_text is not None and piece:
            on_text(piece)
    if finish_reasons is not None:
        finish_reasons.extend("stop" if s.met_stop else "length" for s in streams)
    return [stream.text for stream in streams]


def _start_token(vocab: Vocabulary) -> np.ndarray:
    """The id of "\\n" (id 0 if the vocabulary has no newline), as a length-1 array."""
    newline = vocab.encode("\n", unknown="skip")
    return newline.astype(np.int64) if len(newline) == 1 else np.zeros(1, dtype=np.int64)


def _decode(decoder: Decoder, ids: list[int]) -> str:
    """The text of ``ids`` through a fresh incremental ``decoder``, flushed."""
    return "".join([decoder.decode(i) for i in ids]) + decoder.flush()


def _sample(model, ids, n, length, streams, on_text, settings, seed) -> list[list[int]] | None:
    """The loop: one forward over the prime, then ``length - 1`` steps carrying the state.

    Every drawn id goes into one preallocated buffer (``length``, N), whose row ``t - 1`` is
    also the token that step ``t`` reads. With ``streams`` (stop strings or streaming) each new
    row is read to the host once, as one list, and fed to the streams, and the loop ends when
    every stream has stopped; without, nothing is read until the end, when the buffer is
    returned as N lists of ids.
    """
    device = model_device(model)
    idx = to_device(torch.from_numpy(ids.astype(np.int64)), device)  # (P,), one copy
    out = model(idx.unsqueeze(0).expand(n, -1))  # idx (N, P)
    logits, state = out.logits[:, -1], out.state  # (N, V)
    if not bool(torch.isfinite(logits).all()):
        raise UserError("the model's logits are not finite (NaN or inf weights?): cannot sample")
    generator = torch.Generator(device=logits.device)  # draws on the model's device
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    draw = _Sampler(*settings, generator=generator)
    tokens = torch.empty(length, n, dtype=torch.long, device=logits.device)  # (T, N)
    live = n
    for t in range(length):
        if t:
            logits, state = model.step(tokens[t - 1], state)  # (N, V)
        draw(logits, out=tokens[t])
        if streams is None:
            continue
        for stream, token in zip(streams, tokens[t].tolist(), strict=True):  # the one sync
            if not stream.stopped:
                piece = stream.feed(token)
                live -= stream.stopped
                if on_text is not None and piece:
                    on_text(piece)
        if not live:
            break
    return None if streams is not None else tokens.T.tolist()


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
