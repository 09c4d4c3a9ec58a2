r"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network"): a recurrent weight per unit.

    h_t = φ(W_ih x_t + b_ih + u ⊙ h_{t-1} + b_hh),   u = clip(w_hh, -u_max, u_max)

Each unit reads every input but only its own past (``w_hh`` is a vector (H,), not a matrix), so
the gradient of a unit through T steps is the product of its own ``φ'(·) u`` -- with relu and
``|u| <= 1`` it can neither explode nor (for u near 1) vanish, which is how the paper trains on
sequences of over 5,000 steps; layers are stacked to mix the units.

What is here: :class:`IndRNN`, a :class:`~rnnkit.nn.cell_layer.CellLayer` (the stack, both
directions, lengths, PackedSequence, dropout between layers, zoneout and variational dropout)
of :func:`rnnkit.nn.cells.indrnn_recur`. What is not here: the equations (``cells.py``), batch
normalisation between layers and the residual variant of the paper, a fused kernel.

.. note:: ``recurrent_max`` is applied by clamping ``w_hh`` inside the step (``u = clip(w_hh)``),
   not by clipping the parameter after each optimiser step as the paper's code does: the layer
   then honours ``|u| <= u_max`` in every use -- training with any optimiser, evaluation, ONNX
   export (a Clip node), the analyses -- without the trainer knowing about it. The difference:
   a weight pushed past the bound stops receiving gradient (the clamp's slope is 0 there) and
   acts as ``±u_max`` until the gradient of the loss turns it back, which a post-step clip would
   have reset at once.
"""

from __future__ import annotations

import numbers

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import Recurrence, State, mask_hidden
from rnnkit.nn.cell_layer import CellLayer
from rnnkit.nn.cells import ACTIVATIONS, check_nonlinearity, indrnn_recur, torch_default_init


class IndRNN(CellLayer):
    """Multi-layer IndRNN; ``forward(input, hx=None, lengths=None) -> (output, h_n)`` with the
    contract of :class:`rnnkit.nn.layers.GRU` (see :class:`~rnnkit.nn.cell_layer.CellLayer`).

    ``nonlinearity`` is any of :data:`rnnkit.nn.cells.ACTIVATIONS` (relu by default, as in the
    paper); ``recurrent_max`` (None: no bound) bounds ``|w_hh|`` (see the module's note).
    Parameters per layer ``k`` (and ``_reverse``): ``weight_ih_l{k}`` (H, H_in),
    ``weight_hh_l{k}`` (H,), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (H). Initialisation: torch's
    uniform(-1/sqrt(H), 1/sqrt(H)) for ``weight_ih`` and the biases, ``w_hh`` uniform in (0, 1)
    -- every unit a leaky memory of its own time scale, as the paper initialises its adding-
    problem networks.
    """

    cell = "indrnn"

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="relu", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, recurrent_max=None, zoneout=0.0, recurrent_dropout=0.0, input_dropout=0.0):
        # fmt: on
        check_nonlinearity(nonlinearity)
        if recurrent_max is not None and (
            isinstance(recurrent_max, bool)
            or not isinstance(recurrent_max, numbers.Real)
            or not 0 < recurrent_max < float("inf")
        ):
            raise ValueError(f"recurrent_max must be None or a number > 0, got {recurrent_max!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, gates=1, zoneout=zoneout,
                         recurrent_dropout=recurrent_dropout,
                         input_dropout=input_dropout)  # fmt: skip
        self.nonlinearity = nonlinearity
        self.recurrent_max = None if recurrent_max is None else float(recurrent_max)

    def parameter_shapes(self, layer_in: int) -> dict[str, tuple[int, ...]]:
        """W_ih (H, H_in), the per-unit w_hh (H,), and the biases (H,)."""
        shapes = {"weight_ih": (self.hidden_size, layer_in), "weight_hh": (self.hidden_size,)}
        if self.bias:
            shapes |= {"bias_ih": (self.hidden_size,), "bias_hh": (self.hidden_size,)}
        return shapes

    def reset_parameters(self) -> None:
        """torch's uniform(-1/sqrt(H), 1/sqrt(H)), then every ``w_hh`` uniform in (0, 1)."""
        torch_default_init(self, self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.uniform_(p, 0.0, 1.0)

    def recurrence(self, layer: int, direction: int = 0) -> Recurrence:
        """One (layer, direction): W_ih x + b_ih for many steps at once, then
        :func:`~rnnkit.nn.cells.indrnn_recur` step by step (recurrent dropout masks h_{t-1})."""
        kinds = ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        w_ih, b_ih, w_hh, b_hh = (self.layer_weight(k, layer, direction) for k in kinds)
        activation, bound = ACTIVATIONS[self.nonlinearity], self.recurrent_max

        def project(x: Tensor) -> Tensor:
            return F.linear(x, w_ih, b_ih)

        def recur(x: Tensor, s: State, m: Tensor | None = None) -> State:
            return (indrnn_recur(x, mask_hidden(s, m)[0], w_hh, b_hh, activation, bound),)

        return Recurrence(project, recur)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "relu":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + (f", recurrent_max={self.recurrent_max}" if self.recurrent_max else "")
