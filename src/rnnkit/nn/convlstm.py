"""ConvLSTM (Shi et al. 2015): the LSTM with its matrix products replaced by convolutions.

An LSTM reads a vector and keeps vector states; a ConvLSTM reads an image and keeps image
states, so every pixel's gates see only a ``k x k`` neighbourhood of the input and of the
previous hidden state -- weights shared across space as in a CNN, across time as in an RNN.
With a 1x1 kernel on 1x1 images it *is* the LSTM (a test checks against :class:`LSTMCell`).

What is here: the step function :func:`convlstm_step` (one line per equation), the module
:class:`ConvLSTMCell` that owns one convolution's weights, and :class:`ConvLSTM`, layers stacked
and stepped through time. What is not here: Shi et al.'s peephole terms ``W_c * c`` (like
``torch.nn.LSTM`` we leave them out), bidirectional layers, masks and packed sequences, fused
kernels, and the frame-prediction model (``rnnkit.models.frames``).

Shape legend: ``N`` batch, ``L`` sequence length, ``C_in`` input channels, ``C_h`` hidden
channels, ``H x W`` image height and width (kept by the "same" padding), ``k`` kernel size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.cells import LSTMState
from rnnkit.nn.checks import check_flag, check_size


def convlstm_step(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weight: Tensor,
    bias: Tensor | None,
    padding: tuple[int, int],
) -> LSTMState:
    r"""One step of the ConvLSTM, gate order ``i, f, g, o`` as in ``torch.nn.LSTM``.

    .. math::
        [i, f, g, o] &= W * [x, h] + b \quad (\text{one convolution, } 4 C_h \text{ channels})\\
        i &= \sigma(i), \quad f = \sigma(f), \quad g = \tanh(g), \quad o = \sigma(o)\\
        c' &= f \odot c + i \odot g\\
        h' &= o \odot \tanh(c')

    where ``*`` is a 2-D convolution with "same" padding, ``[x, h]`` the concatenation of the
    input ``x`` (N, C_in, H, W) and the previous hidden state ``h`` (N, C_h, H, W) along the
    channels, ``W`` (4 C_h, C_in + C_h, k, k) the weight (so ``W * [x, h] = W_x * x + W_h * h``),
    ``i, f, g, o`` the input gate, forget gate, candidate and output gate (N, C_h, H, W) and
    ``c`` (N, C_h, H, W) the cell state.
    """
    h, c = state
    i, f, g, o = F.conv2d(torch.cat([x, h], dim=1), weight, bias, padding=padding).chunk(4, 1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return LSTMState(h, c)


def _kernel_pair(kernel_size: object) -> tuple[int, int]:
    """``k`` or ``(k_h, k_w)`` as a pair of odd positive ints (odd, so "same" padding exists)."""
    pair = kernel_size if isinstance(kernel_size, tuple | list) else (kernel_size, kernel_size)
    ok = len(pair) == 2 and all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 == 1 for k in pair
    )
    if not ok:
        raise ValueError(
            f"kernel_size must be an odd positive integer or a pair of them, got {kernel_size!r}"
        )
    return int(pair[0]), int(pair[1])


def _same_padding(padding: object, kernel: tuple[int, int]) -> tuple[int, int]:
    """The padding that keeps ``H x W``: ``k // 2``. Anything else would shrink or grow the
    hidden state from one step to the next, so an explicit value must equal it."""
    same = (kernel[0] // 2, kernel[1] // 2)
    if padding is None or padding == "same":
        return same
    given = tuple(padding) if isinstance(padding, tuple | list) else (padding, padding)
    if given != same:
        raise ValueError(
            f"padding must be None or 'same' (= kernel_size // 2 = {same}) so the hidden state "
            f"keeps the input's height and width, got {padding!r}"
        )
    return same


class ConvLSTMCell(nn.Module):
    r"""One ConvLSTM step; see :func:`convlstm_step` for the equations.

    Parameters: ``weight`` (4 C_h, C_in + C_h, k_h, k_w) -- the input channels first, then the
    hidden channels -- and ``bias`` (4 C_h,), both initialised as ``torch.nn.Conv2d`` does
    (uniform in +-1/sqrt(fan_in), fan_in = (C_in + C_h) k_h k_w).

    Call: ``cell(x, state=None) -> LSTMState(h', c')`` with ``x`` (N, C_in, H, W) and ``state``
    None (zeros) or ``(h, c)``, both (N, C_h, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] | str | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_size("in_channels", in_channels)
        self.hidden_channels = check_size("hidden_channels", hidden_channels)
        self.kernel_size = _kernel_pair(kernel_size)
        self.padding = _same_padding(padding, self.kernel_size)
        check_flag("bias", bias, ValueError)
        shape = (4 * hidden_channels, in_channels + hidden_channels, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(4 * hidden_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``torch.nn.Conv2d``'s default: weight and bias uniform in +-1/sqrt(fan_in)."""
        bound = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}"
        return s if self.bias is not None else s + ", bias=False"

    def initial_state(self, x: Tensor) -> LSTMState:
        """Zeros (N, C_h, H, W) shaped for the input ``x`` (N, C_in, H, W)."""
        zeros = x.new_zeros(x.size(0), self.hidden_channels, x.size(2), x.size(3))
        return LSTMState(zeros, zeros)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> LSTMState:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(
                f"ConvLSTMCell: x must be (N, C_in={self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        expected = (x.size(0), self.hidden_channels, x.size(2), x.size(3))
        if state is None:
            state = self.initial_state(x)
        for name, s in zip(("h", "c"), state, strict=True):
            if tuple(s.shape) != expected:
                raise ValueError(
                    f"ConvLSTMCell: state.{name} must have shape {expected} (N, C_h, H, W), "
                    f"got {tuple(s.shape)}"
                )
        return convlstm_step(x, state, self.weight, self.bias, self.padding)


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM layers stepped through time: layer ``l`` reads layer ``l-1``'s hidden
    states (layer 0 reads the input).

    Constructor: ``hidden_channels`` is one int for every layer or a list of ``num_layers``
    ints; ``kernel_size`` and ``padding`` are shared by the layers (see :class:`ConvLSTMCell`).

    Call: ``convlstm(x, state=None) -> (out, states)`` with ``x`` (L, N, C_in, H, W), or
    (N, L, C_in, H, W) with ``batch_first``; ``out`` the top layer's hidden states in the same
    layout with C_h(top) channels; ``state`` and ``states`` a list of ``LSTMState(h, c)``, one
    per layer, each (N, C_h(layer), H, W) whatever ``batch_first`` says (None: zeros).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | list[int],
        kernel_size: int | tuple[int, int],
        num_layers: int = 1,
        batch_first: bool = False,
        padding: int | tuple[int, int] | str | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_layers = check_size("num_layers", num_layers)
        if isinstance(hidden_channels, list | tuple):
            if len(hidden_channels) != num_layers:
                raise ValueError(
                    f"hidden_channels must be an int or a list of num_layers={num_layers} "
                    f"ints, got {hidden_channels!r}"
                )
            hidden = [check_size("hidden_channels", h) for h in hidden_channels]
        else:
            hidden = [check_size("hidden_channels", hidden_channels)] * num_layers
        check_flag("batch_first", batch_first, ValueError)
        self.in_channels, self.hidden_channels, self.batch_first = in_channels, hidden, batch_first
        sizes = [in_channels, *hidden]
        self.cells = nn.ModuleList(
            ConvLSTMCell(sizes[k], sizes[k + 1], kernel_size, padding, bias)
            for k in range(num_layers)
        )

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, batch_first={self.batch_first}"

    def forward(
        self, x: Tensor, state: list[tuple[Tensor, Tensor]] | None = None
    ) -> tuple[Tensor, list[LSTMState]]:
        if x.dim() != 5:
            layout = "(N, L, C_in, H, W)" if self.batch_first else "(L, N, C_in, H, W)"
            raise ValueError(f"ConvLSTM: x must be 5-D {layout}, got shape {tuple(x.shape)}")
        if state is not None and len(state) != self.num_layers:
            raise ValueError(
                f"ConvLSTM: state must hold one (h, c) per layer ({self.num_layers}), "
                f"got {len(state)}"
            )
        seq = x.transpose(0, 1) if self.batch_first else x  # (L, N, C_in, H, W)
        states = []
        for k, cell in enumerate(self.cells):
            s = None if state is None else state[k]
            outputs = []
            for x_t in seq.unbind(0):  # (N, C, H, W)
                s = cell(x_t, s)
                outputs.append(s.h)
            seq = torch.stack(outputs)  # (L, N, C_h, H, W)
            states.append(LSTMState(*s))
        out = seq.transpose(0, 1) if self.batch_first else seq
        return out, states
