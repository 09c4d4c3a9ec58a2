"""The recurrent core: the cells' equations and the layers built from them.

``cells`` (one step of each cell: the equations), ``fused`` (torch's kernels over our
parameters), ``unroll`` (the cells path through time), ``layers`` (RNN, LSTM, GRU),
``layernorm`` (LayerNormLSTM), ``minimal`` (MinGRU, MinLSTM) and ``convlstm`` (ConvLSTM).
Nothing here imports the rest of rnnkit.
"""

from rnnkit.nn.cells import (
    ACTIVATIONS,
    GRUCell,
    LSTMCell,
    LSTMState,
    RNNCell,
    gru_step,
    lstm_step,
    rnn_step,
)
from rnnkit.nn.convlstm import ConvLSTM, ConvLSTMCell
from rnnkit.nn.layernorm import LayerNormLSTM
from rnnkit.nn.layers import GRU, LSTM, RNN
from rnnkit.nn.minimal import MinGRU, MinLSTM

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
