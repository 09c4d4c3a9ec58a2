"""The cost of the readable path: ``rnnkit.LSTM(impl="cells")`` -- the equations of
``rnnkit.nn.cells`` stepped in Python -- against ``impl="fused"`` (torch's fused kernel over the
same parameters), with ``torch.nn.LSTM`` alongside, forward + backward, interleaved.

Shape (the canonical model's recurrent layer): input 64, hidden 512, sequences of 100, batches
of 64, float32, sequence-first, one layer. One contender call is a forward pass plus the backward
of ``out.sum()`` with every gradient reset to None first -- the same measurement as
``benchmarks/layers.py``, whose table (chars/s over several shapes) this module does not change.

* ``cells_over_fused``: seconds of the cells path / seconds of the fused path (target <= 1.5);
* ``fused_over_torch``: seconds of the fused path / seconds of ``torch.nn.LSTM`` (about 1).

:func:`forward_backward` is also the measured call of :mod:`rnnkit.benchmark.minimal`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.benchmark.timing import interleaved

SHAPE = {"input_size": 64, "hidden": 512, "seq_len": 100, "batch": 64}


class CellsSpeed(NamedTuple):
    """Median seconds of one forward + backward of each contender."""

    cells_s: float
    fused_s: float
    torch_s: float

    @property
    def cells_over_fused(self) -> float:
        return self.cells_s / self.fused_s

    @property
    def fused_over_torch(self) -> float:
        return self.fused_s / self.torch_s


def layer_contenders(cell: str, input_size: int, hidden: int) -> dict[str, nn.Module]:
    """torch.nn's layer and rnnkit's with ``impl="fused"`` and ``impl="cells"``, all holding
    the same weights (``cell``: "lstm" | "gru" | "rnn")."""
    import rnnkit

    classes = {"lstm": (nn.LSTM, rnnkit.LSTM), "gru": (nn.GRU, rnnkit.GRU),
               "rnn": (nn.RNN, rnnkit.RNN)}  # fmt: skip
    theirs_cls, ours_cls = classes[cell]
    theirs = theirs_cls(input_size, hidden)
    modules = {"torch": theirs}
    for impl in ("fused", "cells"):
        ours = ours_cls(input_size, hidden, impl=impl)
        ours.load_state_dict(theirs.state_dict())
        modules[impl] = ours
    return modules


def forward_backward(module: nn.Module, x: Tensor) -> None:
    """One forward of ``x`` and the backward of ``out.sum()``, gradients reset to None first."""
    for p in module.parameters():
        p.grad = None
    out, _ = module(x)  # (L, N, H)
    out.sum().backward()


def measure_cells(
    rounds: int = 9, *, cell: str = "lstm", input_size: int = 64, hidden: int = 512,
    seq_len: int = 100, batch: int = 64, seed: int = 0,
) -> CellsSpeed:  # fmt: skip
    """Median seconds of a forward + backward of the cells path, the fused path and torch.nn,
    interleaved over ``rounds`` (one untimed warm-up round first)."""
    torch.manual_seed(seed)
    modules = layer_contenders(cell, input_size, hidden)
    x = torch.randn(seq_len, batch, input_size)  # (L, N, H_in)
    calls = {name: (lambda m=m: forward_backward(m, x)) for name, m in modules.items()}
    seconds = interleaved(calls, rounds=rounds)
    return CellsSpeed(seconds["cells"], seconds["fused"], seconds["torch"])
