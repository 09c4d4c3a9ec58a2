"""The neural cache (rnnkit.training.cache) against a direct, slow computation: each stream run
in one call, python loops over positions and history in float64; lambda 0 against the plain
evaluation; the tuning against a brute-force loop over the grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.data.streams import TokenStreams
from rnnkit.models import LanguageModel
from rnnkit.training.cache import (
    LAMBDAS,
    THETAS,
    cache_evaluate,
    cache_probabilities,
    tune_cache,
)
from rnnkit.training.tbptt import evaluate

V, E, H = 11, 7, 13  # odd sizes, so a transposition cannot hide
B, T = 3, 5  # three streams, chunks of five


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and on a busy machine much faster (no waiting for
    a second OpenMP thread at every kernel)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(cell: str = "lstm", dtype=torch.float64, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=2, cell=cell)
    return LanguageModel(config).to(dtype)


def text(n: int = 70, seed: int = 1) -> np.ndarray:
    """Random tokens with a repeated stretch, so the cache has something to find."""
    rng = np.random.default_rng(seed)
    part = rng.integers(0, V, (n + 1) // 2)
    return np.concatenate([part, part])[:n].astype(np.int64)


def direct_losses(model, streams: TokenStreams, size: int, settings) -> list[float]:
    """Mean -log p(y_t) for each (theta, lambda) of ``settings``: each stream scored in one
    forward call (no chunks), the cache by python loops over every position and its window,
    in float64."""
    xs = torch.cat([streams.batch(i)[0] for i in range(len(streams))], dim=1)  # (B, L)
    ys = torch.cat([streams.batch(i)[1] for i in range(len(streams))], dim=1)
    model.eval()
    with torch.no_grad():
        hidden = model(xs).hidden.double()  # (B, L, H), one call per stream
        log_model = model.log_probs(hidden).double()  # (B, L, V)
    losses = []
    for theta, lam in settings:
        total, count = 0.0, 0
        for b in range(xs.size(0)):
            h, y = hidden[b].tolist(), ys[b].tolist()
            for t in range(len(y)):
                p = math.exp(log_model[b, t, y[t]].item())
                window = range(max(0, t - size), t)
                if window:
                    dots = [sum(a * c for a, c in zip(h[t], h[i], strict=True)) for i in window]
                    weights = [math.exp(theta * d) for d in dots]
                    hits = sum(w for w, i in zip(weights, window, strict=True) if y[i] == y[t])
                    p = (1 - lam) * p + lam * hits / sum(weights)
                total -= math.log(p)
                count += 1
        losses.append(total / count)
    return losses


SETTINGS = [(0.0, 0.3), (0.7, 0.1), (2.5, 0.6), (1.0, 0.95)]  # (theta, lambda)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("size", [1, 3, T, 12, 100])  # shorter, equal, longer than a chunk
def test_equals_direct_computation(cell, size):
    model = make(cell)
    streams = TokenStreams(text(), B, T)
    assert len(streams) >= 4  # several chunks: the history crosses their boundaries
    expected = direct_losses(model, streams, size, SETTINGS)
    for (theta, lam), want in zip(SETTINGS, expected, strict=True):
        loss, count = cache_evaluate(model, streams, size, theta, lam)
        assert count == B * T * len(streams)
        assert loss == pytest.approx(want, rel=1e-10, abs=1e-12), (theta, lam)


def test_max_batches_scores_the_first_chunks():
    model = make()
    streams = TokenStreams(text(), B, T)
    loss, count = cache_evaluate(model, streams, 4, 0.5, 0.2, max_batches=2)
    assert count == 2 * B * T
    probs = cache_probabilities(model, streams, 4, (0.5,))
    n = 2 * B * T
    log_p = torch.logaddexp(
        math.log(0.8) + probs.log_model[:n], math.log(0.2) + probs.cache[0, :n].log()
    )
    log_p = torch.where(probs.history[:n], log_p, probs.log_model[:n])
    assert loss == pytest.approx(-log_p.mean().item(), rel=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_lambda_zero_is_the_plain_evaluation(dtype, tolerance):
    model = make(dtype=dtype)
    streams = TokenStreams(text(), B, T)
    plain, plain_count = evaluate(model, streams)
    loss, count = cache_evaluate(model, streams, 7, 0.4, 0.0)
    assert count == plain_count
    assert loss == pytest.approx(plain, rel=tolerance)


def test_history_only_within_the_stream():
    """Stream b's cache never sees another stream's positions: scoring the streams apart (one at a
    time) gives each token the same probabilities as scoring them together."""
    model = make()
    tokens = text(91)
    together = cache_probabilities(model, TokenStreams(tokens, 3, T), 8, (0.9,))
    stream_len = len(tokens) // 3
    per_chunk = []
    for b in range(3):
        own = tokens[b * stream_len : (b + 1) * stream_len + 1]
        one = cache_probabilities(model, TokenStreams(own, 1, T), 8, (0.9,))
        per_chunk.append(one.cache[0].view(-1, T))  # (chunks, T)
    alone = torch.stack(per_chunk, dim=1).reshape(-1)  # chunk-major, stream, position
    assert torch.allclose(together.cache[0], alone, rtol=1e-10, atol=1e-12)


def test_tuning_picks_the_brute_force_grid_point():
    model = make(seed=2)
    streams = TokenStreams(text(80, seed=4), B, T)
    thetas, lambdas = (0.0, 0.3, 1.0, 2.0, 4.0), (0.05, 0.2, 0.5, 0.9)
    tuned = tune_cache(model, streams, 6, thetas, lambdas)
    grid = {
        (t, lam): cache_evaluate(model, streams, 6, t, lam)[0] for t in thetas for lam in lambdas
    }
    best = min(grid, key=grid.get)  # the first minimum in theta-major order
    ordered = sorted(grid.values())
    assert ordered[1] - ordered[0] > 1e-9  # a clear winner, not a rounding tie
    assert (tuned.theta, tuned.lam) == best
    assert tuned.loss == pytest.approx(grid[best], rel=1e-12)
    assert tuned.count == B * T * len(streams)
    assert tuned.plain == pytest.approx(evaluate(model, streams)[0], rel=1e-12)
    for k, t in enumerate(thetas):
        for j, lam in enumerate(lambdas):
            assert tuned.losses[k, j].item() == pytest.approx(grid[t, lam], rel=1e-12)


def test_default_grid():
    assert THETAS[0] == 0.0 and THETAS[-1] == 2.0 and len(THETAS) == 41
    assert LAMBDAS[0] == 0.05 and LAMBDAS[-1] == 0.5 and len(LAMBDAS) == 10


def test_training_mode_is_restored_and_no_dropout_in_scoring():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=2, dropout=0.5)
    model = LanguageModel(config).double()
    streams = TokenStreams(text(), B, T)
    model.train()
    first = cache_evaluate(model, streams, 5, 0.5, 0.3)
    assert model.training
    assert cache_evaluate(model, streams, 5, 0.5, 0.3) == first  # eval mode: deterministic


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, s: cache_evaluate(m, s, 0, 0.3, 0.1), "size must be >= 1"),
        (lambda m, s: cache_evaluate(m, s, 5, -0.1, 0.1), "thetas must be >= 0"),
        (lambda m, s: cache_evaluate(m, s, 5, 0.3, 1.5), r"lam must be in \[0, 1\]"),
        (lambda m, s: cache_evaluate(m, s, 5, 0.3, -0.1), r"lam must be in \[0, 1\]"),
        (lambda m, s: tune_cache(m, s, 5, (0.1,), (0.1, 2.0)), r"lambdas must be in \[0, 1\]"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(make(), TokenStreams(text(), B, T))
