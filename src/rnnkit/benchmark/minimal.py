"""Training speed of the minimal RNNs: ``rnnkit.MinGRU`` against ``torch.nn.GRU`` and
``rnnkit.MinLSTM`` against ``torch.nn.LSTM``, forward + backward on long sequences, interleaved.

Shape (the one of Feng et al.'s claim that minimal RNNs train much faster): sequences of 2048,
batches of 16, input 256, hidden 256, float32, sequence-first, one layer (``--quick``: sequences
of 512). The minimal layers run with ``impl="auto"`` (on a CPU the fused path: the gates of every
step in one matrix product, then one ``lerp`` per step); torch's layers run their fused kernels
(on CUDA cuDNN's: ``minimal_cudnn`` says whether cuDNN was on). With ``device=`` all four run
there, the device synchronised around each timed call.
One contender call is a forward pass plus the backward of ``out.sum()`` with every gradient reset
first (:func:`rnnkit.benchmark.layers.forward_backward`).

* ``mingru_over_gru``: seconds of torch.nn.GRU / seconds of MinGRU -- the speed-up (target >= 3);
* ``minlstm_over_lstm``: seconds of torch.nn.LSTM / seconds of MinLSTM.

Not here: the minimal RNNs' quality (``benchmarks/charlm_quality.py``), their scan path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnkit.benchmark.layers import forward_backward
from rnnkit.benchmark.timing import interleaved

SHAPE = {"seq_len": 2048, "batch": 16, "input_size": 256, "hidden": 256}


class MinimalSpeed(NamedTuple):
    """Median seconds of one forward + backward of each layer."""

    mingru_s: float
    gru_s: float
    minlstm_s: float
    lstm_s: float

    @property
    def mingru_over_gru(self) -> float:
        return self.gru_s / self.mingru_s

    @property
    def minlstm_over_lstm(self) -> float:
        return self.lstm_s / self.minlstm_s


def minimal_contenders(input_size: int, hidden: int, impl: str = "auto") -> dict[str, nn.Module]:
    """MinGRU, torch.nn.GRU, MinLSTM, torch.nn.LSTM of one layer, sequence-first."""
    from rnnkit.nn.minimal import MinGRU, MinLSTM

    return {
        "mingru": MinGRU(input_size, hidden, impl=impl),
        "gru": nn.GRU(input_size, hidden),
        "minlstm": MinLSTM(input_size, hidden, impl=impl),
        "lstm": nn.LSTM(input_size, hidden),
    }


def measure_minimal(
    rounds: int = 5, *, seq_len: int = 2048, batch: int = 16, input_size: int = 256,
    hidden: int = 256, impl: str = "auto", seed: int = 0, device=None,
) -> MinimalSpeed:  # fmt: skip
    """Median seconds of a forward + backward of the four layers, interleaved over ``rounds``
    (one untimed warm-up round first), on ``device`` (the CPU when None)."""
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    modules = {
        name: m.to(device) for name, m in minimal_contenders(input_size, hidden, impl).items()
    }
    x = torch.randn(seq_len, batch, input_size, device=device)  # (L, N, H_in)
    calls = {name: (lambda m=m: forward_backward(m, x)) for name, m in modules.items()}
    s = interleaved(calls, rounds=rounds, device=device)
    return MinimalSpeed(s["mingru"], s["gru"], s["minlstm"], s["lstm"])
