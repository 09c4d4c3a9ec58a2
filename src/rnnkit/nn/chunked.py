r"""Chunkwise-parallel training forms of the modern (linear) recurrences, and their short
convolutions.

One recurrence covers Mamba-2, GLA, Gated DeltaNet and RWKV-7 (per head, row vectors are
``(d,)`` tensors, S is ``(d_k, d_v)``)::

    S_t = diag(w_t) S_{t-1} + a_t (b_t^T S_{t-1}) + k_t v_t^T          o_t = S_t^T q_t

a diagonal decay ``w_t`` in (0, 1] (one value per head, or one per key dimension) plus an
optional rank-one part ``a_t b_t^T`` (the delta rule: ``a = -α β k, b = k`` for Gated DeltaNet,
``a = -(a ⊙ κ), b = κ`` for RWKV-7). Stepping it costs L dependent steps of O(d_k d_v) work;
:func:`linear_recurrence` instead cuts the sequence into chunks of C steps and does all that
does not depend on the incoming state with matrix products, for all chunks at once, leaving
two small matrix products per chunk to the sequential part (Yang et al. 2023, "Gated Linear
Attention Transformers with Hardware-Efficient Training"; Dao & Gu 2024, the SSD algorithm).
Within a chunk, with ``Γ_t = w_1 ⊙ ... ⊙ w_t`` (from the chunk's start) and ``u_t =
S_{t-1}^T b_t``::

    S_t = diag(Γ_t) S_0 + Σ_{s<=t} diag(Γ_t / Γ_s) (a_s u_s^T + k_s v_s^T)
    u_t = S_0^T (Γ_{t-1} ⊙ b_t)
          + Σ_{s<t} [(b_t ⊙ Γ_{t-1}/Γ_s)·a_s] u_s + [(b_t ⊙ Γ_{t-1}/Γ_s)·k_s] v_s

so ``(I - B_a) U = B~ S_0 + B_k V`` with strictly lower-triangular ``B_a, B_k``: one
unit-triangular solve per chunk (the WY/UT form of the delta rule). Every decay ratio is
computed as ``exp(G_t - G_s)`` of cumulative log-decays with ``s <= t``, so no exponent is
positive and nothing overflows, whatever the decay (a vector decay builds the (C, C, d_k)
tensor of them: chunks are short). :func:`mlstm_recurrence` is the same idea for the mLSTM,
whose exponential input gate needs the running stabiliser ``m_t`` of Beck et al. (2024).

The step forms (one line per equation) live with each layer; the tests check, in float64,
that these kernels equal them to 1e-10 for any chunk size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 32  # steps per chunk: matrix products of (C, C) within, one state update per chunk


def _chunks(x: Tensor, size: int, pad: int) -> Tensor:
    """(N, Hh, L, d) -> (N, Hh, L/C, C, d), zero-padded at the end by ``pad`` steps."""
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(*x.shape[:2], -1, size, x.size(-1))


def _pairs(x: Tensor, y: Tensor, g_rows: Tensor, g_cols: Tensor, mask: Tensor) -> Tensor:
    """``[t, s] = Σ_d x_td y_sd exp(g_rows_td - g_cols_sd)`` where ``mask[t, s]``, else 0:
    x, y (..., C, d); g (..., C, 1) for one decay per head or (..., C, d) for one per dim.

    A vector decay is factorised, ``(x ⊙ e^{g_rows}) (y ⊙ e^{-g_cols})^T`` (two matrix
    products), while the chunks' log-decays span less than :func:`_span_limit` (always, for
    RWKV-7's bounded decay); past it the (C, C, d) tensor of ``exp(g_rows - g_cols)`` is built
    with the masked pairs at -inf, which cannot overflow."""
    masked = torch.zeros((), dtype=x.dtype, device=x.device)
    if g_rows.size(-1) == 1:  # a scalar decay: a (C, C) matrix beside the dot products
        diff = g_rows - g_cols.transpose(-1, -2)  # (..., C, C)
        return (x @ y.transpose(-1, -2)) * diff.masked_fill(~mask, float("-inf")).exp()
    if float(-g_cols.detach().amin()) < _span_limit(x.dtype):
        pairs = (x * g_rows.exp()) @ (y * (-g_cols).exp()).transpose(-1, -2)
        return torch.where(mask, pairs, masked)
    diff = g_rows.unsqueeze(-2) - g_cols.unsqueeze(-3)  # (..., C, C, d): [t, s, d]
    decay = diff.masked_fill(~mask[..., None], float("-inf")).exp()
    return torch.einsum("...tsd,...sd->...ts", x.unsqueeze(-2) * decay, y)


def _span_limit(dtype: torch.dtype) -> float:
    """The largest log-decay span a factorised product may carry: e^span stays a quarter of
    the dtype's exponent range (float32: 22, float64: 177)."""
    return 0.25 * math.log(torch.finfo(dtype).max)


def linear_recurrence(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_w: Tensor,
    state: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    chunk: int = CHUNK,
) -> tuple[Tensor, Tensor]:
    """All outputs of ``S_t = diag(w_t) S_{t-1} + a_t (b_t^T S_{t-1}) + k_t v_t^T``, ``o_t =
    S_t^T q_t`` (see the module docstring), chunk by chunk.

    q, k, a, b (N, Hh, L, d_k); v (N, Hh, L, d_v); ``log_w`` = log w (N, Hh, L, d_k) or
    (N, Hh, L, 1), <= 0; state S_0 (N, Hh, d_k, d_v). ``a`` and ``b`` both or neither (None:
    a purely diagonal recurrence). A step with log w = 0 and k = a = 0 keeps the state.
    Returns o (N, Hh, L, d_v) and S_L (N, Hh, d_k, d_v).
    """
    length = q.size(2)
    size = min(chunk, length)
    pad = -length % size
    q, k, v, log_w = (_chunks(t, size, pad) for t in (q, k, v, log_w))  # (N, Hh, n, C, *)
    g = log_w.cumsum(-2)  # G_t = log Γ_t, within each chunk
    g_end = g[..., -1:, :]  # (N, Hh, n, 1, dw): log Γ_C
    causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    q_k = _pairs(q, k, g, g, causal)  # (..., C, C): (q_t ⊙ Γ_t/Γ_s)·k_s, s <= t
    q_decayed = q * g.exp()  # q_t ⊙ Γ_t: reads S_0
    k_decayed = k * (g_end - g).exp()  # k_s ⊙ Γ_C/Γ_s: writes S_C
    reads = q_decayed  # o = reads @ S_0 + local
    local = q_k @ v  # (..., C, d_v)
    writes = k_decayed.transpose(-1, -2) @ v  # (..., d_k, d_v): S_C = carry(S_0) + writes
    carry_scale = g_end.exp().transpose(-1, -2)  # (..., dw, 1): diag(Γ_C)
    carry = None  # (..., d_k, d_k) when there is a low-rank part
    if a is not None:
        a, b = _chunks(a, size, pad), _chunks(b, size, pad)
        g_before = g - log_w  # log Γ_{t-1}
        strict = causal.tril(-1)
        b_a = _pairs(b, a, g_before, g, strict)  # (..., C, C)
        b_k = _pairs(b, k, g_before, g, strict)
        solve = torch.linalg.solve_triangular
        eye = torch.eye(size, dtype=q.dtype, device=q.device)
        lower = eye - b_a  # unit lower-triangular
        u_from_state = solve(lower, b * g_before.exp(), upper=False, unitriangular=True)
        u_local = solve(lower, b_k @ v, upper=False, unitriangular=True)  # U = u_fs S_0 + u_l
        q_a = _pairs(q, a, g, g, causal)
        a_decayed = (a * (g_end - g).exp()).transpose(-1, -2)  # (..., d_k, C)
        reads = reads + q_a @ u_from_state
        local = local + q_a @ u_local
        writes = writes + a_decayed @ u_local
        d_k = q.size(-1)
        diagonal = torch.diag_embed(carry_scale.squeeze(-1).expand(*g_end.shape[:-2], d_k))
        carry = diagonal + a_decayed @ u_from_state
    starts = []  # S_0 of each chunk: the only sequential part, one small product per chunk
    steps = carry_scale if carry is None else carry
    for step, write in zip(steps.unbind(2), writes.unbind(2), strict=True):
        starts.append(state)
        state = (step * state if carry is None else step @ state) + write
    o = reads @ torch.stack(starts, 2) + local  # every chunk's outputs at once
    return o.flatten(2, 3)[:, :, :length], state  # (N, Hh, L, d_v)


def mlstm_recurrence(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_f: Tensor,
    i_tilde: Tensor,
    state: tuple[Tensor, Tensor, Tensor],
    chunk: int = CHUNK,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The mLSTM's normalised outputs ``h~_t = C_t^T q_t / max(|n_t·q_t|, exp(-m_t))`` for all
    t, chunk by chunk, equal to stepping (with ``F`` the cumulative log forget gate)::

        m_t = max(log f_t + m_{t-1}, i~_t) = max(F_t + m_0, max_{s<=t} F_t - F_s + i~_s)
        C_t = exp(F_t + m_0 - m_t) C_0 + Σ_{s<=t} exp(F_t - F_s + i~_s - m_t) k_s v_s^T

    (n like C with k_s for k_s v_s^T). Within a chunk the local maximum ``mi_t`` over s is known
    in parallel; the sequential part only combines it with the carried m (every exponent <= 0).

    q, k (N, Hh, L, d_k), v (N, Hh, L, d_v), log f and i~ (N, Hh, L); state (C (N, Hh, d_k,
    d_v), n (N, Hh, d_k), m (N, Hh)). Returns h~ (N, Hh, L, d_v) and the final state.
    """
    length = q.size(2)
    size = min(chunk, length)
    pad = -length % size
    q, k, v = (_chunks(t, size, pad) for t in (q, k, v))  # (N, Hh, n, C, *)
    log_f, i_tilde = (_chunks(t.unsqueeze(-1), size, pad).squeeze(-1) for t in (log_f, i_tilde))
    if pad:  # padded steps keep the state: f = 1, i = 0
        i_tilde[..., -1, size - pad :] = torch.finfo(q.dtype).min / 4
    cum = log_f.cumsum(-1)  # (N, Hh, n, C): F_t within the chunk
    causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    d = (cum.unsqueeze(-1) - cum.unsqueeze(-2) + i_tilde.unsqueeze(-2)).masked_fill(
        ~causal, float("-inf")
    )  # (..., C, C): F_t - F_s + i~_s for s <= t
    local_max = d.amax(-1)  # (..., C): mi_t
    weights = (d - local_max.unsqueeze(-1)).exp() * (q @ k.transpose(-1, -2))
    numerator, denominator = weights @ v, weights.sum(-1)  # (..., C, d_v), (..., C)
    end = (d[..., -1, :] - local_max[..., -1:]).exp().unsqueeze(-1)  # (..., C, 1)
    c_local = (k * end).transpose(-1, -2) @ v  # (..., d_k, d_v)
    n_local = (k * end).sum(-2)  # (..., d_k)
    c_state, n_state, m_state = state
    starts = []  # (C_0, n_0, m_0) of each chunk: the sequential part
    chunk_ends = (local_max[..., -1], cum[..., -1], c_local, n_local)
    for mi, f, c_loc, n_loc in zip(*(t.unbind(2) for t in chunk_ends), strict=True):
        starts.append((c_state, n_state, m_state))
        m_new = torch.maximum(mi, f + m_state)
        own, old = (mi - m_new).exp(), (f + m_state - m_new).exp()
        c_state = own[..., None, None] * c_loc + old[..., None, None] * c_state
        n_state = own[..., None] * n_loc + old[..., None] * n_state
        m_state = m_new
    c_0, n_0, m_0 = (torch.stack(t, 2) for t in zip(*starts, strict=True))  # all chunks
    m_t = torch.maximum(local_max, cum + m_0.unsqueeze(-1))  # (N, Hh, n, C)
    own, old = (local_max - m_t).exp(), (cum + m_0.unsqueeze(-1) - m_t).exp()
    num = own.unsqueeze(-1) * numerator + old.unsqueeze(-1) * (q @ c_0)
    den = own * denominator + old * (q @ n_0.unsqueeze(-1)).squeeze(-1)
    outputs = num / torch.maximum(den.abs(), (-m_t).exp()).unsqueeze(-1)
    h = outputs.flatten(2, 3)[:, :, :length]
    return h, (c_state, n_state, m_state)


def with_history(x: Tensor, history: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """The inputs x (L, N, C) after the last K-1 ones, ``history`` (N, K-1, C): returns
    ``full`` (K-1+L, N, C) and the new history, the K-1 inputs before each sequence's end
    (``lengths`` (N,) on x's device, or None: all L steps)."""
    keep = history.size(1)
    full = torch.cat([history.transpose(0, 1), x])  # (K-1+L, N, C)
    if lengths is None:
        return full, full[full.size(0) - keep :].transpose(0, 1)
    index = lengths[None, :] + torch.arange(keep, device=x.device)[:, None]  # (K-1, N)
    last = full.gather(0, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))  # (K-1, N, C)
    return full, last.transpose(0, 1)


def causal_conv(
    x: Tensor, history: Tensor, weight: Tensor, bias: Tensor | None, lengths: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Depthwise causal convolution ``y_t = Σ_j W[:, j] ⊙ x_{t-K+1+j} + b`` over x (L, N, C)
    after ``history`` (N, K-1, C), weight (C, K): returns y (L, N, C) and the new history."""
    full, history = with_history(x, history, lengths)
    y = F.conv1d(full.permute(1, 2, 0), weight.unsqueeze(1), bias, groups=x.size(-1))
    return y.permute(2, 0, 1), history  # (L, N, C)


def conv_step(
    x: Tensor, history: Tensor, weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One step of :func:`causal_conv`: x (N, C), history (N, K-1, C) -> y (N, C), history."""
    window = torch.cat([history, x.unsqueeze(1)], 1)  # (N, K, C)
    y = (window * weight.t()).sum(1)
    return (y if bias is None else y + bias), window[:, 1:]


__all__ = [
    "CHUNK",
    "causal_conv",
    "conv_step",
    "linear_recurrence",
    "mlstm_recurrence",
    "with_history",
]
