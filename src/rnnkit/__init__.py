"""rnnkit: recurrent neural networks on PyTorch -- readable cells, fused speed, a NumPy oracle.

>>> import torch, rnnkit
>>> lstm = rnnkit.LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
>>> output, (h_n, c_n) = lstm(torch.randn(4, 10, 8))
>>> tuple(output.shape), tuple(h_n.shape)
((4, 10, 16), (2, 4, 16))
"""

from rnnkit.cells import (
    ACTIVATIONS,
    GRUCell,
    LSTMCell,
    LSTMState,
    RNNCell,
    gru_step,
    lstm_step,
    rnn_step,
)
from rnnkit.layers import GRU, LSTM, RNN, ConvLSTM, ConvLSTMCell, LayerNormLSTM
from rnnkit.minimal import MinGRU, MinLSTM

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "ConvLSTM",
    "ConvLSTMCell",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "LSTMState",
    "LayerNormLSTM",
    "MinGRU",
    "MinLSTM",
    "RNN",
    "RNNCell",
    "gru_step",
    "lstm_step",
    "rnn_step",
]
