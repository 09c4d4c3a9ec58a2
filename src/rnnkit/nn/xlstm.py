r"""xLSTM's two cells (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"): ``MLSTM``
(a matrix memory, fully parallelisable) and ``SLSTM`` (a scalar memory with recurrent
connections, heads of block-diagonal recurrent matrices). Both use exponential input gates,
kept finite by the stabiliser m::

    mLSTM, per head (d_k = d_v = H / heads)        sLSTM, per unit (R block-diagonal per head)
    q, k, v = W_q u, W_k u / sqrt(d_k), W_v u       z = tanh(W_z u + R_z h_{t-1} + b_z)
    i~, f~ = w_i u + b_i, w_f u + b_f (scalars)     i~, f~, o~ = W u + R h_{t-1} + b (each)
    m_t = max(log σ(f~) + m_{t-1}, i~)              m_t = max(log σ(f~) + m_{t-1}, i~)
    i' = exp(i~ - m_t)                              i' = exp(i~ - m_t)
    f' = exp(log σ(f~) + m_{t-1} - m_t)             f' = exp(log σ(f~) + m_{t-1} - m_t)
    C_t = f' C_{t-1} + i' k v^T                     c_t = f' c_{t-1} + i' z
    n_t = f' n_{t-1} + i' k                         n_t = f' n_{t-1} + i'
    h~ = C_t^T q / max(|n_t·q|, exp(-m_t))          h_t = σ(o~) ⊙ c_t / n_t
    y = W_o (σ(W_g u + b_g) ⊙ LN_heads(h~))         y = W_o LN_heads(h_t)

The stabilised states are the paper's times exp(-m_t), so h~ and h_t are the paper's exactly
(its normaliser max(|n·q|, 1) becomes max(|n·q|, exp(-m))). Forget-gate biases start at
3..6 (linspace over heads or units) so the memory starts long, as in the reference code.

Training forms: the mLSTM's :func:`~rnnkit.nn.chunked.mlstm_recurrence` (chunkwise parallel);
the sLSTM steps (it is not linear in h), after one block input projection of all steps.

.. note:: As rnnkit's modern layers share one residual block (``modern.py``), the mLSTM's
   block here has no up-projection, causal convolution or learnable skip of the paper's
   Figure 10, and the sLSTM's no gated MLP after it; the cells are the paper's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.chunked import mlstm_recurrence
from rnnkit.nn.modern import (
    Memory,
    Mixer,
    ModernLayer,
    divisor,
    from_heads,
    head_norm,
    heads_of,
    invalid,
    keep,
    to_heads,
    uniform_init,
    valid_steps,
)


class _XLSTMMixer(Mixer):
    """What both xLSTM cells have: heads of d = H / heads units, an input projection to
    ``width`` pre-activations with gate biases beside it, a per-head layer norm's gain and the
    output projection W_o."""

    gate_names = ("forget", "output")

    def __init__(self, hidden: int, chunk: int, heads, width: int, bias: bool, factory) -> None:
        super().__init__(hidden, chunk)
        self.heads = divisor("heads", hidden, heads, 4)
        self.d = hidden // self.heads
        self.proj = nn.Linear(hidden, width, bias=bias, **factory)
        self.gate_bias = nn.Parameter(torch.empty(width, **factory))
        self.norm_weight = nn.Parameter(torch.empty(hidden, **factory))
        self.out = nn.Linear(hidden, hidden, bias=False, **factory)

    def _reset(self, forget: slice) -> None:
        """Every gate bias 0 but the forget gate's (``forget``), 3..6 over its units; unit gains;
        the projections uniform in (-1/sqrt(H), 1/sqrt(H))."""
        nn.init.zeros_(self.gate_bias)
        with torch.no_grad():
            size = len(range(*forget.indices(self.gate_bias.numel())))
            self.gate_bias[forget] = torch.linspace(3.0, 6.0, size)
        nn.init.ones_(self.norm_weight)
        uniform_init(self.proj, self.out, fan_in=self.hidden)

    def project(self, u: Tensor) -> Tensor:
        return self.proj(u) + self.gate_bias


class MLSTMMixer(_XLSTMMixer):
    """The mLSTM cell and its output (see the module docstring)."""

    def __init__(self, hidden, *, bias=True, chunk, factory, heads=None) -> None:
        n = divisor("heads", hidden, heads, 4)
        super().__init__(hidden, chunk, n, 4 * hidden + 2 * n, bias, factory)  # q k v g i f
        self.memory = {"C": (n, self.d, self.d), "n": (n, self.d), "m": (n,)}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset(slice(-self.heads, None))  # the forget gates: one per head

    def _split(self, p: Tensor):
        h, n = self.hidden, self.heads
        q, k, v, g, i, f = p.split([h, h, h, h, n, n], -1)
        return q, k / math.sqrt(self.d), v, g, i, f

    def _output(self, h_tilde: Tensor, g: Tensor) -> Tensor:
        return self.out(torch.sigmoid(g) * head_norm(h_tilde, self.heads, self.norm_weight,
                                                     rms=False))  # fmt: skip

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        """One step: p (N, G) from :meth:`project`, memory C, n, m -> y (N, H), memory."""
        q, k, v, g, i, f = self._split(p)
        q, k, v = (heads_of(t, self.heads) for t in (q, k, v))  # (N, heads, d)
        C, n, m_prev = memory["C"], memory["n"], memory["m"]  # noqa: N806
        log_f = F.logsigmoid(f)  # (N, heads)
        m = torch.maximum(log_f + m_prev, i)
        i_gate, f_gate = torch.exp(i - m), torch.exp(log_f + m_prev - m)
        C = f_gate[..., None, None] * C + i_gate[..., None, None] * k.unsqueeze(-1) * v.unsqueeze(
            -2
        )  # noqa: N806, E501
        n = f_gate[..., None] * n + i_gate[..., None] * k
        numerator = (C * q.unsqueeze(-1)).sum(-2)  # C^T q: (N, heads, d)
        denominator = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m))  # (N, heads)
        h_tilde = (numerator / denominator[..., None]).flatten(-2)  # (N, H)
        return self._output(h_tilde, g), {"C": C, "n": n, "m": m}

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        q, k, v, g, i, f = self._split(p)  # (L, N, *)
        log_f = F.logsigmoid(f)
        pad = invalid(lengths, p.size(0))
        if pad is not None:  # past the end: f = 1, i = 0 (the memory is kept)
            log_f = log_f.masked_fill(pad, 0.0)
            i = i.masked_fill(pad, torch.finfo(p.dtype).min / 4)
        q, k, v = (to_heads(t, self.heads) for t in (q, k, v))  # (N, heads, L, d)
        state = (memory["C"], memory["n"], memory["m"])
        h_tilde, (C, n, m) = mlstm_recurrence(q, k, v, log_f.permute(1, 2, 0),  # noqa: N806
                                              i.permute(1, 2, 0), state, self.chunk)  # fmt: skip
        return self._output(from_heads(h_tilde), g), {"C": C, "n": n, "m": m}

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        *_, g, _, f = self._split(p)
        return {"forget": torch.sigmoid(f), "output": torch.sigmoid(g)}


class SLSTMMixer(_XLSTMMixer):
    """The sLSTM cell and its output (see the module docstring)."""

    def __init__(self, hidden, *, bias=True, chunk, factory, heads=None) -> None:
        super().__init__(hidden, chunk, heads, 4 * hidden, bias, factory)  # z i f o
        self.memory = {"h": (hidden,), "c": (hidden,), "n": (hidden,), "m": (hidden,)}
        self.recurrent = nn.Parameter(torch.empty(self.heads, self.d, 4 * self.d, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset(slice(2 * self.hidden, 3 * self.hidden))  # the forget gates: one per unit
        nn.init.uniform_(self.recurrent, -1 / math.sqrt(self.d), 1 / math.sqrt(self.d))

    def _preactivations(self, p: Tensor, h: Tensor) -> tuple[Tensor, ...]:
        """z~, i~, f~, o~ (N, H) each: p plus R h, R block-diagonal (one block per head)."""
        r = torch.einsum("nhd,hde->nhe", heads_of(h, self.heads), self.recurrent)  # (N, heads, 4d)
        r = r.reshape(*r.shape[:-1], 4, self.d).transpose(-3, -2).flatten(-2)  # (N, 4, H)
        return (p.reshape(*p.shape[:-1], 4, self.hidden) + r).unbind(-2)

    def cell(self, p: Tensor, memory: Memory) -> Memory:
        """The sLSTM's recurrence: p (N, 4H) from :meth:`project`, memory h, c, n, m -> memory."""
        h, c, n, m_prev = memory["h"], memory["c"], memory["n"], memory["m"]
        z_tilde, i, f, o = self._preactivations(p, h)
        z = torch.tanh(z_tilde)
        log_f = F.logsigmoid(f)
        m = torch.maximum(log_f + m_prev, i)
        i_gate, f_gate = torch.exp(i - m), torch.exp(log_f + m_prev - m)
        c = f_gate * c + i_gate * z
        n = f_gate * n + i_gate
        h = torch.sigmoid(o) * c / n
        return {"h": h, "c": c, "n": n, "m": m}

    def _output(self, h: Tensor) -> Tensor:
        return self.out(head_norm(h, self.heads, self.norm_weight, rms=False))

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        """One step: the recurrence (:meth:`cell`), then y = W_o LN_heads(h) (N, H)."""
        memory = self.cell(p, memory)
        return self._output(memory["h"]), memory

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        """The recurrence step by step over p (L, N, 4H) (projected for all steps at once by
        :meth:`project`), then the norm and output projection of all steps at once."""
        valid = None if lengths is None else valid_steps(lengths, p.size(0))
        hs = []
        for t, p_t in enumerate(p.unbind(0)):
            new = self.cell(p_t, memory)
            if valid is not None:
                new = {k: keep(valid[t], new[k], memory[k]) for k in memory}
            memory = new
            hs.append(new["h"])
        return self._output(torch.stack(hs)), memory

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        _, _, f, o = self._preactivations(p, memory["h"])
        return {"forget": torch.sigmoid(f), "output": torch.sigmoid(o)}


class MLSTM(ModernLayer):
    """Multi-layer mLSTM (Beck et al. 2024), matrix memory per head; see the module docstring.

    ``MLSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None, *, impl="auto", chunk_size=32, heads=None)``;
    ``forward(input, hx=None, lengths=None) -> (output, LSTMState(h_n, c_n))``. Memory per
    stream and layer: heads * (d^2 + d + 1) with d = hidden_size / heads; ``heads=None``: the
    largest divisor of hidden_size up to 4.
    """

    cell, mixer_class, defaults = "mlstm", MLSTMMixer, {"heads": None}


class SLSTM(ModernLayer):
    """Multi-layer sLSTM (Beck et al. 2024), block-diagonal recurrence over ``heads``; see the
    module docstring.

    ``SLSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None, *, impl="auto", heads=None)``; memory per
    stream and layer: 4 * hidden_size (h, c, n, m).
    """

    cell, mixer_class, defaults = "slstm", SLSTMMixer, {"heads": None}


__all__ = ["MLSTM", "MLSTMMixer", "SLSTM", "SLSTMMixer"]
