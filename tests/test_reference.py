"""Tests for the NumPy oracle ``rnnkit.reference`` against torch.nn and finite differences."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import reference

REF_PATH = Path(__file__).parents[1] / "src" / "rnnkit" / "reference.py"

# Odd prime sizes so that no transposition can go unnoticed.
I_SIZE, H_SIZE, N_SIZE, T_SIZE = 7, 11, 3, 5
KINDS = ("rnn", "lstm", "gru")
TORCH_CLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
PARAM_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

kind_and_bias = pytest.mark.parametrize(
    "kind, bias", [(k, b) for k in KINDS for b in (True, False)], ids=lambda v: str(v)
)


# ----------------------------------------------------------------------------- helpers


def make_module(kind: str, bias: bool, seed: int = 0) -> torch.nn.RNNBase:
    torch.manual_seed(seed)
    return TORCH_CLS[kind](I_SIZE, H_SIZE, bias=bias, dtype=torch.float64)


def numpy_params(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def make_problem(kind: str, seed: int = 1, t_len: int = T_SIZE) -> dict[str, np.ndarray]:
    """Random input, initial state and linear-loss weights (all float64)."""
    rng = np.random.default_rng(seed)
    prob = {
        "x": rng.standard_normal((t_len, N_SIZE, I_SIZE)),
        "h0": rng.standard_normal((N_SIZE, H_SIZE)) * 0.5,
        "w_out": rng.standard_normal((t_len, N_SIZE, H_SIZE)),
        "w_h": rng.standard_normal((N_SIZE, H_SIZE)),
    }
    if kind == "lstm":
        prob["c0"] = rng.standard_normal((N_SIZE, H_SIZE)) * 0.5
        prob["w_c"] = rng.standard_normal((N_SIZE, H_SIZE))
    return prob


def state_of(kind: str, prob: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return (prob["h0"], prob["c0"]) if kind == "lstm" else (prob["h0"],)


def d_state_of(kind: str, prob: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return (prob["w_h"], prob["w_c"]) if kind == "lstm" else (prob["w_h"],)


def numpy_loss(kind: str, params: dict[str, np.ndarray], prob: dict[str, np.ndarray]) -> float:
    """L = sum(w_out * outputs) + sum(w_h * h_T) (+ sum(w_c * c_T) for the LSTM)."""
    out, cache = reference.forward(kind, params, prob["x"], state_of(kind, prob))
    final = cache.final_state
    loss = np.sum(prob["w_out"] * out) + np.sum(prob["w_h"] * final[0])
    if kind == "lstm":
        loss += np.sum(prob["w_c"] * final[1])
    return float(loss)


def reference_grads(kind, params, prob) -> dict[str, np.ndarray]:
    _, cache = reference.forward(kind, params, prob["x"], state_of(kind, prob))
    return reference.backward(kind, params, cache, prob["w_out"], d_state_of(kind, prob))


def torch_run(kind: str, module: torch.nn.RNNBase, prob: dict[str, np.ndarray]):
    """Forward + autograd through torch.nn; returns (outputs, final states, grads)."""
    x = torch.tensor(prob["x"], requires_grad=True)
    h0 = torch.tensor(prob["h0"][None], requires_grad=True)
    states = {"h0": h0}
    if kind == "lstm":
        c0 = torch.tensor(prob["c0"][None], requires_grad=True)
        states["c0"] = c0
        out, (h_t, c_t) = module(x, (h0, c0))
        finals = (h_t[0], c_t[0])
    else:
        out, h_t = module(x, h0)
        finals = (h_t[0],)
    loss = (torch.tensor(prob["w_out"]) * out).sum() + (torch.tensor(prob["w_h"]) * finals[0]).sum()
    if kind == "lstm":
        loss = loss + (torch.tensor(prob["w_c"]) * finals[1]).sum()
    module.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().numpy() for k, p in module.named_parameters()}
    grads["input"] = x.grad.numpy()  # (T, N, I)
    grads.update({k: v.grad.numpy()[0] for k, v in states.items()})  # (1, N, H) -> (N, H)
    return out.detach().numpy(), tuple(f.detach().numpy() for f in finals), grads


def expected_grad_keys(kind: str, bias: bool) -> set[str]:
    keys = {"weight_ih_l0", "weight_hh_l0", "input", "h0"}
    if bias:
        keys |= {"bias_ih_l0", "bias_hh_l0"}
    if kind == "lstm":
        keys.add("c0")
    return keys


# ----------------------------------------------------------------------------- 1. independence


def test_imports_only_numpy_and_stdlib() -> None:
    tree = ast.parse(REF_PATH.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports would pull in rnnkit"
            imported.add(node.module.split(".")[0])
    assert "torch" not in imported
    assert "rnnkit" not in imported
    allowed = {"numpy", "__future__"} | set(sys.stdlib_module_names)
    assert imported <= allowed, imported - allowed
    assert "numpy" in imported


def test_loading_does_not_import_torch() -> None:
    code = (
        "import sys; import importlib.util; "
        f"spec=importlib.util.spec_from_file_location('ref', {str(REF_PATH)!r}); "
        "m=importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "assert not any(k.startswith('rnnkit') for k in sys.modules), 'rnnkit was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- 2./3. vs torch


@kind_and_bias
def test_forward_matches_torch(kind: str, bias: bool) -> None:
    module = make_module(kind, bias)
    params, prob = numpy_params(module), make_problem(kind)
    out, cache = reference.forward(kind, params, prob["x"], state_of(kind, prob))
    t_out, t_finals, _ = torch_run(kind, module, prob)
    assert out.dtype == np.float64 and out.shape == (T_SIZE, N_SIZE, H_SIZE)
    np.testing.assert_allclose(out, t_out, rtol=0, atol=1e-12)
    assert len(cache.final_state) == len(t_finals)
    for mine, theirs in zip(cache.final_state, t_finals, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)


@kind_and_bias
def test_backward_matches_torch_autograd(kind: str, bias: bool) -> None:
    module = make_module(kind, bias)
    params, prob = numpy_params(module), make_problem(kind)
    grads = reference_grads(kind, params, prob)
    _, _, t_grads = torch_run(kind, module, prob)
    assert set(grads) == expected_grad_keys(kind, bias) == set(t_grads)
    for key, t_grad in t_grads.items():
        assert grads[key].shape == t_grad.shape, key
        np.testing.assert_allclose(grads[key], t_grad, rtol=0, atol=1e-10, err_msg=key)


# ----------------------------------------------------------------------------- 4. finite diff


@kind_and_bias
def test_backward_matches_finite_differences(kind: str, bias: bool) -> None:
    eps = 1e-6
    rng = np.random.default_rng(2)
    params, prob = numpy_params(make_module(kind, bias)), make_problem(kind)
    grads = reference_grads(kind, params, prob)

    def central(arrays: dict[str, np.ndarray], key: str, idx: tuple[int, ...]) -> float:
        orig = arrays[key][idx]
        arrays[key][idx] = orig + eps
        plus = numpy_loss(kind, params, prob)
        arrays[key][idx] = orig - eps
        minus = numpy_loss(kind, params, prob)
        arrays[key][idx] = orig
        return (plus - minus) / (2 * eps)

    targets = [(params, k) for k in PARAM_KEYS if k in params]
    targets += [(prob, "h0"), (prob, "x")] + ([(prob, "c0")] if kind == "lstm" else [])
    for arrays, key in targets:
        shape = arrays[key].shape
        if key in ("h0", "c0"):  # every entry of the initial state
            indices = list(np.ndindex(shape))
        else:  # a random subset of 20 entries
            size = int(np.prod(shape))
            flat = rng.choice(size, size=min(20, size), replace=False)
            indices = [np.unravel_index(f, shape) for f in flat]
        grad_key = "input" if key == "x" else key
        for idx in indices:
            numeric = central(arrays, key, idx)
            analytic = grads[grad_key][idx]
            assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic)), (key, idx)


# ----------------------------------------------------------------------------- 5. chaining


def chained_backward(kind, params, prob, bounds: list[int]) -> dict[str, np.ndarray]:
    """Forward chunk by chunk carrying the state, then backward last chunk first (TBPTT)."""
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    caches, state = [], state_of(kind, prob)
    for lo, hi in spans:
        _, cache = reference.forward(kind, params, prob["x"][lo:hi], state)
        caches.append(cache)
        state = cache.final_state
    total: dict[str, np.ndarray] = {}
    d_state: tuple[np.ndarray, ...] = d_state_of(kind, prob)
    inputs = []
    for (lo, hi), cache in reversed(list(zip(spans, caches, strict=True))):
        g = reference.backward(kind, params, cache, prob["w_out"][lo:hi], d_state)
        d_state = (g["h0"], g["c0"]) if kind == "lstm" else (g["h0"],)
        inputs.insert(0, g["input"])
        for k in PARAM_KEYS:
            if k in g:
                total[k] = total.get(k, 0.0) + g[k]
    total["input"] = np.concatenate(inputs, axis=0)
    total["h0"] = d_state[0]
    if kind == "lstm":
        total["c0"] = d_state[1]
    return total


@kind_and_bias
def test_single_steps_chain_to_one_call(kind: str, bias: bool) -> None:
    params, prob = numpy_params(make_module(kind, bias)), make_problem(kind)
    out, cache = reference.forward(kind, params, prob["x"], state_of(kind, prob))
    state, steps = state_of(kind, prob), []
    for t in range(T_SIZE):
        step_out, step_cache = reference.forward(kind, params, prob["x"][t : t + 1], state)
        steps.append(step_out)
        state = step_cache.final_state
    np.testing.assert_allclose(np.concatenate(steps, axis=0), out, rtol=0, atol=1e-14)
    for mine, theirs in zip(state, cache.final_state, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-14)


@kind_and_bias
def test_chunked_backward_equals_one_call(kind: str, bias: bool) -> None:
    params, prob = numpy_params(make_module(kind, bias)), make_problem(kind)
    full = reference_grads(kind, params, prob)
    chained = chained_backward(kind, params, prob, [0, 2, T_SIZE])  # chunks of 2 and 3 steps
    assert set(chained) == set(full)
    for key in full:
        np.testing.assert_allclose(chained[key], full[key], rtol=0, atol=1e-12, err_msg=key)


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    cuts=st.sets(st.integers(1, T_SIZE - 1), max_size=T_SIZE - 1),
)
def test_any_chunking_equals_one_call(kind: str, cuts: set[int]) -> None:
    params, prob = numpy_params(make_module(kind, True)), make_problem(kind, seed=3)
    full = reference_grads(kind, params, prob)
    chained = chained_backward(kind, params, prob, [0, *sorted(cuts), T_SIZE])
    for key in full:
        np.testing.assert_allclose(chained[key], full[key], rtol=0, atol=1e-12, err_msg=key)


# ----------------------------------------------------------------------------- 6. errors


@pytest.mark.parametrize("kind", KINDS)
def test_shape_errors_name_the_argument(kind: str) -> None:
    params, prob = numpy_params(make_module(kind, True)), make_problem(kind)
    state = state_of(kind, prob)
    with pytest.raises(ValueError, match=r"^x\b.*3-D"):
        reference.forward(kind, params, prob["x"][0], state)  # 2-D x
    with pytest.raises(ValueError, match=r"^h0\b.*\(3, 11\).*\(3, 10\)"):
        reference.forward(kind, params, prob["x"], (prob["h0"][:, :10], *state[1:]))
    with pytest.raises(ValueError, match=r"^h0\b.*\(3, 11\).*\(11, 3\)"):
        reference.forward(kind, params, prob["x"], (prob["h0"].T, *state[1:]))
    if kind == "lstm":
        with pytest.raises(ValueError, match=r"^c0\b"):
            reference.forward(kind, params, prob["x"], (prob["h0"], prob["c0"][:2]))
    with pytest.raises(ValueError, match=r"weight_ih_l0"):
        reference.forward(kind, params, prob["x"][..., :6], state)  # I mismatch
    bad = dict(params, bias_hh_l0=params["bias_hh_l0"][:-1])
    with pytest.raises(ValueError, match=r"bias_hh_l0"):
        reference.forward(kind, bad, prob["x"], state)
    with pytest.raises(ValueError, match=r"^state\b"):
        reference.forward(kind, params, prob["x"], (*state, prob["h0"]))
    _, cache = reference.forward(kind, params, prob["x"], state)
    with pytest.raises(ValueError, match=r"^d_outputs\b"):
        reference.backward(kind, params, cache, prob["w_out"][:-1])
    with pytest.raises(ValueError, match=r"^d_hT\b"):
        reference.backward(kind, params, cache, prob["w_out"], (prob["w_h"][:1], *state[1:]))


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError, match=r"^kind\b"):
        reference.forward("transformer", {}, np.zeros((1, 1, 1)), (np.zeros((1, 1)),))
