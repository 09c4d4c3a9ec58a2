"""Gate saturation per unit: how often each gate is nearly shut or nearly open.

Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks", Fig. 3:
a gate value below ``low`` (0.1) is *left-saturated* (shut), above ``high`` (0.9)
*right-saturated* (open). A forget-gate unit right-saturated almost always is an integrator
that remembers for a long time; a unit on the diagonal ``left + right = 1`` acts like a switch.

What is here: :func:`gate_saturation` -- per layer, per sigmoid gate, the fractions of the traced
positions at which each unit is saturated -- as plain NumPy arrays. What is not here: running
the model (:mod:`rnnkit.analysis.activations`) and the scatter plot
(:func:`rnnkit.analysis.activation_plots.plot_gate_saturation`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from rnnkit.analysis.activations import Trace
from rnnkit.errors import UserError

#: The sigmoid gates whose saturation is measured (the tanh candidates are left out).
SATURATING_GATES = {"lstm": ("input", "forget", "output"), "gru": ("reset", "update")}


class Saturation(NamedTuple):
    """Per unit, the fraction of positions with the gate below ``low`` / above ``high``."""

    left: np.ndarray  # (H,) float64: fraction of positions with value < low
    right: np.ndarray  # (H,) float64: fraction of positions with value > high
    low: float = 0.1
    high: float = 0.9


def gate_saturation(
    trace: Trace, *, low: float = 0.1, high: float = 0.9
) -> list[dict[str, Saturation]]:
    """For each layer, gate name -> :class:`Saturation` of its H units over the traced text.

    Gates: LSTM ``input``, ``forget``, ``output``; GRU ``reset``, ``update``; a modern
    layer's, as its mixer reads them out (e.g. mLSTM ``forget`` per head and ``output`` per
    unit; Mamba-2 ``decay`` per head). Raises :class:`UserError` for a cell without gates (a
    vanilla RNN) and unless 0 <= low < high <= 1.
    """
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise UserError(f"{name} must be a number in [0, 1], got {value!r}")
    if not low < high:
        raise UserError(f"low must be smaller than high, got low={low} and high={high}")
    names = SATURATING_GATES.get(trace.cell) or tuple(trace.gates[0] if trace.gates else ())
    if not names:
        raise UserError(
            f"gate saturation needs a cell with gates; a {trace.cell!r} network has no gates"
        )
    result = []
    for layer_gates in trace.gates:
        per_gate = {}
        for name in names:
            gate = np.asarray(layer_gates[name])  # (L, H)
            per_gate[name] = Saturation(
                left=(gate < low).mean(axis=0, dtype=np.float64),
                right=(gate > high).mean(axis=0, dtype=np.float64),
                low=float(low),
                high=float(high),
            )
        result.append(per_gate)
    return result
