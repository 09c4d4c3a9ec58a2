r"""Linear recurrences with matrix memory: ``GLA``, ``Mamba2`` and ``GatedDeltaNet`` (RWKV-7,
the fourth, is in ``rwkv.py``).

Each keeps a memory S (d_k, d_v) per head, reads it with a query, and differs in how the memory
decays and is written (u the block's normalised input; every layer's step is one line per
equation in its mixer's ``step``)::

    GLA (Yang et al. 2023)             S_t = diag(α_t) S_{t-1} + k_t v_t^T       o_t = S_t^T q_t
        α_t = σ(W_α2 W_α1 u + b_α)^(1/16) per key dim; y = W_o (RMSNorm(o) ⊙ SiLU(W_g u))
    Mamba-2, SSD (Dao & Gu 2024)       S_t = exp(Δ_t A) S_{t-1} + B_t (Δ_t x_t)^T   o_t = S_t^T C_t
        [x B C] = SiLU(conv4(W u)), Δ = softplus(W_Δ u + b_Δ), A = -exp(A_log) per head;
        y = W_o RMSNorm((o + D x) ⊙ SiLU(z))
    Gated DeltaNet (Yang et al. 2024)  S_t = α_t (I - β_t k_t k_t^T) S_{t-1} + β_t k_t v_t^T
        [q k v] = SiLU(conv4(W u)), q, k unit length, α = exp(-exp(A_log) softplus(W_a u + b)),
        β = σ(W_β u); o_t = S_t^T q_t / sqrt(d_k); y = W_o (RMSNorm(o) ⊙ SiLU(W_g u))

All three (and RWKV-7) are the recurrence of :func:`~rnnkit.nn.chunked.linear_recurrence`
(diagonal decay, plus a rank-one part for the delta rule), which is their training form.

.. note:: Simplifications, each a documented choice: Mamba-2 has one group of B and C (the
   paper's default) and no extra bias; GLA has no short convolution on q and k (fla's
   default), Gated DeltaNet one on q, k and v (as the paper).

Head sizes: ``heads=None`` (GLA, Gated DeltaNet) is the largest divisor of H up to 4;
``head_dim=None`` (Mamba-2) the largest divisor of the inner width up to 64, the paper's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.checks import check_size
from rnnkit.nn.chunked import causal_conv, conv_step, linear_recurrence
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
    rms_norm,
    to_heads,
    uniform_init,
    unit,
)


def _time_step_init(dt_bias: Tensor, a_log: Tensor, a_low: float) -> None:
    """Mamba's initialisation: softplus(dt_bias) log-uniform in [0.001, 0.1], A uniform in
    [a_low, 16] (stored as log A)."""
    with torch.no_grad():
        dt = torch.empty_like(dt_bias).uniform_(math.log(1e-3), math.log(0.1)).exp()
        dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        a_log.copy_(torch.empty_like(a_log).uniform_(a_low, 16).log())


class GLAMixer(Mixer):
    """Gated linear attention (see the module docstring): ``heads`` heads, d_k = H / (2 heads),
    d_v = H / heads, a rank-16 gate with the logit normaliser 16 of fla's GLA."""

    gate_names = ("decay",)
    RANK, NORMALISER = 16, 16.0

    def __init__(self, hidden, *, bias=True, chunk, factory, heads=None) -> None:
        super().__init__(hidden, chunk)
        self.heads = heads = divisor("heads", hidden, heads, 4)
        self.d_v = hidden // heads
        self.d_k = max(1, self.d_v // 2)
        keys = heads * self.d_k
        self.memory = {"S": (heads, self.d_k, self.d_v)}
        self.proj = nn.Linear(hidden, 2 * keys + 2 * hidden, bias=bias, **factory)  # q k v g
        self.gate_down = nn.Linear(hidden, self.RANK, bias=False, **factory)
        self.gate_up = nn.Linear(self.RANK, keys, bias=True, **factory)
        self.norm_weight = nn.Parameter(torch.ones(self.d_v, **factory))
        self.out = nn.Linear(hidden, hidden, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_init(self.proj, self.gate_down, self.out, fan_in=self.hidden)
        uniform_init(self.gate_up, fan_in=self.RANK)
        nn.init.ones_(self.norm_weight)

    def project(self, u: Tensor) -> Tensor:
        return torch.cat([self.proj(u), self.gate_up(self.gate_down(u))], -1)

    def _split(self, p: Tensor):
        keys, h = self.heads * self.d_k, self.hidden
        q, k, v, g, gate = p.split([keys, keys, h, h, keys], -1)
        log_alpha = F.logsigmoid(gate) / self.NORMALISER
        return q / math.sqrt(self.d_k), k, v, g, log_alpha

    def _output(self, o: Tensor, g: Tensor) -> Tensor:
        return self.out(head_norm(o, self.heads, self.norm_weight) * F.silu(g))

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        q, k, v, g, log_alpha = (heads_of(t, self.heads) for t in self._split(p))
        S = log_alpha.exp().unsqueeze(-1) * memory["S"] + outer(k, v)  # noqa: N806
        o = read(S, q)
        return self._output(o.flatten(-2), g.flatten(-2)), {"S": S}

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        q, k, v, g, log_alpha = self._split(p)
        pad = invalid(lengths, p.size(0))
        k, log_alpha = masked(k, pad), masked(log_alpha, pad)
        q, k, v, log_alpha = (to_heads(t, self.heads) for t in (q, k, v, log_alpha))
        o, S = linear_recurrence(q, k, v, log_alpha, memory["S"], chunk=self.chunk)  # noqa: N806
        return self._output(from_heads(o), g), {"S": S}

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        return {"decay": self._split(p)[-1].exp()}


class Mamba2Mixer(Mixer):
    """Mamba-2's SSD layer (see the module docstring): inner width ``expand`` * H in heads of
    ``head_dim``, one group of B, C of size ``state_size``, a causal convolution of width
    ``conv``; the initialisation of the reference (Δ in [0.001, 0.1], A in [1, 16], D = 1)."""

    gate_names = ("decay",)

    def __init__(self, hidden, *, bias=True, chunk, factory, expand=2, head_dim=None,
                 state_size=64, conv=4) -> None:  # fmt: skip
        super().__init__(hidden, chunk)
        self.inner = hidden * check_size("expand", expand)
        check_size("state_size", state_size)
        check_size("conv", conv)
        self.head_dim = head_dim = divisor("head_dim", self.inner, head_dim, 64)
        self.heads, self.state_size = self.inner // head_dim, state_size
        channels = self.inner + 2 * state_size  # x, B, C go through the convolution
        self.memory = {"conv": (conv - 1, channels), "S": (self.heads, state_size, head_dim)}
        self.proj = nn.Linear(hidden, self.inner + channels + self.heads, bias=False, **factory)
        self.conv_weight = nn.Parameter(torch.empty(channels, conv, **factory))
        self.conv_bias = nn.Parameter(torch.zeros(channels, **factory))
        self.dt_bias = nn.Parameter(torch.empty(self.heads, **factory))
        self.A_log = nn.Parameter(torch.empty(self.heads, **factory))
        self.D = nn.Parameter(torch.ones(self.heads, **factory))
        self.norm_weight = nn.Parameter(torch.ones(self.inner, **factory))
        self.out = nn.Linear(self.inner, hidden, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_init(self.proj, fan_in=self.hidden)
        uniform_init(self.out, fan_in=self.inner)
        width = self.conv_weight.size(1)
        nn.init.uniform_(self.conv_weight, -1 / math.sqrt(width), 1 / math.sqrt(width))
        nn.init.zeros_(self.conv_bias)
        nn.init.ones_(self.D)
        nn.init.ones_(self.norm_weight)
        _time_step_init(self.dt_bias, self.A_log, 1.0)

    def project(self, u: Tensor) -> Tensor:
        return self.proj(u)

    def _split(self, p: Tensor):
        return p.split([self.inner, p.size(-1) - self.inner - self.heads, self.heads], -1)

    def _ssm_inputs(self, xbc: Tensor, dt: Tensor):
        """x (.., inner), B, C (.., state_size), Δ and Δ A (.., heads) from the convolved
        channels and the Δ projection."""
        x, B, C = F.silu(xbc).split([self.inner, self.state_size, self.state_size], -1)  # noqa: N806
        dt = F.softplus(dt + self.dt_bias)
        return x, B, C, dt, dt * -torch.exp(self.A_log)

    def _output(self, o: Tensor, x: Tensor, z: Tensor) -> Tensor:
        y = (o + heads_of(x, self.heads) * self.D[:, None]).flatten(-2) * F.silu(z)
        return self.out(rms_norm(y, self.norm_weight))

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        z, xbc, dt = self._split(p)
        xbc, conv = conv_step(xbc, memory["conv"], self.conv_weight, self.conv_bias)
        x, B, C, dt, dA = self._ssm_inputs(xbc, dt)  # noqa: N806
        dx = heads_of(x, self.heads) * dt.unsqueeze(-1)  # Δ x: (N, heads, head_dim)
        S = dA.exp()[..., None, None] * memory["S"] + outer(B.unsqueeze(1), dx)  # noqa: N806
        o = read(S, C.unsqueeze(1))  # (N, heads, head_dim): C shared by the heads
        return self._output(o, x, z), {"conv": conv, "S": S}

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        z, xbc, dt = self._split(p)
        xbc, conv = causal_conv(xbc, memory["conv"], self.conv_weight, self.conv_bias, lengths)
        x, B, C, dt, dA = self._ssm_inputs(xbc, dt)  # noqa: N806
        pad = invalid(lengths, p.size(0))
        dt, dA = masked(dt, pad), masked(dA, pad)  # Δ = 0 past the end: the state is kept
        dx = to_heads(x, self.heads) * dt.permute(1, 2, 0).unsqueeze(-1)  # (N, heads, L, P)
        B, C = (t.permute(1, 0, 2).unsqueeze(1) for t in (B, C))  # noqa: N806  (N, 1, L, n): shared
        o, S = linear_recurrence(C, B, dx, dA.permute(1, 2, 0).unsqueeze(-1), memory["S"],  # noqa: N806
                                 chunk=self.chunk)  # fmt: skip
        return self._output(o.permute(2, 0, 1, 3), x, z), {"conv": conv, "S": S}

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        z, xbc, dt = self._split(p)
        xbc, _ = conv_step(xbc, memory["conv"], self.conv_weight, self.conv_bias)
        return {"decay": self._ssm_inputs(xbc, dt)[-1].exp()}


class GatedDeltaNetMixer(Mixer):
    """Gated DeltaNet (see the module docstring): ``heads`` heads of d_k = d_v = H / heads, a
    causal convolution of width ``conv`` on q, k, v; α's parametrisation is Mamba-2's."""

    gate_names = ("decay", "beta")

    def __init__(self, hidden, *, bias=True, chunk, factory, heads=None, conv=4) -> None:
        super().__init__(hidden, chunk)
        self.heads = heads = divisor("heads", hidden, heads, 4)
        self.d = hidden // heads
        check_size("conv", conv)
        self.memory = {"conv": (conv - 1, 3 * hidden), "S": (heads, self.d, self.d)}
        self.proj = nn.Linear(hidden, 4 * hidden + 2 * heads, bias=bias, **factory)  # qkv g β a
        self.conv_weight = nn.Parameter(torch.empty(3 * hidden, conv, **factory))
        self.dt_bias = nn.Parameter(torch.empty(heads, **factory))
        self.A_log = nn.Parameter(torch.empty(heads, **factory))
        self.norm_weight = nn.Parameter(torch.ones(self.d, **factory))
        self.out = nn.Linear(hidden, hidden, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        uniform_init(self.proj, self.out, fan_in=self.hidden)
        width = self.conv_weight.size(1)
        nn.init.uniform_(self.conv_weight, -1 / math.sqrt(width), 1 / math.sqrt(width))
        nn.init.ones_(self.norm_weight)
        _time_step_init(self.dt_bias, self.A_log, 1e-4)

    def project(self, u: Tensor) -> Tensor:
        return self.proj(u)

    def _gates(self, p: Tensor):
        """qkv (.., 3H), g (.., H), β and log α (.., heads) of a projection."""
        h, n = self.hidden, self.heads
        qkv, g, beta, a = p.split([3 * h, h, n, n], -1)
        log_alpha = -torch.exp(self.A_log) * F.softplus(a + self.dt_bias)
        return qkv, g, torch.sigmoid(beta), log_alpha

    def _qkv(self, qkv: Tensor):
        q, k, v = F.silu(qkv).chunk(3, -1)
        q, k = (unit(heads_of(t, self.heads)).flatten(-2) for t in (q, k))
        return q / math.sqrt(self.d), k, v

    def _output(self, o: Tensor, g: Tensor) -> Tensor:
        return self.out(head_norm(o, self.heads, self.norm_weight) * F.silu(g))

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        qkv, g, beta, log_alpha = self._gates(p)
        qkv, conv = conv_step(qkv, memory["conv"], self.conv_weight, None)
        q, k, v = (heads_of(t, self.heads) for t in self._qkv(qkv))  # (N, heads, d)
        alpha, beta = log_alpha.exp()[..., None, None], beta[..., None, None]
        S = memory["S"]  # noqa: N806
        S = alpha * (S - beta * outer(k, read(S, k))) + beta * outer(k, v)  # noqa: N806
        return self._output(read(S, q).flatten(-2), g), {"conv": conv, "S": S}

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        qkv, g, beta, log_alpha = self._gates(p)
        qkv, conv = causal_conv(qkv, memory["conv"], self.conv_weight, None, lengths)
        q, k, v = (to_heads(t, self.heads) for t in self._qkv(qkv))  # (N, heads, L, d)
        pad = invalid(lengths, p.size(0))
        beta, log_alpha = masked(beta, pad), masked(log_alpha, pad)  # β = 0, α = 1: kept
        beta, log_alpha = (t.permute(1, 2, 0).unsqueeze(-1) for t in (beta, log_alpha))
        o, S = linear_recurrence(q, beta * k, v, log_alpha, memory["S"],  # noqa: N806
                                 a=-log_alpha.exp() * beta * k, b=k, chunk=self.chunk)  # fmt: skip
        return self._output(from_heads(o), g), {"conv": conv, "S": S}

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        _, _, beta, log_alpha = self._gates(p)
        return {"decay": log_alpha.exp(), "beta": beta}


class GLA(ModernLayer):
    """Multi-layer gated linear attention (Yang et al. 2023); see the module docstring.
    ``GLA(input_size, hidden_size, num_layers=1, ..., *, impl="auto", chunk_size=32,
    heads=None)``; memory per stream and layer: heads * d_k * d_v = H^2 / (2 heads)."""

    cell, mixer_class, defaults = "gla", GLAMixer, {"heads": None}


class Mamba2(ModernLayer):
    """Multi-layer Mamba-2 (Dao & Gu 2024, SSD); see the module docstring. ``Mamba2(input_size,
    hidden_size, num_layers=1, ..., *, impl="auto", chunk_size=32, expand=2, head_dim=None,
    state_size=64, conv=4)``; memory per stream and layer: expand * H * state_size plus the
    convolution window (conv - 1) * (expand * H + 2 state_size)."""

    cell, mixer_class = "mamba2", Mamba2Mixer
    defaults = {"expand": 2, "head_dim": None, "state_size": 64, "conv": 4}


class GatedDeltaNet(ModernLayer):
    """Multi-layer Gated DeltaNet (Yang et al. 2024); see the module docstring.
    ``GatedDeltaNet(input_size, hidden_size, num_layers=1, ..., *, impl="auto",
    chunk_size=32, heads=None, conv=4)``; memory per stream and layer: H^2 / heads plus the
    convolution window 3 H (conv - 1)."""

    cell, mixer_class, defaults = "deltanet", GatedDeltaNetMixer, {"heads": None, "conv": 4}


__all__ = [
    "GLA",
    "GLAMixer",
    "GatedDeltaNet",
    "GatedDeltaNetMixer",
    "Mamba2",
    "Mamba2Mixer",
]
