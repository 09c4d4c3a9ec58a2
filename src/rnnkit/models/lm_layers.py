"""The language model's parts beside the embedding: the stack of single recurrent layers
(AWD-LSTM's locked dropout between layers, per-layer hidden sizes), the padded state layout
they share, and the output heads (full softmax or torch's adaptive softmax).

What is here: :class:`LayerStack`, :func:`pad_state` / :func:`layer_state` (the one-tensor
state of layers of different sizes), :func:`make_head`, :func:`head_scores`, and
:func:`refuse_uneven` (a one-line refusal for the code that needs one size for every layer and
a full softmax). What is not here: the model (``language_model.py``) and the regularisers
themselves (:mod:`rnnkit.nn.awd`).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import has_cell_state, recurrent
from rnnkit.nn.awd import LockedDropout, WeightDrop


def uneven(config: ModelConfig) -> bool:
    """Whether the layers of ``config`` differ in size (``--hidden 30,20``)."""
    return len(set(config.layer_sizes())) > 1


def pad_state(t: Tensor, width: int) -> Tensor:
    """``t`` (..., H_k) with zeros appended up to ``width`` units: (..., width). The one-tensor
    state of a stack of uneven layers keeps layer k in ``[..., :H_k]`` and zeros after."""
    return t if t.size(-1) == width else F.pad(t, (0, width - t.size(-1)))


def layer_state(state, k: int, sizes: tuple[int, ...], cell_state: bool):
    """Layer ``k``'s own state from the stack's (layers, N, Hmax) state (or ``(h, c)``):
    ``(h_k,)`` or ``(h_k, c_k)``, each (1, N, size) for its ``sizes`` (the layer's
    ``state_spec().sizes``), views (no copy); the columns past them are not read."""
    parts = (state[0], state[1]) if cell_state else (state,)
    return tuple(s[k : k + 1, :, :size] for s, size in zip(parts, sizes, strict=False))


def layer_state_sizes(rnn: nn.Module, k: int) -> tuple[int, ...]:
    """Layer ``k``'s own state sizes, h's then c's: ``(H_k,)`` or ``(H_k, C_k)`` (C_k = H_k for
    an LSTM, a modern layer's memory), in a one-stack layer or a :class:`LayerStack`."""
    if isinstance(rnn, LayerStack):
        return tuple(rnn.layers[k].state_spec().sizes)
    return tuple(rnn.state_spec().sizes)


class LayerStack(nn.Module):
    """``config.layers`` single-layer recurrent modules, layer k with ``config.layer_sizes()[k]``
    units reading layer k-1's output (each in :class:`~rnnkit.nn.awd.WeightDrop` with
    ``weight_drop``), with dropout at rate ``config.between_dropout()`` between them:
    :class:`~rnnkit.nn.awd.LockedDropout` with ``locked_dropout`` (AWD-LSTM's dropouth, Merity et
    al. 2017), else ``nn.Dropout`` as the one-stack layer applies between its layers.

    The language model uses it where one multi-layer module cannot do: locked dropout between
    layers, or layers of different sizes (AWD-LSTM's ``--hidden 1150,1150,400`` whose last layer
    matches the embedding so the weights tie).

    Called like the one-stack layer, ``(x (N, L, E), state) -> (out (N, L, H_last), state)``. The
    state keeps the one-stack layout, h (layers, N, Hmax) or ``(h, c)`` of two such tensors,
    ``Hmax = max(sizes)``: layer k reads and writes ``[k, :, :H_k]`` and its columns past H_k are
    zero on the way out (they are never read). So generation, the carried TBPTT state,
    checkpoints and serving keep one state tensor whatever the sizes. ``fused_step(k)`` is layer
    k's one-step kernel, on its own ``H_k`` columns.

    It reads as the one-stack layer to what inspects it (ONNX export, the analyses):
    ``num_layers``, ``step_function(k)``, ``recurrence(k)``, ``layer_weight(name, k)`` and the
    attribute ``<name>_l<k>`` are layer k's (its ``_l0``); any other attribute is layer 0's (so
    ``hidden_size`` is layer 0's: use ``sizes`` for each). Its state_dict has the one-stack
    layer's keys: ``layers.<k>.<name>_l0`` is saved as ``<name>_l<k>`` and read back from either
    spelling, so checkpoints move between the two where the sizes agree.
    """

    def __init__(self, config: ModelConfig, input_size: int) -> None:
        super().__init__()
        self.sizes = config.layer_sizes()
        inputs = [input_size, *self.sizes[:-1]]
        self.layers = nn.ModuleList(
            weight_dropped(recurrent(config, size_in, hidden=size, layers=1), config)
            for size_in, size in zip(inputs, self.sizes, strict=True)
        )
        rate = config.between_dropout()
        self.between = LockedDropout(rate, True) if config.locked_dropout else nn.Dropout(rate)
        self.cell_state = has_cell_state(config.cell)
        self.num_layers = config.layers
        self.width = max(self.sizes)
        # the widest layer's size of each state tensor: (Hmax,) or (Hmax, Cmax), where a
        # modern layer's c (its memory) is wider than its h
        specs = [layer.state_spec().sizes for layer in self.layers]
        self.widths = tuple(max(sizes) for sizes in zip(*specs, strict=True))
        self._register_state_dict_hook(_stack_keys)
        self._register_load_state_dict_pre_hook(_layer_keys)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            layers = self.__dict__.get("_modules", {}).get("layers")  # none while unpickling
            if layers is None:
                raise
            if match := _STACKED.fullmatch(name):  # weight_hh_l1 -> layers[1].weight_hh_l0
                kind, k = match.groups()
                if int(k) < len(layers):
                    return getattr(layers[int(k)], f"{kind}_l0")
            return getattr(layers[0], name)

    def fused_step(self, layer: int, direction: int = 0):
        """Layer ``layer``'s one-step kernel (None where it has none)."""
        return self.layers[layer].fused_step(0, direction)

    def step_function(self, layer: int, direction: int = 0):
        return self.layers[layer].step_function(0, direction)

    def gate_function(self, layer: int, direction: int = 0):
        return self.layers[layer].gate_function(0, direction)

    def recurrence(self, layer: int, direction: int = 0):
        return self.layers[layer].recurrence(0, direction)

    def layer_weight(self, kind: str, layer: int, direction: int = 0):
        return self.layers[layer].layer_weight(kind, 0, direction)

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: Tensor, state=None):
        new = []
        for k, layer in enumerate(self.layers):
            if k:
                x = self.between(x)  # (N, L, H_{k-1})
            sizes = layer.state_spec().sizes
            own = None if state is None else layer_state(state, k, sizes, self.cell_state)
            if own is not None and not self.cell_state:
                own = own[0]  # h (1, N, H_k)
            x, out = layer(x, own)  # (N, L, H_k)
            out = tuple(out) if self.cell_state else (out,)
            new.append(tuple(pad_state(s, w) for s, w in zip(out, self.widths, strict=True)))
        h, *c = (torch.cat(s) for s in zip(*new, strict=True))  # (layers, N, Hmax) each
        return x, ((h, *c) if self.cell_state else h)


_INNER = re.compile(r"layers\.(\d+)\.(\w+)_l0")  # LayerStack's own key -> k, name
_STACKED = re.compile(r"(\w+)_l(\d+)")  # the one-stack key -> name, k


def _stack_keys(module: LayerStack, state_dict, prefix: str, local_metadata) -> None:
    """state_dict hook: ``prefix + 'layers.<k>.<name>_l0'`` -> ``prefix + '<name>_l<k>'``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if match := _INNER.fullmatch(key[len(prefix) :]):
            k, name = match.groups()
            state_dict[f"{prefix}{name}_l{k}"] = state_dict.pop(key)


def _layer_keys(state_dict, prefix: str, *_args) -> None:
    """load_state_dict pre-hook: ``prefix + '<name>_l<k>'`` -> ``prefix + 'layers.<k>.<name>_l0'``
    (a key already in the ``layers.<k>.`` spelling is left as it is)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if match := _STACKED.fullmatch(key[len(prefix) :]):
            name, k = match.groups()
            state_dict[f"{prefix}layers.{k}.{name}_l0"] = state_dict.pop(key)


def weight_dropped(layer: nn.Module, config: ModelConfig) -> nn.Module:
    """``layer`` in :class:`~rnnkit.nn.awd.WeightDrop` with ``config.weight_drop`` > 0."""
    return WeightDrop(layer, config.weight_drop) if config.weight_drop else layer


# ---- the output head ---------------------------------------------------------------------------
def make_head(config: ModelConfig) -> nn.Module:
    """The output layer reading the last layer's ``H`` units: ``nn.Linear(H, V)`` (full
    softmax), or with ``--softmax adaptive`` torch's
    ``nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs, div_value=4.0)`` (Grave et al. 2017,
    "Efficient softmax approximation for GPUs"): the words below ``cutoffs[0]`` and one entry
    per tail cluster in a head softmax, cluster i's words ``[cutoffs[i], cutoffs[i+1])`` in a
    softmax over a ``H / 4^(i+1)``-unit projection, so

        log p(w) = log p_head(w)                                 (w in the shortlist)
        log p(w) = log p_head(cluster i) + log p_i(w | cluster i)   (w in cluster i).

    The cutoffs are word ranks: the vocabularies put the most frequent words first. Each must
    be below the vocabulary size (known here, from the data), and the last cluster needs one
    unit at least (``H >= 4^len(cutoffs)``): a one-line UserError otherwise."""
    V, H = config.vocab_size, config.hidden
    if config.softmax != "adaptive":
        return nn.Linear(H, V)
    cuts = config.cutoffs
    if not cuts:
        raise UserError("--softmax adaptive needs --cutoffs (e.g. --cutoffs 2000,10000)")
    if cuts[-1] >= V:
        listed = ",".join(map(str, cuts))
        raise UserError(f"--cutoffs {listed} must each be below the vocabulary size {V}")
    if H // 4 ** len(cuts) < 1:  # the last cluster's projection would have no unit
        raise UserError(
            f"--cutoffs {','.join(map(str, cuts))} makes {len(cuts)} tail clusters of "
            f"H / 4^i units: the last layer's {H} units leave the last one none"
        )
    return nn.AdaptiveLogSoftmaxWithLoss(H, V, list(cuts), div_value=4.0)


def head_scores(head: nn.Module, hidden: Tensor) -> Tensor:
    """What the model returns as "logits" (..., V) from the last layer's output ``hidden``
    (..., H): the full head's logits, or the adaptive head's log-probabilities (its
    ``log_prob``; a softmax of them is the model's distribution, so sampling, temperature and
    top-k/top-p work on them unchanged)."""
    if isinstance(head, nn.AdaptiveLogSoftmaxWithLoss):
        flat = head.log_prob(hidden.reshape(-1, hidden.size(-1)))  # (*, V)
        return flat.view(*hidden.shape[:-1], flat.size(-1))
    return head(hidden)


def refuse_uneven(config: ModelConfig, what: str) -> None:
    """A one-line UserError if ``what`` (an analysis that probes every layer with one size and
    reads a linear head) meets layers of different sizes or the adaptive softmax."""
    if uneven(config):
        sizes = ",".join(map(str, config.layer_sizes()))
        raise UserError(f"{what} needs one size for every layer, got --hidden {sizes}")
    if config.softmax != "full":
        raise UserError(f"{what} needs --softmax full, got --softmax {config.softmax}")
