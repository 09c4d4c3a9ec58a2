"""The cost of the readable path: ``rnnkit.LSTM(impl="cells")`` -- the equations of
``rnnkit.nn.cells`` stepped in Python -- against ``impl="fused"`` (torch's fused kernel over the
same parameters), with ``torch.nn.LSTM`` alongside, forward + backward, interleaved.

Shape (the canonical model's recurrent layer): input 64, hidden 512, sequences of 100, batches
of 64, float32, sequence-first, one layer. One contender call is a forward pass plus the backward
of ``out.sum()`` with every gradient reset to None first -- the same measurement as
``benchmarks/layers.py``, whose table (chars/s over several shapes) this module does not change.

* ``cells_over_fused``: seconds of the cells path / seconds of the fused path (target <= 1.5);
* ``fused_over_torch``: seconds of the fused path / seconds of ``torch.nn.LSTM`` (about 1);
* ``compiled_over_fused``: the cells path with its step compiled
  (``rnnkit.nn.unroll.compile_steps``: ``torch.compile`` of the step, on CUDA fused elementwise
  kernels) / the fused path (on CUDA cuDNN; target <= 2). The compilation happens in a trial
  call before the timed rounds; where ``torch.compile`` cannot run here, the figure is None
  and ``compiled_error`` says why.

With ``device=`` every contender runs there, the device synchronised around each timed call.

:func:`forward_backward` is also the measured call of :mod:`rnnkit.benchmark.minimal`.
"""

from __future__ import annotations

import copy
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
    compiled_s: float | None = None  # None: not measured (compiled_error says why)
    compiled_error: str | None = None

    @property
    def cells_over_fused(self) -> float:
        return self.cells_s / self.fused_s

    @property
    def fused_over_torch(self) -> float:
        return self.fused_s / self.torch_s

    @property
    def compiled_over_fused(self) -> float | None:
        return None if self.compiled_s is None else self.compiled_s / self.fused_s


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


def compiled_contender(cells: nn.Module, x: Tensor) -> tuple[nn.Module | None, str | None]:
    """A copy of the cells-path layer ``cells`` with its step compiled, run once on ``x`` (the
    compilation); or None and the one-line reason it cannot run here."""
    from rnnkit.nn.unroll import compile_steps, compile_unavailable

    if reason := compile_unavailable():
        return None, reason
    module = copy.deepcopy(cells)
    try:
        if compile_steps(module) == 0:
            return None, "compile_steps switched no layer"
        forward_backward(module, x)
    except Exception as error:  # inductor without a compiler, an unsupported backend...
        return None, " ".join(f"{type(error).__name__}: {error}".split())[:200]
    return module, None


def measure_cells(
    rounds: int = 9, *, cell: str = "lstm", input_size: int = 64, hidden: int = 512,
    seq_len: int = 100, batch: int = 64, seed: int = 0, device=None, compiled: bool = True,
) -> CellsSpeed:  # fmt: skip
    """Median seconds of a forward + backward of the cells path, the fused path, torch.nn and
    (``compiled``) the compiled cells path, interleaved over ``rounds`` (one untimed warm-up
    round first), on ``device`` (the CPU when None)."""
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    modules = {name: m.to(device) for name, m in layer_contenders(cell, input_size, hidden).items()}
    x = torch.randn(seq_len, batch, input_size, device=device)  # (L, N, H_in)
    error = None
    if compiled:
        module, error = compiled_contender(modules["cells"], x)
        if module is not None:
            modules["compiled"] = module
    calls = {name: (lambda m=m: forward_backward(m, x)) for name, m in modules.items()}
    seconds = interleaved(calls, rounds=rounds, device=device)
    return CellsSpeed(
        seconds["cells"], seconds["fused"], seconds["torch"], seconds.get("compiled"), error
    )
