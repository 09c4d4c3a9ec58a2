r"""Minimal RNNs of Feng et al. 2024, "Were RNNs All We Needed?": ``MinGRU`` and ``MinLSTM``.

Their gates read the input only, never the hidden state::

    minGRU                                     minLSTM
    z_t  = σ(W_z x_t + b_z)                    i_t = σ(W_i x_t + b_i),  f_t = σ(W_f x_t + b_f)
    h~_t = g(W_h x_t + b_h)                    i'_t = i_t / (f_t + i_t), f'_t = f_t / (f_t + i_t)
    h_t  = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h~_t     h~_t = g(W_h x_t + b_h)
                                               h_t  = f'_t ⊙ h_{t-1} + i'_t ⊙ h~_t

where ``g(x) = x + 1/2`` for x >= 0 and ``σ(x)`` below: always > 0, so ``log g`` exists (the
paper's log-space activation). As ``f' + i' = 1``, minLSTM is minGRU with ``z = i' = σ(u)``,
``u = log i - log f``. Either way every step is ``h_t = a_t ⊙ h_{t-1} + b_t`` with
``a = 1 - z`` and ``b = z ⊙ h~`` known for all t before the first step, so the whole sequence
can be evaluated at once. Three paths over the same parameters (a test checks they agree):

* ``impl="scan"``: the paper's parallel scan in log space. With ``a*_t = Σ_{s<=t} log a_s``,
  ``h_t = exp(a*_t) h_0 + exp(a*_t + logcumsumexp_{s<=t}(log b_s - a*_s))`` where
  ``log a = -softplus(u)`` and ``log b = -softplus(-u) + log g(n)``. h_0 enters linearly, so
  it may have any sign (only b needs to be > 0). The sum ``a*_t + logcumsumexp`` cancels: its
  rounding error ``|a*_t| eps`` becomes h's relative error and grows with t (float32, 2048
  steps at torch's init: 1e-4), so the scan runs in blocks of ``SCAN_CHUNK`` steps with the
  state carried between blocks (3e-6).
* ``impl="fused"``: z and h~ for all steps at once, then one ``torch.lerp`` per step, and the
  reverse recurrence as a hand-written backward (:func:`fused_recurrence`). The fastest on a
  CPU (L 2048, N 16, H 256, one thread, forward + backward: MinGRU ~3.2x faster than
  torch.nn.GRU, the scan ~3x slower): the scan's ~10 transcendental passes over (L, N, H)
  have no idle cores to hide in.
* ``impl="sequential"``: the step equations (:func:`min_gru_step`, :func:`min_lstm_step`)
  in a Python loop; the reference. ``impl="auto"``: sequential for one step (generation,
  O(1) per token), fused on a CPU, scan elsewhere.

The layers follow the ``rnnkit.nn.layers.GRU`` contract: ``forward(input, hx=None, lengths=None)
-> (output, h_n)``, h_n (D*num_layers, N, H) whatever ``batch_first`` says (one state tensor;
minLSTM has no cell state), unbatched input, PackedSequence in -> out, padded steps (past
``lengths``) keep the state and output zeros, dropout between layers, bidirectional.
Parameters: ``weight_ih_l{k}[_reverse]`` (G*H, H_in) and ``bias_ih_l{k}[_reverse]`` (G*H,),
chunks (z, h~) for minGRU and (i, f, h~) for minLSTM (torch's i, f, g order); there is no
``weight_hh``. Initialisation: torch.nn.GRU's, uniform(-1/sqrt(H), 1/sqrt(H)).

.. note:: The paper's minLSTM/minGRU "in sequential mode" use h~ = W_h x + b_h without g;
   here every path uses g, so all three compute one function. Not here: hand-written GPU
   kernels; on a GPU the scan is torch's own ops (cumsum, logcumsumexp, exp), all on the device.

Devices: nothing inside a forward goes to the host. ``lengths`` are checked on the host (as
torch's packing wants them there) and sent to the device once per forward, which the padding
mask and the reverse direction's gather index are built from; the scan's and the fused path's
loops over blocks and steps only queue device work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from rnnkit.nn.base import Recurrence, RecurrentLayer, State
from rnnkit.nn.cell_layer import forward_padded
from rnnkit.nn.cells import torch_default_init
from rnnkit.nn.checks import (
    check_choice,
    check_features,
    initial_state,
    set_stack_arguments,
)

IMPLS = ("auto", "scan", "fused", "sequential")
SCAN_CHUNK = 64  # steps per log-space block: accuracy ~ block length, sequential work ~ L / block
BLOCK = 32  # steps per block of the fused path's element-wise work (temporaries stay in cache)


def g(x: Tensor) -> Tensor:
    """The paper's positive activation: x + 1/2 for x >= 0, σ(x) below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), computed stably: log(x + 1/2) for x >= 0, -softplus(-x) = log σ(x) below."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def min_gru_step(x: Tensor, h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """One minGRU step: x (N, H_in), h (N, H) -> h (N, H); weight (2H, H_in) rows (z, h~)."""
    return min_gru_recur(F.linear(x, weight, bias), h)


def min_gru_recur(x_proj: Tensor, h: Tensor) -> Tensor:
    """:func:`min_gru_step` given the projection ``[W_z x + b_z, W_h x + b_h]`` (N, 2H)."""
    k, n = x_proj.chunk(2, dim=-1)  # (N, H) each
    z = torch.sigmoid(k)
    h_tilde = g(n)
    return (1 - z) * h + z * h_tilde


def min_lstm_step(x: Tensor, h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """One minLSTM step: x (N, H_in), h (N, H) -> h (N, H); weight (3H, H_in) rows (i, f, h~)."""
    return min_lstm_recur(F.linear(x, weight, bias), h)


def min_lstm_recur(x_proj: Tensor, h: Tensor) -> Tensor:
    """:func:`min_lstm_step` given the projection ``[W_i x + b_i, W_f x + b_f, W_h x + b_h]``."""
    i, f, n = x_proj.chunk(3, dim=-1)  # (N, H) each
    i, f = torch.sigmoid(i), torch.sigmoid(f)
    i_prime, f_prime = i / (f + i), f / (f + i)
    h_tilde = g(n)
    return f_prime * h + i_prime * h_tilde


def log_space_scan(
    log_coeffs: Tensor, log_values: Tensor, h0: Tensor, chunk: int = SCAN_CHUNK
) -> Tensor:
    """All states of ``h_t = a_t h_{t-1} + b_t`` (t = 1..L): ``log_coeffs`` = log a and
    ``log_values`` = log b (L, ...), ``h0`` (...) of any sign -> h (L, ...). Parallel within
    blocks of ``chunk`` steps, sequential across blocks (see the module docstring)."""
    length = log_coeffs.size(0)
    k = min(chunk, length)
    blocks, pad = -(-length // k), -length % k
    if pad:  # padded steps keep the state: a = 1, b = 0
        widths = [0, 0] * (log_coeffs.dim() - 1) + [0, pad]
        log_coeffs = F.pad(log_coeffs, widths)
        log_values = F.pad(log_values, widths, value=log_zero(log_values.dtype))
    shape = (blocks, k, *log_coeffs.shape[1:])
    a_star = log_coeffs.reshape(shape).cumsum(1)  # (C, K, ...) log of a_t ... a_1 in the block
    log_b = a_star + torch.logcumsumexp(log_values.reshape(shape) - a_star, dim=1)
    A, B = a_star.exp(), log_b.exp()  # h_t = A_t h_start + B_t within a block
    starts, h = [], h0
    for block in range(blocks):
        starts.append(h)
        h = A[block, -1] * h + B[block, -1]
    h_all = A * torch.stack(starts).unsqueeze(1) + B  # (C, K, ...)
    return h_all.reshape(blocks * k, *h_all.shape[2:])[:length]  # (L, ...)


def log_zero(dtype: torch.dtype) -> float:
    """A finite stand-in for log 0: an all -inf prefix gives logcumsumexp NaN gradients."""
    return torch.finfo(dtype).min / 4


def update_logits(cell: str, p: Tensor) -> tuple[Tensor, Tensor]:
    """(u, n) from a projection p (..., G*H): z = σ(u) is the update gate, h~ = g(n). minGRU:
    chunks (k, n), u = k; minLSTM: chunks (i, f, n), u = log σ(i) - log σ(f), so σ(u) = i'."""
    if cell == "mingru":
        k, n = p.chunk(2, dim=-1)
        return k, n
    i, f, n = p.chunk(3, dim=-1)
    return F.logsigmoid(i) - F.logsigmoid(f), n


class _FusedMinimal(torch.autograd.Function):
    """The fused path over a projection p (L, N, G*H), in time blocks of ``BLOCK`` steps: a
    block's element-wise work touches small, cache-resident temporaries (on a CPU, fresh
    full-size tensors cost more in page faults than in arithmetic), and the gradient of p is
    written in place (no concatenation of the gates' gradients)."""

    @staticmethod
    def forward(ctx, p: Tensor, h0: Tensor, cell: str) -> Tensor:
        z, h_tilde, h = (p.new_empty(*p.shape[:-1], h0.size(-1)) for _ in range(3))  # (L, N, H)
        prev = h0  # (N, H)
        for b in _blocks(p.size(0)):
            u, n = update_logits(cell, p[b])  # (B, N, H) each
            torch.sigmoid(u, out=z[b])
            # g(n), as x + 1/2 >= σ(x) exactly when x >= 0:
            torch.maximum(n + 0.5, torch.sigmoid(n), out=h_tilde[b])
            for t in range(b.start, b.stop):  # h_t = h_{t-1} + z_t (h~_t - h_{t-1})
                prev = torch.lerp(prev, h_tilde[t], z[t], out=h[t])
        ctx.cell = cell
        ctx.save_for_backward(p, z, h_tilde, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        p, z, h_tilde, h0, h = ctx.saved_tensors
        size, grad_p = h0.size(-1), torch.empty_like(p)
        keep_next = total_next = torch.zeros_like(h0)  # 1 - z_{t+1} and G_{t+1}
        for b in reversed(_blocks(p.size(0))):
            start, stop = b.start, b.stop
            keep, total = 1 - z[b], torch.empty_like(z[b])  # (B, N, H): dh_t/dh_{t-1}, G_t
            for t in range(stop - 1, start - 1, -1):  # G_t = grad_t + (1 - z_{t+1}) G_{t+1}
                total_next = torch.addcmul(grad[t], keep_next, total_next, out=total[t - start])
                keep_next = keep[t - start]
            prev = h[start - 1 : stop - 1] if start else torch.cat([h0[None], h[: stop - 1]])
            total_z = total * z[b]  # G z (not in place: total[0] is still carried as G_{t+1})
            grad_u = total_z * keep * (h_tilde[b] - prev)  # dz σ'(u) with dz = G (h~ - h_prev)
            slope = (h_tilde[b] * (1 - h_tilde[b])).masked_fill_(p[b, :, -size:] >= 0, 1.0)  # g'
            torch.mul(total_z, slope, out=grad_p[b, :, -size:])  # dn = G z g'(n)
            if ctx.cell == "mingru":
                grad_p[b, :, :size] = grad_u
            else:  # u = log σ(i) - log σ(f): du/di = σ(-i), du/df = -σ(-f)
                torch.mul(grad_u, torch.sigmoid(-p[b, :, :size]), out=grad_p[b, :, :size])
                grad_f = grad_p[b, :, size : 2 * size]
                torch.mul(grad_u, torch.sigmoid(-p[b, :, size : 2 * size]), out=grad_f).neg_()
        return grad_p, keep_next * total_next, None  # dh_0 = (1 - z_1) G_1


def _blocks(length: int) -> list[slice]:
    return [slice(t, min(t + BLOCK, length)) for t in range(0, length, BLOCK)]


def fused_recurrence(cell: str, p: Tensor, h0: Tensor) -> Tensor:
    """All states of ``h_t = (1 - z_t) h_{t-1} + z_t h~_t`` for the projection p (L, N, G*H) of
    a ``cell`` ("mingru" | "minlstm", see :func:`update_logits`) and h0 (N, H): one fused
    ``lerp`` per step, and the reverse recurrence as backward: ``G_t = grad_t + (1 - z_{t+1})
    G_{t+1}``, ``dz_t = G_t (h~_t - h_{t-1})``, ``dh~_t = G_t z_t``, ``dh_0 = (1 - z_1) G_1``.
    A step with u = -inf keeps the state (z = 0)."""
    return _FusedMinimal.apply(p, h0, cell)


class _MinimalRNN(RecurrentLayer):
    """Parameters, checks, stacking, directions and the three paths of MinGRU and MinLSTM."""

    mode = ""  # "mingru" | "minlstm": the cell (see update_logits), its registry name
    _gates = 0  # G: chunks of each weight_ih

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, impl="auto"):
        # fmt: on
        super().__init__()
        set_stack_arguments(self, input_size, hidden_size, num_layers, bias, batch_first,
                            bidirectional, dropout, stacklevel=4)  # fmt: skip
        self.impl = check_choice("impl", impl, IMPLS)
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes:
                shape = (self._gates * hidden_size, layer_in)
                weight = nn.Parameter(torch.empty(shape, **factory))
                self.register_parameter(f"weight_ih_l{layer}{suffix}", weight)
                if bias:
                    b = nn.Parameter(torch.empty(shape[0], **factory))
                    self.register_parameter(f"bias_ih_l{layer}{suffix}", b)
        self.reset_parameters()

    @property
    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """torch.nn.GRU's default: every parameter uniform in (-1/sqrt(H), 1/sqrt(H))."""
        torch_default_init(self, self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False, "impl": "auto"}  # fmt: skip
        for key, default in defaults.items():
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)!r}"
        return s

    def recurrence(self, layer: int, direction: int = 0) -> Recurrence:
        """One (layer, direction) bound to its weights: the projection W x + b, then
        :func:`min_gru_recur` or :func:`min_lstm_recur` (no recurrent dropout: m is ignored)."""
        weight, bias = (self.layer_weight(k, layer, direction) for k in ("weight_ih", "bias_ih"))
        recur = min_gru_recur if self.mode == "mingru" else min_lstm_recur

        def project(x: Tensor) -> Tensor:
            return F.linear(x, weight, bias)

        def step(x_proj: Tensor, state: State, h_mask: Tensor | None = None) -> State:
            return (recur(x_proj, state[0]),)

        return Recurrence(project, step)

    # ---- public API --------------------------------------------------------------------------
    def forward(self, input, hx: Tensor | None = None, lengths=None):
        """``input`` (L, N, H_in), (N, L, H_in) with batch_first, (L, H_in) or a PackedSequence;
        ``hx`` (D*num_layers, N, H) or None (zeros); ``lengths`` (N,) valid steps or None.
        Returns (output (L, N, D*H) or batch-first or packed, h_n (D*num_layers, N, H))."""
        return forward_padded(self, input, hx, lengths, _run_stack, self.weight_ih_l0)

    def step(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step of the stack, O(1) in the sequence so far: ``x`` (N, H_in) and ``h``
        (num_layers, N, H) or None -> the new h (num_layers, N, H); the output is ``h[-1]``.
        Equal to ``forward(x[None], h)``; unidirectional stacks only."""
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step needs bidirectional=False")
        if x.dim() != 2:
            raise ValueError(f"x must be 2-D (N, H_in), got shape {tuple(x.shape)}")
        name = type(self).__name__
        check_features(name, x, self.input_size, self.weight_ih_l0, steps=1)
        (h,) = initial_state(name, h, (self.hidden_size,), self.num_layers, x[None], False)
        states = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            (x,) = self.step_function(layer)(x, (h[layer],))  # (N, H)
            states.append(x)
        return torch.stack(states)  # (num_layers, N, H)

    # ---- running the stack -------------------------------------------------------------------
    def _run(self, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """Time-major x (L, N, H_in) -> output (L, N, D*H), h_n (D*layers, N, H)."""
        length = x.size(0)
        valid = backwards = None
        if lengths is not None:  # host -> device once; the mask and the reverse index from it
            steps = torch.arange(length, device=x.device)[:, None]  # (L, 1)
            lengths = lengths.to(x.device, non_blocking=True)[None, :]  # (1, N)
            valid = steps < lengths  # (L, N)
            backwards = torch.where(valid, lengths - 1 - steps, steps)  # (L, N)
        finals = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            outputs = []
            for d in range(self.num_directions):
                seq = x if d == 0 else _reverse(x, backwards)
                h = self._direction(seq, h0[layer * self.num_directions + d], valid, layer, d)
                finals.append(h[-1])  # padded steps kept the state: the state at the true end
                outputs.append(h if d == 0 else _reverse(h, backwards))
            x = torch.cat(outputs, dim=-1) if self.bidirectional else outputs[0]  # (L, N, D*H)
            if valid is not None:
                x = x * valid.unsqueeze(-1).to(x.dtype)  # zeros past each sequence's end
        return x, torch.stack(finals)

    def _direction(self, x, h0, valid, layer: int, direction: int) -> Tensor:
        """One layer, one direction: x (L, N, H_in) -> h (L, N, H); where ``valid`` (L, N) is
        False the state is kept (z = 0, i.e. f' = 1 and i' = 0)."""
        impl = self._path(x)
        if impl == "sequential":
            step, states, h = self.step_function(layer, direction), [], h0
            for t, x_t in enumerate(x.unbind(0)):  # unbind: one backward node, not L copies of x
                (new,) = step(x_t, (h,))
                h = new if valid is None else torch.where(valid[t, :, None], new, h)
                states.append(h)
            return torch.stack(states)
        p = self.recurrence(layer, direction).project(x)  # (L, N, G*H): W x + b
        keep = None if valid is None else ~valid.unsqueeze(-1)  # (L, N, 1)
        if impl == "fused":
            if keep is not None:  # the first gate (z or i) -> -inf: z = i' = 0 there
                first = torch.arange(p.size(-1), device=p.device) < self.hidden_size
                p = p.masked_fill(keep & first, float("-inf"))
            return fused_recurrence(self.mode, p, h0)
        u, n = update_logits(self.mode, p)  # (L, N, H) each
        log_coeffs = -F.softplus(u)  # log(1 - z)
        log_values = -F.softplus(-u) + log_g(n)  # log z + log h~
        if keep is not None:
            log_coeffs = log_coeffs.masked_fill(keep, 0.0)
            log_values = log_values.masked_fill(keep, log_zero(log_values.dtype))
        return log_space_scan(log_coeffs, log_values, h0)

    def _path(self, x: Tensor) -> str:
        if self.impl != "auto":
            return self.impl
        if x.size(0) == 1:
            return "sequential"
        return "fused" if x.device.type == "cpu" else "scan"


def _run_stack(layer: _MinimalRNN, x: Tensor, hx: State, lengths: Tensor | None):
    """``forward_padded``'s run: the stack over x (L, N, H_in) from hx ((D*layers, N, H),)."""
    output, h_n = layer._run(x, hx[0], None if lengths is None else lengths.long())
    return output, (h_n,)


def _reverse(x: Tensor, index: Tensor | None) -> Tensor:
    """Each sequence of x (L, N, F) reversed within its length, padding staying at the end:
    ``index`` (L, N) on x's device says which step each one reads (None: all full length)."""
    if index is None:
        return x.flip(0)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


class MinGRU(_MinimalRNN):
    """Multi-layer minGRU (Feng et al. 2024): ``z = σ(W_z x + b_z)``, ``h~ = g(W_h x + b_h)``,
    ``h_t = (1 - z) ⊙ h_{t-1} + z ⊙ h~`` (see the module docstring).

    ``MinGRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None, *, impl="auto")``;
    ``forward(input, hx=None, lengths=None) -> (output, h_n)``; ``step(x, h) -> h``.
    """

    mode, _gates = "mingru", 2


class MinLSTM(_MinimalRNN):
    """Multi-layer minLSTM (Feng et al. 2024): ``i, f = σ(W_i x + b_i), σ(W_f x + b_f)``,
    ``h_t = f/(f+i) ⊙ h_{t-1} + i/(f+i) ⊙ g(W_h x + b_h)`` (see the module docstring); one
    state tensor, no cell state.

    ``MinLSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None, *, impl="auto")``;
    ``forward(input, hx=None, lengths=None) -> (output, h_n)``; ``step(x, h) -> h``.
    """

    mode, _gates = "minlstm", 3


__all__ = [
    "IMPLS",
    "MinGRU",
    "MinLSTM",
    "g",
    "log_g",
    "log_space_scan",
    "fused_recurrence",
    "update_logits",
    "min_gru_recur",
    "min_gru_step",
    "min_lstm_recur",
    "min_lstm_step",
]
