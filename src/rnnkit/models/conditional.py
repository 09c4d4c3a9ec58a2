"""One-to-many: a character generator whose initial state comes from a condition.

    model = ConditionalGenerator(config, vocab_size=60, condition="class", condition_size=18)
    logits = model(cond, tokens, lengths)       # (N, L, V), teacher forcing
    state = model.initial_state(cond)           # h_0 (and c_0) from the condition
    logits, state = model.step(token, state, cond)   # (N, V): one character at a time

The condition ``c`` is a class id (``nn.Embedding``) or a real vector (``nn.Linear``),
embedded to ``e_c`` of size ``E`` (``config.embed``); every layer's initial state is
``h_0 = tanh(W_h e_c + b_h)`` (and ``c_0 = tanh(W_c e_c + b_c)`` for an LSTM). With
``condition_input`` the embedding is also concatenated to every step's character embedding,
so the condition cannot fade along a long sequence (image captioning knows both: Show and
Tell feeds the image once, m-RNN at every step).

What is not here: the data (``rnnkit.tasks.generate_from``) and sampling policy
(``rnnkit.generation``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import carries_memory, has_cell_state, recurrent
from rnnkit.nn.cells import LSTMState

#: h (layers, N, H) for RNN/GRU, LSTMState(h, c) for LSTM.
State = Tensor | LSTMState

CONDITIONS = ("class", "vector")


class ConditionalGenerator(nn.Module):
    """condition -> initial state; <bos> + chars -> recurrent stack -> next-char logits.

    Shape legend: ``N`` batch, ``L`` sequence length, ``V`` vocabulary, ``E`` embedding size
    (chars and condition alike), ``H`` hidden units, ``K`` classes, ``D`` vector size.

    * ``cond``: class ids (N,) int64 for ``condition="class"``; vectors (N, D) float for
      ``condition="vector"``.
    * ``forward(cond, tokens (N, L), lengths (N,) | None) -> logits (N, L, V)``; positions
      at or after ``lengths`` are padding and their logits meaningless.
    * ``step(token (N,), state, cond) -> (logits (N, V), state)``: one position, equal to
      ``forward`` fed one token at a time from ``initial_state(cond)``.
    """

    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int,
        condition: str,
        condition_size: int,
        condition_input: bool = False,
    ) -> None:
        super().__init__()
        if condition not in CONDITIONS:
            raise UserError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        if vocab_size < 1 or condition_size < 1:
            raise UserError(
                f"vocab_size and condition_size must be >= 1, got {vocab_size}, {condition_size}"
            )
        # a modern layer reads no h_0 (its output comes from its memory): the condition is fed
        # with every input instead, and the memory starts at zero
        memory = carries_memory(config.cell)
        condition_input = condition_input or memory
        self.config, self.condition, self.condition_input = config, condition, condition_input
        V, E, H, layers = vocab_size, config.embed, config.hidden, config.layers
        if condition == "class":
            self.cond_embed: nn.Module = nn.Embedding(condition_size, E)
        else:
            self.cond_embed = nn.Linear(condition_size, E)
        self.init_h = nn.Linear(E, layers * H)
        cell_units = has_cell_state(config.cell) and not memory
        self.init_c = nn.Linear(E, layers * H) if cell_units else None
        self.embedding = nn.Embedding(V, E)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        self.rnn = recurrent(config, 2 * E if condition_input else E)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(H, V)

    def embed_condition(self, cond: Tensor) -> Tensor:
        """e_c (N, E) from class ids (N,) or vectors (N, D)."""
        if self.condition == "vector":
            cond = cond.to(self.head.weight.dtype)
        return self.cond_embed(cond)  # (N, E)

    def initial_state(self, cond: Tensor) -> State:
        """h_0 = tanh(W_h e_c + b_h) for every layer (and c_0 likewise for an LSTM; a modern
        layer's memory starts at zero, the condition reaching it through every input)."""
        e_c = self.embed_condition(cond)  # (N, E)
        shape = (e_c.size(0), self.config.layers, self.config.hidden)
        h0 = torch.tanh(self.init_h(e_c)).view(shape).transpose(0, 1).contiguous()  # (layers, N, H)
        if carries_memory(self.config.cell):  # zeros: the condition comes with every input
            memory = self.rnn.state_spec().sizes[1]
            return LSTMState(h0, h0.new_zeros(self.config.layers, e_c.size(0), memory))
        if self.init_c is None:
            return h0
        c0 = torch.tanh(self.init_c(e_c)).view(shape).transpose(0, 1).contiguous()
        return LSTMState(h0, c0)

    def forward(self, cond: Tensor, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Next-character logits (N, L, V) for ``tokens`` (N, L) read from the condition's
        initial state; ``lengths`` (N,) makes the layer run packed over a padded batch."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be 2-D (N, L) ids, got shape {tuple(tokens.shape)}")
        state = self.initial_state(cond)
        out, _ = self._run(tokens, state, cond, lengths)
        return out

    def step(self, token: Tensor, state: State, cond: Tensor) -> tuple[Tensor, State]:
        """One position: ``token`` (N,) -> logits (N, V) and the next state."""
        logits, state = self._run(token.unsqueeze(1), state, cond, None)  # (N, 1, V)
        return logits.squeeze(1), state  # (N, V)

    def _run(self, tokens: Tensor, state: State, cond: Tensor, lengths: Tensor | None):
        x = self.embed_dropout(self.embedding(tokens))  # (N, L, E)
        if self.condition_input:
            e_c = self.embed_condition(cond)  # (N, E)
            x = torch.cat([x, e_c.unsqueeze(1).expand(-1, x.size(1), -1)], dim=-1)  # (N, L, 2E)
        if lengths is not None:
            lengths = lengths.cpu()
        out, state = self.rnn(x, state, lengths=lengths)  # (N, L, H)
        logits = self.head(self.dropout(out))  # (N, L, V)
        return logits, (LSTMState(*state) if isinstance(state, tuple) else state)
