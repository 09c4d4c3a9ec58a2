"""Pieces every task model shares: the recurrent stack a ModelConfig describes, and pooling.

rnn = recurrent(config, input_size=64, bidirectional=True)   # the layer of config.cell
out, state = rnn(x, lengths=lengths)                         # (N, L, D*H), packed inside
summary = pool(out, lengths, "mean")                         # (N, D*H) over valid steps
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.devices import to_device
from rnnkit.nn.registry import get_cell


def has_cell_state(cell: str) -> bool:
    """Whether ``cell``'s recurrent state carries a cell state c beside h (LSTMState in and
    out), as its registry row says."""
    return get_cell(cell).has_cell_state


def carries_memory(cell: str) -> bool:
    """Whether ``cell``'s c is a memory (a modern layer's matrices, normalisers and windows),
    not H cell units: it is handed on as it is, never projected, and its h_0 is not read (the
    layer's output depends on the memory only), as its registry row says."""
    return get_cell(cell).memory


def recurrent(
    config: ModelConfig,
    input_size: int,
    *,
    hidden: int | None = None,
    layers: int | None = None,
    bidirectional: bool = False,
) -> nn.Module:
    """The rnnkit layer (batch_first) of ``config.cell`` with the config's sizes, dropout
    between layers (``config.between_dropout()``), and what its registry row says it takes:
    nonlinearity, implementation path (``--impl cells`` is the minimal cells' sequential path;
    a one-path layer takes none), zoneout and recurrent dropout."""
    cell = get_cell(config.cell)
    layers = config.layers if layers is None else layers
    options = {
        "num_layers": layers,
        "batch_first": True,
        "bidirectional": bidirectional,
        "dropout": config.between_dropout() if layers > 1 else 0.0,
    }
    if (impl := cell.layer_impl(config.impl)) is not None:
        options["impl"] = impl
    if cell.nonlinearity:
        options["nonlinearity"] = config.nonlinearity
    if config.zoneout or config.recurrent_dropout:  # cells-path regularisers
        options |= {"zoneout": config.zoneout, "recurrent_dropout": config.recurrent_dropout}
    return cell.layer_class()(input_size, hidden or config.hidden, **options)


def state_widths(config: ModelConfig, input_size: int) -> tuple[int, ...]:
    """The columns of each state tensor a language model of ``config`` carries: (Hmax,), or
    (Hmax, Cmax) with a cell state -- an LSTM's c is as wide as h, a modern layer's c is its
    memory (built on the meta device to read its ``state_spec``: no memory, no numbers)."""
    width = max(config.layer_sizes())
    if not has_cell_state(config.cell):
        return (width,)
    with torch.device("meta"):
        memories = [recurrent(config, input_size, hidden=size, layers=1).state_spec().sizes[-1]
                    for size in sorted(set(config.layer_sizes()))]  # fmt: skip
    return (width, max(memories))


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
    lengths = to_device(lengths, out.device)  # one copy (pinned, non-blocking) from the host
    valid = torch.arange(out.size(1), device=out.device)[None, :] < lengths[:, None]
    valid = valid.unsqueeze(-1)  # (N, L, 1)
    if how == "mean":
        return (out * valid).sum(1) / lengths.to(out.dtype)[:, None]
    if how == "max":
        return out.masked_fill(~valid, float("-inf")).amax(1)
    raise ValueError(f"pooling must be last, mean or max, got {how!r}")
