"""The recurrent core: the cells' equations and the layers built from them.

``base`` (:class:`RecurrentLayer`, the public base and cell interface of every layer),
``cells`` (one step of each cell: the equations), ``checks`` (the boundary checks),
``registry`` (one row per cell), ``fused`` (torch's kernels over our parameters), ``unroll``
(the cells path through time), ``cell_layer`` (:class:`CellLayer`, a whole layer from a cell),
``layers`` (RNN, LSTM, GRU), ``layernorm`` (LayerNormLSTM), ``minimal`` (MinGRU, MinLSTM),
``convlstm`` (ConvLSTM), and the modern layers: ``modern`` (their shared residual shell),
``chunked`` (their chunkwise training forms), ``xlstm`` (MLSTM, SLSTM), ``linear`` (GLA,
Mamba2, GatedDeltaNet) and ``rwkv`` (RWKV7); every other registered layer is an attribute
too, imported on first use (``rnnkit.nn.IndRNN``). Nothing here imports the rest of rnnkit.
"""

from rnnkit.nn.base import RecurrentLayer, StateSpec
from rnnkit.nn.cell_layer import CellLayer
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
    "CellLayer",
    "RecurrentLayer",
    "StateSpec",
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


def __getattr__(name: str):
    """A registered layer class by its name (``rnnkit.nn.IndRNN``), imported on first use."""
    from rnnkit.nn.registry import CELLS

    for cell in CELLS.values():
        if cell.layer.rpartition(":")[2] == name:
            return cell.layer_class()
    raise AttributeError(f"module 'rnnkit.nn' has no attribute {name!r}")
