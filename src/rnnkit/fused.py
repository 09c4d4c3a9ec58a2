"""The fast path: PyTorch's fused multi-layer kernels run over rnnkit's own parameters.

What is here: which (cell, activation) pairs torch has a fused kernel for, and one function that
calls it on either a padded batch or packed data. The kernels read the very parameter tensors that
:mod:`rnnkit.layers` registers (``weight_ih_l0``, ...), in torch.nn's flat order, so the fused and
the cells paths share one set of weights and agree to rounding.

What is not here: the equations (``cells.py``), shape checks, masks and the packing of padded
batches with lengths (``layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import _VF, Tensor

_KERNELS: dict[tuple[str, str], Callable] = {
    ("rnn", "tanh"): _VF.rnn_tanh,
    ("rnn", "relu"): _VF.rnn_relu,
    ("lstm", "tanh"): _VF.lstm,
    ("gru", "tanh"): _VF.gru,
}


def has_fused_kernel(mode: str, nonlinearity: str = "tanh") -> bool:
    """True when torch has a fused kernel for this cell (``mode``) and activation."""
    return (mode, nonlinearity) in _KERNELS


def run_fused(
    mode: str,
    nonlinearity: str,
    x: Tensor,
    batch_sizes: Tensor | None,
    hx: tuple[Tensor, ...],
    weights: list[Tensor],
    *,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run torch's fused kernel; return ``(output, final_state)`` with the state as a tuple.

    ``x`` is a padded batch (``batch_sizes is None``; every sequence has the full length) or the
    ``data`` of a PackedSequence with its ``batch_sizes``. ``hx`` is ``(h_0,)`` or ``(h_0, c_0)``,
    each (D * num_layers, N, H_out); ``weights`` are in torch.nn's flat order.
    """
    kernel = _KERNELS[(mode, nonlinearity)]
    state = hx if mode == "lstm" else hx[0]
    if batch_sizes is None:
        result = kernel(
            x, state, weights, bias, num_layers, dropout, training, bidirectional, batch_first
        )
    else:
        result = kernel(
            x, batch_sizes, state, weights, bias, num_layers, dropout, training, bidirectional
        )
    return result[0], tuple(result[1:])
