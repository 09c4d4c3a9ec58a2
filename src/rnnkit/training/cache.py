"""The neural cache of Grave, Joulin and Usunier (2017), "Improving Neural Language Models
with a Continuous Cache", at evaluation time, and the grid search of its two settings.

At position ``t`` of a stream, with the last ``size`` pairs ``(h_i, y_i)`` of the same stream
(``h_i`` the last recurrent layer's output at position ``i``, ``y_i = x_{i+1}`` its target,
``t - size <= i < t``)::

    p_cache(w) = sum_i [y_i = w] exp(theta h_t . h_i) / sum_i exp(theta h_t . h_i)
    p(w)       = (1 - lambda) p_model(w) + lambda p_cache(w)

and ``p = p_model`` where the stream has no history yet. The loss needs only ``p(y_t)``, so no
(V)-sized cache distribution is built: ``p_cache(y_t)`` is the attention mass on the history
entries whose target is ``y_t``.

Vectorised per chunk of the evaluation streams (:class:`rnnkit.data.streams.TokenStreams`):
the chunk's queries ``h`` (B, T, H) attend to the keys ``[history; h]`` (B, S + T, H), with a
causal window mask (query ``t`` sees keys ``S + t - size .. S + t - 1``); every stream advances
in step, so ``S = min(size, tokens scored so far)`` is the same for all. The last ``size`` keys
and targets are carried into the next chunk, as the recurrent state is.

The tuning needs one pass for a whole grid of theta: ``h_t . h_i`` does not depend on theta,
``p_model`` not on either, so :func:`cache_probabilities` keeps ``log p_model(y_t)`` and
``p_cache(y_t)`` per theta for every token, and the loss at any lambda is arithmetic on them
(:func:`mixture_losses`). What is not here: reading text and the figures (``rnnkit.tasks``),
the command (``rnnkit.commands.eval``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data.streams import TokenStreams
from rnnkit.devices import model_device, to_device
from rnnkit.training.progress import counted

#: The grid of ``--tune-cache``: theta 0, 0.05, ..., 2 (41) x lambda 0.05, 0.10, ..., 0.5 (10).
#: Theta reaches 2: an unnormalised LSTM's states are small (|h| < 1 per unit), and a Penn
#: Treebank model's best theta sat on the edge of an earlier grid that stopped at 1.
THETAS = tuple(round(0.05 * k, 2) for k in range(41))
LAMBDAS = tuple(round(0.05 * k, 2) for k in range(1, 11))


class CacheProbabilities(NamedTuple):
    """Per scored token ``n`` (in the order ``evaluate`` scores them: chunk by chunk, stream
    by stream, position by position)."""

    log_model: Tensor  # (N,) float64: log p_model(y_n)
    cache: Tensor  # (K, N) float64: p_cache(y_n) for each of the K thetas (0 without history)
    history: Tensor  # (N,) bool: the stream had at least one earlier position


class CacheTuning(NamedTuple):
    """The grid point with the lowest mean loss (the first in theta-major order on a tie)."""

    theta: float
    lam: float
    loss: float  # mean nats per token at (theta, lam)
    count: int  # tokens scored
    losses: Tensor  # (K, L) float64: the mean loss at every (thetas[k], lambdas[l])
    plain: float  # mean nats per token without the cache, from the same pass


@torch.no_grad()
def cache_probabilities(
    model: nn.Module,
    streams: TokenStreams,
    size: int,
    thetas: Sequence[float],
    max_batches: int = 0,
    *,
    show: bool = False,
) -> CacheProbabilities:
    """``log p_model(y_t)`` and, for each theta of ``thetas``, ``p_cache(y_t)`` over the
    window of the last ``size`` positions of each stream, for every token ``streams`` scores
    (the first ``max_batches`` chunks if > 0; state and history carried across chunks).

    ``model`` is a language model: in eval mode ``model(x, None, state)`` returns ``.logits``
    (N, L, V) scores whose softmax is the model's distribution, ``.hidden`` (N, L, H) and
    ``.state``. ``show``: progress on stderr."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if any(theta < 0 for theta in thetas):
        raise ValueError(f"thetas must be >= 0, got {tuple(thetas)}")
    was_training = model.training
    model.eval()
    device = model_device(model)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    logs, caches, histories = [], [], []
    state, keys, targets = None, None, None  # keys (B, S, H), targets (B, S): the history
    batches = range(len(streams) if max_batches <= 0 else min(max_batches, len(streams)))
    try:
        for index in counted(batches, "rnnkit eval (cache)", show=show):
            x, y = to_device(streams.batch(index), device)  # (B, T) each
            output = model(x, None, state)
            state, h = output.state, output.hidden  # h (B, T, H)
            log_model = _log_model(output.logits, y)  # (B, T)
            keys = h if keys is None else torch.cat([keys, h], dim=1)  # (B, S + T, H)
            targets = y if targets is None else torch.cat([targets, y], dim=1)  # (B, S + T)
            cache, history = _chunk_cache(h, keys, targets, y, size, thetas)  # (K, B, T), (T,)
            logs.append(log_model.to(dtype).reshape(-1))
            caches.append(cache.to(dtype).reshape(len(thetas), -1))
            histories.append(history.expand_as(y).reshape(-1))
            keys, targets = keys[:, -size:], targets[:, -size:]  # the next chunk's history
    finally:
        model.train(was_training)
    return CacheProbabilities(torch.cat(logs), torch.cat(caches, dim=1), torch.cat(histories))


def _log_model(logits: Tensor, y: Tensor) -> Tensor:
    """``log p_model(y_t)`` (B, T) from the model's scores (B, T, V), whose softmax is its
    distribution (full head: logits; adaptive softmax: log-probabilities, which a log-softmax
    leaves as they are). The scores ``forward`` computed anyway: a second pass through the head
    (``model.log_probs(hidden)``, the same numbers) would double the evaluation's largest cost
    at a 10k vocabulary."""
    flat = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")  # (B*T,)
    return -flat.view_as(y)


def _chunk_cache(
    h: Tensor, keys: Tensor, targets: Tensor, y: Tensor, size: int, thetas: Sequence[float]
) -> tuple[Tensor, Tensor]:
    """``p_cache(y_t)`` (K, B, T) for the chunk's queries ``h`` (B, T, H) over ``keys``
    (B, S + T, H) whose targets are ``targets`` (B, S + T), and which positions ``t`` (T,)
    have any history. Query ``t`` is key ``S + t``; it sees keys ``j`` with
    ``S + t - size <= j < S + t``::

        w_tj = exp(theta (d_tj - m_t)) [j visible],  d_tj = h_t . k_j,  m_t = max_visible d_tj
        p_cache(y_t) = sum_j w_tj [targets_j = y_t] / sum_j w_tj
    """
    T, S = h.size(1), keys.size(1) - h.size(1)
    query = torch.arange(S, S + T, device=h.device).unsqueeze(1)  # (T, 1)
    key = torch.arange(S + T, device=h.device).unsqueeze(0)  # (1, S + T)
    visible = (key < query) & (key >= query - size)  # (T, S + T)
    history = visible.any(dim=1)  # (T,): false only at a stream's first position
    dots = torch.bmm(h, keys.transpose(1, 2))  # (B, T, S + T)
    dots.masked_fill_(~visible, -math.inf)
    dots.sub_(dots.amax(dim=-1, keepdim=True).nan_to_num_(neginf=0.0))  # <= 0 where visible
    miss = targets.unsqueeze(1) != y.unsqueeze(2)  # (B, T, S + T): [y_j != y_t]
    w = torch.empty_like(dots)  # one buffer for every theta: no allocation per theta
    out = []
    for theta in thetas:
        if theta == 0:  # exp(0 * -inf) would be nan: at theta 0 every visible key weighs 1
            w.copy_(visible.expand_as(w))
        else:
            torch.mul(dots, theta, out=w).exp_()
        total = w.sum(dim=-1)  # (B, T), >= 1 where there is history (the max weighs 1)
        hit = w.masked_fill_(miss, 0.0).sum(dim=-1)  # (B, T)
        out.append(torch.where(history, hit / total.clamp_min(1e-30), 0.0))
    return torch.stack(out), history


def mixture_losses(probs: CacheProbabilities, lambdas: Sequence[float]) -> Tensor:
    """Mean ``-log p(y_t)`` (K, L) for every theta of ``probs`` and lambda of ``lambdas``, with
    ``p = (1 - lambda) p_model + lambda p_cache`` where there is history, ``p_model`` where
    not. Computed in log space, ``logaddexp(log(1 - lambda) + log p_model, log lambda + log
    p_cache)``, so lambda 0 gives ``log p_model`` exactly."""
    lam = torch.tensor(lambdas, dtype=probs.log_model.dtype, device=probs.log_model.device)
    lam = lam.view(1, -1, 1)  # (1, L, 1)
    mixed = torch.logaddexp(
        torch.log1p(-lam) + probs.log_model, torch.log(lam) + torch.log(probs.cache).unsqueeze(1)
    )  # (K, L, N)
    log_p = torch.where(probs.history, mixed, probs.log_model)
    return -log_p.mean(dim=-1)


@torch.no_grad()
def cache_evaluate(
    model: nn.Module,
    streams: TokenStreams,
    size: int,
    theta: float,
    lam: float,
    max_batches: int = 0,
    *,
    show: bool = False,
) -> tuple[float, int]:
    """Mean loss in nats per token over ``streams`` with the neural cache (window ``size``,
    ``theta``, ``lam``; see the module docstring) and the number of tokens scored: what
    :func:`rnnkit.training.tbptt.evaluate` returns, with ``p`` in place of ``p_model``."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    probs = cache_probabilities(model, streams, size, (theta,), max_batches, show=show)
    return mixture_losses(probs, (lam,)).item(), probs.log_model.numel()


@torch.no_grad()
def tune_cache(
    model: nn.Module,
    streams: TokenStreams,
    size: int,
    thetas: Sequence[float] = THETAS,
    lambdas: Sequence[float] = LAMBDAS,
    max_batches: int = 0,
    *,
    show: bool = False,
) -> CacheTuning:
    """Grid search: the (theta, lambda) of ``thetas`` x ``lambdas`` with the lowest mean loss
    on ``streams``, from one pass over them (:func:`cache_probabilities`)."""
    if any(not 0.0 <= lam <= 1.0 for lam in lambdas):
        raise ValueError(f"lambdas must be in [0, 1], got {tuple(lambdas)}")
    probs = cache_probabilities(model, streams, size, thetas, max_batches, show=show)
    losses = mixture_losses(probs, lambdas)  # (K, L)
    best = int(torch.argmin(losses.reshape(-1)))  # the first minimum, theta-major
    k, j = divmod(best, len(lambdas))
    count = probs.log_model.numel()
    plain = -probs.log_model.mean().item()
    return CacheTuning(thetas[k], lambdas[j], losses[k, j].item(), count, losses.cpu(), plain)
