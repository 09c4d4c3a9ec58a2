"""Independent NumPy oracle for single-layer, single-direction, batched recurrent nets.

This module is a NumPy-only, float64 implementation of the forward pass and of an
explicit, hand-written backward pass (backpropagation through time, BPTT) for a
tanh RNN, an LSTM and a GRU. It exists to check other implementations against, so
it deliberately imports nothing but NumPy (never torch, never the rest of rnnkit).

Conventions are exactly those of ``torch.nn.RNN`` / ``torch.nn.LSTM`` /
``torch.nn.GRU`` with ``num_layers=1``, ``bidirectional=False``, ``batch_first=False``:

* ``params`` maps torch's single-layer names to arrays: ``weight_ih_l0`` (G*H, I),
  ``weight_hh_l0`` (G*H, H) and optionally ``bias_ih_l0`` / ``bias_hh_l0`` (G*H,),
  with G = 1 (RNN), 4 (LSTM, gate order i, f, g, o) or 3 (GRU, gate order r, z, n).
  A missing bias means "no bias"; no gradient is returned for it.
* ``x`` is time-major (T, N, I); hidden/cell states are (N, H); outputs (T, N, H).

Backward conventions:

* ``d_outputs`` (T, N, H) is dL/dh_t for every step (a loss at every step, summed).
* ``d_hT`` / ``d_cT`` (N, H) is extra gradient on the final state, e.g. coming back
  from a later chunk of the sequence; ``None`` means zero.
* The gradients of the shared weights are ACCUMULATED (``+=``) over the time steps,
  the "accumulate the gradient" rule: the same matrix is used at every step, so its
  total gradient is the sum of the per-step contributions.
* The gradient with respect to the initial state is returned too (``"h0"`` and, for
  the LSTM, ``"c0"``), so that chunks chain exactly like truncated BPTT: feed a later
  chunk's ``"h0"``/``"c0"`` gradient as the earlier chunk's ``d_hT``/``d_cT``.

The returned gradient dict has the same parameter keys as ``params`` plus
``"input"`` (T, N, I), ``"h0"`` (N, H) and, for the LSTM, ``"c0"`` (N, H).
The final state of a forward pass is ``cache.final_state``: ``(h_T,)`` for RNN/GRU,
``(h_T, c_T)`` for the LSTM (``c_T`` is also ``cache.c[-1]``).
"""

# No ``from __future__ import annotations``: with string annotations, ``@dataclass`` looks the
# module up in ``sys.modules``, which breaks loading this file standalone by path.
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Params = Mapping[str, np.ndarray]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_W_IH, _W_HH, _B_IH, _B_HH = "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"


@dataclass
class Cache:
    """What the backward pass needs from the forward pass (all float64).

    Attributes:
        kind: "rnn", "lstm" or "gru".
        x: the input, (T, N, I).
        h: hidden states, (T+1, N, H); ``h[0]`` is h0 and ``h[t+1]`` is the output of step t.
        gates: post-activation gates, LSTM (T, N, 4H) as (i, f, g, o), GRU (T, N, 3H) as
            (r, z, n); the RNN needs only ``h``, so its ``gates`` is empty, (T, N, 0).
        c: LSTM cell states, (T+1, N, H) with ``c[0]`` = c0; ``None`` otherwise.
        hn: GRU only, ``W_hn h_{t-1} + b_hn`` per step, (T, N, H); ``None`` otherwise.
    """

    kind: str
    x: np.ndarray
    h: np.ndarray
    gates: np.ndarray
    c: np.ndarray | None = None
    hn: np.ndarray | None = None

    @property
    def outputs(self) -> np.ndarray:
        """All step outputs h_1..h_T, (T, N, H)."""
        return self.h[1:]

    @property
    def final_state(self) -> tuple[np.ndarray, ...]:
        """(h_T,) for RNN/GRU, (h_T, c_T) for the LSTM; each (N, H)."""
        if self.c is not None:
            return (self.h[-1], self.c[-1])
        return (self.h[-1],)


# ----------------------------------------------------------------------------- helpers


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function, written via tanh so it never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _f64(a: np.ndarray) -> np.ndarray:
    """Convert to a float64 array (no copy when already float64)."""
    return np.asarray(a, dtype=np.float64)


def _check_shape(a: np.ndarray, expected: tuple[int, ...], name: str) -> None:
    if a.shape != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {a.shape}")


def _weights(params: Params, kind: str, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Validate ``x`` (T, N, I) and ``params``; return (W_ih, W_hh, b_ih, b_hh) in float64.

    A missing bias is returned as a zero vector (its gradient is then not reported).
    """
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D array of shape (T, N, I), got shape {x.shape}")
    for key in (_W_IH, _W_HH):
        if key not in params:
            raise ValueError(f"params: missing required key {key!r}")
    g = _GATES[kind]
    w_hh = _f64(params[_W_HH])
    if w_hh.ndim != 2 or w_hh.shape[0] != g * w_hh.shape[1]:
        raise ValueError(f"params[{_W_HH!r}]: expected shape ({g}*H, H), got {w_hh.shape}")
    gh, i_size = w_hh.shape[0], x.shape[2]
    w_ih = _f64(params[_W_IH])
    _check_shape(w_ih, (gh, i_size), f"params[{_W_IH!r}] (x has I={i_size})")
    biases = []
    for key in (_B_IH, _B_HH):
        b = _f64(params[key]) if key in params else np.zeros(gh)
        _check_shape(b, (gh,), f"params[{key!r}]")
        biases.append(b)
    return w_ih, w_hh, biases[0], biases[1]


def _state(a: np.ndarray, n: int, h: int, name: str) -> np.ndarray:
    """Validate a state (N, H) and convert it to float64."""
    a = _f64(a)
    _check_shape(a, (n, h), name)
    return a


def _grad_seed(d: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    """The incoming gradient ``d`` as float64 (zeros when ``None``), shape-checked."""
    if d is None:
        return np.zeros(shape)
    d = np.array(d, dtype=np.float64)  # a copy: we never modify caller arrays
    _check_shape(d, shape, name)
    return d


def _zero_grads(params: Params, x: np.ndarray) -> dict[str, np.ndarray]:
    """Zero accumulators for every parameter present in ``params`` plus the input."""
    grads = {k: np.zeros(np.shape(params[k])) for k in (_W_IH, _W_HH, _B_IH, _B_HH) if k in params}
    grads["input"] = np.zeros_like(x)
    return grads


def _accumulate(
    grads: dict[str, np.ndarray],
    da_i: np.ndarray,
    da_h: np.ndarray,
    x_t: np.ndarray,
    h_prev: np.ndarray,
) -> None:
    """Add one step's contribution to the shared-weight gradients (the ``+=`` rule).

    ``da_i`` / ``da_h`` (N, G*H) are dL/d(pre-activations) of the input-side and
    hidden-side affine maps ``W_ih x_t + b_ih`` and ``W_hh h_{t-1} + b_hh``.
    """
    grads[_W_IH] += da_i.T @ x_t  # dL/dW_ih: (G*H, N) @ (N, I)
    grads[_W_HH] += da_h.T @ h_prev  # dL/dW_hh: (G*H, N) @ (N, H)
    if _B_IH in grads:
        grads[_B_IH] += da_i.sum(axis=0)  # dL/db_ih: sum over the batch
    if _B_HH in grads:
        grads[_B_HH] += da_h.sum(axis=0)  # dL/db_hh: sum over the batch


# ----------------------------------------------------------------------------- RNN


def rnn_forward(params: Params, x: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, Cache]:
    """tanh RNN forward. x (T, N, I), h0 (N, H) -> (outputs (T, N, H), cache)."""
    x = _f64(x)
    w_ih, w_hh, b_ih, b_hh = _weights(params, "rnn", x)
    t_len, n = x.shape[:2]
    h = np.empty((t_len + 1, n, w_hh.shape[1]))
    h[0] = _state(h0, n, w_hh.shape[1], "h0")
    for t in range(t_len):
        h[t + 1] = np.tanh(x[t] @ w_ih.T + b_ih + h[t] @ w_hh.T + b_hh)
    return h[1:].copy(), Cache("rnn", x, h, gates=np.empty((t_len, n, 0)))


def rnn_backward(
    params: Params, cache: Cache, d_outputs: np.ndarray, d_hT: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """tanh RNN BPTT. d_outputs (T, N, H), d_hT (N, H) or None -> grads dict."""
    x, h = cache.x, cache.h
    w_ih, w_hh, _, _ = _weights(params, "rnn", x)
    d_outputs = _grad_seed(d_outputs, h[1:].shape, "d_outputs")
    dh_next = _grad_seed(d_hT, h[0].shape, "d_hT")  # dL/dh_t from the future
    grads = _zero_grads(params, x)
    for t in reversed(range(x.shape[0])):
        dh = d_outputs[t] + dh_next  # total dL/dh_t: this step's loss + the future
        da = dh * (1.0 - h[t + 1] ** 2)  # through tanh: dL/d(pre-activation)
        _accumulate(grads, da, da, x[t], h[t])  # shared weights: +=
        grads["input"][t] = da @ w_ih  # dL/dx_t
        dh_next = da @ w_hh  # dL/dh_{t-1}, carried to the previous step
    grads["h0"] = dh_next
    return grads


# ----------------------------------------------------------------------------- LSTM


def lstm_forward(
    params: Params, x: np.ndarray, h0: np.ndarray, c0: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """LSTM forward. x (T, N, I), h0 (N, H), c0 (N, H) -> (outputs (T, N, H), cache).

    The final cell state is ``cache.c[-1]`` (also ``cache.final_state[1]``).
    """
    x = _f64(x)
    w_ih, w_hh, b_ih, b_hh = _weights(params, "lstm", x)
    t_len, n = x.shape[:2]
    hs = w_hh.shape[1]
    h, c = np.empty((t_len + 1, n, hs)), np.empty((t_len + 1, n, hs))
    h[0], c[0] = _state(h0, n, hs, "h0"), _state(c0, n, hs, "c0")
    gates = np.empty((t_len, n, 4 * hs))
    for t in range(t_len):
        a = x[t] @ w_ih.T + b_ih + h[t] @ w_hh.T + b_hh
        i, f, g, o = np.split(a, 4, axis=1)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c[t + 1] = f * c[t] + i * g
        h[t + 1] = o * np.tanh(c[t + 1])
        gates[t] = np.concatenate([i, f, g, o], axis=1)
    return h[1:].copy(), Cache("lstm", x, h, gates=gates, c=c)


def lstm_backward(
    params: Params,
    cache: Cache,
    d_outputs: np.ndarray,
    d_hT: np.ndarray | None = None,
    d_cT: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """LSTM BPTT. d_outputs (T, N, H), d_hT / d_cT (N, H) or None -> grads dict."""
    x, h, c = cache.x, cache.h, cache.c
    w_ih, w_hh, _, _ = _weights(params, "lstm", x)
    d_outputs = _grad_seed(d_outputs, h[1:].shape, "d_outputs")
    dh_next = _grad_seed(d_hT, h[0].shape, "d_hT")  # dL/dh_t from the future
    dc_next = _grad_seed(d_cT, h[0].shape, "d_cT")  # dL/dc_t from the future
    grads = _zero_grads(params, x)
    for t in reversed(range(x.shape[0])):
        i, f, g, o = np.split(cache.gates[t], 4, axis=1)
        tc = np.tanh(c[t + 1])
        dh = d_outputs[t] + dh_next  # total dL/dh_t
        do = dh * tc  # h = o * tanh(c)  ->  dL/do
        dc = dc_next + dh * o * (1.0 - tc**2)  # total dL/dc_t: future + through h_t
        di = dc * g  # c = f*c_prev + i*g  ->  dL/di
        df = dc * c[t]  # dL/df
        dg = dc * i  # dL/dg
        da = np.concatenate(  # through the activations: dL/d(pre-activation gates)
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1
        )
        _accumulate(grads, da, da, x[t], h[t])  # shared weights: +=
        grads["input"][t] = da @ w_ih  # dL/dx_t
        dh_next = da @ w_hh  # dL/dh_{t-1}
        dc_next = dc * f  # dL/dc_{t-1}
    grads["h0"], grads["c0"] = dh_next, dc_next
    return grads


# ----------------------------------------------------------------------------- GRU


def gru_forward(params: Params, x: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, Cache]:
    """GRU forward (torch's candidate). x (T, N, I), h0 (N, H) -> (outputs (T, N, H), cache)."""
    x = _f64(x)
    w_ih, w_hh, b_ih, b_hh = _weights(params, "gru", x)
    t_len, n = x.shape[:2]
    hs = w_hh.shape[1]
    h = np.empty((t_len + 1, n, hs))
    h[0] = _state(h0, n, hs, "h0")
    gates, hn = np.empty((t_len, n, 3 * hs)), np.empty((t_len, n, hs))
    for t in range(t_len):
        ai_r, ai_z, ai_n = np.split(x[t] @ w_ih.T + b_ih, 3, axis=1)
        ah_r, ah_z, hn[t] = np.split(h[t] @ w_hh.T + b_hh, 3, axis=1)
        r = _sigmoid(ai_r + ah_r)
        z = _sigmoid(ai_z + ah_z)
        cand = np.tanh(ai_n + r * hn[t])
        h[t + 1] = (1.0 - z) * cand + z * h[t]
        gates[t] = np.concatenate([r, z, cand], axis=1)
    return h[1:].copy(), Cache("gru", x, h, gates=gates, hn=hn)


def gru_backward(
    params: Params, cache: Cache, d_outputs: np.ndarray, d_hT: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """GRU BPTT. d_outputs (T, N, H), d_hT (N, H) or None -> grads dict."""
    x, h, hn = cache.x, cache.h, cache.hn
    w_ih, w_hh, _, _ = _weights(params, "gru", x)
    d_outputs = _grad_seed(d_outputs, h[1:].shape, "d_outputs")
    dh_next = _grad_seed(d_hT, h[0].shape, "d_hT")  # dL/dh_t from the future
    grads = _zero_grads(params, x)
    for t in reversed(range(x.shape[0])):
        r, z, cand = np.split(cache.gates[t], 3, axis=1)
        dh = d_outputs[t] + dh_next  # total dL/dh_t
        dcand = dh * (1.0 - z)  # h = (1-z)*n + z*h_prev  ->  dL/dn
        dz = dh * (h[t] - cand)  # dL/dz
        dh_prev = dh * z  # direct path to h_{t-1}
        da_n = dcand * (1.0 - cand**2)  # through tanh: dL/d(W_in x + b_in + r*hn)
        da_r = da_n * hn[t] * r * (1.0 - r)  # through r*hn and sigmoid
        da_z = dz * z * (1.0 - z)  # through sigmoid
        d_hn = da_n * r  # dL/d(W_hn h_prev + b_hn)
        da_i = np.concatenate([da_r, da_z, da_n], axis=1)  # input-side pre-activations
        da_h = np.concatenate([da_r, da_z, d_hn], axis=1)  # hidden-side pre-activations
        _accumulate(grads, da_i, da_h, x[t], h[t])  # shared weights: +=
        grads["input"][t] = da_i @ w_ih  # dL/dx_t
        dh_next = dh_prev + da_h @ w_hh  # dL/dh_{t-1}: direct + through the gates
    grads["h0"] = dh_next
    return grads


# ----------------------------------------------------------------------------- dispatch


def forward(
    kind: str, params: Params, x: np.ndarray, state: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, Cache]:
    """Dispatch on ``kind`` in {"rnn", "lstm", "gru"}; ``state`` is (h0,) or (h0, c0)."""
    fns = {"rnn": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
    if kind not in fns:
        raise ValueError(f"kind: expected one of {sorted(fns)}, got {kind!r}")
    expected = 2 if kind == "lstm" else 1
    if len(state) != expected:
        raise ValueError(f"state: expected a tuple of {expected} array(s), got {len(state)}")
    return fns[kind](params, x, *state)


def backward(
    kind: str,
    params: Params,
    cache: Cache,
    d_outputs: np.ndarray,
    d_state: tuple[np.ndarray | None, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Dispatch on ``kind``; ``d_state`` is (d_hT,) or (d_hT, d_cT), or None for zeros."""
    fns = {"rnn": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}
    if kind not in fns:
        raise ValueError(f"kind: expected one of {sorted(fns)}, got {kind!r}")
    return fns[kind](params, cache, d_outputs, *(d_state or ()))
