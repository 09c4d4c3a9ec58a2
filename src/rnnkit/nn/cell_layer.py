"""``CellLayer``: a whole recurrent layer made from one cell, for cells torch has no kernel for.

A cell is its equations (``cells.py``, ``layernorm.py``) bound to a layer's weights by
:meth:`~rnnkit.nn.base.RecurrentLayer.recurrence`. ``CellLayer`` is everything around it:
torch.nn-style parameters per (layer, direction) (``weight_ih_l{k}[_reverse]``, ...), stacking,
both directions, dropout between layers, the regularisers inside the recurrence (zoneout,
recurrent and input dropout: :func:`rnnkit.nn.unroll.regularised`), unbatched input, padded
batches with ``lengths`` and PackedSequence in -> PackedSequence out -- all on the cells path
(:func:`rnnkit.nn.unroll.unroll`). A new cell subclasses it and writes three things: its
``cell`` name, its parameters' shapes (:meth:`CellLayer.parameter_shapes`) and its
``recurrence``; LayerNormLSTM and IndRNN are examples.

Shape legend: ``N`` batch, ``L`` sequence length, ``D`` directions, ``H_in`` input_size, ``H``
hidden_size. Input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or (L, H_in) unbatched;
output (L, N, D*H) likewise; each state tensor (D*num_layers, N, H) whatever ``batch_first``.

What is not here: the equations, torch's fused kernels (the RNN/LSTM/GRU drop-ins of
``layers.py`` have them) and the checks themselves (``checks.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.nn.base import SUFFIXES, RecurrentLayer, StateSpec
from rnnkit.nn.cells import LSTMState, torch_default_init
from rnnkit.nn.checks import (
    check_features,
    check_input,
    check_lengths,
    check_probability,
    check_zoneout,
    initial_state,
    set_stack_arguments,
)
from rnnkit.nn.unroll import unroll


class CellLayer(RecurrentLayer):
    """A multi-layer, optionally bidirectional layer of one cell, on the cells path.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)``, or ``(output, LSTMState(h_n,
    c_n))`` for a cell whose state is ``("h", "c")``; ``hx`` likewise (None: zeros).

    Subclasses call ``super().__init__(..., gates=G, state=("h",) or ("h", "c"))`` and define
    ``cell``, :meth:`recurrence` and, if their parameters are not torch.nn's ``weight_ih``
    (G*H, H_in), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H),
    :meth:`parameter_shapes`.
    """

    impl = "cells"  # the only path: torch has no kernel for these cells
    use_fused = False

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, gates: int,
                 state: tuple[str, ...] = ("h",), zoneout=0.0, recurrent_dropout=0.0,
                 input_dropout=0.0) -> None:
        # fmt: on
        super().__init__()
        set_stack_arguments(self, input_size, hidden_size, num_layers, bias, batch_first,
                            bidirectional, dropout, stacklevel=5)  # fmt: skip
        self.gates, self.state_names = gates, state
        self.zoneout = check_zoneout(zoneout, len(state))
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.input_dropout = check_probability("input_dropout", input_dropout)
        self._all_weights: list[list[str]] = [[] for _ in range(num_layers * self.num_directions)]
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            self.add_weights(self.parameter_shapes(layer_in), factory, layers=[layer])
        self.reset_parameters()

    def parameter_shapes(self, layer_in: int) -> dict[str, tuple[int, ...]]:
        """The parameters of one (layer, direction) reading ``layer_in`` features, by kind
        (registration order): torch.nn's four for a cell of ``gates`` chunks."""
        size = self.gates * self.hidden_size
        shapes = {"weight_ih": (size, layer_in), "weight_hh": (size, self.hidden_size)}
        if self.bias:
            shapes |= {"bias_ih": (size,), "bias_hh": (size,)}
        return shapes

    def add_weights(self, shapes: dict[str, tuple[int, ...]], factory: dict, layers=None) -> None:
        """Register ``{kind}_l{k}[_reverse]`` of ``shapes[kind]`` (uninitialised) for every
        direction of each layer in ``layers`` (default all), in (layer, direction) order."""
        for layer in range(self.num_layers) if layers is None else layers:
            for direction in range(self.num_directions):
                names = self._all_weights[layer * self.num_directions + direction]
                for kind, shape in shapes.items():
                    names.append(f"{kind}_l{layer}{SUFFIXES[direction]}")
                    self.register_parameter(names[-1], nn.Parameter(torch.empty(shape, **factory)))

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per (layer, direction), as torch.nn's ``all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def reset_parameters(self) -> None:
        """torch.nn's default: every parameter uniform in (-1/sqrt(H), 1/sqrt(H))."""
        torch_default_init(self, self.hidden_size)

    def state_spec(self) -> StateSpec:
        return StateSpec(self.state_names, (self.hidden_size,) * len(self.state_names))

    def fused_step(self, layer: int, direction: int = 0) -> None:
        """None: torch has no one-step kernel for this cell."""
        return None

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False, "recurrent_dropout": 0.0,
                    "input_dropout": 0.0}  # fmt: skip
        if any(self.zoneout):
            value = self.zoneout[0] if len(set(self.zoneout)) == 1 else self.zoneout
            s += f", zoneout={value!r}"
        for key, default in defaults.items():
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)!r}"
        return s

    def forward(self, input, hx=None, lengths=None):
        """Run the layer (see the class docstring); input (L, N, H_in), batch-first, unbatched
        (L, H_in) or a PackedSequence; ``lengths`` (N,) valid steps of a padded batch."""
        return forward_padded(self, input, hx, lengths, unroll, self.layer_weight("weight_ih", 0))


def forward_padded(layer: RecurrentLayer, input, hx, lengths, run, weight):
    """A layer's ``forward`` around ``run(layer, x, hx, lengths)`` -- which maps a time-major
    batch x (L, N, H_in), the checked initial states (each (rows, N, size)) and the CPU lengths
    (or None) to (output (L, N, D*H), final states) -- with the checks, batch_first, unbatched
    input and PackedSequence in and out; ``weight`` is the parameter whose dtype x must have.
    Returns ``(output, h_n)``, or ``(output, LSTMState(h_n, c_n))`` for two state tensors."""
    name = type(layer).__name__
    packed = input if isinstance(input, PackedSequence) else None
    unbatched = False
    if packed is not None:
        if lengths is not None:
            raise ValueError(f"{name}: lengths must be None for a PackedSequence input")
        x, lengths = pad_packed_sequence(PackedSequence(*packed[:2]))  # (L, N, H_in), sorted
    else:
        unbatched = check_input(name, input)
        x = input.unsqueeze(0 if layer.batch_first else 1) if unbatched else input
        x = x.transpose(0, 1) if layer.batch_first else x  # (L, N, H_in)
        lengths = check_lengths(name, lengths, x.size(1), x.size(0), unbatched)
    check_features(name, x, layer.input_size, weight, x.size(0))
    rows = layer.num_layers * layer.num_directions
    hx = initial_state(name, hx, layer.state_spec().sizes, rows, x, unbatched)
    if packed is not None and packed.sorted_indices is not None:
        hx = tuple(s.index_select(1, packed.sorted_indices) for s in hx)
    output, state = run(layer, x, hx, lengths)  # (L, N, D*H), each (rows, N, size)
    if packed is not None:
        if packed.unsorted_indices is not None:
            state = tuple(s.index_select(1, packed.unsorted_indices) for s in state)
        data = pack_padded_sequence(output, lengths).data
        output = PackedSequence(data, *packed[1:])
    else:
        output = output.transpose(0, 1) if layer.batch_first else output
        if unbatched:
            output = output.squeeze(0 if layer.batch_first else 1)
            state = tuple(s.squeeze(1) for s in state)
    return output, (LSTMState(*state) if len(state) == 2 else state[0])
