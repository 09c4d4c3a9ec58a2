"""The fast path: PyTorch's fused multi-layer kernels run over rnnkit's own parameters.

What is here: which (cell, activation) pairs torch has a fused kernel for, and one function that
calls it on either a padded batch or packed data. The kernels read the very parameter tensors that
:mod:`rnnkit.nn.layers` registers (``weight_ih_l0``, ...), in torch.nn's flat order, so the fused
and the cells paths share one set of weights and agree to rounding.

What is not here: the equations (``cells.py``), shape checks, masks and the packing of padded
batches with lengths (``layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
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
    if torch.is_autocast_enabled("cpu") and x.device.type == "cpu":
        return _run_autocast(
            mode, nonlinearity, x, batch_sizes, hx, weights, bias=bias, num_layers=num_layers,
            dropout=dropout, training=training, bidirectional=bidirectional,
            batch_first=batch_first,
        )  # fmt: skip
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


#: Whether torch's fused kernels ran in bfloat16 on this machine: None until first tried.
_BF16_KERNELS: dict[str, bool] = {}


def _run_autocast(mode, nonlinearity, x, batch_sizes, hx, weights, **options):
    """The fused kernel under CPU autocast (``--precision bf16``). Autocast has no rule for the
    RNN kernels, and mixing a bf16 input with fp32 weights makes oneDNN refuse the primitive.
    So: run the whole kernel in the autocast dtype (weights, input and state cast; the fp32
    master weights get their gradients through the casts) where this CPU's oneDNN has that
    primitive, else -- remembered after the first failure -- in float32, autocast off."""
    dtype = torch.get_autocast_dtype("cpu")
    key = f"{mode}-{dtype}"
    with torch.autocast("cpu", enabled=False):
        if _BF16_KERNELS.get(key, True):
            try:
                cast = [w.to(dtype) for w in weights]
                out, state = run_fused(
                    mode, nonlinearity, x.to(dtype), batch_sizes,
                    tuple(s.to(dtype) for s in hx), cast, **options,
                )  # fmt: skip
                _BF16_KERNELS[key] = True
                return out, tuple(s.to(hx[0].dtype) for s in state)
            except RuntimeError:
                _BF16_KERNELS[key] = False  # e.g. no bf16 LSTM primitive without AVX512-BF16
        fp32 = weights[0].dtype
        return run_fused(
            mode, nonlinearity, x.to(fp32), batch_sizes, tuple(s.to(fp32) for s in hx),
            weights, **options,
        )  # fmt: skip
