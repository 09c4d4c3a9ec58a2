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

import torch
from torch import _VF, Tensor, nn

#: the (cell name in :mod:`rnnkit.nn.registry`, activation) pairs torch has a kernel for
_KERNELS = {("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")}


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
    layer: nn.RNNBase, x: Tensor, batch_sizes: Tensor | None, hx: tuple[Tensor, ...]
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run torch's fused kernel over ``layer``'s parameters and options (its ``cell``,
    ``nonlinearity``, ``_flat_weights``, ``bias``, ``num_layers``, ``dropout``, ``training``,
    ``bidirectional``, ``batch_first``); return ``(output, final_state)``, the state a tuple.

    ``x`` is a padded batch (``batch_sizes is None``; every sequence has the full length) or the
    ``data`` of a PackedSequence with its ``batch_sizes``. ``hx`` is ``(h_0,)`` or ``(h_0, c_0)``,
    each (D * num_layers, N, H_out).
    """
    if layer.cell == "lstm" and autocast_dtype(layer.cell, x) is not None:
        return _run_autocast(layer, x, batch_sizes, hx)
    return _call(layer, x, batch_sizes, hx)


def _call(layer, x, batch_sizes, hx, weights=None):
    """The kernel itself, called exactly as torch.nn calls it, over ``weights`` (default: the
    layer's own, read here -- torch.compile's AOT autograd mishandles a parameter list handed
    from function to function, and a kernel taken from a table)."""
    cell = layer.cell
    if cell == "lstm":
        kernel = _VF.lstm
    elif cell == "gru":
        kernel = _VF.gru
    else:
        kernel = _VF.rnn_relu if layer.nonlinearity == "relu" else _VF.rnn_tanh
    weights = layer._flat_weights if weights is None else weights
    state = hx if cell == "lstm" else hx[0]
    options = (layer.bias, layer.num_layers, layer.dropout, layer.training, layer.bidirectional)
    if batch_sizes is None:
        result = kernel(x, state, weights, *options, layer.batch_first)
    else:
        result = kernel(x, batch_sizes, state, weights, *options)
    return result[0], tuple(result[1:])


#: Whether torch's fused kernels ran in bfloat16 on this machine: None until first tried.
_BF16_KERNELS: dict[str, bool] = {}


def _run_autocast(layer, x, batch_sizes, hx):
    """The fused LSTM under CPU autocast (``--precision bf16``). Autocast casts torch's oneDNN
    LSTM layer whole, and this CPU's oneDNN may have no such primitive (torch.nn.LSTM then
    fails). So: run the whole kernel in the autocast dtype (weights, input and state cast; the
    fp32 master weights get their gradients through the casts) where this CPU's oneDNN has that
    primitive, else -- remembered after the first failure -- in float32, autocast off; either
    way the output and state come back in the autocast dtype, as torch.nn.LSTM's do."""
    dtype = torch.get_autocast_dtype("cpu")
    key = f"{layer.cell}-{dtype}"
    with torch.autocast("cpu", enabled=False):
        if _BF16_KERNELS.get(key, True):
            try:
                cast = [w.to(dtype) for w in layer._flat_weights]
                states = tuple(s.to(dtype) for s in hx)
                out, state = _call(layer, x.to(dtype), batch_sizes, states, cast)
                _BF16_KERNELS[key] = True
                return out, state
            except RuntimeError:
                _BF16_KERNELS[key] = False  # e.g. no bf16 LSTM primitive without AVX512-BF16
        fp32 = layer._flat_weights[0].dtype
        out, state = _call(layer, x.to(fp32), batch_sizes, tuple(s.to(fp32) for s in hx))
        return out.to(dtype), tuple(s.to(dtype) for s in state)
