"""Character-level language model: embedding -> recurrent stack -> linear head.

What is here: ``LanguageModel`` (``forward`` with an optional loss, ``step`` for generation,
``initial_state``, the ``torch`` / ``orthogonal`` initialisations and the LSTM forget-gate bias)
and its return type ``LMOutput``. What is not here: the training loop (``rnnkit.training``),
sampling (``rnnkit.generation``) and text encoding (``rnnkit.data``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import has_cell_state, recurrent
from rnnkit.nn.awd import (
    LockedDropout,
    WeightDrop,
    activation_regularisation,
    embedding_dropout,
    temporal_activation_regularisation,
)
from rnnkit.nn.cells import LSTMState
from rnnkit.nn.registry import CELLS, get_cell

#: The recurrent state between calls: h (layers, N, H) for RNN/GRU/minGRU/minLSTM,
#: LSTMState(h, c) for LSTM.
State = Tensor | LSTMState


class LMOutput(NamedTuple):
    """What ``LanguageModel.forward`` returns."""

    logits: Tensor  # (N, L, V) unnormalised next-token scores
    # mean cross-entropy in nats per token; None without targets. In training with --ar/--tar
    # the AR and TAR penalties are added (the logged training loss includes them); in eval
    # mode it is always the plain cross-entropy.
    loss: Tensor | None
    state: State  # the recurrent state after the last position, to carry into the next call
    # the last recurrent layer's output (N, L, H) before the output dropout: what the head
    # reads in eval mode, and what the neural cache (rnnkit.training.cache) keys on
    hidden: Tensor | None = None


class LanguageModel(nn.Module):
    """embedding -> dropout -> rnnkit RNN/LSTM/GRU/MinGRU/MinLSTM stack (batch_first) -> dropout
    -> linear head; optional weight tying.

    Shape legend: ``N`` batch, ``L`` sequence length, ``V`` vocabulary size (``vocab_size``),
    ``E`` embedding size (``embed``), ``H`` hidden units per layer (``hidden``).

    * ``forward(idx (N, L), targets (N, L) | None, state) -> LMOutput(logits (N, L, V), loss,
      state)``. ``loss`` is the mean cross-entropy over all N*L positions in **nats** per token
      (per character for a char vocabulary); divide by ln 2 for bits per character.
    * ``step(token (N,), state) -> (logits (N, V), state)``: one position, for generation.
    * ``state`` is None (zeros), or what a previous call returned: h (layers, N, H) for
      RNN/GRU/minGRU/minLSTM, ``LSTMState(h, c)`` with both (layers, N, H) for LSTM.

    Dropout: ``embed_dropout`` on the embeddings; ``dropout`` between recurrent layers (the
    layer's own) and on the recurrent output before the head. Initialisation: the embedding is
    torch's default N(0, 1); the head is torch's default; the recurrent stack follows
    ``config.init`` and ``config.forget_bias`` (see :meth:`reset_parameters`). With
    ``tie_weights`` the head's weight *is* the embedding's weight (needs ``embed == hidden``).

    AWD-LSTM regularisers (Merity et al. 2017, "Regularizing and Optimizing LSTM Language
    Models"; the pieces are in :mod:`rnnkit.nn.awd`), all off by default, and with all off the
    modules, parameter names and numbers are exactly those of the plain model:

    * ``weight_drop`` p: each recurrent layer is wrapped in :class:`~rnnkit.nn.awd.WeightDrop`,
      ``W_hh' = M ⊙ W_hh / (1 - p)`` with one mask ``M`` per training forward. The state_dict
      keys are the bare layer's; eval and ``step`` run the bare layer.
    * ``word_dropout`` p: whole words dropped, ``E' = diag(m) E / (1 - p)`` with one ``m_v`` per
      vocabulary entry and forward (:func:`~rnnkit.nn.awd.embedding_dropout`).
    * ``locked_dropout``: ``embed_dropout`` and ``dropout`` become
      :class:`~rnnkit.nn.awd.LockedDropout` (one mask per sequence and feature, the same at every
      step) on the embedding output, between layers and on the last layer's output. With
      ``layers > 1`` the stack is then ``layers`` single-layer modules (:class:`LockedStack`)
      whose state_dict keys are renamed to the one-stack model's (``rnn.<name>_l<k>``): a
      checkpoint of such a run loads into the plain model and back, and its config (which
      records ``locked_dropout``) rebuilds this layout on load.
    * ``ar`` alpha, ``tar`` beta: in training, with targets, ``loss = CE + alpha * mean(o_t^2)
      + beta * mean((h_t - h_{t-1})^2)``, ``o`` the last layer's output after dropout and ``h``
      before it (section 4.6). The training loss that is logged therefore includes them; eval
      mode (validation, test, bpc) gives the plain cross-entropy.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        V, E, H = config.vocab_size, config.embed, config.hidden
        self.embedding = nn.Embedding(V, E)
        dropout = LockedDropout if config.locked_dropout else nn.Dropout
        self.embed_dropout = dropout(config.embed_dropout, **_batch_first(config))
        if config.locked_dropout and config.layers > 1:
            self.rnn = LockedStack(config, E)  # single layers, LockedDropout between them
        else:  # batch_first, config.layers, dropout between layers
            self.rnn = _weight_drop(recurrent(config, E), config)
        self.dropout = dropout(config.dropout, **_batch_first(config))
        self.head = nn.Linear(H, V)
        if config.tie_weights:
            self.head.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise: head and embedding as torch does (a tied matrix ends as the embedding's
        N(0, 1)), the recurrent stack as ``config.init`` and ``config.forget_bias`` say.

        ``init="torch"``: torch's uniform(-1/sqrt(H), 1/sqrt(H)) for every recurrent parameter.
        ``init="orthogonal"``: each gate block of every ``weight_hh_*`` matrix orthogonal
        (minGRU and minLSTM have none; a per-unit vector is left as its layer drew it), every
        ``weight_ih_*`` xavier-uniform, every bias zero. Then, for an LSTM with a non-zero
        ``forget_bias``: the forget-gate chunk (second quarter, gates i, f, g, o) of every
        ``bias_ih_*`` is set to ``forget_bias`` and of every ``bias_hh_*`` to 0, so the
        effective forget bias is exactly ``forget_bias`` (0.0, the default, leaves the biases
        alone).
        """
        self.head.reset_parameters()
        self.embedding.reset_parameters()
        self.rnn.reset_parameters()
        gates = max(1, len(get_cell(self.config.cell).gates))  # blocks of each weight_hh
        with torch.no_grad():
            for path, param in self.rnn.named_parameters():
                name = path.rpartition(".")[2]  # "weight_hh_l0" of "layers.0.layer.weight_hh_l0"
                if self.config.init == "orthogonal":
                    if name.startswith("weight_hh") and param.dim() == 2:  # not a vector
                        for block in param.chunk(gates, dim=0):  # (H, H) each
                            nn.init.orthogonal_(block)
                    elif name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(param)
                    elif name.startswith("bias"):
                        nn.init.zeros_(param)
                if has_cell_state(self.config.cell) and self.config.forget_bias != 0.0:
                    if name.startswith("bias_ih"):
                        param.chunk(4)[1].fill_(self.config.forget_bias)  # gates i, f, g, o
                    elif name.startswith("bias_hh"):
                        param.chunk(4)[1].zero_()

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, state: State | None = None
    ) -> LMOutput:
        """Logits for every position of ``idx`` (N, L), the loss against ``targets`` (N, L)
        if given, and the state after the last position."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be 2-D (N, L) token ids, got shape {tuple(idx.shape)}")
        logits, state, hidden, dropped = self._run(idx, state)  # (N, L, V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have the shape of idx {tuple(idx.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            # reshape is a view here (logits come out of the head contiguous): no copy.
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
            if self.training and self.config.ar:  # AR on the dropped output
                loss = loss + activation_regularisation(dropped, self.config.ar)
            if self.training and self.config.tar:  # TAR on the undropped output
                loss = loss + temporal_activation_regularisation(
                    hidden, self.config.tar, batch_first=True
                )
        return LMOutput(logits, loss, state, hidden)

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Log-probabilities of every next token (..., V) from the last layer's output
        ``hidden`` (..., H) (``LMOutput.hidden``; eval mode: no output dropout)."""
        return F.log_softmax(self.head(hidden), dim=-1)

    def step(self, token: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One position: ``token`` (N,) -> logits (N, V) and the new state. Equal to
        ``forward`` over a sequence fed one token at a time with the state carried."""
        kernels = [self.rnn.fused_step(depth) for depth in range(self.config.layers)]
        zoneout = any(self.rnn.zoneout)  # rates per state tensor: eval uses them
        if None not in kernels and not self.training and not zoneout:
            return self._step_cells(kernels, token, state)
        logits, state, _, _ = self._run(token.unsqueeze(1), state)  # (N, 1, V)
        return logits.squeeze(1), state  # (N, V)

    def _step_cells(self, kernels, token: Tensor, state: State | None) -> tuple[Tensor, State]:
        """``step`` in eval mode: torch's one-step cell kernels layer by layer. The fused
        multi-layer kernel pays its (oneDNN) set-up on every call -- several times the two
        matrix-vector products of one token -- so generation takes this path; same weights,
        same numbers (tested against ``forward``)."""
        if state is None:
            state = self.initial_state(token.size(0), token.device)
        lstm = has_cell_state(self.config.cell)
        states = zip(*state, strict=True) if lstm else ((h,) for h in state)  # (h,) or (h, c)
        x = self.embedding(token)  # (N, E)
        new = []
        for kernel, old in zip(kernels, states, strict=True):
            new.append(kernel(x, old))  # (h,) or (h, c), each (N, H)
            x = new[-1][0]
        h, *c = (torch.stack(s) for s in zip(*new, strict=True))  # (layers, N, H) each
        return self.head(x), (LSTMState(h, *c) if lstm else h)

    def _run(self, idx: Tensor, state: State | None) -> tuple[Tensor, State, Tensor, Tensor]:
        """logits (N, L, V), the state, and the last layer's output (N, L, H) before and after
        the output dropout (what TAR and AR read)."""
        if self.config.word_dropout:
            words = embedding_dropout(self.embedding, idx, self.config.word_dropout, self.training)
        else:
            words = self.embedding(idx)
        emb = self.embed_dropout(words)  # (N, L, E)
        out, state = self.rnn(emb, state)  # (N, L, H)
        dropped = self.dropout(out)
        logits = self.head(dropped)  # (N, L, V)
        state = LSTMState(*state) if isinstance(state, tuple) else state
        return logits, state, out, dropped

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros of the structure ``forward`` returns: h (layers, N, H), or LSTMState(h, c)
        for an LSTM (minLSTM has no cell state: h only)."""
        weight = self.head.weight
        shape = (self.config.layers, batch_size, self.config.hidden)
        device = weight.device if device is None else device
        h = torch.zeros(shape, dtype=weight.dtype, device=device)
        return LSTMState(h, torch.zeros_like(h)) if has_cell_state(self.config.cell) else h

    def num_parameters(self) -> int:
        """Number of trainable numbers (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())


class LockedStack(nn.Module):
    """``config.layers`` single-layer recurrent modules (each in
    :class:`~rnnkit.nn.awd.WeightDrop` with ``weight_drop``) with
    :class:`~rnnkit.nn.awd.LockedDropout` at rate ``config.dropout`` between them: AWD-LSTM's
    stack (Merity et al. 2017, dropouth). Called like the one-stack layer, ``(x (N, L, E),
    state) -> (out (N, L, H), state)`` with the state h (layers, N, H) or (h, c), so
    ``LanguageModel.step`` and the state layout are unchanged; ``fused_step(k)`` is layer k's.

    It reads as the one-stack layer to what inspects it (ONNX export, the analyses):
    ``num_layers``, ``step_function(k)``, ``recurrence(k)``, ``layer_weight(name, k)`` and the
    attribute ``<name>_l<k>`` are layer k's (its ``_l0``); any other attribute is layer 0's.
    Its state_dict has the one-stack layer's keys: ``layers.<k>.<name>_l0`` is saved as
    ``<name>_l<k>`` and read back from either spelling, so checkpoints move between the two.
    """

    def __init__(self, config: ModelConfig, input_size: int) -> None:
        super().__init__()
        sizes = [input_size] + [config.hidden] * (config.layers - 1)
        self.layers = nn.ModuleList(
            _weight_drop(recurrent(config, size, layers=1), config) for size in sizes
        )
        self.between = LockedDropout(config.dropout, batch_first=True)
        self.cell_state = has_cell_state(config.cell)
        self.num_layers = config.layers
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
                x = self.between(x)
            if state is None:
                own = None
            elif self.cell_state:
                own = (state[0][k : k + 1], state[1][k : k + 1])  # (1, N, H) each
            else:
                own = state[k : k + 1]
            x, out = layer(x, own)
            new.append(tuple(out) if self.cell_state else (out,))
        h, *c = (torch.cat(s) for s in zip(*new, strict=True))  # (layers, N, H) each
        return x, ((h, *c) if self.cell_state else h)


_INNER = re.compile(r"layers\.(\d+)\.(\w+)_l0")  # LockedStack's own key -> k, name
_STACKED = re.compile(r"(\w+)_l(\d+)")  # the one-stack key -> name, k


def _stack_keys(module: LockedStack, state_dict, prefix: str, local_metadata) -> None:
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


def _batch_first(config: ModelConfig) -> dict:
    """LockedDropout's batch_first=True (the model is batch-first); nn.Dropout takes none."""
    return {"batch_first": True} if config.locked_dropout else {}


def _weight_drop(layer: nn.Module, config: ModelConfig) -> nn.Module:
    """``layer`` in :class:`~rnnkit.nn.awd.WeightDrop` with ``config.weight_drop`` > 0."""
    return WeightDrop(layer, config.weight_drop) if config.weight_drop else layer


def _check_config(config: ModelConfig) -> None:
    """The checks the model itself needs; the rest of the config is checked in ``config.py``."""
    if config.vocab_size < 1:
        raise UserError(f"vocab_size must be >= 1 (set from the data), got {config.vocab_size}")
    if config.cell not in CELLS:
        raise UserError(f"--cell must be one of {tuple(CELLS)}, got {config.cell!r}")
    if config.tie_weights and config.embed != config.hidden:
        raise UserError(
            f"--tie-weights needs --embed == --hidden, got {config.embed} and {config.hidden}"
        )
    if config.forget_bias != 0.0 and not has_cell_state(config.cell):
        raise UserError(
            f"--forget-bias applies to --cell lstm or lnlstm only, got --cell {config.cell} "
            f"with --forget-bias {config.forget_bias}"
        )
