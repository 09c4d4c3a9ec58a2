"""Generation speed: rnnkit ``generate()`` against the loop a user would write, 1 and 64 streams.

The model is the issue's canonical shape -- vocabulary 65, embedding 64, a 2-layer LSTM of 512
units, float32, random weights (speed does not depend on them). Contenders, timed side by side
in one process (each repeat runs every contender once, in an order that rotates; medians):

    rnnkit          generate(model, vocab, length=T, seed=...) with LanguageModel as it is
    rnnkit-cells    the same with ``CellStepLM``: LanguageModel whose eval ``step`` runs torch's
                    one-step cell kernels layer by layer (proposed for language_model.py)
    rnnkit-fast     the same with ``FastStepLM``: an eval ``step`` on weights prepared once
                    (transposed, biases summed, layer 0's input projection as a table)
    loop            what a user writes (after pytorch/examples word_language_model/generate.py):
                    nn.Embedding + nn.LSTM + nn.Linear holding the same weights, the LSTM called
                    on one token at a time with its state carried, softmax, torch.multinomial,
                    ``.item()`` per step
    ... x64         the rnnkit contenders with num_samples=64 (one batch of 64 streams)

Printed: chars/s of each; the copy bandwidth (``dst.copy_(src)`` of 256 MB float32, bytes read +
written / s) and the single-stream bound it gives, bandwidth / bytes of weights read per step
(every recurrent, input and head parameter, float32); and the ratios

    gen_ratio_vs_loop        rnnkit chars/s / loop chars/s, one stream (target >= 2)
    gen_bandwidth_fraction   rnnkit chars/s / the bound, one stream (target >= 0.6)
    gen_batch64_over_single  rnnkit x64 chars/s / rnnkit chars/s (target >= 20)

each for the three rnnkit contenders. ``--steps`` also times one ``step`` of five
implementations at batch 1 and 64 (which path a step should take). Timings are never asserted: the
machines are shared and noisy; only ratios measured side by side mean anything.

    python benchmarks/generation.py                  # threads 1 and 2
    python benchmarks/generation.py --threads 1 --steps --json gen.json
    python benchmarks/generation.py --quick          # a smoke run

``measure(threads=1, repeats=5) -> dict`` is the importable entry point.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import string
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from torch import _VF, Tensor, nn

from rnnkit.cells import LSTMState
from rnnkit.config import ModelConfig
from rnnkit.data.vocab import Vocab
from rnnkit.generation import generate
from rnnkit.models import LanguageModel
from rnnkit.unroll import step_function

SHAPE = {"vocab_size": 65, "embed": 64, "hidden": 512, "layers": 2}
TARGETS = {"gen_ratio_vs_loop": 2.0, "gen_bandwidth_fraction": 0.6, "gen_batch64_over_single": 20.0}
COPY_BYTES = 256 * 2**20
VARIANTS = (
    ("", "rnnkit"),
    ("_cells", "rnnkit-cells"),
    ("_fast", "rnnkit-fast"),
)  # key suffix, name


class CellStepLM(LanguageModel):
    """LanguageModel whose ``step`` runs torch's one-step cell kernels, layer by layer, in
    eval mode (the proposal for language_model.py).

    ``LanguageModel.step`` sends a length-1 sequence through the fused multi-layer kernel,
    which on CPU goes to oneDNN (``aten::mkldnn_rnn_layer``): its per-call setup is paid on
    every token, several times the two matrix-vector products a step needs. The cell kernels
    (``_VF.lstm_cell``, what ``nn.LSTMCell`` calls) do just the step.
    """

    _CELLS = {
        ("lstm", "tanh"): _VF.lstm_cell,
        ("gru", "tanh"): _VF.gru_cell,
        ("rnn", "tanh"): _VF.rnn_tanh_cell,
        ("rnn", "relu"): _VF.rnn_relu_cell,
    }

    def step(self, token: Tensor, state=None):
        rnn = self.rnn
        cell = self._CELLS.get((rnn.mode, rnn.nonlinearity))
        if self.training or cell is None or rnn.bidirectional or rnn.proj_size:
            return super().step(token, state)
        if state is None:
            state = self.initial_state(token.size(0), token.device)
        lstm = rnn.mode == "lstm"
        x = self.embedding(token)  # (N, E)
        hs, cs = [], []
        for depth, weights in enumerate(rnn.all_weights):
            if lstm:
                h, c = cell(x, (state.h[depth], state.c[depth]), *weights)  # (N, H) each
                cs.append(c)
            else:
                h = cell(x, state[depth], *weights)  # (N, H)
            hs.append(h)
            x = h
        h = torch.stack(hs)  # (layers, N, H)
        return self.head(x), (LSTMState(h, torch.stack(cs)) if lstm else h)


class Prepared(NamedTuple):
    """FastStepLM's inference weights, built once per change of the parameters."""

    key: tuple  # (data_ptr, version) of every parameter: rebuilt when one changes
    table: Tensor  # (V, 4H) embedding @ W_ih0^T + b_ih0 + b_hh0: layer 0's input, per token
    w_ih_t: list[Tensor]  # (H, 4H) W_ih^T of layers 1..; contiguous (None for layer 0)
    w_hh_t: list[Tensor]  # (H, 4H) W_hh^T of every layer, contiguous
    bias: list[Tensor]  # (4H,) b_ih + b_hh of every layer
    head_t: Tensor  # (H, V) head weight transposed, contiguous


class FastStepLM(LanguageModel):
    """LanguageModel whose eval-mode LSTM ``step`` (no autograd) multiplies by weights it
    prepared once (the further change measured for language_model.py).

    ``x @ W^T`` through ``addmm`` on a contiguous copy of ``W^T`` beats ``F.linear`` on ``W``
    (what the cell kernels do) at batch 1 on this CPU (MKL), the two biases are summed once,
    and the first layer's input projection of every token is precomputed as a (V, 4H) table
    (its input is an embedding row). The copies are rebuilt when any parameter changes
    (data pointer or version counter), so training between samples is safe.
    """

    def step(self, token: Tensor, state=None):
        rnn = self.rnn
        plain = rnn.mode == "lstm" and not (rnn.bidirectional or rnn.proj_size) and rnn.bias
        if self.training or torch.is_grad_enabled() or not plain or state is None:
            return CellStepLM.step(self, token, state)
        w = self._prepared()
        gates = torch.addmm(w.table[token], state.h[0], w.w_hh_t[0])  # layer 0: (N, 4H)
        hs, cs = [], []
        for depth in range(rnn.num_layers):
            if depth:
                gates = torch.addmm(w.bias[depth], hs[-1], w.w_ih_t[depth])  # (N, 4H)
                gates.addmm_(state.h[depth], w.w_hh_t[depth])
            i, f, g, o = gates.chunk(4, dim=-1)
            cs.append(torch.sigmoid(f) * state.c[depth] + torch.sigmoid(i) * torch.tanh(g))
            hs.append(torch.sigmoid(o) * torch.tanh(cs[-1]))  # (N, H)
        logits = torch.addmm(self.head.bias, hs[-1], w.head_t)  # (N, V)
        return logits, LSTMState(torch.stack(hs), torch.stack(cs))

    def _prepared(self) -> Prepared:
        # named directly: walking self.parameters() every step costs tens of microseconds.
        # An inference tensor has no version counter: only a new data pointer is seen there.
        params = (*self.rnn._flat_weights, self.embedding.weight, self.head.weight, self.head.bias)
        key = tuple((p.data_ptr(), p.is_inference() or p._version) for p in params)
        cached = self.__dict__.get("_prepared_weights")
        if cached is not None and cached.key == key:
            return cached
        weights = self.rnn.all_weights  # per layer: w_ih, w_hh, b_ih, b_hh
        bias = [b_ih + b_hh for _, _, b_ih, b_hh in weights]
        w_t = [[w.T.contiguous() for w in layer[:2]] for layer in weights]
        table = torch.addmm(bias[0], self.embedding.weight, weights[0][0].T)  # (V, 4H)
        prepared = Prepared(key, table, [None] + [w[0] for w in w_t[1:]],
                            [w[1] for w in w_t], bias, self.head.weight.T.contiguous())  # fmt: skip
        self.__dict__["_prepared_weights"] = prepared
        return prepared


def make_model(cls: type[LanguageModel] = LanguageModel, seed: int = 0, **shape) -> LanguageModel:
    torch.manual_seed(seed)
    return cls(ModelConfig(cell="lstm", **(SHAPE | shape))).eval()


def make_vocab(size: int) -> Vocab:
    symbols = sorted(set(string.printable) - set(string.whitespace) - {"~"}) + [" ", "\n"]
    return Vocab("char", sorted(symbols[-size:]))


def hand_parts(model: LanguageModel, cells: bool = False):
    """nn.Embedding + nn.LSTM (or a list of nn.LSTMCell) + nn.Linear with ``model``'s weights."""
    c = model.config
    embedding, head = nn.Embedding(c.vocab_size, c.embed), nn.Linear(c.hidden, c.vocab_size)
    embedding.load_state_dict(model.embedding.state_dict())
    head.load_state_dict(model.head.state_dict())
    if not cells:
        lstm = nn.LSTM(c.embed, c.hidden, c.layers)
        lstm.load_state_dict(model.rnn.state_dict())
        return embedding.eval(), lstm.eval(), head.eval()
    stack = [nn.LSTMCell(c.embed if k == 0 else c.hidden, c.hidden) for k in range(c.layers)]
    for k, cell in enumerate(stack):
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        cell.load_state_dict({n: getattr(model.rnn, f"{n}_l{k}") for n in names})
    return embedding.eval(), stack, head.eval()


def hand_loop(parts, vocab: Vocab, length: int, seed: int) -> str:
    """The generation loop a user writes by hand; reads "\\n" first, like generate()."""
    embedding, lstm, head = parts
    generator = torch.Generator().manual_seed(seed)
    token = torch.tensor([[vocab.symbols.index("\n")]])  # (1, 1)
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
    """The same loop written with one nn.LSTMCell per layer (a user who knows the fused
    kernel is slow on one token)."""
    embedding, stack, head = parts
    generator = torch.Generator().manual_seed(seed)
    token = torch.tensor([vocab.symbols.index("\n")])  # (1,)
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


def copy_bandwidth(nbytes: int = COPY_BYTES, repeats: int = 5) -> float:
    """Bytes read + written per second by ``dst.copy_(src)`` of ``nbytes`` float32 (median)."""
    src = torch.rand(nbytes // 4)
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * nbytes / statistics.median(times[1:])


def weight_bytes_per_step(model: LanguageModel) -> int:
    """Bytes one stream's step must read: every recurrent and head parameter, one embedding
    row (float32 sizes)."""
    numel = sum(p.numel() for p in model.rnn.parameters()) + sum(
        p.numel() for p in model.head.parameters()
    )
    return 4 * (numel + model.config.embed)


def interleave(
    contenders: dict[str, Callable[[], object]], repeats: int, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds of each contender; every repeat runs each once, in a rotating order.

    ``clock="cpu"`` times with the process's CPU time, which leaves out the time other
    processes hold the core (a shared machine); ``"wall"`` with the wall clock.
    """
    timer = time.process_time if clock == "cpu" else time.perf_counter
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        contenders[name]()
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = timer()
            contenders[name]()
            times[name].append(timer() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(
    threads: int = 1, repeats: int = 9, length: int = 200, batch: int = 64, batch_length: int = 50,
    copy_bytes: int = COPY_BYTES, clock: str | None = None, **shape,
) -> dict:  # fmt: skip
    """chars/s of every contender and the three ratios, with ``torch.set_num_threads(threads)``.

    ``length`` characters per single-stream run, ``batch`` streams of ``batch_length`` for the
    batched runs; ``shape`` overrides the canonical model shape (tests use a small one).
    ``clock``: "cpu" (process CPU time, the default with one thread) or "wall" (the default
    with more, whose CPU time would count every thread).
    """
    clock = clock or ("cpu" if threads == 1 else "wall")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = make_model(**shape)
        models = {"rnnkit": model, "rnnkit-cells": make_model(CellStepLM, **shape),
                  "rnnkit-fast": make_model(FastStepLM, **shape)}  # fmt: skip
        vocab = make_vocab(model.config.vocab_size)
        parts, cell_parts = hand_parts(model), hand_parts(model, cells=True)
        gen = lambda m, n, t: generate(m, vocab, length=t, seed=0, num_samples=n)  # noqa: E731
        contenders = {
            **{name: partial(gen, m, 1, length) for name, m in models.items()},
            "loop": partial(hand_loop, parts, vocab, length, seed=0),
            "loop-cell": partial(hand_cell_loop, cell_parts, vocab, length, seed=0),
            **{f"{name} x64": partial(gen, m, batch, batch_length) for name, m in models.items()},
        }
        seconds = interleave(contenders, repeats, clock)
        bandwidth = copy_bandwidth(copy_bytes)
        nbytes = weight_bytes_per_step(model)
        cache_bandwidth = copy_bandwidth(nbytes, repeats=20)
    finally:
        torch.set_num_threads(before)
    chars = {n: (batch * batch_length if "x64" in n else length) / s for n, s in seconds.items()}
    same = gen(model, 1, 40)[0] == hand_loop(parts, vocab, 40, seed=0)
    result = {
        "threads": threads, "clock": clock, "repeats": repeats, "length": length, "batch": batch,
        "batch_length": batch_length, "shape": SHAPE | shape,
        **{f"{name}_chars_per_s": rate for name, rate in chars.items()},
        "weight_bytes_per_step": nbytes, "copy_bandwidth_GBps": bandwidth / 1e9,
        "bound_chars_per_s": bandwidth / nbytes, "cache_copy_bandwidth_GBps": cache_bandwidth / 1e9,
        "cache_bound_chars_per_s": cache_bandwidth / nbytes, "loop_text_equals_rnnkit": same,
    }  # fmt: skip
    for suffix, name in VARIANTS:
        result[f"gen_ratio_vs_loop{suffix}"] = chars[name] / chars["loop"]
        result[f"gen_ratio_vs_loop_cell{suffix}"] = chars[name] / chars["loop-cell"]
        result[f"gen_bandwidth_fraction{suffix}"] = chars[name] / result["bound_chars_per_s"]
        result[f"gen_cache_bandwidth_fraction{suffix}"] = (
            chars[name] / result["cache_bound_chars_per_s"]
        )
        result[f"gen_batch64_over_single{suffix}"] = chars[f"{name} x64"] / chars[name]
    return result


# ---- which path one step should take (--steps) ---------------------------------------------


def step_paths(model: LanguageModel, n: int = 1) -> dict[str, Callable[[Tensor], Tensor]]:
    """Five ways to run one step of ``model`` at batch ``n``, each carrying its own state:
    ``fn(token (N,)) -> logits (N, V)``."""
    shape = {k: getattr(model.config, k) for k in SHAPE}
    cells, fast = make_model(CellStepLM, **shape), make_model(FastStepLM, **shape)
    cells.load_state_dict(model.state_dict())
    fast.load_state_dict(model.state_dict())
    rnn = model.rnn
    layer_steps = [step_function(rnn, depth, "") for depth in range(rnn.num_layers)]

    def carrying(step):
        state = [model.initial_state(n)]

        def run(token):
            logits, state[0] = step(token, state[0])
            return logits

        return run

    def rnnkit_cells(token, state):
        x, hs, cs = model.embedding(token), [], []  # (N, E)
        for depth, step in enumerate(layer_steps):
            x, c = step(x, (state.h[depth], state.c[depth]))  # (N, H) each
            hs.append(x)
            cs.append(c)
        return model.head(x), LSTMState(torch.stack(hs), torch.stack(cs))

    return {
        "fused (LanguageModel.step)": carrying(model.step),
        "fused, oneDNN off": carrying(model.step),  # timed with mkldnn.enabled = False
        "cell kernels (CellStepLM)": carrying(cells.step),
        "rnnkit cells (lstm_step)": carrying(rnnkit_cells),
        "prepared W^T (FastStepLM)": carrying(fast.step),
    }


def measure_steps(
    threads: int = 1, repeats: int = 25, steps: int = 20, n: int = 1, clock: str | None = None,
    **shape,
) -> dict:  # fmt: skip
    """Microseconds per step of each path at batch ``n``, interleaved; the paths are first
    checked to agree on the logits after 5 steps."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = make_model(**shape)
        with torch.inference_mode():
            token = torch.arange(n) % model.config.vocab_size  # (N,)
            check = [
                [fn(token).clone() for _ in range(5)][-1] for fn in step_paths(model, n).values()
            ]
            for logits in check[1:]:
                torch.testing.assert_close(logits, check[0], rtol=1e-4, atol=1e-4)
            paths = step_paths(model, n)

            def timed(name, fn):
                def run():
                    previous = torch.backends.mkldnn.enabled
                    torch.backends.mkldnn.enabled = "oneDNN off" not in name
                    try:
                        for _ in range(steps):
                            fn(token)
                    finally:
                        torch.backends.mkldnn.enabled = previous

                return run

            clock = clock or ("cpu" if threads == 1 else "wall")
            seconds = interleave({k: timed(k, fn) for k, fn in paths.items()}, repeats, clock)
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "batch": n, **{k: 1e6 * s / steps for k, s in seconds.items()}}


# ---- report ----------------------------------------------------------------------------------


def print_result(r: dict) -> None:
    print(
        f"\nthreads {r['threads']}, {r['clock']} time: median of {r['repeats']} interleaved "
        f"repeats; one stream of "
        f"{r['length']} chars, x{r['batch']}: {r['batch_length']} chars per stream"
    )
    names = [v for _, v in VARIANTS] + ["loop", "loop-cell"] + [f"{v} x64" for _, v in VARIANTS]
    for name in names:
        print(f"  {name:<18}{r[f'{name}_chars_per_s']:>12,.0f} chars/s")
    megabytes = r["weight_bytes_per_step"] / 1e6
    print(
        f"  {megabytes:.1f} MB of weights per step; copy bandwidth 256 MB: "
        f"{r['copy_bandwidth_GBps']:.1f} GB/s -> bound {r['bound_chars_per_s']:,.0f} chars/s; "
        f"weights-sized: {r['cache_copy_bandwidth_GBps']:.1f} GB/s -> "
        f"{r['cache_bound_chars_per_s']:,.0f} chars/s"
    )
    print(f"  loop and rnnkit draw the same text: {r['loop_text_equals_rnnkit']}")
    for key, target in TARGETS.items():
        for suffix, label in VARIANTS:
            value = r[f"{key}{suffix}"]
            verdict = "target met" if value >= target else "target missed"
            print(f"  {key:<25}{label:<14}{value:8.2f}   (target >= {target:g}: {verdict})")
    for suffix, label in VARIANTS:
        print(
            f"  {'(vs loop-cell)':<25}{label:<14}{r[f'gen_ratio_vs_loop_cell{suffix}']:8.2f}"
            f"   (vs weights-sized bound: {r[f'gen_cache_bandwidth_fraction{suffix}']:.2f})"
        )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved timed repeats")
    parser.add_argument("--clock", choices=("cpu", "wall"), help="default: cpu with 1 thread")
    parser.add_argument("--steps", action="store_true", help="also time five step paths")
    parser.add_argument("--quick", action="store_true", help="smoke run: short texts, 1 repeat")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    sizes = (
        {"repeats": 1, "length": 8, "batch_length": 4} if args.quick else {"repeats": args.repeats}
    )
    print(f"torch {torch.__version__} | python {platform.python_version()} | {platform.machine()}")
    print("model: vocabulary 65, embedding 64, 2-layer LSTM 512, float32, random weights")
    out = {"results": [], "steps": []}
    for threads in args.threads:
        out["results"].append(measure(threads, clock=args.clock, **sizes))
        print_result(out["results"][-1])
        for n in (1, 64) if args.steps else ():
            steps = 3 if args.quick else 20 if n == 1 else 2
            repeats = 1 if args.quick else 25
            row = measure_steps(threads, repeats, steps, n, clock=args.clock)
            out["steps"].append(row)
            print(f"  one step, batch {n} ({steps} steps, median of the repeats):")
            for key, us in row.items():
                if key not in ("threads", "batch"):
                    print(f"    {key:<28}{us:>10,.0f} us")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()
