"""The fast path: PyTorch's fused multi-layer kernels run over rnnkit's own parameters.

What is here: which (cell, activation) pairs torch has a fused kernel for, and one function that
calls it on either a padded batch or packed data. The kernels read the very parameter tensors that
:mod:`rnnkit.nn.layers` registers (``weight_ih_l0``, ...), in torch.nn's flat order, so the fused
and the cells paths share one set of weights and agree to rounding. Under CPU autocast the
results have torch.nn's dtypes (:func:`autocast_dtype`), on this path and on the cells path.

What is not here: the equations (``cells.py``), shape checks, masks and the packing of padded
batches with lengths (``layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import _VF, Tensor

#: cell name (:mod:`rnnkit.nn.registry`) and activation -> torch's multi-layer kernel
_KERNELS: dict[tuple[str, str], Callable] = {
    ("rnn", "tanh"): _VF.rnn_tanh,
    ("rnn", "relu"): _VF.rnn_relu,
    ("lstm", "tanh"): _VF.lstm,
    ("gru", "tanh"): _VF.gru,
}


def has_fused_kernel(cell: str, nonlinearity: str = "tanh") -> bool:
    """True when torch has a fused kernel for this cell (``"rnn"``, ...) and activation."""
    return (cell, nonlinearity) in _KERNELS


def autocast_dtype(cell: str, x: Tensor) -> torch.dtype | None:
    """The dtype of torch.nn's output and final state for ``cell`` under CPU autocast, or None
    outside it. torch has no autocast rule for the recurrent kernels themselves, so their
    insides decide: its LSTM runs the oneDNN layer that autocast casts whole (output, h and c
    in the autocast dtype), its RNN's per-step products come out in the autocast dtype and
    carry it, and its GRU returns the input's dtype."""
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return None
    return x.dtype if cell == "gru" else torch.get_autocast_dtype("cpu")


def run_fused(
    cell: str,
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
    options = dict(bias=bias, num_layers=num_layers, dropout=dropout, training=training,
                   bidirectional=bidirectional, batch_first=batch_first)  # fmt: skip
    if cell == "lstm" and autocast_dtype(cell, x) is not None:
        return _run_autocast(cell, nonlinearity, x, batch_sizes, hx, weights, **options)
    return _call(cell, nonlinearity, x, batch_sizes, hx, weights, **options)


def _call(cell, nonlinearity, x, batch_sizes, hx, weights, *, bias, num_layers, dropout,
          training, bidirectional, batch_first):  # fmt: skip
    """The kernel itself, called exactly as torch.nn calls it."""
    kernel = _KERNELS[(cell, nonlinearity)]
    state = hx if cell == "lstm" else hx[0]
    if batch_sizes is None:
        result = kernel(
            x, state, weights, bias, num_layers, dropout, training, bidirectional, batch_first
        )
    else:
        result = kernel(
            x, batch_sizes, state, weights, bias, num_layers, dropout, training, bidirectional
        )
    return result[0], tuple(result[1:])


#: Whether torch's fused kernels ran in bfloat16 on this machine: None until first tried.
_BF16_KERNELS: dict[str, bool] = {}


def _run_autocast(cell, nonlinearity, x, batch_sizes, hx, weights, **options):
    """The fused LSTM under CPU autocast (``--precision bf16``). Autocast casts torch's oneDNN
    LSTM layer whole, and this CPU's oneDNN may have no such primitive (torch.nn.LSTM then
    fails). So: run the whole kernel in the autocast dtype (weights, input and state cast; the
    fp32 master weights get their gradients through the casts) where this CPU's oneDNN has that
    primitive, else -- remembered after the first failure -- in float32, autocast off; either
    way the output and state come back in the autocast dtype, as torch.nn.LSTM's do."""
    dtype = torch.get_autocast_dtype("cpu")
    key = f"{cell}-{dtype}"
    with torch.autocast("cpu", enabled=False):
        if _BF16_KERNELS.get(key, True):
            try:
                cast = [w.to(dtype) for w in weights]
                out, state = _call(
                    cell, nonlinearity, x.to(dtype), batch_sizes,
                    tuple(s.to(dtype) for s in hx), cast, **options,
                )  # fmt: skip
                _BF16_KERNELS[key] = True
                return out, state
            except RuntimeError:
                _BF16_KERNELS[key] = False  # e.g. no bf16 LSTM primitive without AVX512-BF16
        fp32 = weights[0].dtype
        out, state = _call(
            cell, nonlinearity, x.to(fp32), batch_sizes, tuple(s.to(fp32) for s in hx),
            weights, **options,
        )  # fmt: skip
        return out.to(dtype), tuple(s.to(dtype) for s in state)
