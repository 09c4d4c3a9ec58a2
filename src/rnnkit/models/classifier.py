"""Many-to-one sequence classifier: embedding -> recurrent stack -> pooling -> linear head.

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
    hidden units (``hidden``), ``D`` 2 if ``bidirectional`` else 1, ``C`` ``num_classes``.

    ``forward(tokens (N, L), lengths (N,)) -> logits (N, C)``: ``tokens`` are right-padded ids,
    ``lengths`` (CPU int64, each >= 1) the valid steps. The layer runs packed, so padding never
    changes a result: ``pooling`` is ``last`` (the final state: forward direction at each
    sequence's last valid step, backward direction at its first), ``mean`` or ``max`` over the
    valid outputs. Dropout: ``embed_dropout`` on the embeddings, ``dropout`` between layers and
    on the pooled summary. Initialisation: torch's defaults (the ``<pad>`` embedding row is 0).
    """

    def __init__(
        self,
        model_config: ModelConfig,
        vocab_size: int,
        num_classes: int,
        bidirectional: bool = False,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise UserError(f"--pooling must be one of {POOLINGS}, got {pooling!r}")
        if vocab_size < 1 or num_classes < 2:
            raise UserError(
                f"a classifier needs vocab_size >= 1 and num_classes >= 2, "
                f"got {vocab_size} and {num_classes}"
            )
        self.bidirectional, self.pooling = bidirectional, pooling
        E, H, D = model_config.embed, model_config.hidden, 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, E, padding_idx=PAD)
        self.embed_dropout = nn.Dropout(model_config.embed_dropout)
        self.rnn = recurrent(model_config, E, bidirectional=bidirectional)
        self.dropout = nn.Dropout(model_config.dropout)
        self.head = nn.Linear(D * H, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed_dropout(self.embedding(tokens))  # (N, L, E)
        out, state = self.rnn(x, lengths=lengths.cpu())  # (N, L, D*H)
        summary = pool(out, lengths, self.pooling, state, self.bidirectional)  # (N, D*H)
        return self.head(self.dropout(summary))  # (N, C)
