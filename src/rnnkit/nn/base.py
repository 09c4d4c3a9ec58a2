"""The public base of every rnnkit recurrent layer: the cell interface (like Flax's RNNCellBase).

Every recurrent layer -- RNN, LSTM, GRU, LayerNormLSTM, MinGRU, MinLSTM, IndRNN -- is a
:class:`RecurrentLayer`, and everything outside a layer's own file (the cells path of
``unroll.py``, generation, ONNX export, the analyses, the models) reads a layer only through it:

* ``layer.cell`` -- its registry name (``"lstm"``, ``"lnlstm"``, ``"mingru"``, ...;
  :mod:`rnnkit.nn.registry` holds what else is known of it);
* ``layer.state_spec()`` -- the structure of the state of one (layer, direction):
  :class:`StateSpec` ``(names=("h", "c"), sizes=(H_out, H_cell))`` or ``(("h",), (H,))``;
* ``layer.step_function(k, d)`` -- the cell of layer ``k``, direction ``d`` (0 forward,
  1 reverse), bound to its weights: ``(x_t (N, H_in), state) -> state``, ``state`` a tuple of
  (N, size) tensors in ``state_spec()`` order;
* ``layer.recurrence(k, d)`` -- the same cell split in two, :class:`Recurrence` ``(project,
  recur)``: ``project`` maps inputs (..., H_in) to their projections for many steps at once,
  ``recur(x_proj_t, state, h_mask=None)`` is one step of the rest (``h_mask``: a
  recurrent-dropout mask on h_{t-1}); ``step_function`` is ``recur(project(x), state)``;
* ``layer.gate_function(k, d)`` -- the gates a step opens, for the modern layers (None for
  the others: the analyses read an LSTM's and a GRU's gates from their weights);
* ``layer.fused_step(k, d)`` -- torch's one-step kernel for the same cell on the same weights
  (``_VF.lstm_cell`` & co.), or None where there is none (generation's fast path);
* ``zoneout`` (one rate per state tensor), ``recurrent_dropout``, ``input_dropout`` -- 0 or
  empty for a layer without these regularisers; and torch.nn's ``input_size``,
  ``hidden_size``, ``num_layers``, ``bidirectional``, ``batch_first``.

The class has no ``__init__`` and defines no name that ``torch.nn.RNNBase`` defines, so it can
stand first in ``class LSTM(RecurrentLayer, nn.LSTM)``. Its defaults read torch.nn's parameter
names (``weight_ih_l{k}[_reverse]``, ``weight_hh_…``, ``bias_ih_…``, ``bias_hh_…``,
``weight_hr_…``) and torch.nn's or rnnkit's ``mode``, which is all RNN, LSTM and GRU need; a
layer with another cell overrides ``cell``, ``state_spec`` and ``recurrence``.

What is not here: the equations (``cells.py``), argument checks (``checks.py``), unrolling
(``unroll.py``) and the table of cells (``registry.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch.nn.functional as F
from torch import _VF, Tensor, nn

from rnnkit.nn.cells import ACTIVATIONS, LSTMState, gru_recur, lstm_recur, rnn_recur

State = tuple[Tensor, ...]  # (h,) or (h, c), each (N, size)
Step = Callable[[Tensor, State], State]  # (x_t, state) -> state
SUFFIXES = ("", "_reverse")  # direction 0, 1 in parameter names


class StateSpec(NamedTuple):
    """The state of one (layer, direction): its tensors' names and sizes (features per row)."""

    names: tuple[str, ...]  # ("h",) or ("h", "c")
    sizes: tuple[int, ...]  # e.g. (H_out, H_cell) for an LSTM with a projection


class Recurrence(NamedTuple):
    """One (layer, direction) of a cell, split in two: ``project`` maps inputs (..., H_in) to
    their projections (..., G), for many steps in one call; ``recur(x_proj_t, state,
    h_mask=None)`` is one step of the rest, ``h_mask`` an optional recurrent-dropout mask."""

    project: Callable[[Tensor], Tensor]
    recur: Callable[..., State]


#: torch.nn's and rnnkit's ``mode`` spellings -> the cell's registry name
_MODES = {"rnn": "rnn", "RNN_TANH": "rnn", "RNN_RELU": "rnn", "lstm": "lstm", "LSTM": "lstm"}
_MODES |= {"gru": "gru", "GRU": "gru"}


class RecurrentLayer(nn.Module):
    """The public base of rnnkit's recurrent layers; see the module docstring for the contract.

    Subclasses set torch.nn's size attributes in their constructor; the defaults below serve
    every cell whose parameters carry torch.nn's names (RNN, LSTM, GRU).
    """

    zoneout: tuple[float, ...] = ()  # one rate per state tensor; () for none
    recurrent_dropout: float = 0.0
    input_dropout: float = 0.0

    @property
    def cell(self) -> str:
        """The cell's name in :mod:`rnnkit.nn.registry`."""
        return _MODES.get(self.mode, self.mode)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def state_spec(self) -> StateSpec:
        """Names and sizes of the state of one (layer, direction)."""
        h_out = getattr(self, "proj_size", 0) or self.hidden_size
        if _MODES.get(self.mode) == "lstm":  # an LSTM's mode, whatever its cell's name
            return StateSpec(("h", "c"), (h_out, self.hidden_size))
        return StateSpec(("h",), (h_out,))

    def layer_weight(self, kind: str, layer: int, direction: int = 0) -> Tensor | None:
        """The parameter ``{kind}_l{layer}{suffix}`` (e.g. ``weight_hh_l0_reverse``) or None."""
        return getattr(self, f"{kind}_l{layer}{SUFFIXES[direction]}", None)

    def recurrence(self, layer: int, direction: int = 0) -> Recurrence:
        """The cell of one (layer, direction) bound to its weights, split for the cells path."""
        nonlinearity = "relu" if self.mode == "RNN_RELU" else getattr(self, "nonlinearity", "tanh")
        return torch_recurrence(self, self.cell, nonlinearity, layer, direction)

    def step_function(self, layer: int, direction: int = 0) -> Step:
        """The cell of one (layer, direction) bound to its weights: (x_t, state) -> state."""
        project, recur = self.recurrence(layer, direction)
        return lambda x, state: recur(project(x), state)

    def gate_function(self, layer: int, direction: int = 0):
        """``(x_t, state) -> {gate name: (N, units)}``, the gates one step of layer ``k`` opens
        from ``state`` (values in [0, 1]), or None where the analyses read the gates
        themselves (LSTM, GRU) or the cell has none. The modern layers give theirs."""
        return None

    def fused_step(self, layer: int, direction: int = 0) -> Step | None:
        """torch's one-step kernel on the same weights, or None (see :func:`torch_fused_step`)."""
        if self.cell not in ("rnn", "lstm", "gru"):
            return None
        nonlinearity = "relu" if self.mode == "RNN_RELU" else getattr(self, "nonlinearity", "tanh")
        return torch_fused_step(self, self.cell, nonlinearity, layer, direction)


def mask_hidden(state: State, h_mask: Tensor | None) -> State:
    """The state with h multiplied by the recurrent-dropout mask (for cells whose h meets only
    W_hh; the GRU masks inside :func:`rnnkit.nn.cells.gru_recur`)."""
    return state if h_mask is None else (state[0] * h_mask, *state[1:])


def torch_recurrence(
    module: nn.Module, cell: str, nonlinearity: str, layer: int, direction: int = 0
) -> Recurrence:
    """The :class:`Recurrence` of an RNN/LSTM/GRU ``cell`` over ``module``'s parameters named as
    torch.nn names them -- an rnnkit layer's or a ``torch.nn.RNNBase``'s."""
    suffix = SUFFIXES[direction]
    w = {
        kind: getattr(module, f"{kind}_l{layer}{suffix}", None)
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    }
    w_ih, b_ih, w_hr = w.pop("weight_ih"), w.pop("bias_ih"), w.pop("weight_hr")

    def project(x: Tensor) -> Tensor:
        return F.linear(x, w_ih, b_ih)

    if cell == "lstm":

        def recur(x: Tensor, s: State, m: Tensor | None = None) -> State:
            return lstm_recur(x, mask_hidden(s, m), **w, weight_hr=w_hr)

    elif cell == "gru":

        def recur(x: Tensor, s: State, m: Tensor | None = None) -> State:
            return (gru_recur(x, s[0], **w, h_mask=m),)

    else:
        activation = ACTIVATIONS[nonlinearity]

        def recur(x: Tensor, s: State, m: Tensor | None = None) -> State:
            return (rnn_recur(x, mask_hidden(s, m)[0], **w, activation=activation),)

    return Recurrence(project, recur)


#: torch's one-step kernels (what nn.LSTMCell & co. call), per (cell, nonlinearity)
_CELL_KERNELS = {
    ("lstm", "tanh"): _VF.lstm_cell,
    ("gru", "tanh"): _VF.gru_cell,
    ("rnn", "tanh"): _VF.rnn_tanh_cell,
    ("rnn", "relu"): _VF.rnn_relu_cell,
}


def torch_fused_step(
    module: nn.Module, cell: str, nonlinearity: str, layer: int, direction: int = 0
) -> Step | None:
    """torch's one-step kernel for ``cell`` on ``module``'s torch-named parameters of one
    (layer, direction), as a :data:`Step`; None without a kernel (or with an LSTM projection).
    The fused multi-layer kernel pays its (oneDNN) set-up on every call -- several times the
    two matrix-vector products of one token -- so one-token generation takes these."""
    kernel = _CELL_KERNELS.get((cell, nonlinearity))
    if kernel is None or getattr(module, "proj_size", 0):
        return None
    suffix = SUFFIXES[direction]
    weights = [
        getattr(module, f"{kind}_l{layer}{suffix}", None)
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    if cell == "lstm":
        return lambda x, s: LSTMState(*kernel(x, s, *weights))
    return lambda x, s: (kernel(x, s[0], *weights),)


__all__ = [
    "Recurrence",
    "RecurrentLayer",
    "State",
    "StateSpec",
    "Step",
    "mask_hidden",
    "torch_fused_step",
    "torch_recurrence",
]
