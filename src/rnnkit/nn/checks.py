"""Boundary checks shared by rnnkit's recurrent layers: constructor arguments and forward inputs.

Every check raises one error that names the argument, says what was expected and what came
(STYLE 14), and returns the value in the form the layer keeps (a float rate, CPU int64 lengths,
states with a batch dimension). ``name`` (the layer's class name) prefixes the forward errors.
The layers call these once, at the boundary; the equations never validate.

What is here: :func:`check_size`, :func:`check_flag`, :func:`check_probability`,
:func:`check_zoneout`, :func:`check_choice`, :func:`warn_dropout_one_layer` (constructor);
:func:`check_input`, :func:`check_features`, :func:`check_lengths`, :func:`initial_state`
(forward). What is not here: torch.nn's own checks and messages, which the drop-in
RNN/LSTM/GRU use as they are (``layers.py``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

# ---- constructor arguments -----------------------------------------------------------------


def check_size(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``; otherwise raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_flag(name: str, value: object, error: type[Exception] = TypeError) -> bool:
    """Return ``value`` if it is a bool; otherwise raise ``error`` naming the argument."""
    if not isinstance(value, bool):
        raise error(f"{name} must be a bool, got {value!r}")
    return value


def check_probability(name: str, value: object) -> float:
    """``value`` as a float if it is a probability in [0, 1]; otherwise raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_zoneout(zoneout: object, count: int) -> tuple[float, ...]:
    """One zoneout rate per state tensor (``count`` of them): a single number sets all; with
    two state tensors (h, c) a pair ``(p_h, p_c)`` sets them apart."""
    if isinstance(zoneout, tuple | list) and count == 2:
        if len(zoneout) != 2:
            raise ValueError(f"zoneout must be a probability or a pair (p_h, p_c), got {zoneout!r}")
        return tuple(check_probability("zoneout", p) for p in zoneout)
    return (check_probability("zoneout", zoneout),) * count


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def warn_dropout_one_layer(dropout: float, num_layers: int, stacklevel: int = 3) -> None:
    """torch.nn's warning: dropout acts between layers, so one layer ignores it."""
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            f"dropout={dropout} has no effect with num_layers=1: dropout is applied between "
            "recurrent layers, so it expects num_layers > 1",
            stacklevel=stacklevel,
        )


# fmt: off
def set_stack_arguments(layer, input_size, hidden_size, num_layers, bias, batch_first,
                        bidirectional, dropout, stacklevel: int) -> None:
    # fmt: on
    """Check a stacked layer's torch.nn arguments and set them on ``layer`` under torch's names
    (``stacklevel``: where the one-layer dropout warning points, counted from here)."""
    layer.input_size = check_size("input_size", input_size)
    layer.hidden_size = check_size("hidden_size", hidden_size)
    layer.num_layers = check_size("num_layers", num_layers)
    layer.bias = check_flag("bias", bias)
    layer.batch_first = check_flag("batch_first", batch_first)
    layer.bidirectional = check_flag("bidirectional", bidirectional)
    layer.dropout = check_probability("dropout", dropout)
    warn_dropout_one_layer(layer.dropout, num_layers, stacklevel=stacklevel + 1)

# ---- forward inputs ------------------------------------------------------------------------


def check_input(name: str, input: object) -> bool:
    """``input`` must be a 3-D batch or a 2-D unbatched sequence; returns whether unbatched."""
    if not isinstance(input, Tensor) or input.dim() not in (2, 3):
        got = f"{input.dim()}-D" if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(
            f"{name}: input must be 3-D (L, N, H_in), (N, L, H_in) with batch_first, "
            f"or 2-D (L, H_in) unbatched; got {got}"
        )
    return input.dim() == 2


def check_features(name: str, x: Tensor, input_size: int, weight: Tensor, steps: int) -> None:
    """x's features must be ``input_size``, its dtype the weights' (unless autocast is on), and
    it must have at least one time step (``steps``, its length)."""
    if x.size(-1) != input_size:
        raise ValueError(
            f"{name}: input.size(-1) must equal input_size={input_size}, got {x.size(-1)}"
        )
    if steps < 1:
        raise ValueError(f"{name}: input must have at least one time step, got L=0")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{name}: input dtype {x.dtype} does not match the weights' {weight.dtype}; "
            f"convert the input with .to({weight.dtype}) or the module with .to({x.dtype})"
        )


def check_lengths(name: str, lengths, n: int, steps: int, unbatched: bool) -> Tensor | None:
    """``lengths`` (one per sequence, each in [1, steps]) as CPU int64 (N,), or None when absent
    or when every sequence is full length."""
    if lengths is None:
        return None
    if unbatched:
        raise ValueError(f"{name}: lengths needs a batched (3-D) input, got 2-D input")
    lengths = torch.as_tensor(lengths, device="cpu")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (n,):
        raise ValueError(
            f"{name}: lengths must be {n} integers (one per sequence), "
            f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    if n and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(
            f"{name}: lengths must lie in [1, L={steps}], "
            f"got min {int(lengths.min())} and max {int(lengths.max())}"
        )
    return None if bool((lengths == steps).all()) else lengths.long()


def initial_state(
    name: str, hx, sizes: Sequence[int], rows: int, like: Tensor, unbatched: bool
) -> tuple[Tensor, ...]:
    """The initial state, each tensor (rows, N, size) for ``sizes`` (h's, then c's): zeros for
    ``hx=None``; else ``hx`` checked -- one tensor, or a pair (h_0, c_0) for two state tensors --
    with the batch dimension added to an unbatched one. ``like`` (L, N, *) gives N, the dtype and
    the device."""
    n = like.size(1)
    if hx is None:
        return tuple(like.new_zeros(rows, n, size) for size in sizes)
    if len(sizes) == 2:
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ValueError(f"{name}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
        labels = ("hx[0] (h_0)", "hx[1] (c_0)")
    else:
        hx, labels = (hx,), ("hx",)
    legend = "(D*num_layers, H)" if unbatched else "(D*num_layers, N, H)"
    states = []
    for label, s, size in zip(labels, hx, sizes, strict=True):
        expected = (rows, size) if unbatched else (rows, n, size)
        if not isinstance(s, Tensor) or tuple(s.shape) != expected:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(
                f"{name}: {label} must be a tensor of shape {expected} {legend}, got {got}"
            )
        states.append(s.unsqueeze(1) if unbatched else s)
    return tuple(states)
