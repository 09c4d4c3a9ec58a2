"""Character-level language model: embedding -> recurrent stack -> linear head.

What is here: ``LanguageModel`` (``forward`` with an optional loss, ``step`` for generation,
``initial_state``, the ``torch`` / ``orthogonal`` initialisations and the LSTM forget-gate bias)
and its return type ``LMOutput``. What is not here: the training loop (``rnnkit.training``),
sampling (``rnnkit.generation``) and text encoding (``rnnkit.data``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import has_cell_state, recurrent
from rnnkit.nn.cells import LSTMState
from rnnkit.nn.registry import CELLS, get_cell

#: The recurrent state between calls: h (layers, N, H) for RNN/GRU/minGRU/minLSTM,
#: LSTMState(h, c) for LSTM.
State = Tensor | LSTMState


class LMOutput(NamedTuple):
    """What ``LanguageModel.forward`` returns."""

    logits: Tensor  # (N, L, V) unnormalised next-token scores
    loss: Tensor | None  # mean cross-entropy in nats per token; None without targets
    state: State  # the recurrent state after the last position, to carry into the next call


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
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        V, E, H = config.vocab_size, config.embed, config.hidden
        self.embedding = nn.Embedding(V, E)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        self.rnn = recurrent(config, E)  # batch_first, config.layers, dropout between layers
        self.dropout = nn.Dropout(config.dropout)
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
            for name, param in self.rnn.named_parameters():
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
        logits, state = self._run(idx, state)  # (N, L, V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have the shape of idx {tuple(idx.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            # reshape is a view here (logits come out of the head contiguous): no copy.
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return LMOutput(logits, loss, state)

    def step(self, token: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One position: ``token`` (N,) -> logits (N, V) and the new state. Equal to
        ``forward`` over a sequence fed one token at a time with the state carried."""
        kernels = [self.rnn.fused_step(depth) for depth in range(self.config.layers)]
        zoneout = any(self.rnn.zoneout)  # rates per state tensor: eval uses them
        if None not in kernels and not self.training and not zoneout:
            return self._step_cells(kernels, token, state)
        logits, state = self._run(token.unsqueeze(1), state)  # (N, 1, V)
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

    def _run(self, idx: Tensor, state: State | None) -> tuple[Tensor, State]:
        emb = self.embed_dropout(self.embedding(idx))  # (N, L, E)
        out, state = self.rnn(emb, state)  # (N, L, H)
        logits = self.head(self.dropout(out))  # (N, L, V)
        return logits, (LSTMState(*state) if isinstance(state, tuple) else state)

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
