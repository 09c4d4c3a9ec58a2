"""Multi-layer ``RNN``, ``LSTM`` and ``GRU``: drop-ins for their torch.nn namesakes.

Each is a real ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (so an ``nn.RNNBase``): torch.nn's
constructor builds and checks the parameters (torch.nn's names, order, initialisation and error
messages; ``load_state_dict``, pickling and ``.to`` work as for torch.nn), and torch.nn's
``check_forward_args``, ``check_input``, ``get_expected_hidden_size``, ``check_hidden_size``,
``permute_hidden``, ``flatten_parameters``, ``_flat_weights`` and ``all_weights`` serve as they
are. ``forward`` keeps torch.nn's contract, checks and messages -- the LSTM state is a plain
tuple ``(h, c)`` -- and adds ``lengths`` (padded batches) and the choice of path:

* ``impl="fused"`` -- torch's fused kernels over these parameters (``fused.py``);
* ``impl="cells"`` -- our step functions (``cells.py``) unrolled through time (``unroll.py``);
  every configuration, e.g. a softplus RNN, which torch has no kernel for;
* ``impl="auto"`` (default) -- fused where a kernel exists, else cells.

``mode`` is torch.nn's (``'LSTM'``, ``'GRU'``, ``'RNN_TANH'``, ``'RNN_RELU'``); an RNN with an
activation torch lacks has ``'RNN_'`` + its name in capitals (``'RNN_SOFTPLUS'``), a mode that
only rnnkit's forward runs. Regularisers inside the recurrence, keyword-only and 0 by default,
exist on the cells path only (a non-zero one makes ``impl="auto"`` pick cells and
``impl="fused"`` an error; the equations are in :func:`rnnkit.nn.unroll.regularised`):

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

torch's tools: ``torch.jit.script`` compiles each class as it is -- its ``forward`` has a
TorchScript branch for the fused path (Tensor input, ``lengths=None``; a layer that needs the
cells path is refused in one line). Under ``torch.fx`` tracing a layer is one ``call_module``
node, as torch.nn's layers are. :meth:`~_TwoPaths.to_torch` gives the torch.nn layer over the
same parameters (shared), where torch has one.

What is not here: layers of cells torch lacks (``cell_layer.py``: LayerNormLSTM, ...); dynamic
quantization and ``torch.load``'s allowlist (``interop.py``).
"""

from __future__ import annotations

import warnings

import torch
from torch import _VF, Tensor, fx, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.devices import to_device
from rnnkit.nn.base import RecurrentLayer
from rnnkit.nn.cells import ACTIVATIONS
from rnnkit.nn.checks import check_choice, check_lengths, check_probability, check_zoneout
from rnnkit.nn.fused import autocast_dtype, has_fused_kernel, run_fused
from rnnkit.nn.interop import register
from rnnkit.nn.unroll import unroll

IMPLS = ("auto", "fused", "cells")


class _TwoPaths(RecurrentLayer):
    """The forward of rnnkit's torch-named layers -- torch.nn's checks, then the fused or the
    cells path -- and the extensions (``impl``, ``lengths``, zoneout, variational dropout)."""

    nonlinearity = "tanh"  # an RNN's own; LSTM and GRU cells have none to choose
    _DEFAULT_IMPL = "auto"
    # Python-only, not compiled by torch.jit.script (torch.nn.RNNBase lists "all_weights")
    __jit_unused_properties__ = ["all_weights", "use_fused", "regularised", "cell", "_name"]
    # torch.jit.script types the attributes from the nearest class annotations, which must be
    # types (under ``from __future__ import annotations`` they would be strings); zoneout, one
    # rate per state tensor, is typed from its value
    __annotations__ = {"impl": str, "recurrent_dropout": float, "input_dropout": float}

    def _extend(self, impl, zoneout, recurrent_dropout, input_dropout) -> None:
        """Check and set the extensions (after the torch-named parameters exist)."""
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.input_dropout = check_probability("input_dropout", input_dropout)
        self.zoneout = check_zoneout(zoneout, len(self.state_spec().names))
        check_choice("impl", impl, IMPLS)
        if impl == "fused" and not has_fused_kernel(self.cell, self.nonlinearity):
            raise ValueError(
                f"impl='fused' needs a torch kernel, which exists for nonlinearity 'tanh' or "
                f"'relu' only; got nonlinearity={self.nonlinearity!r} (use impl='cells' or 'auto')"
            )
        if impl == "fused" and self.regularised:
            raise ValueError(
                "impl='fused' cannot apply zoneout, recurrent_dropout or input_dropout (torch's "
                f"kernels have no such option); got zoneout={zoneout!r}, recurrent_dropout="
                f"{recurrent_dropout!r}, input_dropout={input_dropout!r} (use impl='cells')"
            )
        self.impl = impl

    @property
    def use_fused(self) -> bool:
        """Whether forward runs torch's fused kernel (set ``impl`` to switch paths)."""
        return (
            self.impl != "cells"
            and has_fused_kernel(self.cell, self.nonlinearity)
            and not self.regularised
        )

    @property
    def regularised(self) -> bool:
        """Whether zoneout, recurrent or input dropout is on (they need the cells path)."""
        return bool(self.recurrent_dropout or self.input_dropout or any(self.zoneout))

    def flatten_parameters(self) -> None:
        """torch.nn's (cuDNN's weight layout) where a torch kernel runs this mode; else a no-op."""
        if has_fused_kernel(self.cell, self.nonlinearity):
            nn.RNNBase.flatten_parameters(self)

    def to_torch(self) -> nn.RNNBase:
        """The torch.nn layer this one computes: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` holding
        the very same parameters (shared, not copied; gradients reach them), in the same
        train/eval mode -- for what wants torch's own class (dynamic quantization builds
        torch's quantized layers from it). ``ValueError`` where torch.nn has no such layer
        (an activation other than tanh/relu, zoneout, recurrent or input dropout); ``lengths``
        is rnnkit's alone."""
        if not has_fused_kernel(self.cell, self.nonlinearity) or self.regularised:
            raise ValueError(
                f"{self!r} has no torch.nn equivalent: torch.nn.{self._name} has "
                "nonlinearity 'tanh' or 'relu' only and no zoneout, recurrent or input dropout"
            )
        options = {"proj_size": self.proj_size} if self.cell == "lstm" else {}
        if self.cell == "rnn":
            options["nonlinearity"] = self.nonlinearity
        sizes = (self.input_size, self.hidden_size, self.num_layers)
        flags = (self.bias, self.batch_first, self.dropout, self.bidirectional)
        with warnings.catch_warnings():  # the dropout warning was given when self was built
            warnings.simplefilter("ignore")
            twin = getattr(nn, self._name)(*sizes, *flags, **options, device="meta")
        twin.load_state_dict(self.state_dict(keep_vars=True), assign=True)  # the same tensors
        return twin.train(self.training)

    def __prepare_scriptable__(self) -> _TwoPaths:
        """Before ``torch.jit.script`` compiles this layer: TorchScript runs the fused path (each
        class's ``forward`` has a branch for it), so refuse what only the cells path computes."""
        if not self.use_fused:
            raise ValueError(
                f"torch.jit.script compiles the fused path only; {self!r} runs the cells path "
                "(use impl='auto' or 'fused', nonlinearity 'tanh' or 'relu', no zoneout, "
                "recurrent or input dropout)"
            )
        return self

    def extra_repr(self) -> str:
        """torch.nn's, then the extensions that differ from their defaults."""
        s = nn.RNNBase.extra_repr(self)
        if self.nonlinearity not in ("tanh", "relu"):  # torch.nn's repr shows neither
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.impl != self._DEFAULT_IMPL:
            s += f", impl={self.impl!r}"
        if any(self.zoneout):
            rates = self.zoneout
            s += f", zoneout={rates[0] if len(set(rates)) == 1 else rates!r}"
        for key in ("recurrent_dropout", "input_dropout"):
            if getattr(self, key):
                s += f", {key}={getattr(self, key)!r}"
        return s

    # ---- forward: torch.nn's checks, then one of the two paths -------------------------------
    def _forward(self, input, hx=None, lengths=None):
        """Run the layer: torch.nn's ``forward(input, hx=None)`` (see the module docstring),
        plus ``lengths`` -- N integers, each sequence's length in a padded batch."""
        if isinstance(input, fx.Proxy):  # symbolic tracing: one node, like a torch.nn leaf
            return _record_call(self, input, hx, lengths)
        self._update_flat_weights()
        lstm = len(self.state_spec().names) == 2
        batch_sizes = sorted_indices = unsorted_indices = None
        unbatched = False
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{self._name}: lengths must be None for a PackedSequence input")
            x, batch_sizes, sorted_indices, unsorted_indices = input
            hx = self._zeros(x, int(batch_sizes[0])) if hx is None else self._hx(hx, lstm)
            if hx is not None and sorted_indices is not None:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(self._dim_message(input.dim()))
            unbatched = input.dim() == 2
            x = input.unsqueeze(0 if self.batch_first else 1) if unbatched else input
            n = x.size(0 if self.batch_first else 1)
            hx = (
                self._zeros(x, n) if hx is None else self._batched_hx(self._hx(hx, lstm), unbatched)
            )
        self.check_forward_args(x, hx, batch_sizes)
        if batch_sizes is None:
            if x.size(1 if self.batch_first else 0) == 0:  # as torch's kernels say
                raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
            n, steps = (x.size(0), x.size(1)) if self.batch_first else (x.size(1), x.size(0))
            lengths = check_lengths(self._name, lengths, n, steps, unbatched)
        state = tuple(hx) if lstm else (hx,)
        run = self._forward_fused if self.use_fused else self._forward_cells
        output, state = run(x, batch_sizes, state, lengths)
        dtype = autocast_dtype(self.cell, x)
        if dtype is not None:  # torch.nn's dtypes under CPU autocast, on either path
            output, state = output.to(dtype), tuple(s.to(dtype) for s in state)

        if unsorted_indices is not None:
            state = tuple(s.index_select(1, unsorted_indices) for s in state)
        if batch_sizes is not None:
            output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
        elif unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = tuple(s.squeeze(1) for s in state)
        return output, (state if lstm else state[0])

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _dim_message(self, dim: int) -> str:
        if self.mode.startswith("RNN"):  # torch.nn.RNN words it so
            return f"RNN: Expected input to be 2D or 3D, got {dim}D tensor instead"
        return f"{self._name}: Expected input to be 2D or 3D, got {dim}D instead"

    def _zeros(self, x: Tensor, n: int):
        """hx=None: zeros of torch.nn's structure (h, or the pair (h, c))."""
        rows = self.num_layers * self.num_directions
        zeros = [x.new_zeros(rows, n, size) for size in self.state_spec().sizes]
        return tuple(zeros) if len(zeros) == 2 else zeros[0]

    def _hx(self, hx, lstm: bool):
        """An LSTM's hx as a tuple (h_0, c_0); an RNN's or GRU's as it came."""
        if not lstm:
            return hx
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ValueError(f"{self._name}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
        return tuple(hx)

    def _batched_hx(self, hx, unbatched: bool):
        """torch.nn's check that hx has the input's batchedness; add the batch dimension."""
        want = 2 if unbatched else 3
        kind = "unbatched 2-D" if unbatched else "batched 3-D"
        if isinstance(hx, tuple):
            if hx[0].dim() != want or hx[1].dim() != want:
                raise RuntimeError(
                    f"For {kind} input, hx and cx should also be {want}-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            return tuple(s.unsqueeze(1) for s in hx) if unbatched else hx
        if hx.dim() != want:
            raise RuntimeError(
                f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor"
            )
        return hx.unsqueeze(1) if unbatched else hx

    # ---- the fused path ----------------------------------------------------------------------
    def _forward_fused(self, x, batch_sizes, hx, lengths):
        if lengths is None:
            return run_fused(self, x, batch_sizes, hx)
        # Padded batch with lengths: pack it, so the kernel stops at each sequence's true end.
        # Sorted here as torch's enforce_sorted=False sorts, but the order goes to the device in
        # one non-blocking copy (torch's own copy of it waits for the GPU on every batch).
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
        sorted_lengths, order = torch.sort(lengths, descending=True)
        order = to_device(order, x.device)
        inverse = torch.empty_like(order).scatter_(
            0, order, torch.arange(len(order), device=x.device)
        )
        batch_dim = 0 if self.batch_first else 1
        x = x.index_select(batch_dim, order)
        packed = pack_padded_sequence(x, sorted_lengths, self.batch_first)
        hx = tuple(s.index_select(1, order) for s in hx)
        data, state = run_fused(self, packed.data, packed.batch_sizes, hx)
        total = x.size(1 if self.batch_first else 0)
        packed_out = PackedSequence(data, packed.batch_sizes)
        output, _ = pad_packed_sequence(packed_out, self.batch_first, total_length=total)
        return output.index_select(batch_dim, inverse), tuple(
            s.index_select(1, inverse) for s in state
        )

    # ---- the cells path ----------------------------------------------------------------------
    def _forward_cells(self, x, batch_sizes, hx, lengths):
        if batch_sizes is not None:  # packed data -> padded, in the packed (sorted) batch order
            padded, lengths = pad_packed_sequence(PackedSequence(x, batch_sizes))
            output, state = unroll(self, padded, hx, lengths)
            return pack_padded_sequence(output, lengths).data, state
        time_major = x.transpose(0, 1) if self.batch_first else x
        output, state = unroll(self, time_major, hx, lengths)
        return (output.transpose(0, 1) if self.batch_first else output), state


def _script_batch(input: Tensor, batch_first: bool) -> tuple[Tensor, bool, int]:
    """TorchScript's view of the input: (3-D input, whether it came unbatched, N)."""
    if input.dim() not in (2, 3):
        raise ValueError(f"Expected input to be 2D or 3D, got {input.dim()}D instead")
    unbatched = input.dim() == 2
    if unbatched:
        input = input.unsqueeze(0 if batch_first else 1)
    return input, unbatched, input.size(0 if batch_first else 1)


def _record_call(layer: nn.Module, input: fx.Proxy, hx, lengths) -> fx.Proxy:
    """Under ``torch.fx`` tracing, record the layer as one ``call_module`` node -- what the
    tracer does for torch.nn's own layers, which it keeps whole by their ``__module__``."""
    tracer = input.tracer
    args = (input,) if hx is None else (input, hx)
    kwargs = {} if lengths is None else {"lengths": lengths}
    return tracer.create_proxy("call_module", tracer.path_of_module(layer), args, kwargs)


class RNN(_TwoPaths, nn.RNN):
    r"""Multi-layer Elman RNN, a drop-in for ``torch.nn.RNN`` (and one):
    :math:`h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    ``nonlinearity`` is any of :data:`rnnkit.nn.cells.ACTIVATIONS` (torch offers tanh and relu;
    the others run on the cells path, ``mode`` ``'RNN_' + nonlinearity.upper()``).
    ``forward(input, hx=None, lengths=None) -> (output, h_n)``. ``impl``, ``zoneout``,
    ``recurrent_dropout`` and ``input_dropout``: see the module docstring.
    """

    cell = "rnn"

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, proj_size=0, impl="auto", zoneout=0.0, recurrent_dropout=0.0,
                 input_dropout=0.0):
        # fmt: on
        if proj_size:  # torch.nn.RNN refuses the argument; 0 is accepted here
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in ACTIVATIONS:
            choices = ", ".join(repr(name) for name in ACTIVATIONS)
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from {choices}.")
        mode = "RNN_RELU" if nonlinearity == "relu" else "RNN_TANH"  # what torch.nn can build
        nn.RNNBase.__init__(self, mode, input_size, hidden_size, num_layers, bias, batch_first,
                            dropout, bidirectional, device=device, dtype=dtype)  # fmt: skip
        self.nonlinearity, self.mode = nonlinearity, f"RNN_{nonlinearity.upper()}"
        self._extend(impl, zoneout, recurrent_dropout, input_dropout)

    def forward(self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None):
        """See the class docstring. Compiled by TorchScript: the fused path below (a Tensor
        input, no ``lengths``), with torch.nn's checks."""
        if not torch.jit.is_scripting():
            return self._forward(input, hx, lengths)
        assert lengths is None, "lengths is rnnkit's Python forward only"  # TorchScript: fused
        x, unbatched, n = _script_batch(input, self.batch_first)
        rows = self.num_layers * (2 if self.bidirectional else 1)
        h = x.new_zeros(rows, n, self.hidden_size) if hx is None else hx
        h = h.unsqueeze(1) if unbatched and hx is not None else h
        self.check_forward_args(x, h, None)
        options = (self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if self.mode == "RNN_RELU":
            out, h = _VF.rnn_relu(x, h, self._flat_weights, *options, self.batch_first)
        else:
            out, h = _VF.rnn_tanh(x, h, self._flat_weights, *options, self.batch_first)
        if unbatched:
            return out.squeeze(0 if self.batch_first else 1), h.squeeze(1)
        return out, h


class LSTM(_TwoPaths, nn.LSTM):
    """Multi-layer LSTM, a drop-in for ``torch.nn.LSTM`` (and one): gate order i, f, g, o,
    optional projection ``proj_size``; the equations are :func:`rnnkit.nn.cells.lstm_step`.

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))`` with ``hx = (h_0, c_0)``:
    h (D*num_layers, N, H_out), c (D*num_layers, N, H_cell). ``impl``, ``zoneout`` (one rate
    for h and c, or a pair ``(p_h, p_c)``), ``recurrent_dropout`` and ``input_dropout``: see the
    module docstring.
    """

    cell = "lstm"

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None,
                 *, impl="auto", zoneout=0.0, recurrent_dropout=0.0, input_dropout=0.0):
        # fmt: on
        nn.RNNBase.__init__(self, "LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                            dropout, bidirectional, proj_size, device, dtype)  # fmt: skip
        self._extend(impl, zoneout, recurrent_dropout, input_dropout)

    def forward(
        self,
        input: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | None = None,
    ):
        """See the class docstring. Compiled by TorchScript: the fused path below (a Tensor
        input, no ``lengths``), with torch.nn's checks."""
        if not torch.jit.is_scripting():
            return self._forward(input, hx, lengths)
        assert lengths is None, "lengths is rnnkit's Python forward only"  # TorchScript: fused
        x, unbatched, n = _script_batch(input, self.batch_first)
        rows = self.num_layers * (2 if self.bidirectional else 1)
        if hx is None:
            h_out = self.proj_size if self.proj_size > 0 else self.hidden_size
            hx = (x.new_zeros(rows, n, h_out), x.new_zeros(rows, n, self.hidden_size))
        elif unbatched:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        self.check_forward_args(x, hx, None)
        out, h, c = _VF.lstm(x, hx, self._flat_weights, self.bias, self.num_layers, self.dropout,
                             self.training, self.bidirectional, self.batch_first)  # fmt: skip
        if unbatched:
            return out.squeeze(0 if self.batch_first else 1), (h.squeeze(1), c.squeeze(1))
        return out, (h, c)


class GRU(_TwoPaths, nn.GRU):
    """Multi-layer GRU, a drop-in for ``torch.nn.GRU`` (and one): gate order r, z, n, torch's
    candidate; the equations are :func:`rnnkit.nn.cells.gru_step`.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)``. ``impl``, ``zoneout``,
    ``recurrent_dropout`` and ``input_dropout``: see the module docstring.
    """

    cell = "gru"

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, proj_size=0, impl="auto", zoneout=0.0, recurrent_dropout=0.0,
                 input_dropout=0.0):
        # fmt: on
        if proj_size:  # torch.nn.GRU refuses the argument; 0 is accepted here
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        nn.RNNBase.__init__(self, "GRU", input_size, hidden_size, num_layers, bias, batch_first,
                            dropout, bidirectional, device=device, dtype=dtype)  # fmt: skip
        self._extend(impl, zoneout, recurrent_dropout, input_dropout)

    def forward(self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None):
        """See the class docstring. Compiled by TorchScript: the fused path below (a Tensor
        input, no ``lengths``), with torch.nn's checks."""
        if not torch.jit.is_scripting():
            return self._forward(input, hx, lengths)
        assert lengths is None, "lengths is rnnkit's Python forward only"  # TorchScript: fused
        x, unbatched, n = _script_batch(input, self.batch_first)
        rows = self.num_layers * (2 if self.bidirectional else 1)
        h = x.new_zeros(rows, n, self.hidden_size) if hx is None else hx
        h = h.unsqueeze(1) if unbatched and hx is not None else h
        self.check_forward_args(x, h, None)
        out, h = _VF.gru(x, h, self._flat_weights, self.bias, self.num_layers, self.dropout,
                         self.training, self.bidirectional, self.batch_first)  # fmt: skip
        if unbatched:
            return out.squeeze(0 if self.batch_first else 1), h.squeeze(1)
        return out, h


register(RNN, LSTM, GRU)  # torch.load's allowlist, dynamic quantization (see interop.py)

__all__ = ["GRU", "LSTM", "RNN"]
