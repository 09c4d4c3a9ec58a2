"""Multi-layer ``RNN``, ``LSTM`` and ``GRU``: drop-ins for their torch.nn namesakes.

What is here: parameters (torch.nn's names, order and initialisation, so ``load_state_dict``
works both ways), stacking, both directions, dropout between layers, unbatched input, padded
batches with ``lengths`` and PackedSequence in -> PackedSequence out; and the choice of path:

* ``impl="fused"`` -- torch's fused kernels over these parameters (``fused.py``);
* ``impl="cells"`` -- our step functions (``cells.py``) unrolled through time (``unroll.py``);
  every configuration, e.g. a softplus RNN, which torch has no kernel for;
* ``impl="auto"`` (default) -- fused where a kernel exists, else cells.

Regularisers inside the recurrence, keyword-only and 0 by default, exist on the cells path only
(a non-zero one makes ``impl="auto"`` pick cells and ``impl="fused"`` an error; the equations are
in :func:`rnnkit.nn.unroll.regularised`):

* ``zoneout`` -- float, or ``(p_h, p_c)`` for an LSTM: each state unit keeps its previous value,
  ``s_t = k * s_{t-1} + (1 - k) * s_new`` with ``k ~ Bernoulli(p)`` per unit, step and sequence
  in training and ``k = p`` (the expectation) in eval (Krueger et al. 2016). One number covers h
  and c of an LSTM, with independent masks; ``.zoneout`` holds one rate per state tensor.
* ``recurrent_dropout`` -- variational dropout of h_{t-1} where it meets W_hh: one mask per
  sequence and layer/direction, drawn once per forward call and shared by every step, scaled
  1/(1-p), off in eval (Gal & Ghahramani 2016). The state carried on (and the GRU's z * h) is not.
* ``input_dropout`` -- the same for each layer's input x_t where it meets W_ih; ``dropout`` stays
  torch's fresh-mask-per-step dropout between layers.

Shape legend: ``N`` batch, ``L`` sequence length, ``D`` directions (2 if bidirectional else 1),
``H_in`` input_size, ``H_cell`` hidden_size, ``H_out`` proj_size if > 0 else hidden_size.
Input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or (L, H_in) unbatched; output
(L, N, D*H_out) likewise; states (D*num_layers, N, H_out) whatever ``batch_first`` says.
"""

from __future__ import annotations

import numbers
import warnings
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.nn.cells import LSTMState, check_nonlinearity, check_size, torch_default_init
from rnnkit.nn.fused import has_fused_kernel, run_fused
from rnnkit.nn.unroll import recurrence, unroll

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
IMPLS = ("auto", "fused", "cells")


class _RecurrentLayer(nn.Module):
    """Parameters, checks and the two execution paths shared by RNN, LSTM and GRU."""

    # fmt: off
    def __init__(self, mode: str, input_size: int, hidden_size: int, *, num_layers: int,
                 bias: bool, batch_first: bool, dropout: float, bidirectional: bool,
                 proj_size: int, device, dtype, nonlinearity: str, impl: str,
                 zoneout: float | tuple[float, float] = 0.0, recurrent_dropout: float = 0.0,
                 input_dropout: float = 0.0) -> None:
        # fmt: on
        super().__init__()
        self.mode, self.nonlinearity = mode, check_nonlinearity(nonlinearity)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        for name, flag in (
            ("bias", bias),
            ("batch_first", batch_first),
            ("bidirectional", bidirectional),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = _probability("dropout", dropout)
        self.recurrent_dropout = _probability("recurrent_dropout", recurrent_dropout)
        self.input_dropout = _probability("input_dropout", input_dropout)
        self.zoneout = _zoneout_rates(zoneout, mode)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} has no effect with num_layers=1: dropout is applied between "
                "recurrent layers, so it expects num_layers > 1",
                stacklevel=3,
            )
        if proj_size and mode != "lstm":
            raise ValueError(
                f"proj_size is only supported by LSTM, got proj_size={proj_size} for {mode.upper()}"
            )
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}"
            )
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}; got {impl!r}")
        if impl == "fused" and not has_fused_kernel(mode, nonlinearity):
            raise ValueError(
                f"impl='fused' needs a torch kernel, which exists for nonlinearity 'tanh' or "
                f"'relu' only; got nonlinearity={nonlinearity!r} (use impl='cells' or 'auto')"
            )
        if impl == "fused" and self.regularised:
            raise ValueError(
                "impl='fused' cannot apply zoneout, recurrent_dropout or input_dropout (torch's "
                f"kernels have no such option); got zoneout={zoneout!r}, recurrent_dropout="
                f"{recurrent_dropout!r}, input_dropout={input_dropout!r} (use impl='cells')"
            )
        self.impl = impl

        factory = {"device": device, "dtype": dtype}
        gate_size = _GATES[mode] * hidden_size
        h_out = proj_size or hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for suffix in ("", "_reverse") if bidirectional else ("",):
                layer_in = input_size if layer == 0 else h_out * self.num_directions
                shapes = {"weight_ih": (gate_size, layer_in), "weight_hh": (gate_size, h_out)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    names.append(f"{kind}_l{layer}{suffix}")
                    self.register_parameter(names[-1], nn.Parameter(torch.empty(shape, **factory)))
                self._flat_weights_names += names
                self._all_weights.append(names)
        self.reset_parameters()

    @property
    def use_fused(self) -> bool:
        """Whether forward runs torch's fused kernel (set ``impl`` to switch paths)."""
        return (
            self.impl != "cells"
            and has_fused_kernel(self.mode, self.nonlinearity)
            and not self.regularised
        )

    @property
    def regularised(self) -> bool:
        """Whether zoneout, recurrent or input dropout is on (they need the cells path)."""
        return bool(self.recurrent_dropout or self.input_dropout or any(self.zoneout))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per (layer, direction), as torch.nn's ``all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """No-op, for torch.nn compatibility (the fused kernels read the parameters directly)."""

    def reset_parameters(self) -> None:
        """torch.nn's default: every parameter uniform in (-1/sqrt(H_cell), 1/sqrt(H_cell))."""
        torch_default_init(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {
            "proj_size": 0,
            "num_layers": 1,
            "nonlinearity": "tanh",
            "bias": True,
            "batch_first": False,
            "dropout": 0.0,
            "bidirectional": False,
            "impl": self._DEFAULT_IMPL,
            "zoneout": None,
            "recurrent_dropout": 0.0,
            "input_dropout": 0.0,
        }
        for key, default in defaults.items():
            value = getattr(self, key)
            if key == "zoneout" and len(set(value)) == 1:
                value, default = value[0], 0.0  # one rate for every state tensor
            if value != default:
                s += f", {key}={value!r}"
        return s

    # ---- forward: checks, then one of the two paths ------------------------------------------
    def forward(self, input, hx=None, lengths=None):
        """Run the layer. See the class docstring for the contract; returns (output, h_n) or,
        for LSTM, (output, LSTMState(h_n, c_n))."""
        name = type(self).__name__
        batch_sizes = sorted_indices = unsorted_indices = None
        unbatched = False
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{name}: lengths must be None for a PackedSequence input")
            x, batch_sizes, sorted_indices, unsorted_indices = input
            self._check_features(x, expected_dim=2)
            n = int(batch_sizes[0])
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                got = f"{input.dim()}-D" if isinstance(input, Tensor) else type(input).__name__
                raise ValueError(
                    f"{name}: input must be 3-D (L, N, H_in), (N, L, H_in) with batch_first, "
                    f"or 2-D (L, H_in) unbatched; got {got}"
                )
            unbatched = input.dim() == 2
            x = input.unsqueeze(0 if self.batch_first else 1) if unbatched else input
            self._check_features(x, expected_dim=3)
            n = x.size(0 if self.batch_first else 1)
            lengths = self._check_lengths(lengths, x, unbatched)
        hx = self._initial_state(hx, x, n, unbatched)
        if sorted_indices is not None:
            hx = tuple(s.index_select(1, sorted_indices) for s in hx)

        if self.use_fused:
            output, state = self._forward_fused(x, batch_sizes, hx, lengths)
        else:
            output, state = self._forward_cells(x, batch_sizes, hx, lengths)

        if unsorted_indices is not None:
            state = tuple(s.index_select(1, unsorted_indices) for s in state)
        if batch_sizes is not None:
            output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
        elif unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = tuple(s.squeeze(1) for s in state)
        return output, (LSTMState(*state) if self.mode == "lstm" else state[0])

    def _check_features(self, x: Tensor, expected_dim: int) -> None:
        name = type(self).__name__
        if x.dim() != expected_dim:
            raise ValueError(f"{name}: input data must be {expected_dim}-D, got {x.dim()}-D")
        if x.size(-1) != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must equal input_size={self.input_size}, got {x.size(-1)}"
            )
        weight = self.weight_ih_l0
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"{name}: input dtype {x.dtype} does not match the weights' {weight.dtype}; "
                f"convert the input with .to({weight.dtype}) or the module with .to({x.dtype})"
            )

    def _check_lengths(self, lengths, x: Tensor, unbatched: bool) -> Tensor | None:
        """Return lengths as a CPU int64 tensor, or None when every sequence is full length."""
        if lengths is None:
            return None
        name = type(self).__name__
        if unbatched:
            raise ValueError(f"{name}: lengths needs a batched (3-D) input, got 2-D input")
        n, seq_len = (x.size(0), x.size(1)) if self.batch_first else (x.size(1), x.size(0))
        lengths = torch.as_tensor(lengths, device="cpu")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (n,):
            raise ValueError(
                f"{name}: lengths must be {n} integers (one per sequence), "
                f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        lengths = lengths.long()
        if n and (lengths.min() < 1 or lengths.max() > seq_len):
            raise ValueError(
                f"{name}: lengths must lie in [1, L={seq_len}], "
                f"got min {int(lengths.min())} and max {int(lengths.max())}"
            )
        return None if bool((lengths == seq_len).all()) else lengths

    def _initial_state(self, hx, x: Tensor, n: int, unbatched: bool) -> tuple[Tensor, ...]:
        """Zeros for ``hx=None``; otherwise check the shapes and add the batch dimension."""
        name = type(self).__name__
        rows = self.num_layers * self.num_directions
        sizes = [self.proj_size or self.hidden_size]
        if self.mode == "lstm":
            sizes.append(self.hidden_size)
        if hx is None:
            return tuple(x.new_zeros(rows, n, size) for size in sizes)
        if self.mode == "lstm":
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise ValueError(f"{name}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
            labels = ("hx[0] (h_0)", "hx[1] (c_0)")
        else:
            hx, labels = (hx,), ("hx",)
        states = []
        for label, s, size in zip(labels, hx, sizes, strict=True):
            expected = (rows, size) if unbatched else (rows, n, size)
            if not isinstance(s, Tensor) or tuple(s.shape) != expected:
                legend = "(D*num_layers, H_out)" if unbatched else "(D*num_layers, N, H_out)"
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ValueError(f"{name}: {label} must have shape {expected} {legend}, got {got}")
            states.append(s.unsqueeze(1) if unbatched else s)
        return tuple(states)

    # ---- the fused path ----------------------------------------------------------------------
    def _forward_fused(self, x, batch_sizes, hx, lengths):
        run = partial(
            run_fused,
            self.mode,
            self.nonlinearity,
            weights=self._flat_weights,
            bias=self.bias,
            num_layers=self.num_layers,
            dropout=self.dropout,
            training=self.training,
            bidirectional=self.bidirectional,
            batch_first=self.batch_first,
        )
        if lengths is None:
            return run(x, batch_sizes, hx)
        # Padded batch with lengths: pack it, so the kernel stops at each sequence's true end.
        packed = pack_padded_sequence(x, lengths, self.batch_first, enforce_sorted=False)
        hx = tuple(s.index_select(1, packed.sorted_indices) for s in hx)
        data, state = run(packed.data, packed.batch_sizes, hx)
        packed_out = PackedSequence(data, *packed[1:])
        total = x.size(1 if self.batch_first else 0)
        output, _ = pad_packed_sequence(packed_out, self.batch_first, total_length=total)
        return output, tuple(s.index_select(1, packed.unsorted_indices) for s in state)

    # ---- the cells path ----------------------------------------------------------------------
    _recurrence = staticmethod(recurrence)  # (layer, depth, suffix) -> Recurrence
    _DEFAULT_IMPL = "auto"

    def _forward_cells(self, x, batch_sizes, hx, lengths):
        if batch_sizes is not None:  # packed data -> padded, in the packed (sorted) batch order
            padded, lengths = pad_packed_sequence(PackedSequence(x, batch_sizes))
            output, state = unroll(self, padded, hx, lengths, self._recurrence)
            return pack_padded_sequence(output, lengths).data, state
        time_major = x.transpose(0, 1) if self.batch_first else x
        output, state = unroll(self, time_major, hx, lengths, self._recurrence)
        return (output.transpose(0, 1) if self.batch_first else output), state


def _probability(name: str, value: object) -> float:
    """``value`` as a float if it is a probability in [0, 1]; otherwise raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _zoneout_rates(zoneout: object, mode: str) -> tuple[float, ...]:
    """One zoneout rate per state tensor: (p,) for RNN/GRU; (p_h, p_c) for LSTM, where a single
    number sets both and a pair sets h and c apart (Krueger et al. zone out c and h separately)."""
    count = 2 if mode == "lstm" else 1
    if isinstance(zoneout, tuple | list) and mode == "lstm":
        if len(zoneout) != 2:
            raise ValueError(f"zoneout must be a probability or a pair (p_h, p_c), got {zoneout!r}")
        return tuple(_probability("zoneout", p) for p in zoneout)
    return (_probability("zoneout", zoneout),) * count


def _arguments(scope: dict) -> dict:
    """A subclass's constructor arguments (its ``locals()``), to pass on by keyword."""
    return {k: v for k, v in scope.items() if k not in ("self", "__class__")}


class RNN(_RecurrentLayer):
    r"""Multi-layer Elman RNN, a drop-in for ``torch.nn.RNN``:
    :math:`h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    ``nonlinearity`` is any of :data:`rnnkit.nn.cells.ACTIVATIONS` (torch offers tanh and relu;
    the others run on the cells path). ``forward(input, hx=None, lengths=None) -> (output, h_n)``.
    ``zoneout``, ``recurrent_dropout`` and ``input_dropout``: see the module docstring.
    """

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, proj_size=0, impl="auto", zoneout=0.0, recurrent_dropout=0.0,
                 input_dropout=0.0):
        # fmt: on
        super().__init__("rnn", **_arguments(locals()))


class LSTM(_RecurrentLayer):
    """Multi-layer LSTM, a drop-in for ``torch.nn.LSTM`` (gate order i, f, g, o; optional
    projection ``proj_size``); the equations are :func:`rnnkit.nn.cells.lstm_step`.

    ``forward(input, hx=None, lengths=None) -> (output, LSTMState(h_n, c_n))`` with
    ``hx = (h_0, c_0)``: h (D*num_layers, N, H_out), c (D*num_layers, N, H_cell).
    ``zoneout`` (one rate for h and c, or a pair ``(p_h, p_c)``), ``recurrent_dropout`` and
    ``input_dropout``: see the module docstring.
    """

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None,
                 *, impl="auto", zoneout=0.0, recurrent_dropout=0.0, input_dropout=0.0):
        # fmt: on
        super().__init__("lstm", **_arguments(locals()), nonlinearity="tanh")


class GRU(_RecurrentLayer):
    """Multi-layer GRU, a drop-in for ``torch.nn.GRU`` (gate order r, z, n, torch's candidate);
    the equations are :func:`rnnkit.nn.cells.gru_step`.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)``. ``zoneout``,
    ``recurrent_dropout`` and ``input_dropout``: see the module docstring.
    """

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, proj_size=0, impl="auto", zoneout=0.0, recurrent_dropout=0.0,
                 input_dropout=0.0):
        # fmt: on
        super().__init__("gru", **_arguments(locals()), nonlinearity="tanh")


__all__ = ["GRU", "LSTM", "RNN"]
