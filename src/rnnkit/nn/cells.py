"""Recurrent cells: one time step of a vanilla RNN, an LSTM, a GRU and an IndRNN, as equations.

What is here: the step functions ``rnn_step``, ``lstm_step``, ``gru_step`` and ``indrnn_step`` --
pure functions of an input, a state and the weights, one line per equation -- each split into its
input projection ``x_proj = W_ih x + b_ih`` and a recurrence ``*_recur(x_proj, state, W_hh,
b_hh)``, so that ``lstm_step(x, s, W_ih, W_hh, b_ih, b_hh) == lstm_recur(F.linear(x, W_ih, b_ih),
s, W_hh, b_hh)``; and the ``torch.nn``-compatible modules ``RNNCell``, ``LSTMCell`` and ``GRUCell``
that own the weights and call them. The "cells" path of :mod:`rnnkit.nn.layers` projects the inputs
of several steps in one matrix product and steps the very same recurrences through time, so each
equation is stated once.

What is not here: stacking, directions, masks and packed sequences (``layers.py``) and PyTorch's
fused kernels (``fused.py``). Validation happens at the module boundary, never in the equations.

Shape legend: ``N`` batch, ``H_in`` input features, ``H`` hidden units, ``P`` LSTM projection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.checks import check_choice, check_size

#: The activations a vanilla RNN may use (the lecture's list of non-linearities).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01, torch's default
    "hardtanh": F.hardtanh,  # clamp to [-1, 1]
    "softplus": F.softplus,  # log(1 + e^x)
}


class LSTMState(NamedTuple):
    """The LSTM's two state tensors: hidden ``h`` (N, H or P) and cell ``c`` (N, H)."""

    h: Tensor
    c: Tensor


def rnn_step(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    activation: Callable[[Tensor], Tensor] = torch.tanh,
) -> Tensor:
    r"""One step of the vanilla (Elman) RNN: :func:`rnn_recur` of the input projection.

    .. math::
        h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    where ``x`` (N, H_in) is the input, ``h`` (N, H) the previous hidden state, ``phi`` the
    activation (tanh by default) and ``h'`` (N, H) the new hidden state.
    """
    return rnn_recur(F.linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh, activation)


def rnn_recur(
    x_proj: Tensor,
    h: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    activation: Callable[[Tensor], Tensor] = torch.tanh,
) -> Tensor:
    r"""The recurrent part of :func:`rnn_step`, given the input projection
    ``x_proj = W_ih x + b_ih`` (N, H) -- computed for many steps at once by the cells path.

    .. math::
        h' = \phi(x_{proj} + W_{hh} h + b_{hh})
    """
    return activation(x_proj + F.linear(h, weight_hh, bias_hh))


def lstm_step(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    weight_hr: Tensor | None = None,
) -> LSTMState:
    r"""One step of the LSTM, gate order ``i, f, g, o`` as in ``torch.nn.LSTM``:
    :func:`lstm_recur` of the input projection.

    .. math::
        [i, f, g, o] &= W_{ih} x + b_{ih} + W_{hh} h + b_{hh} \quad (\text{one matrix, } 4H)\\
        i &= \sigma(i), \quad f = \sigma(f), \quad g = \tanh(g), \quad o = \sigma(o)\\
        c' &= f \odot c + i \odot g\\
        h' &= o \odot \tanh(c') \quad (\text{then } h' = W_{hr} h' \text{ with a projection})

    where ``i`` is the input gate, ``f`` the forget gate, ``g`` the candidate, ``o`` the output
    gate, ``c`` (N, H) the cell state -- the additive path that lets gradients survive -- and
    ``h`` (N, H, or P with a projection) the hidden state.
    """
    x_proj = F.linear(x, weight_ih, bias_ih)  # (N, 4H)
    return lstm_recur(x_proj, state, weight_hh, bias_hh, weight_hr)


def lstm_recur(
    x_proj: Tensor,
    state: tuple[Tensor, Tensor],
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    weight_hr: Tensor | None = None,
) -> LSTMState:
    r"""The recurrent part of :func:`lstm_step`, given the input projection
    ``x_proj = W_ih x + b_ih`` (N, 4H) -- computed for many steps at once by the cells path.

    .. math::
        [i, f, g, o] &= x_{proj} + W_{hh} h + b_{hh}\\
        c' &= \sigma(f) \odot c + \sigma(i) \odot \tanh(g)\\
        h' &= \sigma(o) \odot \tanh(c') \quad (\text{then } W_{hr} h' \text{ with a projection})
    """
    h, c = state
    i, f, g, o = (x_proj + F.linear(h, weight_hh, bias_hh)).chunk(4, -1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    if weight_hr is not None:
        h = F.linear(h, weight_hr)  # projection to P units (Sak et al. 2014)
    return LSTMState(h, c)


def gru_step(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> Tensor:
    r"""One step of the GRU, gate order ``r, z, n`` as in ``torch.nn.GRU``: :func:`gru_recur` of
    the input projection.

    .. math::
        r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr})\\
        z &= \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz})\\
        n &= \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn}))\\
        h' &= (1 - z) \odot n + z \odot h

    where ``r`` is the reset gate, ``z`` the update gate and ``n`` the candidate state.

    .. note:: Cho et al. (2014) apply the reset gate before the matrix product,
       ``W_hn (r * h)``; like torch.nn.GRU (and cuDNN) we apply it after, ``r * (W_hn h + b_hn)``.
    """
    return gru_recur(F.linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh)


def gru_recur(
    x_proj: Tensor,
    h: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    h_mask: Tensor | None = None,
) -> Tensor:
    r"""The recurrent part of :func:`gru_step`, given the input projection
    ``x_proj = W_ih x + b_ih`` (N, 3H), i.e. ``[W_ir x + b_ir, W_iz x + b_iz, W_in x + b_in]``.

    .. math::
        [h_r, h_z, h_n] &= W_{hh} (m \odot h) + b_{hh}\\
        r = \sigma(x_r + h_r), \quad z &= \sigma(x_z + h_z), \quad
        n = \tanh(x_n + r \odot h_n)\\
        h' &= (1 - z) \odot n + z \odot h

    where ``m`` (N, H) is an optional recurrent-dropout mask (1 when ``h_mask`` is None): it
    masks h where it meets W_hh, not where the update gate carries it over.
    """
    x_r, x_z, x_n = x_proj.chunk(3, -1)
    h_in = h if h_mask is None else h * h_mask
    h_r, h_z, h_n = F.linear(h_in, weight_hh, bias_hh).chunk(3, -1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def indrnn_step(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    activation: Callable[[Tensor], Tensor] = torch.relu,
    recurrent_max: float | None = None,
) -> Tensor:
    r"""One step of the independently recurrent network (IndRNN, Li et al. 2018):
    :func:`indrnn_recur` of the input projection.

    .. math::
        h' = \phi(W_{ih} x + b_{ih} + u \odot h + b_{hh}), \quad
        u = \mathrm{clip}(w_{hh}, -u_{max}, u_{max})

    where ``x`` (N, H_in) is the input, ``h`` (N, H) the previous hidden state, ``w_hh`` (H,)
    one recurrent weight per unit -- each unit sees only its own past, so ``dh'/dh`` is the
    diagonal ``phi' * u`` and over T steps a unit's gradient scales by a product of its own
    ``u`` (no matrix power), which ``|u| <= u_max`` keeps from exploding -- ``phi`` the
    activation (relu by default) and ``u_max`` the optional ``recurrent_max``.
    """
    return indrnn_recur(
        F.linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh, activation, recurrent_max
    )


def indrnn_recur(
    x_proj: Tensor,
    h: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None = None,
    activation: Callable[[Tensor], Tensor] = torch.relu,
    recurrent_max: float | None = None,
) -> Tensor:
    r"""The recurrent part of :func:`indrnn_step`, given ``x_proj = W_ih x + b_ih`` (N, H).

    .. math::
        h' = \phi(x_{proj} + u \odot h + b_{hh}), \quad u = \mathrm{clip}(w_{hh}, -u_{max}, u_{max})
    """
    u = weight_hh if recurrent_max is None else weight_hh.clamp(-recurrent_max, recurrent_max)
    pre = x_proj + u * h  # (N, H): an element-wise product, not a matrix one
    return activation(pre if bias_hh is None else pre + bias_hh)


def check_nonlinearity(nonlinearity: object) -> str:
    """Return ``nonlinearity`` if it is one of :data:`ACTIVATIONS`; otherwise raise listing them."""
    return check_choice("nonlinearity", nonlinearity, tuple(ACTIVATIONS))


def torch_default_init(module: nn.Module, hidden_size: int) -> None:
    """torch.nn's default for recurrent weights: every parameter uniform in
    (-1/sqrt(H), 1/sqrt(H)), drawn in registration order (so equal seeds give equal weights)."""
    bound = 1.0 / math.sqrt(hidden_size)
    for weight in module.parameters():
        nn.init.uniform_(weight, -bound, bound)


class _CellBase(nn.Module):
    """Weights and the ``torch.nn.*Cell`` calling contract shared by the three cells."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = bias
        # Registration order matches torch.nn, so the same seed gives the same initial weights.
        self.weight_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(num_chunks * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(num_chunks * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch_default_init(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _batched(self, input: Tensor, hx: tuple[Tensor | None, ...]) -> tuple[Tensor, tuple, bool]:
        """Check shapes and return (x, states, was_unbatched) with a batch dimension added."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{name}: input must be 1-D (H_in) or 2-D (N, H_in), got {input.dim()}-D"
            )
        if input.size(-1) != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must equal input_size={self.input_size}, "
                f"got {input.size(-1)}"
            )
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        expected = (x.size(0), self.hidden_size)
        states = []
        for k, s in enumerate(hx):
            label = "hx" if len(hx) == 1 else f"hx[{k}]"
            if s is None:
                s = torch.zeros(expected, dtype=x.dtype, device=x.device)
            elif s.dim() != input.dim():
                raise ValueError(
                    f"{name}: {label} must be {input.dim()}-D like input, got {s.dim()}-D"
                )
            elif unbatched:
                s = s.unsqueeze(0)
            if tuple(s.shape) != expected:
                raise ValueError(
                    f"{name}: {label} must have shape {expected} (N, hidden_size), "
                    f"got {tuple(s.shape)}"
                )
            states.append(s)
        return x, tuple(states), unbatched


class RNNCell(_CellBase):
    r"""An Elman RNN cell, ``torch.nn.RNNCell`` compatible: :math:`h' = \phi(W_{ih} x + b_{ih}
    + W_{hh} h + b_{hh})` with ``phi`` any of :data:`ACTIVATIONS` (torch offers tanh and relu).

    Call: ``cell(input, hx=None) -> h'`` with input (N, H_in) or (H_in), hx (N, H) or (H).
    """

    def __init__(
        self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None
    ):
        self.nonlinearity = check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), unbatched = self._batched(input, (hx,))
        h = rnn_step(
            x,
            h,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            ACTIVATIONS[self.nonlinearity],
        )
        return h.squeeze(0) if unbatched else h


class LSTMCell(_CellBase):
    r"""An LSTM cell, ``torch.nn.LSTMCell`` compatible (gate order i, f, g, o); see
    :func:`lstm_step` for the equations.

    Call: ``cell(input, hx=None) -> LSTMState(h', c')`` with input (N, H_in) or (H_in) and
    hx a pair ``(h, c)`` of (N, H) or (H) tensors.
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> LSTMState:
        x, (h, c), unbatched = self._batched(input, (None, None) if hx is None else tuple(hx))
        h, c = lstm_step(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return LSTMState(h.squeeze(0), c.squeeze(0)) if unbatched else LSTMState(h, c)


class GRUCell(_CellBase):
    r"""A GRU cell, ``torch.nn.GRUCell`` compatible (gate order r, z, n); see :func:`gru_step`.

    Call: ``cell(input, hx=None) -> h'`` with input (N, H_in) or (H_in), hx (N, H) or (H).
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), unbatched = self._batched(input, (hx,))
        h = gru_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h.squeeze(0) if unbatched else h
