"""TokenStreams: the docstring's picture, the minimum length, purity and index range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.data.streams import TokenStreams
from rnnkit.errors import UserError

LETTERS = "abcdefghijklmnopqrstuvwx"


def rows(tensor: torch.Tensor) -> list[str]:
    return ["".join(LETTERS[i] for i in row) for row in tensor.tolist()]


def test_the_docstring_picture():
    streams = TokenStreams(np.arange(24), batch_size=3, seq_len=3)
    assert len(streams) == 2 and streams.tokens_per_batch == 9
    x, y = streams.batch(0)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (3, 3)
    assert rows(x) == ["abc", "ijk", "qrs"] and rows(y) == ["bcd", "jkl", "rst"]
    x, y = streams.batch(1)
    assert rows(x) == ["def", "lmn", "tuv"] and rows(y) == ["efg", "mno", "uvw"]
    assert [rows(x) for x, _ in streams] == [["abc", "ijk", "qrs"], ["def", "lmn", "tuv"]]
    assert "a b c | d e f | g h" in TokenStreams.__doc__


def test_streams_continue_across_batches_and_cover_each_stream():
    tokens = np.arange(1000, dtype=np.uint16)
    streams = TokenStreams(tokens, batch_size=4, seq_len=7)
    xs = torch.cat([x for x, _ in streams], dim=1)  # (B, steps*T): each row one stream
    ys = torch.cat([y for _, y in streams], dim=1)
    stream_len = len(tokens) // 4
    for b in range(4):
        start = b * stream_len
        assert xs[b].tolist() == list(range(start, start + len(streams) * 7))
    assert torch.equal(ys, xs + 1)
    assert all(x.is_contiguous() and y.is_contiguous() for x, y in streams)


def test_memmap_tokens(tmp_path):
    path = tmp_path / "t.bin"
    np.arange(50, dtype=np.uint16).tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    x, y = TokenStreams(tokens, batch_size=2, seq_len=5).batch(2)
    assert x.tolist() == [[10, 11, 12, 13, 14], [35, 36, 37, 38, 39]]
    assert y.tolist() == [[11, 12, 13, 14, 15], [36, 37, 38, 39, 40]]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("seq_len", [1, 2, 3, 7])
def test_every_length_uses_the_tokens_it_may(batch_size, seq_len):
    """Targets stay in range, inputs of different streams never overlap, and one batch
    exists exactly from batch_size*seq_len+1 tokens on."""
    for n in range(batch_size * seq_len + 1, batch_size * seq_len * 4):
        streams = TokenStreams(np.arange(n), batch_size, seq_len)
        xs = torch.cat([x for x, _ in streams], dim=1)
        ys = torch.cat([y for _, y in streams], dim=1)
        assert int(ys.max()) <= n - 1 and torch.equal(ys, xs + 1)
        assert len(set(xs.flatten().tolist())) == xs.numel()
    with pytest.raises(UserError):
        TokenStreams(np.arange(batch_size * seq_len), batch_size, seq_len)


def test_too_short_names_the_minimum():
    with pytest.raises(UserError) as info:
        TokenStreams(np.arange(9), batch_size=3, seq_len=3, name="validation text")
    message = str(info.value)
    assert message.startswith("validation text is too short for one batch: 9 tokens")
    assert "batch_size*seq_len+1 = 10" in message and "--batch-size" in message
    assert len(TokenStreams(np.arange(10), batch_size=3, seq_len=3)) == 1


@pytest.mark.parametrize(
    ("batch_size", "seq_len", "flag"), [(0, 3, "--batch-size"), (2, 0, "--seq-len")]
)
def test_sizes_must_be_positive(batch_size, seq_len, flag):
    with pytest.raises(UserError, match=flag):
        TokenStreams(np.arange(100), batch_size=batch_size, seq_len=seq_len)


def test_batch_is_a_pure_function_of_its_index():
    tokens = np.random.default_rng(0).integers(0, 65, size=5000).astype(np.uint16)
    one = TokenStreams(tokens, batch_size=8, seq_len=16)
    two = TokenStreams(tokens, batch_size=8, seq_len=16)
    order = [5, 0, 17, 5, 3]
    first = [one.batch(i) for i in order]
    for (x1, y1), i in zip(first, order, strict=True):
        x2, y2 = two.batch(i)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x, y = one.batch(5)
    x += 1000  # mutating a returned batch must not change later ones
    y += 1000
    assert torch.equal(one.batch(5)[0], first[0][0]) and torch.equal(one.batch(5)[1], first[0][1])
    assert torch.equal(one.batch(np.int64(3))[0], first[-1][0])


def test_index_out_of_range():
    streams = TokenStreams(np.arange(24), batch_size=3, seq_len=3)
    for bad in (-1, 2, 100):
        with pytest.raises(IndexError):
            streams.batch(bad)


def test_evaluation_streams_shrink_to_fit_a_short_text():
    tokens = np.arange(50, dtype=np.uint8)
    streams = TokenStreams.for_evaluation(tokens, batch_size=32, seq_len=10)
    assert streams.batch_size == 4 and len(streams) == 1  # 4 streams of one 10-step chunk
    with pytest.raises(UserError, match="validation text is too short"):
        TokenStreams.for_evaluation(tokens[:5], batch_size=32, seq_len=10)
