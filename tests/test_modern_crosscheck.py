"""The modern layers' recurrences against independent implementations by the papers' authors:

* xLSTM's: ``mlstm_kernels`` (NXAI) -- the native PyTorch mLSTM step,
  ``mlstm_recurrent_step__native_fw`` -- and the ``xlstm`` package's vanilla sLSTM cell,
  ``slstm_forward_pointwise``;
* flash-linear-attention's (``fla-core``, Yang, Zhang et al.) naive PyTorch references:
  ``naive_recurrent_gated_delta_rule`` and ``naive_chunk_gated_delta_rule`` (Gated DeltaNet),
  ``naive_recurrent_gla`` (GLA), ``naive_recurrent_simple_gla`` (a scalar decay per head: the
  Mamba-2 / SSD recurrence) and ``dplr_recurrence`` (diagonal plus low rank: RWKV-7's).

Their packages import Triton or CUDA kernels at the top, so each reference file is loaded on
its own from the installed package (``importlib``, by path; the file imports torch and einops
only). Installed by ``pip install 'rnnkit[dev]'``; where a package is missing its tests skip
and say which. fla's references compute in float32, so they are compared at float32 accuracy;
the xLSTM ones in float64 to 1e-12.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnkit.nn.chunked import linear_recurrence, mlstm_recurrence
from rnnkit.nn.xlstm import SLSTMMixer

D64 = torch.float64


def reference(package: str, relative: str):
    """The module at ``relative`` inside the installed ``package``, executed on its own (its
    package's ``__init__`` is not run); skips when the package is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install 'rnnkit[dev]')")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    name = f"crosscheck_{package}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def randn(*shape, seed=0, dtype=D64):
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def qkv_and_state(b: int, steps: int, heads: int, d_k: int, d_v: int, *, time_second=True):
    """Random q, k (..., d_k), v (..., d_v) as [B, T, H, D] (fla's layout; else [B, H, T, D])
    and an initial state [B, H, d_k, d_v]."""
    shape = (b, steps, heads) if time_second else (b, heads, steps)
    q, k, v = (randn(*shape, d, seed=s) for s, d in enumerate((d_k, d_k, d_v)))
    return q, k, v, randn(b, heads, d_k, d_v, seed=9)


def heads_first(*tensors):
    """[B, T, H, D] -> [B, H, T, D], fla's layout to the kernels'."""
    return [t.transpose(1, 2) for t in tensors]


# ---- xLSTM -----------------------------------------------------------------------------------
def test_mlstm_equals_the_native_step_of_mlstm_kernels():
    native = reference("mlstm_kernels", "torch/recurrent/native_step.py")
    b, heads, steps, d = 2, 3, 11, 4
    q, k, v = (randn(b, heads, steps, d, seed=s) for s in range(3))
    i_tilde, f_tilde = randn(b, heads, steps, seed=3), randn(b, heads, steps, seed=4) + 1
    c, n, m = randn(b, heads, d, d, seed=5), randn(b, heads, d, seed=6).abs(), randn(b, heads, 1)
    expected = []
    state = (c, n, m)
    for t in range(steps):  # theirs scales q by 1/sqrt(d); rnnkit scales k: the same h
        h, state = native.mlstm_recurrent_step__native_fw(
            *state, q[:, :, t], k[:, :, t], v[:, :, t], i_tilde[:, :, t, None],
            f_tilde[:, :, t, None], eps=0.0, dtype_state=D64,
        )  # fmt: skip
        expected.append(h)
    ours, (c_end, n_end, m_end) = mlstm_recurrence(
        q, k / math.sqrt(d), v, F.logsigmoid(f_tilde), i_tilde, (c / math.sqrt(d),
        n / math.sqrt(d), m[..., 0]), chunk=4,
    )  # fmt: skip
    torch.testing.assert_close(ours, torch.stack(expected, 2), rtol=0, atol=1e-12)
    torch.testing.assert_close(c_end * math.sqrt(d), state[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(m_end, state[2][..., 0], rtol=0, atol=1e-12)


def test_slstm_cell_equals_the_vanilla_cell_of_xlstm():
    """One SLSTMMixer's recurrence against ``slstm_forward_pointwise`` fed the same input
    projections and R h (R's blocks assembled here with torch.block_diag); the hidden states
    agree at every step (xlstm sets m = i~ on the first step instead of max(log f, i~), which
    rescales c, n and m alike and leaves h unchanged)."""
    vanilla = reference("xlstm", "blocks/slstm/src/vanilla/slstm.py")
    torch.manual_seed(0)
    hidden, heads, batch, steps = 6, 2, 3, 9
    mixer = SLSTMMixer(hidden, chunk=4, factory={"dtype": D64}, heads=heads)
    p = mixer.project(randn(steps, batch, hidden, seed=1))  # (L, N, 4H): z i f o
    d = mixer.d  # R h = h @ [blockdiag_heads(R_z) | ... | blockdiag_heads(R_o)]: (H, 4H)
    recurrent = torch.cat(
        [torch.block_diag(*mixer.recurrent[:, :, g * d : (g + 1) * d]) for g in range(4)], dim=1
    )
    memory = {name: torch.zeros(batch, hidden, dtype=D64) for name in mixer.memory}
    states = torch.zeros(4, batch, hidden, dtype=D64)
    order = [1, 2, 0, 3]  # xlstm's gates i, f, z, o from rnnkit's z, i, f, o
    with torch.no_grad():
        for t in range(steps):
            memory = mixer.cell(p[t], memory)
            r = (states[0] @ recurrent.unflatten(1, (4, hidden)).flatten(1)).unflatten(
                -1, (4, hidden)
            )
            theirs_wx = p[t].unflatten(-1, (4, hidden))[:, order].flatten(1)
            states, _ = vanilla.slstm_forward_pointwise(
                theirs_wx, r[:, order].flatten(1), torch.zeros(1, 4 * hidden, dtype=D64), states, {}
            )
            torch.testing.assert_close(memory["h"], states[0], rtol=0, atol=1e-12)


# ---- flash-linear-attention ------------------------------------------------------------------
def float32_close(ours, theirs):
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunked", [False, True], ids=["recurrent", "chunk"])
def test_the_gated_delta_rule_equals_flas_references(chunked):
    naive = reference("fla", "ops/gated_delta_rule/naive.py")
    b, steps, heads, d_k, d_v = 2, 13, 3, 4, 5
    q, k = (F.normalize(randn(b, steps, heads, d_k, seed=s), dim=-1) for s in (0, 1))
    v = randn(b, steps, heads, d_v, seed=2)
    beta = torch.sigmoid(randn(b, steps, heads, seed=3))
    g = -F.softplus(randn(b, steps, heads, seed=4))  # log α
    s0 = randn(b, heads, d_k, d_v, seed=5)
    if chunked:
        o, s = naive.naive_chunk_gated_delta_rule(
            q, k, v, g, beta, chunk_size=4, scale=1.0, initial_state=s0, output_final_state=True
        )
    else:
        o, s = naive.naive_recurrent_gated_delta_rule(
            q, k, v, beta, g, scale=1.0, initial_state=s0, output_final_state=True
        )
    q_, k_, v_ = heads_first(q, k, v)
    beta_, g_ = beta.transpose(1, 2)[..., None], g.transpose(1, 2)[..., None]
    ours, s_ours = linear_recurrence(q_, beta_ * k_, v_, g_, s0, a=-g_.exp() * beta_ * k_,
                                     b=k_, chunk=5)  # fmt: skip
    float32_close(ours, o.transpose(1, 2))
    float32_close(s_ours, s)


def test_gla_equals_flas_naive_recurrent_gla():
    naive = reference("fla", "ops/gla/naive.py")
    b, steps, heads, d_k, d_v = 2, 12, 2, 4, 3
    q, k, v, s0 = qkv_and_state(b, steps, heads, d_k, d_v)
    gk = F.logsigmoid(randn(b, steps, heads, d_k, seed=3)) / 4
    o, s = naive.naive_recurrent_gla(q, k, v, gk, initial_state=s0, output_final_state=True)
    q_, k_, v_, g_ = heads_first(q / math.sqrt(d_k), k, v, gk)
    ours, s_ours = linear_recurrence(q_, k_, v_, g_, s0, chunk=5)
    float32_close(ours, o.transpose(1, 2))
    float32_close(s_ours, s)


def test_a_scalar_decay_equals_flas_simple_gla_the_ssd_recurrence():
    naive = reference("fla", "ops/simple_gla/naive.py")
    b, steps, heads, d_k, d_v = 2, 12, 3, 4, 6
    q, k, v, s0 = qkv_and_state(b, steps, heads, d_k, d_v)
    g = -F.softplus(randn(b, steps, heads, seed=3))
    o, s = naive.naive_recurrent_simple_gla(q, k, v, g, scale=1.0, initial_state=s0)
    q_, k_, v_ = heads_first(q, k, v)
    ours, s_ours = linear_recurrence(q_, k_, v_, g.transpose(1, 2)[..., None], s0, chunk=5)
    float32_close(ours, o.transpose(1, 2))
    float32_close(s_ours, s)


def test_diagonal_plus_low_rank_equals_flas_dplr_recurrence_rwkv7s():
    naive = reference("fla", "ops/generalized_delta_rule/dplr/naive.py")
    b, heads, steps, d_k, d_v = 2, 2, 12, 4, 5
    q, k, v, s0 = qkv_and_state(b, steps, heads, d_k, d_v, time_second=False)
    kappa = F.normalize(randn(b, heads, steps, d_k, seed=3), dim=-1)
    rate = torch.sigmoid(randn(b, heads, steps, d_k, seed=4))
    alpha, beta = kappa, -(rate * kappa)  # S_t = diag(w) S + beta (alpha^T S) + k v^T
    gk = -0.6 * torch.sigmoid(randn(b, heads, steps, d_k, seed=5))
    theirs = (t.float() for t in (q, k, v, alpha, beta, gk))  # its loop computes in float32
    o, s = naive.dplr_recurrence(*theirs, initial_state=s0.float())
    ours, s_ours = linear_recurrence(q / math.sqrt(d_k), k, v, gk, s0, a=beta, b=alpha, chunk=5)
    float32_close(ours, o)
    float32_close(s_ours, s)
