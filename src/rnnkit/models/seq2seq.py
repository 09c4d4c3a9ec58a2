"""Encoder-decoder (sequence to sequence) RNN with scheduled sampling and Luong attention.

What is here: :class:`Seq2Seq` -- an encoder (embedding -> rnnkit RNN/LSTM/GRU, optionally
bidirectional, run packed with ``lengths``), a bridge (Linear + tanh from the encoder's final
states to the decoder's initial ones; a modern layer's memory is handed over as the encoder's
forward direction left it, see ``carries_memory``), a decoder (embedding -> unidirectional
recurrent stack -> optional attention -> linear head), ``forward`` with scheduled sampling
(Bengio et al. 2015), and ``encode`` / ``decode`` for generation. What is not here: greedy,
sampling and beam-search decoding (``decoding.py``), data and metrics (``rnnkit.tasks.seq2seq``).

Attention (``attention=True``) is Luong et al. 2015's "general" global attention without input
feeding: after the decoder's recurrent stack, each output ``h_t`` scores every valid encoder
output ``m_s`` as ``h_t^T W_a m_s`` (padding masked out), the softmax weights average the
``m_s`` into a context ``c_t``, and ``h~_t = tanh(W_c [c_t; h_t])`` feeds the head. Without
input feeding the recurrence never sees ``c_t``, so a teacher-forced decoder still runs as one
call of the fused kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.devices import to_device
from rnnkit.models.common import carries_memory, has_cell_state, recurrent
from rnnkit.nn.cells import LSTMState

#: Decoder state: h (layers, N, H) for RNN/GRU, LSTMState(h, c) for LSTM.
State = Tensor | LSTMState


class Encoded(NamedTuple):
    """What the encoder hands the decoder (``N`` batch, ``S`` source length)."""

    memory: Tensor  # (N, S, D*H) encoder outputs (zeros at padding)
    keys: Tensor | None  # (N, S, H) W_a m_s, precomputed for attention; None without it
    mask: Tensor  # (N, S) bool, True at valid source positions
    state: State  # the decoder's initial state (bridge output)

    def select(self, rows: Tensor) -> Encoded:
        """The rows ``rows`` of the batch (repeat for beams, reorder): every tensor indexed."""
        keys = None if self.keys is None else self.keys[rows]
        return Encoded(self.memory[rows], keys, self.mask[rows], select_state(self.state, rows))


def select_state(state: State, rows: Tensor) -> State:
    """Rows ``rows`` of the batch dimension (1) of a recurrent state."""
    if isinstance(state, tuple):  # (h, c)
        return LSTMState(state[0][:, rows], state[1][:, rows])
    return state[:, rows]


class Seq2Seq(nn.Module):
    """Encoder-decoder over token ids (``PAD`` = 0 pads the source; the target starts with BOS).

    Shape legend: ``N`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size,
    ``H`` hidden units per layer, ``D`` encoder directions, ``V`` target vocabulary size.

    * ``forward(src (N, S), src_lengths (N,), tgt_in (N, T), teacher_prob, generator) ->
      logits (N, T, V)``: the decoder reads ``tgt_in[:, 0]`` (BOS) first; at each later step it
      reads the true ``tgt_in[:, t]`` with probability ``teacher_prob``, else its own previous
      argmax (detached), drawn per sequence and step from ``generator``. ``teacher_prob`` 1
      runs the decoder over all T steps in one call; below 1 it runs T one-step calls.
    * ``encode(src, src_lengths) -> Encoded``; ``decode(tokens (N, T), state, encoded) ->
      (logits (N, T, V), state)`` runs T steps at once or, with T = 1, one generation step;
      ``decode_attending`` also returns the attention weights (N, T, S).

    Dropout: ``embed_dropout`` on both embeddings, ``dropout`` between recurrent layers and
    before the head. Initialisation: torch's defaults throughout.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        src_vocab_size: int,
        tgt_vocab_size: int,
        bidirectional: bool = False,
        attention: bool = True,
    ) -> None:
        super().__init__()
        E, H, D = model_config.embed, model_config.hidden, 2 if bidirectional else 1
        self.config, self.bidirectional, self.attention = model_config, bidirectional, attention
        self.src_embedding = nn.Embedding(src_vocab_size, E, padding_idx=0)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, E, padding_idx=0)
        self.embed_dropout = nn.Dropout(model_config.embed_dropout)
        self.encoder = recurrent(model_config, E, bidirectional=bidirectional)
        self.bridge_h = nn.Linear(D * H, H)
        cell_units = has_cell_state(model_config.cell) and not carries_memory(model_config.cell)
        self.bridge_c = nn.Linear(D * H, H) if cell_units else None
        self.decoder = recurrent(model_config, E)
        if attention:
            self.attn_in = nn.Linear(D * H, H, bias=False)  # W_a
            self.attn_out = nn.Linear(D * H + H, H, bias=False)  # W_c
        self.dropout = nn.Dropout(model_config.dropout)
        self.head = nn.Linear(H, tgt_vocab_size)

    # ---- encoder -----------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """Run the encoder over the padded ``src`` (N, S) and bridge its final states.
        ``src_lengths`` (N,) are best kept on the host, where packing reads them."""
        src_lengths = src_lengths.cpu()  # copies nothing when they are on the host
        emb = self.embed_dropout(self.src_embedding(src))  # (N, S, E)
        memory, state = self.encoder(emb, lengths=src_lengths)  # (N, S, D*H)
        if isinstance(state, tuple):  # the encoder's (h, c)
            h0 = self._bridge(state[0], self.bridge_h)
            if self.bridge_c is not None:
                c0 = self._bridge(state[1], self.bridge_c)
            else:  # a modern layer's memory: the forward direction's, as the encoder left it
                c0 = state[1].unflatten(0, (-1, 2 if self.bidirectional else 1))[:, 0]
            init: State = LSTMState(h0, c0)
        else:
            init = self._bridge(state, self.bridge_h)
        mask = torch.arange(src.size(1))[None, :] < src_lengths[:, None]  # (N, S), host
        keys = self.attn_in(memory) if self.attention else None  # (N, S, H)
        return Encoded(memory, keys, to_device(mask, src.device), init)

    def _bridge(self, s: Tensor, linear: nn.Module) -> Tensor:
        """(layers*D, N, H) final states -> (layers, N, H): per layer, tanh(W [fwd; bwd] + b)."""
        D = 2 if self.bidirectional else 1
        layers, n, h = s.size(0) // D, s.size(1), s.size(2)
        s = s.view(layers, D, n, h).transpose(1, 2).reshape(layers, n, D * h)  # (layers, N, D*H)
        return torch.tanh(linear(s))  # (layers, N, H)

    # ---- decoder -----------------------------------------------------------------------------
    def decode(self, tokens: Tensor, state: State, encoded: Encoded) -> tuple[Tensor, State]:
        """Decoder over ``tokens`` (N, T) from ``state``: logits (N, T, V) and the new state."""
        logits, state, _ = self._decode(tokens, state, encoded)
        return logits, state

    def decode_attending(
        self, tokens: Tensor, state: State, encoded: Encoded
    ) -> tuple[Tensor, State, Tensor]:
        """:meth:`decode` and the attention weights alpha (N, T, S) it used: row t is the
        distribution over source positions the output at ``tokens[:, t]`` read (0 at padding).
        Needs ``attention=True``."""
        if not self.attention:
            raise ValueError("this model has no attention (attention=False): no weights")
        return self._decode(tokens, state, encoded)

    def _decode(self, tokens: Tensor, state: State, encoded: Encoded):
        emb = self.embed_dropout(self.tgt_embedding(tokens))  # (N, T, E)
        out, state = self.decoder(emb, state)  # (N, T, H)
        state = LSTMState(*state) if isinstance(state, tuple) else state  # the layer's (h, c)
        alpha = None
        if self.attention:
            scores = out @ encoded.keys.transpose(1, 2)  # (N, T, S): h_t^T W_a m_s
            scores = scores.masked_fill(~encoded.mask[:, None, :], float("-inf"))
            alpha = scores.softmax(-1)  # (N, T, S)
            context = alpha @ encoded.memory  # (N, T, D*H)
            out = torch.tanh(self.attn_out(torch.cat([context, out], -1)))  # (N, T, H)
        return self.head(self.dropout(out)), state, alpha  # (N, T, V)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        teacher_prob: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits (N, T, V) for every target position; see the class docstring."""
        encoded = self.encode(src, src_lengths)
        if teacher_prob >= 1.0:
            return self.decode(tgt_in, encoded.state, encoded)[0]  # one call over all T steps
        n, steps = tgt_in.shape
        truth = torch.rand(n, steps, generator=generator, device=tgt_in.device) < teacher_prob
        return self.decode_stepwise(tgt_in, encoded, truth)

    def decode_stepwise(self, tgt_in: Tensor, encoded: Encoded, truth: Tensor) -> Tensor:
        """The step-by-step path: step t > 0 reads ``tgt_in[:, t]`` where ``truth[:, t]``
        (N, T) bool is set, else the previous step's argmax. Logits (N, T, V)."""
        state, token, logits = encoded.state, tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            if t > 0:
                predicted = logits[-1].argmax(-1).detach()  # (N,)
                token = torch.where(truth[:, t], tgt_in[:, t], predicted)
            step_logits, state = self.decode(token[:, None], state, encoded)  # (N, 1, V)
            logits.append(step_logits[:, 0])
        return torch.stack(logits, 1)  # (N, T, V)
