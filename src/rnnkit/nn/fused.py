"""The fast path: PyTorch's fused multi-layer kernels run over rnnkit's own parameters.

What is here: which (cell, activation) pairs torch has a fused kernel for, and one function that
calls it on either a padded batch or packed data. The kernels read the very parameter tensors that
:mod:`rnnkit.nn.layers` registers (``weight_ih_l0``, ...), in torch.nn's flat order, so the fused
and the cells paths share one set of weights and agree to rounding. Under autocast the results
have the dtypes :func:`autocast_dtype` says, on this path and on the cells path: torch.nn's on
the CPU; on CUDA the autocast dtype, in which cuDNN's kernel runs -- torch's own autocast rule
for cuDNN's RNN casts to float16 whatever the autocast dtype, so under bfloat16 this path runs
the kernel itself, in bfloat16 where cuDNN has it (9.13 and later), else in float32 (never a
silent float16, whose range bf16 training without a loss scaler does not expect).

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
    """The dtype of the output and final state for ``cell`` under autocast on ``x``'s device
    (CPU or CUDA), or None outside it.

    On the CPU, torch.nn's: torch has no autocast rule for the recurrent kernels there, so their
    insides decide -- its LSTM runs the oneDNN layer that autocast casts whole (output, h and c
    in the autocast dtype), its RNN's per-step products come out in the autocast dtype and
    carry it, and its GRU returns the input's dtype. On CUDA, the autocast dtype for every cell:
    the dtype cuDNN's kernel runs in under :func:`run_fused` (see the module docstring)."""
    kind = x.device.type
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        return None
    dtype = torch.get_autocast_dtype(kind)
    if kind == "cuda":
        return dtype
    return x.dtype if cell == "gru" else dtype


def _runs_itself(cell: str, x: Tensor, dtype: torch.dtype | None) -> bool:
    """Whether :func:`run_fused` runs the kernel under autocast itself (:func:`_run_autocast`)
    rather than through torch's rules: the CPU's LSTM, and CUDA under any dtype but float16
    (torch's cuDNN rule casts to float16, right for fp16 alone)."""
    if dtype is None:
        return False
    if x.device.type == "cuda":
        return dtype != torch.float16
    return cell == "lstm"


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
    if _runs_itself(layer.cell, x, autocast_dtype(layer.cell, x)):
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


#: Whether torch's fused kernels ran in the autocast dtype on this machine, per "cell-dtype"
#: on the CPU and "cuda-cell-dtype" on CUDA: absent until first tried.
_BF16_KERNELS: dict[str, bool] = {}


def cast_weights(weights: list[Tensor], dtype: torch.dtype, kind: str) -> list[Tensor]:
    """``weights`` cast to ``dtype`` (gradients flow back to them), for a kernel on a ``kind``
    device: on CUDA views of one flat buffer in their order, as cuDNN reads its weights from
    one (separate tensors would be compacted on every call, with a warning)."""
    if kind != "cuda":
        return [w.to(dtype) for w in weights]
    flat = torch.cat([w.reshape(-1) for w in weights]).to(dtype)
    parts = flat.split([w.numel() for w in weights])
    return [part.view_as(w) for part, w in zip(parts, weights, strict=True)]


#: cuDNN's version from which its RNN kernels take bfloat16 (torch's PR 164411)
CUDNN_BF16 = 91300


def _run_autocast(layer, x, batch_sizes, hx):
    """The fused kernel under autocast, run here rather than by torch's rules: the CPU's LSTM
    (``--precision bf16``; autocast casts torch's oneDNN LSTM layer whole, and this CPU's
    oneDNN may have no such primitive) and CUDA's bfloat16 (torch's cuDNN rule would run it in
    float16). So: run the whole kernel in the autocast dtype (weights, input and state cast; the
    fp32 master weights get their gradients through the casts) where the machine has it, else
    -- remembered after the first failure, or at once for a cuDNN older than 9.13 -- in
    float32, autocast off; either way the output and state come back in the autocast dtype."""
    kind = x.device.type
    dtype = torch.get_autocast_dtype(kind)
    key = f"{layer.cell}-{dtype}" if kind == "cpu" else f"{kind}-{layer.cell}-{dtype}"
    if kind == "cuda" and key not in _BF16_KERNELS:
        _BF16_KERNELS[key] = (torch.backends.cudnn.version() or 0) >= CUDNN_BF16
    with torch.autocast(kind, enabled=False):
        if _BF16_KERNELS.get(key, True):
            try:
                cast = cast_weights(layer._flat_weights, dtype, kind)
                states = tuple(s.to(dtype) for s in hx)
                out, state = _call(layer, x.to(dtype), batch_sizes, states, cast)
                _BF16_KERNELS[key] = True
                return out, state
            except RuntimeError:  # e.g. no bf16 LSTM primitive without AVX512-BF16
                _BF16_KERNELS[key] = False
        fp32 = layer._flat_weights[0].dtype
        out, state = _call(layer, x.to(fp32), batch_sizes, tuple(s.to(fp32) for s in hx))
        return out.to(dtype), tuple(s.to(dtype) for s in state)
