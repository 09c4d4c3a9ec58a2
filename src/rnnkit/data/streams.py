"""Batches for truncated backpropagation through time: B parallel streams, chunks of T.

In this file: :class:`TokenStreams`, which cuts one long token array into ``B`` contiguous
streams and serves chunk ``i`` of every stream as batch ``i``, and
:class:`VariableLengthStreams`, the same streams cut into chunks of random lengths around ``T``
(AWD-LSTM's variable truncation, ``--variable-bptt``).

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
        self.usable = min(self.stream_len, spare)  # input positions of each stream with a target
        self.steps = self.usable // seq_len
        if self.steps < 1:
            raise UserError(
                f"{name} is too short for one batch: {len(tokens)} tokens, need at least "
                f"batch_size*seq_len+1 = {batch_size * seq_len + 1} "
                "(lower --batch-size or --seq-len)"
            )
        self._starts = np.arange(batch_size, dtype=np.int64)[:, None] * self.stream_len  # (B, 1)

    def shard(self, rows: slice) -> TokenStreams:
        """The same batches restricted to the streams ``rows`` (a contiguous block): what one
        of several training processes reads. ``shard(rows).batch(i)`` is ``batch(i)[rows]``."""
        part = copy.copy(self)
        part._starts = self._starts[rows]  # (B_rows, 1)
        part.batch_size = len(part._starts)
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
        return self.chunk(index * self.seq_len, self.seq_len)

    def chunk(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of positions ``start .. start + length - 1`` of every stream:
        int64 tensors of shape ``(B, length)``; the inputs must lie within ``usable``."""
        if not (0 <= start and 1 <= length and start + length <= self.usable):
            raise IndexError(f"chunk [{start}, {start + length}) outside [0, {self.usable})")
        offsets = self._starts + np.arange(start, start + length + 1, dtype=np.int64)  # (B, L+1)
        both = torch.from_numpy(self.tokens[offsets].astype(np.int64))
        return both[:, :-1].contiguous(), both[:, 1:].contiguous()

    def epoch_steps(self, epoch: int) -> int:
        """Batches in epoch ``epoch``: the same in every epoch (``len``)."""
        return self.steps

    def epoch_batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``index`` of epoch ``epoch``: ``batch(index)``, whatever the epoch."""
        return self.batch(index)

    def varying(self, seed: int) -> VariableLengthStreams:
        """These streams cut into AWD-LSTM's random lengths around ``seq_len`` (drawn from
        ``seed`` and the epoch): ``--variable-bptt``."""
        return VariableLengthStreams(self, seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in range(self.steps):
            yield self.batch(index)


class VariableLengthStreams:
    """The streams of a :class:`TokenStreams`, cut into chunks of random lengths around ``T``
    (Merity, Keskar and Socher 2017, "Regularizing and Optimizing LSTM Language Models",
    section 4.1; AWD-LSTM's ``main.py``)::

        stream 0: a b c d e f g | h i j k | l m n o p q r s | t u     lengths 7, 4, 8, 2:
        stream 1: ...           |         |                 |         the same cut in every
                                                                      stream of a batch

    Each chunk's length is drawn as AWD-LSTM does::

        bptt = T with probability 0.95, else T / 2
        len  = max(5, int(normal(bptt, 5)))          (int truncates towards zero)

    then capped at ``max(2 T, 5)`` (memory stays within twice a fixed-length batch's; a draw
    past 2 T is 4 standard deviations out) and at what is left of the streams, so the last
    chunk of an epoch ends where the streams end and every position of every stream is a
    target exactly once per epoch (the fixed-length streams leave the last ``usable mod T``
    positions out). The lengths of epoch ``e`` come from a generator seeded by ``(seed, e)``
    alone: batch ``i`` of epoch ``e`` is a pure function of ``(e, i)`` (an exact resume), every
    training process draws the same lengths (they depend on the full streams' ``usable``,
    which a shard keeps), and epochs have different numbers of batches (``epoch_steps``).
    The learning rate of a batch is scaled by its length / T (the trainer's ``lr_scale``).
    """

    def __init__(self, streams: TokenStreams, seed: int) -> None:
        self.streams, self.seed = streams, seed
        self.batch_size, self.seq_len = streams.batch_size, streams.seq_len
        self.max_len = max(2 * self.seq_len, 5)
        self._epoch, self._starts = -1, np.zeros(1, dtype=np.int64)

    def lengths(self, epoch: int) -> np.ndarray:
        """The chunk lengths of epoch ``epoch``; they sum to the streams' ``usable``."""
        rng = np.random.default_rng([self.seed % 2**64, epoch])
        usable, lengths, done = self.streams.usable, [], 0
        while done < usable:
            bptt = self.seq_len if rng.random() < 0.95 else self.seq_len / 2
            length = min(max(5, int(rng.normal(bptt, 5))), self.max_len, usable - done)
            lengths.append(length)
            done += length
        return np.array(lengths, dtype=np.int64)

    def _chunk_starts(self, epoch: int) -> np.ndarray:
        """Where each chunk of ``epoch`` starts, and ``usable`` last (cached for one epoch)."""
        if epoch != self._epoch:
            self._starts = np.concatenate([[0], np.cumsum(self.lengths(epoch))])
            self._epoch = epoch
        return self._starts

    def epoch_steps(self, epoch: int) -> int:
        """Batches in epoch ``epoch``."""
        return len(self._chunk_starts(epoch)) - 1

    def epoch_batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch ``index`` of epoch ``epoch``: ``(B, length)`` each."""
        starts = self._chunk_starts(epoch)
        if not 0 <= index < len(starts) - 1:
            raise IndexError(f"batch index {index} out of range for {len(starts) - 1} batches")
        start = int(starts[index])
        return self.streams.chunk(start, int(starts[index + 1]) - start)
