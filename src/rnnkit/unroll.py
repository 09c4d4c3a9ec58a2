"""The cells path: the step equations of ``cells.py`` unrolled through time, layer by layer.

What is here: ``unroll`` runs a stacked, optionally bidirectional RNN/LSTM/GRU over a padded,
time-major batch by calling :func:`rnnkit.cells.rnn_step` / ``lstm_step`` / ``gru_step`` once per
step, with the weights of an :mod:`rnnkit.layers` module. Variable lengths are handled the way the
lecture's "variable depth" puts it: at step t only the sequences still running are computed
(the batch sorted longest first, the step applied to its first ``active[t]`` rows, as a
PackedSequence's ``batch_sizes`` say); past a sequence's end its state is held and its output is
zero, and the reverse direction reads each sequence backwards within its own length.

What is not here: argument checks, PackedSequence and batch_first conversion (``layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells import ACTIVATIONS, gru_step, lstm_step, rnn_step

State = tuple[Tensor, ...]  # (h,) or (h, c)


def unroll(layer: nn.Module, x: Tensor, hx: State, lengths: Tensor | None) -> tuple[Tensor, State]:
    """Run ``layer``'s cells over ``x`` (L, N, H_in) from ``hx`` (each (D*num_layers, N, *)).

    Returns the top layer's output (L, N, D*H_out) and the final states, stacked like ``hx``.
    """
    directions = ("", "_reverse") if layer.bidirectional else ("",)
    finals: list[State] = []
    for depth in range(layer.num_layers):
        outputs = []
        for direction, suffix in enumerate(directions):
            step = step_function(layer, depth, suffix)
            state = tuple(s[depth * len(directions) + direction] for s in hx)
            if direction == 0:
                out, state = scan(step, x, state, lengths)
            else:
                out, state = scan(step, reverse(x, lengths), state, lengths)
                out = reverse(out, lengths)
            outputs.append(out)
            finals.append(state)
        x = torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]  # (L, N, D*H_out)
        if layer.dropout and layer.training and depth < layer.num_layers - 1:
            x = F.dropout(x, layer.dropout, training=True)  # between layers, not after the last
    return x, tuple(torch.stack(s) for s in zip(*finals, strict=True))


def step_function(layer: nn.Module, depth: int, suffix: str) -> Callable[[Tensor, State], State]:
    """The cell equation of one (layer, direction), bound to its weights: (x, state) -> state."""
    w = {
        kind: getattr(layer, f"{kind}_l{depth}{suffix}", None)
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    }
    if layer.mode == "lstm":
        return lambda x, s: lstm_step(x, s, **w)
    del w["weight_hr"]
    if layer.mode == "gru":
        return lambda x, s: (gru_step(x, s[0], **w),)
    activation = ACTIVATIONS[layer.nonlinearity]
    return lambda x, s: (rnn_step(x, s[0], **w, activation=activation),)


def scan(step: Callable[[Tensor, State], State], x: Tensor, state: State, lengths=None):
    """Apply ``step`` over time (x: (L, N, *)). With ``lengths``, each sequence is computed for
    its own steps only ("variable depth"): its state is held past its end and its output there
    is zero, so the final state is the one at the true end."""
    if lengths is None:
        outputs = []
        for t in range(x.size(0)):
            state = step(x[t], state)
            outputs.append(state[0])
        return torch.stack(outputs), state  # (L, N, H_out)
    lengths = lengths.to("cpu")
    order = torch.argsort(lengths, descending=True, stable=True)
    unorder = torch.argsort(order)
    device_order = order.to(x.device)
    x = x.index_select(1, device_order)
    state = tuple(s.index_select(0, device_order) for s in state)
    n = x.size(1)
    active = (lengths[None, :] > torch.arange(x.size(0))[:, None]).sum(1).tolist()  # (L,)
    outputs = []
    for t, k in enumerate(active):
        if k == n:
            state = step(x[t], state)
            outputs.append(state[0])
            continue
        new = step(x[t, :k], tuple(s[:k] for s in state))  # the k sequences still running
        state = tuple(torch.cat([a, s[k:]]) for a, s in zip(new, state, strict=True))
        outputs.append(F.pad(new[0], (0, 0, 0, n - k)))  # zeros past each sequence's end
    output = torch.stack(outputs).index_select(1, unorder.to(x.device))  # (L, N, H_out)
    return output, tuple(s.index_select(0, unorder.to(x.device)) for s in state)


def reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a time-major batch within its own length (padding stays put)."""
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.size(0), device=x.device)[:, None]  # (L, 1)
    lengths = lengths.to(x.device)[None, :]  # (1, N)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (L, N)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))
