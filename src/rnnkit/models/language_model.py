"""Language model: embedding -> recurrent stack -> head (full or adaptive softmax).

What is here: ``LanguageModel`` (``forward`` with an optional loss, ``step`` for generation,
``log_probs``, ``initial_state``, the ``torch`` / ``orthogonal`` initialisations and the LSTM
forget-gate bias) and its return type ``LMOutput``. The stack of single layers (locked dropout,
per-layer sizes) and the heads are in :mod:`rnnkit.models.lm_layers`. What is not here: the
training loop (``rnnkit.training``), sampling (``rnnkit.generation``) and text encoding
(``rnnkit.data``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import has_cell_state, recurrent
from rnnkit.models.lm_layers import (
    LayerStack,
    head_scores,
    layer_state_sizes,
    make_head,
    pad_state,
    uneven,
    weight_dropped,
)
from rnnkit.nn.awd import (
    LockedDropout,
    activation_regularisation,
    embedding_dropout,
    temporal_activation_regularisation,
)
from rnnkit.nn.cells import LSTMState
from rnnkit.nn.registry import CELLS, get_cell

#: The recurrent state between calls: h (layers, N, Hmax) for RNN/GRU/minGRU/minLSTM,
#: LSTMState(h, c) for LSTM; Hmax is the widest layer (every layer's size without --hidden A,B).
State = Tensor | LSTMState


class LMOutput(NamedTuple):
    """What ``LanguageModel.forward`` returns."""

    # (N, L, V) next-token scores: the head's logits, or with --softmax adaptive its
    # log-probabilities (a softmax of either is the model's distribution). None in one case:
    # --softmax adaptive, training mode, with targets (the loss is torch's, which never builds
    # the (N, L, V) tensor; nothing reads logits there).
    logits: Tensor | None
    # mean cross-entropy in nats per token; None without targets. In training with --ar/--tar
    # the AR and TAR penalties are added (the logged training loss includes them); in eval
    # mode it is always the plain cross-entropy.
    loss: Tensor | None
    state: State  # the recurrent state after the last position, to carry into the next call
    # the last recurrent layer's output (N, L, H) before the output dropout: what the head
    # reads in eval mode, and what the neural cache (rnnkit.training.cache) keys on
    hidden: Tensor | None = None


class LanguageModel(nn.Module):
    """embedding -> dropout -> rnnkit recurrent stack (batch_first) -> dropout -> head (linear,
    or torch's adaptive softmax); optional weight tying.

    Shape legend: ``N`` batch, ``L`` sequence length, ``V`` vocabulary size (``vocab_size``),
    ``E`` embedding size (``embed``), ``H`` the last layer's units (``hidden``), ``H_k`` layer
    k's units (``config.layer_sizes()``), ``Hmax`` the widest layer's.

    * ``forward(idx (N, L), targets (N, L) | None, state) -> LMOutput(logits (N, L, V), loss,
      state, hidden)``. ``loss`` is the mean cross-entropy over all N*L positions in **nats**
      per token (per character for a char vocabulary); divide by ln 2 for bits per character.
    * ``step(token (N,), state) -> (logits (N, V), state)``: one position, for generation.
    * ``log_probs(hidden (..., H)) -> (..., V)``: log-probabilities from ``LMOutput.hidden``.
    * ``state`` is None (zeros), or what a previous call returned: h (layers, N, Hmax) for
      RNN/GRU/minGRU/minLSTM, ``LSTMState(h, c)`` with both (layers, N, Hmax) for LSTM.

    Dropout: ``embed_dropout`` on the embeddings; ``dropout`` on the recurrent output before
    the head and between recurrent layers (the layer's own), unless ``layer_dropout`` gives the
    layers their own rate (AWD-LSTM's dropouth). Initialisation: the embedding is
    torch's default N(0, 1); the head is torch's default; the recurrent stack follows
    ``config.init`` and ``config.forget_bias`` (see :meth:`reset_parameters`). With
    ``tie_weights`` the head's weight *is* the embedding's weight (needs ``embed == hidden``).

    Per-layer sizes (``hidden_sizes``, ``--hidden 1150,1150,400``; AWD-LSTM's stack whose last
    layer matches the embedding so the weights tie): layer k has ``H_k`` units and reads layer
    k-1's output; the stack is then ``layers`` single-layer modules
    (:class:`~rnnkit.models.lm_layers.LayerStack`, with ``nn.Dropout`` or, with
    ``locked_dropout``, ``LockedDropout`` between them). The state keeps ONE tensor per state
    kind, (layers, N, Hmax): layer k uses ``[k, :, :H_k]`` and the rest is zero, so generation,
    the carried TBPTT state, checkpoints and serving see the layout they always had. The
    state_dict keys are the one-stack layer's (``rnn.weight_hh_l<k>`` ...).

    Output layer (``softmax``): ``full`` is ``nn.Linear(H, V)``; ``adaptive`` is
    ``nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs, div_value=4.0)`` (Grave et al. 2017; see
    :func:`~rnnkit.models.lm_layers.make_head`). With it the training loss is the head's own
    ``.loss`` (mean nats per token, computed per target cluster: no (N, L, V) tensor, and
    ``LMOutput.logits`` is None); everywhere else (no targets, eval mode, ``step``,
    ``log_probs``) the "logits" are the full log-probabilities ``log p(w)``, and the loss is
    ``-mean(log p(target))``, the same quantity.

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
      ``layers > 1`` the stack is then a :class:`~rnnkit.models.lm_layers.LayerStack` whose
      state_dict keys are the one-stack model's (``rnn.<name>_l<k>``): a checkpoint of such a
      run loads into the plain model and back, and its config (which records
      ``locked_dropout``) rebuilds this layout on load.
    * ``ar`` alpha, ``tar`` beta: in training, with targets, ``loss = CE + alpha * mean(o_t^2)
      + beta * mean((h_t - h_{t-1})^2)``, ``o`` the last layer's output after dropout and ``h``
      before it (section 4.6). The training loss that is logged therefore includes them; eval
      mode (validation, test, bpc) gives the plain cross-entropy.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.sizes = config.layer_sizes()  # H_k of each layer
        V, E = config.vocab_size, config.embed
        self.embedding = nn.Embedding(V, E)
        dropout = LockedDropout if config.locked_dropout else nn.Dropout
        self.embed_dropout = dropout(config.embed_dropout, **_batch_first(config))
        if (config.locked_dropout and config.layers > 1) or uneven(config):
            self.rnn = LayerStack(config, E)  # single layers, dropout between them
        else:  # batch_first, config.layers, dropout between layers
            self.rnn = weight_dropped(recurrent(config, E), config)
        self.dropout = dropout(config.dropout, **_batch_first(config))
        self.head = make_head(config)  # Linear(H, V) or AdaptiveLogSoftmaxWithLoss
        self.adaptive = isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss)
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
        """Next-token scores for every position of ``idx`` (N, L), the loss against
        ``targets`` (N, L) if given, the state after the last position and the last layer's
        output. With the adaptive softmax in training mode with targets, ``logits`` is None
        (see the class docstring)."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be 2-D (N, L) token ids, got shape {tuple(idx.shape)}")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(
                f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}"
            )
        hidden, dropped, state = self._recur(idx, state)  # (N, L, H) each
        loss = logits = None
        if self.adaptive and self.training and targets is not None:
            # torch's loss: each target's head and cluster scores only, never (N*L, V)
            loss = self.head(dropped.reshape(-1, dropped.size(-1)), targets.reshape(-1)).loss
        else:
            logits = head_scores(self.head, dropped)  # (N, L, V)
        if targets is not None:
            if logits is not None:
                # reshape is a view here (logits come out of the head contiguous): no copy.
                flat, wanted = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)
                # adaptive: the scores are log p already, the loss -mean(log p(target))
                loss = (F.nll_loss if self.adaptive else F.cross_entropy)(flat, wanted)
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
        scores = head_scores(self.head, hidden)
        return scores if self.adaptive else F.log_softmax(scores, dim=-1)

    def step(self, token: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One position: ``token`` (N,) -> logits (N, V) and the new state. Equal to
        ``forward`` over a sequence fed one token at a time with the state carried."""
        zoneout = any(self.rnn.zoneout)  # rates per state tensor: eval uses them
        if not self.training and not zoneout:  # torch's kernel, else the layer's own step
            kernels = [self.rnn.fused_step(k) or self.rnn.step_function(k)
                       for k in range(self.config.layers)]  # fmt: skip
            return self._step_cells(kernels, token, state)
        _, dropped, state = self._recur(token.unsqueeze(1), state)  # (N, 1, H)
        return head_scores(self.head, dropped).squeeze(1), state  # (N, V)

    def _step_cells(self, kernels, token: Tensor, state: State | None) -> tuple[Tensor, State]:
        """``step`` in eval mode, layer by layer: torch's one-step cell kernels where the cell
        has one, else the layer's own step function (the cells path; a modern layer's step
        form). The fused multi-layer kernel pays its (oneDNN) set-up on every call -- several
        times the two matrix-vector products of one token -- and a layer's ``forward`` its
        checks, so generation takes this path; same weights, same numbers (tested against
        ``forward``). Layer k reads and writes its own columns of each (layers, N, width)
        state tensor (``layer_state_sizes``); the rest is zero."""
        if state is None:
            state = self.initial_state(token.size(0), token.device)
        lstm = has_cell_state(self.config.cell)
        parts = tuple(state) if lstm else (state,)  # (layers, N, width) each
        widths = [part.size(-1) for part in parts]
        x = self.embedding(token)  # (N, E)
        new = []
        for k, kernel in enumerate(kernels):
            sizes = layer_state_sizes(self.rnn, k)  # (H_k,) or (H_k, C_k)
            new.append(kernel(x, tuple(s[k, :, :n] for s, n in zip(parts, sizes, strict=True))))
            x = new[-1][0]  # (N, H_k)
        h, *c = (torch.stack([pad_state(t, w) for t in s])
                 for s, w in zip(zip(*new, strict=True), widths, strict=True))  # fmt: skip
        return head_scores(self.head, x), (LSTMState(h, *c) if lstm else h)  # (N, V)

    def _recur(self, idx: Tensor, state: State | None) -> tuple[Tensor, Tensor, State]:
        """The last layer's output (N, L, H) before and after the output dropout (what TAR
        and AR read; the head reads the second) and the state."""
        if self.config.word_dropout:
            words = embedding_dropout(self.embedding, idx, self.config.word_dropout, self.training)
        else:
            words = self.embedding(idx)
        emb = self.embed_dropout(words)  # (N, L, E)
        out, state = self.rnn(emb, state)  # (N, L, H)
        state = LSTMState(*state) if isinstance(state, tuple) else state
        return out, self.dropout(out), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros of the structure ``forward`` returns: h (layers, N, Hmax), or LSTMState(h, c)
        for an LSTM (minLSTM has no cell state: h only)."""
        weight = self.embedding.weight
        device = weight.device if device is None else device
        h, *c = (
            torch.zeros(self.config.layers, batch_size, width, dtype=weight.dtype, device=device)
            for width in self.state_widths()
        )
        return LSTMState(h, *c) if c else h

    def state_widths(self) -> tuple[int, ...]:
        """The columns of each state tensor: (Hmax,), or (Hmax, Cmax) with a cell state --
        Hmax for an LSTM's c, a modern layer's memory size for its c."""
        if isinstance(self.rnn, LayerStack):
            return self.rnn.widths
        return tuple(self.rnn.state_spec().sizes)

    def num_parameters(self) -> int:
        """Number of trainable numbers (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())


def _batch_first(config: ModelConfig) -> dict:
    """LockedDropout's batch_first=True (the model is batch-first); nn.Dropout takes none."""
    return {"batch_first": True} if config.locked_dropout else {}


def _check_config(config: ModelConfig) -> None:
    """The checks the model itself needs; the rest of the config is checked in ``config.py``."""
    if config.vocab_size < 1:
        raise UserError(f"vocab_size must be >= 1 (set from the data), got {config.vocab_size}")
    if config.cell not in CELLS:
        raise UserError(f"--cell must be one of {tuple(CELLS)}, got {config.cell!r}")
    sizes = config.layer_sizes()
    if len(sizes) != config.layers or sizes[-1] != config.hidden:
        raise UserError(
            f"--hidden {','.join(map(str, sizes))} must give --layers {config.layers} sizes, "
            f"the last {config.hidden}"
        )
    if config.tie_weights and config.embed != config.hidden:
        what = "the last layer's size" if uneven(config) else "--hidden"
        raise UserError(
            f"--tie-weights needs --embed == {what}, got {config.embed} and {config.hidden}"
        )
    if config.forget_bias != 0.0 and not has_cell_state(config.cell):
        raise UserError(
            f"--forget-bias applies to --cell lstm or lnlstm only, got --cell {config.cell} "
            f"with --forget-bias {config.forget_bias}"
        )
