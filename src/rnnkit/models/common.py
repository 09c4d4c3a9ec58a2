"""Pieces every task model shares: the recurrent stack a ModelConfig describes, and pooling.

rnn = recurrent(config, input_size=64, bidirectional=True)   # rnnkit LSTM/GRU/RNN/MinGRU/MinLSTM
out, state = rnn(x, lengths=lengths)                         # (N, L, D*H), packed inside
summary = pool(out, lengths, "mean")                         # (N, D*H) over valid steps
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.nn import GRU, LSTM, RNN, LayerNormLSTM
from rnnkit.nn.minimal import MinGRU, MinLSTM

LAYERS = {
    "lstm": LSTM,
    "gru": GRU,
    "rnn": RNN,
    "lnlstm": LayerNormLSTM,
    "mingru": MinGRU,
    "minlstm": MinLSTM,
}
#: ``config.impl`` -> the minimal cells' path: "cells" is their step equations in a loop.
MINIMAL_IMPLS = {"auto": "auto", "fused": "fused", "cells": "sequential"}


#: Cells whose state is (h, c): LSTMState in and out.
CELL_STATE = ("lstm", "lnlstm")


def has_cell_state(cell: str) -> bool:
    """Whether ``cell``'s recurrent state carries a cell state c beside h."""
    return cell in CELL_STATE


def recurrent(
    config: ModelConfig,
    input_size: int,
    *,
    hidden: int | None = None,
    layers: int | None = None,
    bidirectional: bool = False,
) -> nn.Module:
    """The rnnkit layer (batch_first) of ``config.cell`` with the config's sizes, dropout
    between layers, nonlinearity (vanilla RNN) and implementation path (for mingru/minlstm
    ``cells`` means their sequential path, see :data:`MINIMAL_IMPLS`)."""
    layers = config.layers if layers is None else layers
    options = {
        "num_layers": layers,
        "batch_first": True,
        "bidirectional": bidirectional,
        "impl": config.impl,
        "dropout": config.dropout if layers > 1 else 0.0,
    }
    if config.cell == "rnn":
        options["nonlinearity"] = config.nonlinearity
    if config.cell in ("mingru", "minlstm"):
        options["impl"] = MINIMAL_IMPLS[config.impl]
    if config.cell == "lnlstm":
        del options["impl"]  # the cells path only
    if config.zoneout or config.recurrent_dropout:  # cells-path regularisers (rnn/lstm/gru)
        options |= {"zoneout": config.zoneout, "recurrent_dropout": config.recurrent_dropout}
    return LAYERS[config.cell](input_size, hidden or config.hidden, **options)


def last_hidden(state, bidirectional: bool) -> Tensor:
    """The top layer's final hidden state (N, D*H) from a layer's returned state (the
    forward direction's last valid step and the backward direction's first step)."""
    h = state[0] if isinstance(state, tuple) else state  # (layers*D, N, H)
    if bidirectional:
        return torch.cat([h[-2], h[-1]], dim=-1)
    return h[-1]


def pool(out: Tensor, lengths: Tensor, how: str, state=None, bidirectional: bool = False):
    """Summarise ``out`` (N, L, F) over each sequence's valid steps: ``last`` (the final
    state; needs ``state``), ``mean`` or ``max``. Padding never contributes."""
    if how == "last":
        return last_hidden(state, bidirectional)
    valid = torch.arange(out.size(1), device=out.device)[None, :] < lengths.to(out.device)[:, None]
    valid = valid.unsqueeze(-1)  # (N, L, 1)
    if how == "mean":
        return (out * valid).sum(1) / lengths.to(out.device, out.dtype)[:, None]
    if how == "max":
        return out.masked_fill(~valid, float("-inf")).amax(1)
    raise ValueError(f"pooling must be last, mean or max, got {how!r}")
