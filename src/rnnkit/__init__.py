"""rnnkit: recurrent neural networks on PyTorch -- readable cells, fused speed, a NumPy oracle.

>>> import torch, rnnkit
>>> lstm = rnnkit.LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
>>> output, (h_n, c_n) = lstm(torch.randn(4, 10, 8))
>>> tuple(output.shape), tuple(h_n.shape)
((4, 10, 16), (2, 4, 16))
"""

import os as _os
import sys as _sys

# Idle OpenMP threads sleep at once rather than spin (libgomp spins 300,000 times first): on a
# machine doing anything else, spinning threads took the time the training needed: the default
# preset made 494 steps in 120 s beside one busy process against 920 passive, and 1,374 against
# 1,539 on a quiet machine (benchmarks/threads.py, README "Performance"). Read when torch loads
# libgomp, so set before torch is imported, and only where the environment does not choose.
if "torch" not in _sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(_os.environ):
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from rnnkit.nn import (
    ACTIVATIONS,
    GRU,
    LSTM,
    RNN,
    ConvLSTM,
    ConvLSTMCell,
    GRUCell,
    LayerNormLSTM,
    LSTMCell,
    LSTMState,
    MinGRU,
    MinLSTM,
    RNNCell,
    gru_step,
    lstm_step,
    rnn_step,
)
from rnnkit.nn.linear import GLA, GatedDeltaNet, Mamba2
from rnnkit.nn.rwkv import RWKV7
from rnnkit.nn.xlstm import MLSTM, SLSTM

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "ConvLSTM",
    "ConvLSTMCell",
    "GRU",
    "GLA",
    "GRUCell",
    "GatedDeltaNet",
    "LSTM",
    "LSTMCell",
    "LSTMState",
    "LayerNormLSTM",
    "MLSTM",
    "Mamba2",
    "MinGRU",
    "MinLSTM",
    "RNN",
    "RNNCell",
    "RWKV7",
    "SLSTM",
    "gru_step",
    "lstm_step",
    "rnn_step",
]
