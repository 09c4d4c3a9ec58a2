"""The layer-normalised LSTM (Ba et al. 2016), in the form of haste's ``LayerNormLSTM``.

What is here: the equations -- :func:`layernorm_lstm_step`, split like the cells of ``cells.py``
into an input projection :func:`layernorm_lstm_project` (computed for all steps at once) and a
recurrence :func:`layernorm_lstm_recur` -- and :class:`LayerNormLSTM`, a multi-layer,
optionally bidirectional module with the contract of :class:`rnnkit.nn.layers.LSTM` (``hx``,
``lengths``, PackedSequence, ``batch_first``, ``dropout``, zoneout and variational dropout).

What is not here: a fused kernel (torch has none: this layer runs on the cells path only), a
projection (``proj_size``), and the stacking itself (``cell_layer.py`` and ``unroll.py``).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import Recurrence, State, mask_hidden
from rnnkit.nn.cell_layer import CellLayer
from rnnkit.nn.cells import LSTMState


def layernorm_lstm_step(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weight_ih: Tensor,
    weight_hh: Tensor,
    gain_ih: Tensor,
    gain_hh: Tensor,
    gain_c: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    bias_c: Tensor | None = None,
    eps: float = 1e-5,
) -> LSTMState:
    r"""One step of the layer-normalised LSTM, gate order ``i, f, g, o``.

    .. math::
        [i, f, g, o] &= \mathrm{LN}(W_{ih} x; \gamma_{ih}) + b_{ih}
                       + \mathrm{LN}(W_{hh} h; \gamma_{hh}) + b_{hh}\\
        c' &= \sigma(f) \odot c + \sigma(i) \odot \tanh(g)\\
        h' &= \sigma(o) \odot \tanh(\mathrm{LN}(c'; \gamma_c) + \beta_c)

    where ``LN(v; gamma) = gamma * (v - mean(v)) / sqrt(var(v) + eps)`` over the features of
    each row (4H for the two projections, H for the cell; biased variance), ``gain_*`` are the
    gains gamma, ``b_ih``, ``b_hh`` and ``beta_c`` (``bias_c``) the shifts; x (N, H_in),
    h and c (N, H). The cell state carried on, c', is not normalised: only its read-out is.
    """
    x_proj = layernorm_lstm_project(x, weight_ih, gain_ih, bias_ih, eps)  # (N, 4H)
    return layernorm_lstm_recur(x_proj, state, weight_hh, gain_hh, gain_c, bias_hh, bias_c, eps)


def layernorm_lstm_project(
    x: Tensor, weight_ih: Tensor, gain_ih: Tensor, bias_ih: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    r"""The input part of :func:`layernorm_lstm_step`: :math:`\mathrm{LN}(W_{ih} x; \gamma_{ih})
    + b_{ih}` (..., 4H), row by row -- so all steps of a sequence can go in one call."""
    return F.layer_norm(F.linear(x, weight_ih), gain_ih.shape, gain_ih, bias_ih, eps)


def layernorm_lstm_recur(
    x_proj: Tensor,
    state: tuple[Tensor, Tensor],
    weight_hh: Tensor,
    gain_hh: Tensor,
    gain_c: Tensor,
    bias_hh: Tensor | None = None,
    bias_c: Tensor | None = None,
    eps: float = 1e-5,
) -> LSTMState:
    r"""The recurrent part of :func:`layernorm_lstm_step`, given ``x_proj`` (N, 4H) from
    :func:`layernorm_lstm_project`.

    .. math::
        [i, f, g, o] &= x_{proj} + \mathrm{LN}(W_{hh} h; \gamma_{hh}) + b_{hh}\\
        c' &= \sigma(f) \odot c + \sigma(i) \odot \tanh(g)\\
        h' &= \sigma(o) \odot \tanh(\mathrm{LN}(c'; \gamma_c) + \beta_c)
    """
    h, c = state
    h_proj = F.layer_norm(F.linear(h, weight_hh), gain_hh.shape, gain_hh, bias_hh, eps)
    i, f, g, o = (x_proj + h_proj).chunk(4, -1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(F.layer_norm(c, gain_c.shape, gain_c, bias_c, eps))
    return LSTMState(h, c)


class LayerNormLSTM(CellLayer):
    r"""Multi-layer layer-normalised LSTM (equations: :func:`layernorm_lstm_step`), with the
    contract of :class:`rnnkit.nn.layers.LSTM`: ``forward(input, hx=None, lengths=None) ->
    (output, LSTMState(h_n, c_n))``, ``batch_first``, ``dropout`` between layers,
    ``bidirectional``, PackedSequence, and the keyword-only ``zoneout``, ``recurrent_dropout``
    and ``input_dropout`` of :mod:`rnnkit.nn.layers`. Cells path only (``impl`` is ``"cells"``).

    Parameters per layer ``k`` (and ``_reverse``): torch.nn.LSTM's ``weight_ih_l{k}``
    (4H, H_in), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (4H) -- here
    the shifts of the two layer norms -- and the layer norms' own: ``ln_gain_ih_l{k}`` and
    ``ln_gain_hh_l{k}`` (4H), the gains of LN(W_ih x) and LN(W_hh h); ``ln_gain_c_l{k}`` and
    ``ln_bias_c_l{k}`` (H), gain and shift of LN(c). Initialisation: torch.nn.LSTM's for its
    parameters (drawn in the same order, so a seed gives the same weights), gains 1, shift 0.

    .. note:: haste's LayerNormLSTM has one bias b where we keep torch's pair b_ih + b_hh (the
       same function, torch's redundancy), orders its gates i, g, f, o, initialises with
       Xavier/orthogonal weights and a forget bias of 1, and zones out h only; here the gates
       are i, f, g, o like torch, the initialisation is torch's and zoneout covers h and c.
       ``bias=False`` drops every shift (b_ih, b_hh, beta_c).
    """

    cell = "lnlstm"

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, eps=1e-5, zoneout=0.0, recurrent_dropout=0.0, input_dropout=0.0):
        # fmt: on
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, gates=4, state=("h", "c"),
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout,
                         input_dropout=input_dropout)  # fmt: skip
        self.eps = float(eps)
        # after torch.nn.LSTM's parameters of every layer (its order), each group's layer norms
        shapes = {"ln_gain_ih": (4 * hidden_size,), "ln_gain_hh": (4 * hidden_size,)}
        shapes["ln_gain_c"] = (hidden_size,)
        if bias:
            shapes["ln_bias_c"] = (hidden_size,)
        self.add_weights(shapes, {"device": device, "dtype": dtype})
        with torch.no_grad():  # gains 1, shifts 0 (torch's parameters are drawn already)
            for name, p in self.named_parameters():
                if name.startswith("ln_"):
                    p.fill_(1.0 if name.startswith("ln_gain") else 0.0)

    def recurrence(self, layer: int, direction: int = 0) -> Recurrence:
        """One (layer, direction) bound to its parameters: LN(W_ih x) + b_ih for all steps at
        once, then :func:`layernorm_lstm_recur` step by step."""

        def get(kind: str) -> Tensor | None:
            return self.layer_weight(kind, layer, direction)

        eps = self.eps
        w_ih, gain_ih, b_ih = get("weight_ih"), get("ln_gain_ih"), get("bias_ih")
        w = {"weight_hh": get("weight_hh"), "gain_hh": get("ln_gain_hh"),
             "gain_c": get("ln_gain_c"), "bias_hh": get("bias_hh"),
             "bias_c": get("ln_bias_c")}  # fmt: skip

        def project(x: Tensor) -> Tensor:
            return layernorm_lstm_project(x, w_ih, gain_ih, b_ih, eps)

        def recur(x: Tensor, s: State, m: Tensor | None = None) -> State:
            return layernorm_lstm_recur(x, mask_hidden(s, m), **w, eps=eps)

        return Recurrence(project, recur)

    def reset_parameters(self) -> None:
        """torch.nn.LSTM's uniform draw for its parameters, in its order; gains 1, shifts 0."""
        bound = 1.0 / self.hidden_size**0.5
        for name, p in self.named_parameters():
            if name.startswith("ln_gain"):
                nn.init.ones_(p)
            elif name.startswith("ln_bias"):
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", eps={self.eps}" if self.eps != 1e-5 else "")
