"""Batches for truncated backpropagation through time: B parallel streams, chunks of T.

In this file: :class:`TokenStreams`, which cuts one long token array into ``B`` contiguous
streams and serves chunk ``i`` of every stream as batch ``i``.

Not in this file: carrying and detaching the hidden state (``training/tbptt.py``), reading
text (``corpus.py``), padded batches of separate sequences.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch

from rnnkit.errors import UserError


class TokenStreams:
    """B contiguous streams over a token array, read in chunks of T steps (truncated BPTT).

    ::

        tokens: a b c d e f g h i j k l m n o p q r s t u v w x
        B=3 streams (one row each), chunks of T=3:
          stream 0: a b c | d e f | g h
          stream 1: i j k | l m n | o p
          stream 2: q r s | t u v | w x
        batch 0 = rows [abc, ijk, qrs] -> targets [bcd, jkl, rst]; batch 1 = [def, lmn, tuv] ...

    Stream ``b`` starts at token ``b * S`` with ``S = len(tokens) // B``. The targets of a
    chunk reach one token past it (``d`` above), so the last stream needs one token to spare
    after its last input: ``steps = min(S, len(tokens) - 1 - (B - 1) * S) // T``, which is at
    least 1 exactly when ``len(tokens) >= B * T + 1``. What is left at the end of a stream
    (``g h`` above; ``g`` is still a target) is not used as input.

    Row ``b`` of batch ``i + 1`` continues row ``b`` of batch ``i``, so the hidden state of
    stream ``b`` after batch ``i`` is the right initial state for batch ``i + 1``: the trainer
    carries it from batch to batch and detaches it (gradients stop at the chunk boundary,
    the information flows on). A new epoch starts every stream from its beginning, so the
    state is reset to zeros then.

    ``batch(i)`` is a pure function of ``i`` (a resumed run sees exactly the same batches)
    and cheap: one fancy-indexing read of ``B * (T + 1)`` tokens from the (memory-mapped)
    array.
    """

    def __init__(
        self, tokens: np.ndarray, batch_size: int, seq_len: int, *, name: str = "training text"
    ) -> None:
        if batch_size < 1:
            raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
        if seq_len < 1:
            raise UserError(f"--seq-len must be a positive integer, got {seq_len!r}")
        tokens = np.asarray(tokens)  # a plain view of a memmap, no copy
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-D array, got shape {tokens.shape}")
        self.tokens = tokens
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.stream_len = len(tokens) // batch_size
        spare = len(tokens) - 1 - (batch_size - 1) * self.stream_len  # room in the last stream
        self.steps = min(self.stream_len, spare) // seq_len
        if self.steps < 1:
            raise UserError(
                f"{name} is too short for one batch: {len(tokens)} tokens, need at least "
                f"batch_size*seq_len+1 = {batch_size * seq_len + 1} "
                "(lower --batch-size or --seq-len)"
            )
        starts = np.arange(batch_size, dtype=np.int64)[:, None] * self.stream_len
        self._offsets = starts + np.arange(seq_len + 1, dtype=np.int64)[None, :]  # (B, T+1)

    def shard(self, rows: slice) -> TokenStreams:
        """The same batches restricted to the streams ``rows`` (a contiguous block): what one
        of several training processes reads. ``shard(rows).batch(i)`` is ``batch(i)[rows]``."""
        part = copy.copy(self)
        part._offsets = self._offsets[rows]  # (B_rows, T+1)
        part.batch_size = len(part._offsets)
        if part.batch_size < 1:
            raise ValueError(f"rows {rows} select no stream of {self.batch_size}")
        return part

    @classmethod
    def for_evaluation(
        cls, tokens: np.ndarray, batch_size: int, seq_len: int, *, name: str = "validation text"
    ) -> TokenStreams:
        """Streams for scoring a (possibly short) text: as many as ``batch_size`` streams as the
        text allows for one chunk each, so a short validation text still gets scored."""
        batch = max(1, min(batch_size, (len(tokens) - 1) // seq_len))
        return cls(tokens, batch, seq_len, name=name)

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.steps

    @property
    def tokens_per_batch(self) -> int:
        """``B * T`` predicted tokens in each batch."""
        return self.batch_size * self.seq_len

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch ``index``: int64 tensors of shape ``(B, T)``, where
        ``y[b, t]`` is the token after ``x[b, t]``."""
        if not 0 <= index < self.steps:
            raise IndexError(f"batch index {index} out of range for {self.steps} batches")
        chunk = self.tokens[self._offsets + index * self.seq_len]  # (B, T+1)
        both = torch.from_numpy(chunk.astype(np.int64))
        return both[:, :-1].contiguous(), both[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in range(self.steps):
            yield self.batch(index)
