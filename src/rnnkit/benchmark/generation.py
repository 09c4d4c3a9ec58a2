"""Generation speed of the canonical character model: rnnkit ``generate()`` against the loop a
user writes by hand, for one stream and a batch of 64 (``rnnkit bench --device cuda``: 1,024),
and against the memory-bandwidth bound.

The model: vocabulary 65, embedding 64, a 2-layer LSTM of 512 units, float32, random weights
(speed does not depend on them), eval mode. Contenders, interleaved (see ``timing.py``):

    rnnkit      generate(model, vocab, length=T, temperature=1.0, seed=0): one forward over
                "\\n", then one LanguageModel.step per token (torch's one-step cell kernels in
                eval mode); temperature 1, the loops' plain softmax
    rnnkit xN   the same with num_samples=N (64; 1,024 on a GPU): one batch of N streams, one
                step for all
    loop        what a user writes (after pytorch/examples word_language_model/generate.py):
                nn.Embedding + nn.LSTM + nn.Linear holding the same weights, nn.LSTM called on
                one token at a time with its state carried, softmax, torch.multinomial and
                ``.item()`` per step
    loop-cell   the same loop with one nn.LSTMCell per layer: the stronger hand-written
                reference (nn.LSTM pays its fused kernel's set-up on every token)

All four read "\\n" first and draw with a generator seeded alike: with the same seed they write
the same text (``text_equals_loop`` checks it on every measurement).

One stream reads every weight once per token, so its speed is bounded by how fast the weights
stream from memory: bound = copy bandwidth (bytes read + written per second by ``dst.copy_``)
/ bytes of weights read per step (every LSTM and head parameter and one embedding row,
float32; ~13 MB here). Two bounds are reported:

* **DRAM**: the copy of a 256 MB tensor, far larger than any cache -- the definition of
  ``gen_bandwidth_fraction`` = single-stream chars/s / DRAM bound (target >= 0.6). As the
  weights may stay in a large L2/L3 between steps, this fraction can exceed 1.
* **cache**: the copy of a tensor of the weights' size -- ``gen_cache_bandwidth_fraction``,
  the tighter bound where the weights fit in the caches.

Both are yardsticks, not hard limits: a step only reads its weights, while a copy also writes
(and reads each destination line before writing it), so a step can beat either bound.
Many streams are not bandwidth-bound but compute-bound: each character costs 2 FLOPs per
weight-matrix element (~6.6 MFLOP here), ``gen_batch64_gflops`` is the rate 64 streams achieve,
to be compared with the fp32 GEMM rate of the ``machine`` section.

Other figures: ``gen_ratio_vs_loop`` = rnnkit / loop chars/s (target >= 2),
``gen_ratio_vs_loop_cell`` = rnnkit / loop-cell, ``gen_batch64_over_single`` = rnnkit x64 /
rnnkit chars/s (target >= 20; the batch figures are named by their stream count N:
``gen_batch1024_over_single`` for 1,024, target >= 200 on a GPU). Timings use the wall clock
(``clock="cpu"``: the process's CPU time, which leaves out the time other processes hold the
core; one thread only; not on an accelerator, whose work is not the process's CPU time).

On another device (``device=``) every contender runs there -- the model, the loops' tokens and
their generators -- and the copies measure that device's memory; the timing synchronises the
device around each call (the loops read each token to the host anyway, ``generate()`` only at
the end).
"""

from __future__ import annotations

import statistics
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from rnnkit.benchmark.shapes import CANONICAL
from rnnkit.benchmark.timing import interleaved
from rnnkit.data.vocab import Vocab
from rnnkit.devices import model_device
from rnnkit.models import LanguageModel

COPY_MEGABYTES = 256


@dataclass(frozen=True)
class GenerationSpeed:
    """chars/s of each contender and the copy bandwidths they are compared with."""

    rnnkit_chars_per_s: float
    loop_chars_per_s: float
    loop_cell_chars_per_s: float
    batch_chars_per_s: float  # all streams together
    streams: int  # how many streams the batch ran (N)
    weight_bytes_per_step: int
    flops_per_char: int  # 2 x the elements of every weight matrix (LSTM and head)
    copy_gbps: float  # 256 MB copy: DRAM
    cache_copy_gbps: float  # weights-sized copy: caches
    text_equals_loop: bool

    @property
    def bound_chars_per_s(self) -> float:
        return self.copy_gbps * 1e9 / self.weight_bytes_per_step

    @property
    def cache_bound_chars_per_s(self) -> float:
        return self.cache_copy_gbps * 1e9 / self.weight_bytes_per_step

    def figures(self) -> dict[str, float | int | bool]:
        """The ``gen_*`` figures of ``rnnkit bench`` (the batch's named by its stream count)."""
        r, n = self.rnnkit_chars_per_s, self.streams
        return {
            "gen_chars_per_s": r,
            "gen_loop_chars_per_s": self.loop_chars_per_s,
            "gen_loop_cell_chars_per_s": self.loop_cell_chars_per_s,
            "gen_ratio_vs_loop": r / self.loop_chars_per_s,
            "gen_ratio_vs_loop_cell": r / self.loop_cell_chars_per_s,
            "gen_streams": n,
            f"gen_batch{n}_chars_per_s": self.batch_chars_per_s,
            f"gen_batch{n}_over_single": self.batch_chars_per_s / r,
            f"gen_batch{n}_gflops": self.batch_chars_per_s * self.flops_per_char / 1e9,
            "gen_weight_mb_per_step": self.weight_bytes_per_step / 1e6,
            "gen_copy_gbps": self.copy_gbps,
            "gen_cache_copy_gbps": self.cache_copy_gbps,
            "gen_bound_chars_per_s": self.bound_chars_per_s,
            "gen_cache_bound_chars_per_s": self.cache_bound_chars_per_s,
            "gen_bandwidth_fraction": r / self.bound_chars_per_s,
            "gen_cache_bandwidth_fraction": r / self.cache_bound_chars_per_s,
            "gen_text_equals_loop": self.text_equals_loop,
        }


def make_model(shape: dict | None = None, seed: int = 0, device=None) -> LanguageModel:
    """An LSTM LanguageModel of the canonical shape (or ``shape``), eval mode, on ``device``
    (the CPU when None)."""
    from rnnkit.config import ModelConfig

    c = shape or CANONICAL
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=c["vocab"], embed=c["embed"], hidden=c["hidden"],
                         layers=c["layers"], cell="lstm")  # fmt: skip
    return LanguageModel(config).eval().to(device or "cpu")


def make_vocab(size: int) -> Vocab:
    """A char vocabulary of ``size`` printable symbols, "\\n" among them."""
    symbols = sorted(set(string.printable) - set(string.whitespace) - {"~"}) + [" ", "\n"]
    return Vocab("char", sorted(symbols[-size:]))


def hand_parts(model: LanguageModel, cells: bool = False):
    """nn.Embedding, nn.LSTM (or a list of nn.LSTMCell, one per layer) and nn.Linear holding
    ``model``'s weights, on ``model``'s device."""
    c, device = model.config, model_device(model)
    embedding, head = nn.Embedding(c.vocab_size, c.embed), nn.Linear(c.hidden, c.vocab_size)
    embedding.load_state_dict(model.embedding.state_dict())
    head.load_state_dict(model.head.state_dict())
    if not cells:
        lstm = nn.LSTM(c.embed, c.hidden, c.layers)
        lstm.load_state_dict(model.rnn.state_dict())
        return embedding.eval().to(device), lstm.eval().to(device), head.eval().to(device)
    stack = [nn.LSTMCell(c.embed if k == 0 else c.hidden, c.hidden) for k in range(c.layers)]
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    for k, cell in enumerate(stack):
        cell.load_state_dict({n: getattr(model.rnn, f"{n}_l{k}") for n in names})
    stack = [cell.to(device) for cell in stack]
    return embedding.eval().to(device), stack, head.eval().to(device)


def hand_loop(parts, vocab: Vocab, length: int, seed: int) -> str:
    """The generation loop a user writes with nn.LSTM; reads "\\n" first, like generate()."""
    embedding, lstm, head = parts
    device = embedding.weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    token = torch.tensor([[vocab.symbols.index("\n")]], device=device)  # (1, 1)
    hidden, chars = None, []
    with torch.no_grad():
        for _ in range(length):
            out, hidden = lstm(embedding(token), hidden)  # (1, 1, H)
            probs = torch.softmax(head(out[-1, 0]), dim=-1)  # (V,)
            idx = torch.multinomial(probs, 1, generator=generator).item()
            token.fill_(idx)
            chars.append(vocab.symbols[idx])
    return "".join(chars)


def hand_cell_loop(parts, vocab: Vocab, length: int, seed: int) -> str:
    """The same loop with one nn.LSTMCell per layer."""
    embedding, stack, head = parts
    device = embedding.weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    token = torch.tensor([vocab.symbols.index("\n")], device=device)  # (1,)
    states, chars = [None] * len(stack), []
    with torch.no_grad():
        for _ in range(length):
            x = embedding(token)  # (1, E)
            for k, cell in enumerate(stack):
                states[k] = cell(x, states[k])
                x = states[k][0]  # (1, H)
            probs = torch.softmax(head(x[0]), dim=-1)  # (V,)
            idx = torch.multinomial(probs, 1, generator=generator).item()
            token.fill_(idx)
            chars.append(vocab.symbols[idx])
    return "".join(chars)


def weight_bytes_per_step(model: LanguageModel) -> int:
    """Bytes one stream's step reads: every recurrent and head parameter and one embedding row,
    at their element sizes."""
    params = [*model.rnn.parameters(), *model.head.parameters()]
    row = model.embedding.weight[0]
    return sum(p.numel() * p.element_size() for p in params) + row.numel() * row.element_size()


def flops_per_char(model: LanguageModel) -> int:
    """2 x the elements of every weight matrix a step multiplies by (LSTM and head)."""
    matrices = [p for name, p in model.rnn.named_parameters() if name.startswith("weight")]
    return 2 * sum(p.numel() for p in [*matrices, model.head.weight])


def copy_gbps(nbytes: int, rounds: int = 5, device=None) -> float:
    """GB/s moved (read + written) by ``dst.copy_(src)`` of ``nbytes`` of float32 on ``device``
    (the CPU when None); small copies are repeated to last about a millisecond per timed call."""
    src = torch.rand(max(nbytes // 4, 1), device=device)
    dst = torch.empty_like(src)
    repeat = max(1, 2**20 // max(nbytes, 1))

    def copy() -> None:
        for _ in range(repeat):
            dst.copy_(src)

    seconds = interleaved({"copy": copy}, rounds=rounds, device=device)["copy"]
    return 2 * src.numel() * 4 * repeat / seconds / 1e9


def timed(
    contenders: dict[str, Callable[[], object]], rounds: int, clock: str, device=None
) -> dict[str, float]:
    """:func:`interleaved` medians by the wall clock (``device`` synchronised around each
    call), or by the process's CPU time (the CPU only)."""
    if clock == "wall":
        return interleaved(contenders, rounds=rounds, device=device)
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"clock='cpu' times the CPU only, not {torch.device(device)}")
    spent: dict[str, list[float]] = {name: [] for name in contenders}

    def on_cpu(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            start = time.process_time()
            fn()
            spent[name].append(time.process_time() - start)

        return run

    interleaved({name: on_cpu(name, fn) for name, fn in contenders.items()}, rounds=rounds)
    return {name: statistics.median(times[1:]) for name, times in spent.items()}  # 1 warm-up


def measure_generation(
    rounds: int = 9, *, length: int = 200, batch: int = 64, batch_length: int = 50,
    copy_megabytes: float = COPY_MEGABYTES, clock: str = "wall", shape: dict | None = None,
    device=None,
) -> GenerationSpeed:  # fmt: skip
    """chars/s of the four contenders, interleaved over ``rounds``: ``length`` characters for
    one stream, ``batch`` streams of ``batch_length`` characters; then the two copy bandwidths.
    ``shape``: a smaller model for tests (keys as ``CANONICAL``); ``device``: where all of it
    runs (the CPU when None)."""
    from rnnkit.generation import generate

    model = make_model(shape, device=device)
    vocab = make_vocab(model.config.vocab_size)
    parts, cell_parts = hand_parts(model), hand_parts(model, cells=True)
    contenders = {
        "rnnkit": partial(generate, model, vocab, length=length, temperature=1.0, seed=0),
        "loop": partial(hand_loop, parts, vocab, length, seed=0),
        "loop-cell": partial(hand_cell_loop, cell_parts, vocab, length, seed=0),
        "batch": partial(
            generate, model, vocab, length=batch_length, temperature=1.0, seed=0, num_samples=batch
        ),
    }
    seconds = timed(contenders, rounds, clock, device)
    check = min(length, 40)
    text = generate(model, vocab, length=check, temperature=1.0, seed=1)[0]  # as the loops
    same = text == hand_loop(parts, vocab, check, 1) == hand_cell_loop(cell_parts, vocab, check, 1)
    nbytes = weight_bytes_per_step(model)
    return GenerationSpeed(
        rnnkit_chars_per_s=length / seconds["rnnkit"],
        loop_chars_per_s=length / seconds["loop"],
        loop_cell_chars_per_s=length / seconds["loop-cell"],
        batch_chars_per_s=batch * batch_length / seconds["batch"],
        streams=batch,
        weight_bytes_per_step=nbytes,
        flops_per_char=flops_per_char(model),
        copy_gbps=copy_gbps(int(copy_megabytes * 2**20), max(3, rounds // 2), device),
        cache_copy_gbps=copy_gbps(nbytes, max(5, rounds), device),
        text_equals_loop=same,
    )
