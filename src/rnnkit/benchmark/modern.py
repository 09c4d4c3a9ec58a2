"""Speed of the modern recurrent layers (``rnnkit bench --only modern``): training (forward +
backward) and generation (one token at a time) of each of mLSTM, sLSTM, Gated DeltaNet,
Mamba-2, GLA and RWKV-7 against a ``torch.nn.LSTM`` with the same number of parameters.

Shape (issue 20): width 256 (input and hidden), sequences of 2,048, batches of 8, float32,
one layer, sequence-first (``--quick``: sequences of 256). Each modern layer runs its training
form (``impl="auto"``: chunkwise for the linear ones, the sequential kernel after one block
input projection for the sLSTM); its LSTM is the ``torch.nn.LSTM(256, H)`` whose parameter
count ``4 (256 H + H^2 + 2 H)`` is nearest the layer's, on torch's fused kernel. Every layer
and every LSTM runs interleaved in one run (``timing.interleaved``), so a noisy neighbour slows
them alike. One call is a forward plus the backward of ``out.sum()``
(:func:`rnnkit.benchmark.layers.forward_backward`).

Generation: one stream, ``gen_steps`` tokens one at a time with the state carried, in eval mode
without gradients -- the layer's step form (O(1) per token) against its LSTM's fused kernel
on one step; tokens per second.

Figures, per layer ``name``: ``modern_{name}_tokens_per_s``, ``modern_{name}_lstm_tokens_per_s``,
``modern_{name}_over_lstm`` (the training speed ratio; target >= 1.0), ``modern_{name}_params``,
``modern_{name}_lstm_hidden``, ``modern_{name}_gen_per_s`` and ``modern_{name}_lstm_gen_per_s``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnkit.benchmark.layers import forward_backward
from rnnkit.benchmark.timing import interleaved
from rnnkit.nn.registry import get_cell

LAYERS = ("mlstm", "slstm", "deltanet", "mamba2", "gla", "rwkv7")
LABELS = {"mlstm": "mLSTM", "slstm": "sLSTM", "deltanet": "Gated DeltaNet",
          "mamba2": "Mamba-2", "gla": "GLA", "rwkv7": "RWKV-7"}  # fmt: skip
SHAPE = {"seq_len": 2048, "batch": 8, "width": 256}


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lstm_hidden_for(params: int, input_size: int) -> int:
    """The hidden size H whose ``torch.nn.LSTM(input_size, H)`` has the parameter count
    nearest ``params``: 4 (H I + H^2 + 2 H) = params, solved for H and rounded."""
    b = input_size + 2
    root = (-b + math.sqrt(b * b + params)) / 2  # H^2 + b H - params / 4 = 0

    def gap(h: int) -> int:
        return abs(4 * (h * input_size + h * h + 2 * h) - params)

    return max(1, min(math.floor(root), math.ceil(root), key=gap))


def modern_contenders(width: int, names=LAYERS) -> dict[str, nn.Module]:
    """Each modern layer (width in, width out) and, as ``lstm_for_{name}``, its LSTM."""
    modules: dict[str, nn.Module] = {}
    for name in names:
        layer = get_cell(name).layer_class()(width, width)
        modules[name] = layer
        modules[f"lstm_for_{name}"] = nn.LSTM(width, lstm_hidden_for(parameters(layer), width))
    return modules


def _generate(module: nn.Module, x: torch.Tensor):
    """``x`` (L, 1, H_in) fed one step at a time, the state carried (no gradients)."""

    def run() -> None:
        with torch.no_grad():
            state = None
            for x_t in x.split(1):
                _, state = module(x_t, state)

    return run


def measure_modern(
    rounds: int = 3, *, seq_len: int = 2048, batch: int = 8, width: int = 256,
    gen_steps: int = 200, names=LAYERS, seed: int = 0, device=None,
) -> dict:  # fmt: skip
    """The figures of the module docstring, each layer and LSTM timed interleaved over
    ``rounds`` (one warm-up round first) on ``device`` (the CPU when None)."""
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    modules = {name: m.to(device) for name, m in modern_contenders(width, names).items()}
    x = torch.randn(seq_len, batch, width, device=device)  # (L, N, H_in)
    calls = {name: (lambda m=m: forward_backward(m, x)) for name, m in modules.items()}
    train = interleaved(calls, rounds=rounds, device=device)
    prompt = torch.randn(gen_steps, 1, width, device=device)
    for m in modules.values():
        m.eval()
    gen = interleaved({name: _generate(m, prompt) for name, m in modules.items()},
                      rounds=rounds, device=device)  # fmt: skip
    tokens = seq_len * batch
    figures: dict[str, object] = {"modern_shape": f"width {width}, L {seq_len}, batch {batch}"}
    for name in names:
        lstm = f"lstm_for_{name}"
        figures |= {
            f"modern_{name}_tokens_per_s": tokens / train[name],
            f"modern_{name}_lstm_tokens_per_s": tokens / train[lstm],
            f"modern_{name}_over_lstm": train[lstm] / train[name],
            f"modern_{name}_params": parameters(modules[name]),
            f"modern_{name}_lstm_hidden": modules[lstm].hidden_size,
            f"modern_{name}_gen_per_s": gen_steps / gen[name],
            f"modern_{name}_lstm_gen_per_s": gen_steps / gen[lstm],
        }
    return figures


def rows() -> tuple[tuple[str, str, str, str | None], ...]:
    """The table rows of the modern section (``suite.ROWS`` format), per layer."""
    out = []
    for name in LAYERS:
        label = LABELS[name]
        out += [
            (f"{label}: train tokens/s", f"modern_{name}_tokens_per_s", "{:,.0f}", None),
            (f"{label}: equal-size LSTM", f"modern_{name}_lstm_tokens_per_s", "{:,.0f}", None),
            (f"{label} / LSTM, training", f"modern_{name}_over_lstm", "{:.2f}x", ">= 1.0x"),
            (f"{label}: generate tokens/s", f"modern_{name}_gen_per_s", "{:,.0f}", None),
        ]
    return tuple(out)
