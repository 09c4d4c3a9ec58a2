r"""RWKV-7 "Goose" (Peng et al. 2025): ``RWKV7``, time mixing with a generalised delta rule.

Per head, a memory S (d_k, d_v) decays by a vector ``w_t`` and has a rank-one part removed
before the new key-value pair is written (u the block's normalised input, u_{t-1} the previous
one; every line is one in :meth:`RWKV7Mixer.step`)::

    x_* = u + μ_* ⊙ (u_{t-1} - u)              token shift, one μ per projection (r w k v a g)
    r, k, v = W_r x_r, W_k x_k, W_v x_v
    w = exp(-e^-0.5 σ(w_0 + W_2 tanh(W_1 x_w)))  the decay, in (0.545, 1)
    a = σ(a_0 + W_4 W_3 x_a)                    the in-context learning rate
    κ = unit(k ⊙ k_k),  k~ = k ⊙ (1 + (a - 1) ⊙ k_a)
    S_t = diag(w) S_{t-1} - (a ⊙ κ)(κ^T S_{t-1}) + k~ v^T
    o_t = S_t^T r,  y = W_o ((GroupNorm(o) + ((r ⊙ k~ ⊙ r_k)·1) v) ⊙ W_6 σ(W_5 x_g))

the paper's ``wkv`` recurrence (there written ``S (diag(w) - κ^T (a ⊙ κ)) + v^T k~`` for the
transposed S). It is :func:`~rnnkit.nn.chunked.linear_recurrence` with a vector decay and
``a = -(a ⊙ κ), b = κ``: its training form.

.. note:: No value residual across layers (the paper's ``v_first`` would tie every layer to
   the first, and the shared block treats layers alike), and no channel-mixing sublayer (the
   blocks of rnnkit's modern layers have none). ``head_size=None``: the largest divisor of the
   width up to 64, the paper's head size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit.nn.chunked import linear_recurrence, with_history
from rnnkit.nn.modern import (
    Memory,
    Mixer,
    ModernLayer,
    divisor,
    from_heads,
    head_norm,
    heads_of,
    invalid,
    masked,
    outer,
    read,
    to_heads,
    unit,
)


class RWKV7Mixer(Mixer):
    """RWKV-7 "Goose" time mixing (see the module docstring): heads of ``head_size``, low-rank
    (LoRA) decay, in-context learning rate and output gate, token shift of the previous input."""

    gate_names = ("decay", "learning_rate")

    def __init__(self, hidden, *, bias=True, chunk, factory, head_size=None) -> None:
        super().__init__(hidden, chunk)
        self.d = head_size = divisor("head_size", hidden, head_size, 64)
        self.heads = hidden // head_size
        rank = max(8, hidden // 16)
        self.memory = {"shift": (1, hidden), "S": (self.heads, head_size, head_size)}
        self.mix = nn.Parameter(torch.empty(6, hidden, **factory))  # r w k v a g
        self.receptance, self.key, self.value = (
            nn.Linear(hidden, hidden, bias=False, **factory) for _ in range(3)
        )
        self.w0, self.a0 = (nn.Parameter(torch.empty(hidden, **factory)) for _ in range(2))
        self.w_lora = nn.Sequential(nn.Linear(hidden, rank, bias=False, **factory), nn.Tanh(),
                                    nn.Linear(rank, hidden, bias=False, **factory))  # fmt: skip
        self.a_lora = nn.Sequential(nn.Linear(hidden, rank, bias=False, **factory),
                                    nn.Linear(rank, hidden, bias=False, **factory))  # fmt: skip
        self.g_lora = nn.Sequential(nn.Linear(hidden, 2 * rank, bias=False, **factory),
                                    nn.Sigmoid(),
                                    nn.Linear(2 * rank, hidden, bias=False, **factory))  # fmt: skip
        self.k_k, self.k_a = (nn.Parameter(torch.empty(hidden, **factory)) for _ in range(2))
        self.r_k = nn.Parameter(torch.empty(self.heads, head_size, **factory))
        self.norm_weight = nn.Parameter(torch.ones(hidden, **factory))
        self.norm_bias = nn.Parameter(torch.zeros(hidden, **factory))
        self.out = nn.Linear(hidden, hidden, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        h = self.hidden
        for linear in (self.receptance, self.key, self.value, self.out):
            nn.init.uniform_(linear.weight, -1 / math.sqrt(h), 1 / math.sqrt(h))
        for lora in (self.w_lora, self.a_lora, self.g_lora):  # decay and rate start at w0, a0
            first, last = lora[0], lora[-1]
            nn.init.uniform_(first.weight, -1 / math.sqrt(h), 1 / math.sqrt(h))
            bound = 1 / math.sqrt(last.in_features) if lora is self.g_lora else 0.0
            nn.init.uniform_(last.weight, -bound, bound)
        with torch.no_grad():
            ramp = torch.arange(h, dtype=self.mix.dtype) / max(1, h - 1)  # 0 .. 1 over units
            self.mix.copy_(torch.stack([0.5 * ramp + 0.2 * k for k in range(6)]).clamp(0, 1))
            self.w0.copy_(-6 + 5 * ramp**0.85)  # from long to short memory over the units
            self.a0.zero_()
            self.k_k.fill_(0.85)
            self.k_a.fill_(1.0)
            self.r_k.fill_(-0.04)

    def _inputs(self, u: Tensor, previous: Tensor):
        """r, log w, k~, v, a (the removal rate), κ and the gate g from u and u_{t-1}."""
        x_r, x_w, x_k, x_v, x_a, x_g = (u + mu * (previous - u) for mu in self.mix)
        r, k, v = self.receptance(x_r), self.key(x_k), self.value(x_v)
        log_w = -math.exp(-0.5) * torch.sigmoid(self.w0 + self.w_lora(x_w))  # log w in (-0.61, 0)
        a = torch.sigmoid(self.a0 + self.a_lora(x_a))
        kappa = unit(heads_of(k * self.k_k, self.heads)).flatten(-2)
        k = k * (1 + (a - 1) * self.k_a)
        return r, log_w, k, v, a, kappa, self.g_lora(x_g)

    def _output(self, o: Tensor, r: Tensor, k: Tensor, v: Tensor, g: Tensor) -> Tensor:
        normed = head_norm(o, self.heads, self.norm_weight, self.norm_bias, rms=False,
                           eps=64e-5)  # fmt: skip
        weight = (heads_of(r * k, self.heads) * self.r_k).sum(-1, keepdim=True)  # (..., heads, 1)
        bonus = (weight * heads_of(v, self.heads)).flatten(-2)  # (r ⊙ k~ ⊙ r_k)·1 v per head
        return self.out((normed + bonus) * g)

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        r, log_w, k, v, a, kappa, g = self._inputs(p, memory["shift"][:, 0])
        r, log_w, k, v, a, kappa = (heads_of(t, self.heads) for t in (r, log_w, k, v, a, kappa))
        S = memory["S"]  # noqa: N806
        S = log_w.exp().unsqueeze(-1) * S - outer(a * kappa, read(S, kappa)) + outer(k, v)  # noqa: N806
        o = read(S, r).flatten(-2)
        y = self._output(o, r.flatten(-2), k.flatten(-2), v.flatten(-2), g)
        return y, {"shift": p.unsqueeze(1), "S": S}

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        full, shift = with_history(p, memory["shift"], lengths)
        r, log_w, k, v, a, kappa, g = self._inputs(p, full[: p.size(0)])
        pad = invalid(lengths, p.size(0))
        log_w, k_in, a_in = masked(log_w, pad), masked(k, pad), masked(a, pad)
        heads = [to_heads(t, self.heads) for t in (r, k_in, v, log_w, a_in, kappa)]
        r_h, k_h, v_h, w_h, a_h, kappa_h = heads
        o, S = linear_recurrence(r_h, k_h, v_h, w_h, memory["S"], a=-(a_h * kappa_h),  # noqa: N806
                                 b=kappa_h, chunk=self.chunk)  # fmt: skip
        return self._output(from_heads(o), r, k, v, g), {"shift": shift, "S": S}

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        _, log_w, _, _, a, _, _ = self._inputs(p, memory["shift"][:, 0])
        return {"decay": log_w.exp(), "learning_rate": a}


class RWKV7(ModernLayer):
    """Multi-layer RWKV-7 time mixing (Peng et al. 2025); see the module docstring.
    ``RWKV7(input_size, hidden_size, num_layers=1, ..., *, impl="auto", chunk_size=32,
    head_size=None)``; memory per stream and layer: H * head_size + H (the token shift)."""

    cell, mixer_class, defaults = "rwkv7", RWKV7Mixer, {"head_size": None}


__all__ = ["RWKV7", "RWKV7Mixer"]
