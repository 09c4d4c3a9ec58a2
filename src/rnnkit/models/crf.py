"""A linear-chain conditional random field over per-position tag scores (Lafferty et al. 2001;
the BiLSTM-CRF output layer of Huang, Xu and Yu 2015 and Lample et al. 2016).

For a sentence of ``n`` positions with emission scores ``E`` (n, T) from the tagger and tags
``y_1..y_n``::

    s(y) = start[y_1] + sum_{t=1..n} E[t, y_t] + sum_{t=2..n} A[y_{t-1}, y_t] + end[y_n]
    p(y | x) = exp s(y) / Z,            log Z = logsumexp over every y in T^n of s(y)

where ``A`` (T, T) scores the tag pair ``(previous, next)`` and ``start``, ``end`` (T,) score
the first and the last tag. ``log Z`` by the forward algorithm, in log space::

    alpha_1[j] = start[j] + E[1, j]
    alpha_t[j] = logsumexp_i (alpha_{t-1}[i] + A[i, j]) + E[t, j]       t = 2..n
    log Z      = logsumexp_j (alpha_n[j] + end[j])

and the best sequence ``argmax_y s(y)`` by Viterbi: the same recursion with ``max`` for
``logsumexp`` and back-pointers ``psi_t[j] = argmax_i (delta_{t-1}[i] + A[i, j])``, followed
back from ``argmax_j (delta_n[j] + end[j])``. Both cost O(n T^2) and run batched over
sentences of different lengths: at a step past a sentence's length its ``alpha`` (``delta``)
is carried unchanged and its back-pointer is the identity, so padding never changes a
sentence's score, partition or path. The loss is the negative log-likelihood
``log Z - s(y)`` per sentence.

Not here: the emissions (``models/tagger.py``) and the token-averaged loss (``tasks/tag.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearChainCRF(nn.Module):
    """Transition scores ``transitions`` (T, T) = A[previous, next], ``start`` and ``end`` (T,),
    all starting at zero (the first steps train like a per-position softmax).

    Shape legend: ``N`` sentences, ``L`` positions (longest sentence), ``T`` tags. ``lengths``
    (N,) are >= 1 and <= L, on any device; positions at or past a length are padding: their
    emissions and tags are never read.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags must be an integer >= 1, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """The negative log-likelihood ``log Z - s(y)`` of each sentence: (N,). ``tags``
        (N, L) may hold anything (an ignore index) past each length."""
        return self.log_partition(emissions, lengths) - self.score(emissions, tags, lengths)

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """``s(y)`` of the given tag sequences: (N,)."""
        emissions, valid, lengths = self._check(emissions, lengths)
        N, L, T = emissions.shape
        y = tags.to(emissions.device).clamp(0, T - 1) * valid  # (N, L) padding -> tag 0
        emitted = emissions.gather(2, y.unsqueeze(2)).squeeze(2)  # (N, L)
        moved = self.transitions[y[:, :-1], y[:, 1:]]  # (N, L-1) A[y_{t-1}, y_t]
        last = y.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (N,) y_n
        total = emitted.masked_fill(~valid, 0).sum(1) + (moved * valid[:, 1:]).sum(1)
        return total + self.start[y[:, 0]] + self.end[last]

    def log_partition(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """``log Z`` by the forward algorithm: (N,)."""
        emissions, valid, _ = self._check(emissions, lengths)
        alpha = self.start + emissions[:, 0]  # (N, T)
        for t in range(1, emissions.size(1)):
            scores = alpha.unsqueeze(2) + self.transitions  # (N, T_prev, T_next)
            step = torch.logsumexp(scores, dim=1) + emissions[:, t]  # (N, T)
            alpha = torch.where(valid[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)  # (N,)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Viterbi: the best tag sequences (N, L) (past each length: its last tag repeated)
        and their scores ``s(y*)`` (N,)."""
        emissions, valid, _ = self._check(emissions, lengths)
        N, L, T = emissions.shape
        delta = self.start + emissions[:, 0]  # (N, T)
        identity = torch.arange(T, device=emissions.device).expand(N, T)
        pointers = []
        for t in range(1, L):
            best, argbest = (delta.unsqueeze(2) + self.transitions).max(dim=1)  # (N, T)
            keep = valid[:, t : t + 1]
            delta = torch.where(keep, best + emissions[:, t], delta)
            pointers.append(torch.where(keep, argbest, identity))  # (N, T) psi_t
        score, tag = (delta + self.end).max(dim=1)  # (N,)
        path = [tag]
        for psi in reversed(pointers):
            tag = psi.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        return torch.stack(path[::-1], dim=1), score  # (N, L), (N,)

    def _check(self, emissions: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Emissions in the parameters' dtype (the recursion in float32 under autocast), the
        valid-position mask (N, L) and the lengths on the emissions' device."""
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"emissions must be (N, L, {self.num_tags}), got {tuple(emissions.shape)}"
            )
        N, L, _ = emissions.shape
        lengths = torch.as_tensor(lengths)  # checked where it is (the host, as a rule)
        if lengths.shape != (N,) or bool(((lengths < 1) | (lengths > L)).any()):
            raise ValueError(f"lengths must be (N,) = ({N},) in [1, {L}], got {lengths.tolist()}")
        lengths = lengths.to(emissions.device)
        valid = torch.arange(L, device=emissions.device) < lengths.unsqueeze(1)  # (N, L)
        return emissions.to(self.transitions.dtype), valid, lengths
