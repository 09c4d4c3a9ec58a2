"""Hidden, cell and gate values of a character language model over a text: :func:`trace`.

What is here: :func:`trace` runs a :class:`~rnnkit.models.language_model.LanguageModel` over one
text, one character at a time, computing every layer's gates explicitly from the layer's own
weights (``weight_ih_l{k}``, ``weight_hh_l{k}``, ...) with the equations of :mod:`rnnkit.nn.cells`,
and returns a :class:`Trace` of plain NumPy arrays: h (and the LSTM's c) after every character,
the gate values, the top-k next-character predictions and the loss at every position.
:func:`units`, :func:`values` and :func:`unit_matrix` name and read the units.

What is not here: text features and the search for units that track them
(:mod:`rnnkit.analysis.text_features`), gate saturation (:mod:`rnnkit.analysis.gates`) and
drawing (:mod:`rnnkit.analysis.activation_plots`).

Shape legend: ``L`` characters traced, ``H`` hidden units per layer, ``V`` vocabulary size.
Position ``t`` always means "after reading ``text[t]``": ``hidden[k][t]`` is layer k's h then,
and ``top[t]`` / ``loss[t]`` are about the prediction of ``text[t + 1]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models.language_model import LanguageModel, State
from rnnkit.models.lm_layers import refuse_uneven
from rnnkit.nn.cells import ACTIVATIONS
from rnnkit.nn.registry import get_cell

MAX_CHARS = 20_000
#: Gate names per cell, in the order of the weight chunks (torch's i, f, g, o and r, z, n).
GATE_NAMES = {
    "lstm": ("input", "forget", "candidate", "output"),
    "gru": ("reset", "update", "candidate"),
    "rnn": (),
}
_LISTED = 5


class UnitKey(NamedTuple):
    """One unit: ``layer`` (0 = nearest the input), ``kind`` "h" or "c" (LSTM cell), ``unit``."""

    layer: int
    kind: str
    unit: int

    @property
    def label(self) -> str:
        return f"layer {self.layer + 1} {self.kind}[{self.unit}]"


@dataclass
class Trace:
    """What :func:`trace` returns; every array is NumPy, in the model's dtype unless noted."""

    text: str  # the L symbols traced: text[t] is the symbol read at position t
    cell: str  # the cell's registry name: "rnn", "lstm", "gru", "lnlstm", ...
    hidden: list[np.ndarray]  # per layer (L, H): h after reading text[t]
    cell_state: list[np.ndarray] | None  # per layer (L, H): LSTM c after text[t]; else None
    gates: list[dict[str, np.ndarray]]  # per layer, gate name -> (L, H); {} for a vanilla RNN
    top: list[list[tuple[str, float]]]  # per position, top-k (symbol, P) for text[t + 1]
    loss: np.ndarray  # (L,) float64 nats, -log P(text[t + 1]); NaN at the last position
    ids: np.ndarray  # (L,) int64 token ids of text
    logits: np.ndarray  # (L, V) next-symbol scores after reading text[t]

    @property
    def layers(self) -> int:
        return len(self.hidden)

    @property
    def hidden_size(self) -> int:
        return int(self.hidden[0].shape[1])


def trace(
    model: LanguageModel,
    vocab: Vocab,
    text: str,
    *,
    top_k: int = 5,
    state: State | None = None,
    max_chars: int = MAX_CHARS,
) -> Trace:
    """Run ``model`` over ``text`` (one sequence, no dropout, no gradient) and keep every value.

    ``state`` is where to start: None (zeros) or what ``model.forward`` returned for a batch
    of one -- h (layers, 1, H), or ``LSTMState(h, c)``; (layers, H) is accepted too. The
    last row of ``hidden`` / ``cell_state`` is the state to continue from. With a byte
    vocabulary the text is traced as its UTF-8 bytes and ``Trace.text`` holds one symbol per
    byte (``chr(b)``), so positions always line up with ``text``.

    Raises :class:`UserError` for an empty text, a text over ``max_chars`` characters,
    characters outside a char vocabulary, a bad ``top_k`` or ``state``, a vocabulary whose
    size is not the model's, bidirectional or projected recurrent layers, per-layer sizes
    (``--hidden 30,20``) and the adaptive softmax.
    """
    refuse_uneven(model.config, "the activation trace")  # one size per layer, a linear head
    rnn = model.rnn
    ids = _check_inputs(model, vocab, text, top_k, max_chars)
    weight = model.head.weight
    idx = torch.as_tensor(ids, device=weight.device)  # (L,)
    with torch.no_grad():
        start = _initial_state(model, state)
        x = model.embedding(idx)  # (L, E)
        hidden, cells, gates = [], [], []
        for k in range(rnn.num_layers):
            h, c, g = _run_layer(rnn, k, x, *start[k])  # (L, H) each
            hidden.append(h)
            cells.append(c)
            gates.append(g)
            x = h
        logits = model.head(x)  # (L, V)
        log_p = F.log_softmax(logits.double(), dim=-1)  # (L, V)
    loss = np.full(len(ids), np.nan)
    loss[:-1] = -log_p[:-1].gather(1, idx[1:, None]).squeeze(1).cpu().numpy()
    return Trace(
        text="".join(vocab.symbols[i] for i in ids.tolist()),
        cell=rnn.cell,
        hidden=[_numpy(h) for h in hidden],
        cell_state=[_numpy(c) for c in cells] if _cell_units(rnn) else None,
        gates=[{name: _numpy(v) for name, v in g.items()} for g in gates],
        top=_top(log_p, vocab, min(top_k, len(vocab))),
        loss=loss,
        ids=ids,
        logits=_numpy(logits),
    )


def units(trace: Trace) -> list[UnitKey]:
    """Every unit of the trace: for each layer its h units, then (LSTM) its c units."""
    kinds = ("h", "c") if trace.cell_state is not None else ("h",)
    return [
        UnitKey(layer, kind, unit)
        for layer in range(trace.layers)
        for kind in kinds
        for unit in range(trace.hidden[layer].shape[1])
    ]


def values(trace: Trace, key: UnitKey) -> np.ndarray:
    """The (L,) values of one unit over the text; UserError for a unit the trace lacks."""
    layer, kind, unit = key
    arrays = {"h": trace.hidden, "c": trace.cell_state}
    if kind not in arrays or arrays[kind] is None:
        allowed = "'h' or 'c'" if trace.cell_state is not None else "'h' (no cell state)"
        raise UserError(f"unit kind must be {allowed} for a {trace.cell} trace, got {kind!r}")
    if not 0 <= layer < trace.layers:
        raise UserError(f"layer must be in [0, {trace.layers - 1}], got {layer}")
    size = trace.hidden[layer].shape[1]
    if not 0 <= unit < size:
        raise UserError(f"unit must be in [0, {size - 1}], got {unit}")
    return arrays[kind][layer][:, unit]


def unit_matrix(trace: Trace) -> tuple[list[UnitKey], np.ndarray]:
    """All units side by side: their keys (as :func:`units`) and a float64 (L, U) matrix."""
    blocks = []
    for layer in range(trace.layers):
        blocks.append(trace.hidden[layer])
        if trace.cell_state is not None:
            blocks.append(trace.cell_state[layer])
    return units(trace), np.concatenate(blocks, axis=1).astype(np.float64)  # (L, U)


# ---- the steps -----------------------------------------------------------------------------
def _run_layer(rnn, k: int, x: Tensor, h: Tensor, c: Tensor | None):
    """Layer ``k`` over x (L, H_in) from (h, c): h (L, H), c (L, H) or None, gates (for the
    LSTM and GRU, whose gates are read out here; other cells step by their own step function
    and show no gates)."""
    if rnn.cell not in GATE_NAMES:
        return _stepped(rnn.step_function(k), x, h, c, rnn.gate_function(k),
                        keep_c=_cell_units(rnn))  # fmt: skip
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    w_ih, w_hh, b_ih, b_hh = (rnn.layer_weight(name, k) for name in names)
    xw = F.linear(x, w_ih, b_ih)  # (L, G*H): the input's part of every pre-activation
    hh = partial(F.linear, weight=w_hh, bias=b_hh)  # h (H,) -> W_hh h + b_hh (G*H,)
    if rnn.cell == "lstm":
        return _lstm(xw, h, c, hh)
    if rnn.cell == "gru":
        return _gru(xw, h, hh)
    return _rnn(xw, h, hh, ACTIVATIONS[rnn.nonlinearity])


def _stepped(step, x: Tensor, h: Tensor, c: Tensor | None, gate_function=None, keep_c=True):
    """Any cell by its step function (x_t, state) -> state over x (L, H_in), a batch of one;
    the gates where ``gate_function`` reads them (the modern layers). ``keep_c`` False: c is
    a modern layer's memory, carried but not traced as units."""
    state = (h[None],) if c is None else (h[None], c[None])  # (1, size) each
    hs, cs, gates = [], [], {}
    for x_t in x.unbind(0):
        if gate_function is not None:
            for name, value in gate_function(x_t[None], state).items():
                gates.setdefault(name, []).append(value[0])
        state = step(x_t[None], state)
        hs.append(state[0][0])
        cs.extend(state[1:2] if keep_c else ())
    gates = {name: torch.stack(v) for name, v in gates.items()}  # (L, units) each
    return torch.stack(hs), (torch.stack(cs)[:, 0] if cs else None), gates


def _lstm(xw: Tensor, h: Tensor, c: Tensor, hh: Callable[[Tensor], Tensor]):
    """i, f, g, o = chunks of W_ih x + b_ih + W_hh h + b_hh; c = f c + i g; h = o tanh(c)."""
    steps = xw.shape[0]
    gates = xw.new_empty(4, steps, h.shape[0])  # (4, L, H): i, f, g, o
    hs, cs = xw.new_empty(steps, h.shape[0]), xw.new_empty(steps, h.shape[0])  # (L, H)
    for t in range(steps):
        i, f, g, o = (xw[t] + hh(h)).chunk(4)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        gates[0, t], gates[1, t], gates[2, t], gates[3, t] = i, f, g, o
        hs[t], cs[t] = h, c
    return hs, cs, dict(zip(GATE_NAMES["lstm"], gates, strict=True))


def _gru(xw: Tensor, h: Tensor, hh: Callable[[Tensor], Tensor]):
    """r = s(x_r + h_r); z = s(x_z + h_z); n = tanh(x_n + r (W_hn h + b_hn)); h = (1-z) n + z h."""
    steps = xw.shape[0]
    gates = xw.new_empty(3, steps, h.shape[0])  # (3, L, H): r, z, n
    hs = xw.new_empty(steps, h.shape[0])  # (L, H)
    for t in range(steps):
        x_r, x_z, x_n = xw[t].chunk(3)
        h_r, h_z, h_n = hh(h).chunk(3)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        gates[0, t], gates[1, t], gates[2, t] = r, z, n
        hs[t] = h
    return hs, None, dict(zip(GATE_NAMES["gru"], gates, strict=True))


def _rnn(xw: Tensor, h: Tensor, hh: Callable[[Tensor], Tensor], activation):
    """h = phi(W_ih x + b_ih + W_hh h + b_hh)."""
    hs = xw.new_empty(xw.shape[0], h.shape[0])  # (L, H)
    for t in range(xw.shape[0]):
        h = activation(xw[t] + hh(h))
        hs[t] = h
    return hs, None, {}


# ---- checks and conversions ----------------------------------------------------------------
def _check_inputs(model, vocab: Vocab, text: str, top_k: int, max_chars: int) -> np.ndarray:
    """The token ids of ``text`` (L,) int64, after refusing what cannot be traced."""
    rnn = model.rnn
    if getattr(rnn, "bidirectional", False) or getattr(rnn, "proj_size", 0):
        raise UserError(
            "model: trace needs a unidirectional recurrent stack without projection, got "
            f"bidirectional={getattr(rnn, 'bidirectional', False)}, "
            f"proj_size={getattr(rnn, 'proj_size', 0)}"
        )
    if len(vocab) != model.head.out_features:
        raise UserError(
            f"vocab has {len(vocab)} symbols but the model predicts {model.head.out_features}; "
            "pass the vocabulary saved with the model"
        )
    if not isinstance(text, str) or not text:
        raise UserError(f"text must be a non-empty string, got {text!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserError(f"top_k must be an integer >= 1, got {top_k!r}")
    if len(text) > max_chars:
        raise UserError(
            f"text has {len(text)} characters, more than max_chars={max_chars}; "
            "trace a shorter excerpt or raise max_chars"
        )
    if vocab.kind == "char":
        missing = sorted(set(text) - set(vocab.symbols))
        if missing:
            listed = ", ".join(repr(ch) for ch in missing[:_LISTED])
            more = f" and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
            known = "".join(vocab.symbols)
            known = repr(known if len(known) <= 100 else known[:100]) + (
                "..." if len(known) > 100 else ""
            )
            raise UserError(
                f"text has characters not in the run's vocabulary: {listed}{more}; "
                f"the vocabulary is {known}"
            )
    return vocab.encode(text).astype(np.int64)


def _initial_state(model, state) -> list[tuple[Tensor, Tensor | None]]:
    """Per layer (h (H,), c (H,) or None) from None or a batch-of-one model state."""
    rnn = model.rnn
    layers, lstm = rnn.num_layers, _has_cell_state(rnn)
    sizes = rnn.state_spec().sizes  # (H,) or (H, H) or a modern layer's (H, M)
    weight = model.head.weight
    if state is None:
        zeros = [weight.new_zeros(layers, size) for size in sizes]
        return [(zeros[0][k], zeros[1][k] if lstm else None) for k in range(layers)]
    parts = tuple(state) if lstm and isinstance(state, tuple | list) else (state,)
    expected = "LSTMState(h, c)" if lstm else "a tensor h"
    if len(parts) != (2 if lstm else 1) or not all(isinstance(p, Tensor) for p in parts):
        raise UserError(f"state must be None or {expected} for a {rnn.cell} model, got {state!r}")
    flat = []
    for part, size in zip(parts, sizes, strict=False):
        if tuple(part.shape) not in ((layers, 1, size), (layers, size)):
            raise UserError(
                f"state tensors must have shape ({layers}, 1, {size}) (layers, N=1, H), "
                f"got {tuple(part.shape)}"
            )
        flat.append(part.reshape(layers, size).to(weight))
    return [(flat[0][k], flat[1][k] if lstm else None) for k in range(layers)]


def _has_cell_state(rnn) -> bool:
    return len(rnn.state_spec().names) == 2


def _cell_units(rnn) -> bool:
    """Whether c is traced as units: an LSTM's cell state, not a modern layer's memory
    (matrices, normalisers, windows: carried, not shown unit by unit)."""
    return _has_cell_state(rnn) and not get_cell(rnn.cell).memory


def _top(log_p: Tensor, vocab: Vocab, k: int) -> list[list[tuple[str, float]]]:
    """Per position the k most likely next symbols with their probabilities."""
    probs, ids = log_p.exp().topk(k, dim=-1)  # (L, k)
    symbols = vocab.symbols
    return [
        [(symbols[i], p) for i, p in zip(row_ids, row_p, strict=True)]
        for row_ids, row_p in zip(ids.tolist(), probs.tolist(), strict=True)
    ]


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()
