"""Mini-batches of variable-length examples: a reproducible order and padding with lengths.

    order = EpochOrder(len(examples), batch_size=32, seed=1337, lengths=lengths)
    for index in range(len(order)):
        ids = order.batch(epoch, index)         # a pure function of (seed, epoch, index):
        x, lengths = pad([examples[i] for i in ids])   # resuming mid-epoch replays nothing

Padding goes right; ``lengths`` (CPU int64) is what rnnkit's layers take as ``lengths=`` so the
fused kernel runs packed and stops at each sequence's end ("variable depth"). With ``lengths``
given, ``EpochOrder`` groups examples of similar length into a batch (shuffled buckets), which
cuts the padding computed without changing what an epoch contains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_BUCKET = 50  # batches per sorting bucket


class EpochOrder:
    """Which examples form batch ``index`` of epoch ``epoch`` (last batch may be smaller)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        lengths: Sequence[int] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("EpochOrder needs at least one example")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.lengths = None if lengths is None else np.asarray(lengths)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n)
        if self.lengths is None:
            return order
        # sort within buckets of _BUCKET batches, then shuffle the batches themselves
        size = self.batch_size * _BUCKET
        chunks = [order[i : i + size] for i in range(0, self.n, size)]
        order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def batch(self, epoch: int, index: int) -> np.ndarray:
        perm = self.permutation(epoch)
        return perm[index * self.batch_size : (index + 1) * self.batch_size]

    def batches(self, epoch: int = 0):
        perm = self.permutation(epoch)
        for start in range(0, self.n, self.batch_size):
            yield perm[start : start + self.batch_size]


def pad(sequences: Sequence[Sequence[int]], value: int = 0) -> tuple[Tensor, Tensor]:
    """``(N, L_max)`` int64 tensor padded with ``value`` on the right, and lengths ``(N,)``."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), value)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return out, lengths


def mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``(N, L)`` bool, True at the valid steps of each sequence."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len)[None, :] < lengths[:, None]


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded shuffle of ``range(n)`` cut into (train, val, test); val and test get at least
    one example each when their fraction is > 0 and n allows. Same arguments, same split."""
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(n)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n >= 3 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n >= 2 else 0
    test, val = order[:n_test], order[n_test : n_test + n_val]
    return np.sort(order[n_test + n_val :]), np.sort(val), np.sort(test)
