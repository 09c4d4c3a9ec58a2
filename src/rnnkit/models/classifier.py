"""Many-to-one sequence classifier: embedding (tokens) or vectors (numeric series, optionally
through a linear projection) -> recurrent stack -> pooling -> linear head.

What is here: ``SequenceClassifier``. What is not here: reading labelled data
(``rnnkit.data.labelled``), the loss and metrics (``rnnkit.tasks.classify``), and the
recurrent layers and pooling themselves (``rnnkit.models.common``).
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.data.tokens import PAD
from rnnkit.errors import UserError
from rnnkit.models.common import pool, recurrent

POOLINGS = ("last", "mean", "max")


class SequenceClassifier(nn.Module):
    """embedding -> dropout -> rnnkit RNN/LSTM/GRU (packed by ``lengths``) -> pool -> dropout
    -> linear.

    Shape legend: ``N`` batch, ``L`` longest sequence, ``E`` embedding (``embed``), ``H``
    hidden units (``hidden``), ``D`` 2 if ``bidirectional`` else 1, ``C`` ``num_classes``,
    ``K`` input channels (``channels``).

    ``forward(tokens (N, L), lengths (N,)) -> logits (N, C)``: ``tokens`` are right-padded ids,
    ``lengths`` (CPU int64, each >= 1) the valid steps. With ``channels`` K > 0 the input is
    vectors instead, ``forward(x (N, L, K), lengths)``: the RNN reads x itself, or with
    ``project`` the projection ``x W^T + b`` (K -> E) of each step (``vocab_size`` is unused).
    The layer runs packed, so padding never changes a result: ``pooling`` is ``last`` (the
    final state: forward direction at each sequence's last valid step, backward direction at
    its first), ``mean`` or ``max`` over the valid outputs. Dropout: ``embed_dropout`` on what
    the RNN reads (embeddings, projections or vectors), ``dropout`` between layers and on the
    pooled summary. Initialisation: torch's defaults (the ``<pad>`` embedding row is 0).
    """

    def __init__(
        self,
        model_config: ModelConfig,
        vocab_size: int,
        num_classes: int,
        bidirectional: bool = False,
        pooling: str = "last",
        *,
        channels: int = 0,
        project: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise UserError(f"--pooling must be one of {POOLINGS}, got {pooling!r}")
        if (vocab_size < 1 and not channels) or num_classes < 2:
            raise UserError(
                f"a classifier needs vocab_size >= 1 and num_classes >= 2, "
                f"got {vocab_size} and {num_classes}"
            )
        self.bidirectional, self.pooling = bidirectional, pooling
        E, H, D = model_config.embed, model_config.hidden, 2 if bidirectional else 1
        self.channels = channels
        if channels:  # numeric series: vectors in, projected to E or read as they are
            self.project = nn.Linear(channels, E) if project else None
            inputs = E if project else channels
        else:
            self.embedding = nn.Embedding(vocab_size, E, padding_idx=PAD)
            inputs = E
        self.embed_dropout = nn.Dropout(model_config.embed_dropout)
        self.rnn = recurrent(model_config, inputs, bidirectional=bidirectional)
        self.dropout = nn.Dropout(model_config.dropout)
        self.head = nn.Linear(D * H, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        if not self.channels:
            x = self.embedding(tokens)  # (N, L, E)
        elif self.project is not None:
            x = self.project(tokens)  # (N, L, K) -> (N, L, E)
        else:
            x = tokens  # (N, L, K)
        x = self.embed_dropout(x)
        out, state = self.rnn(x, lengths=lengths.cpu())  # (N, L, D*H)
        summary = pool(out, lengths, self.pooling, state, self.bidirectional)  # (N, D*H)
        return self.head(self.dropout(summary))  # (N, C)
