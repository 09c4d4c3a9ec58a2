"""Reproducible batch orders, padding with lengths, and seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.batching import EpochOrder, mask, pad, split_indices


@given(st.integers(1, 200), st.integers(1, 32), st.integers(0, 5), st.booleans())
def test_every_epoch_is_a_permutation_and_a_pure_function(n, batch, epoch, bucketed):
    lengths = list(np.random.default_rng(n).integers(1, 50, n)) if bucketed else None
    order = EpochOrder(n, batch, seed=7, lengths=lengths)
    batches = [order.batch(epoch, i) for i in range(len(order))]
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    again = EpochOrder(n, batch, seed=7, lengths=lengths)
    assert all(np.array_equal(a, again.batch(epoch, i)) for i, a in enumerate(batches))
    assert [b.tolist() for b in order.batches(epoch)] == [b.tolist() for b in batches]


def test_epochs_differ_and_buckets_group_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 100, 640)
    order = EpochOrder(640, 32, seed=1, lengths=lengths)
    assert not np.array_equal(order.permutation(0), order.permutation(1))
    spread = np.mean([np.ptp(lengths[b]) for b in order.batches(0)])
    plain = EpochOrder(640, 32, seed=1)
    assert spread < 0.5 * np.mean([np.ptp(lengths[b]) for b in plain.batches(0)])
    assert EpochOrder(5, 2, 0, shuffle=False).batch(3, 1).tolist() == [2, 3]


def test_pad_and_mask():
    x, lengths = pad([[1, 2, 3], [4], [5, 6]], value=0)
    assert x.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]] and lengths.tolist() == [3, 1, 2]
    assert mask(lengths).tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    assert x.dtype == torch.long and lengths.dtype == torch.long
    with pytest.raises(ValueError):
        EpochOrder(0, 4, 0)


@given(st.integers(1, 500), st.floats(0.01, 0.4), st.floats(0.0, 0.4))
def test_split_indices_partition_and_are_seeded(n, val, test):
    train, v, t = split_indices(n, val, test, seed=3)
    assert sorted([*train, *v, *t]) == list(range(n))
    again = split_indices(n, val, test, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, v, t), again, strict=True))
    if n >= 3 and test > 0:
        assert len(t) >= 1
