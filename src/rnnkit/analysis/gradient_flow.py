"""Gradient flow through time: ``||dL/dh_k||`` for every step k, and the step Jacobians' spectra.

The lecture's picture of vanishing and exploding gradients, measured. Backpropagation through
time multiplies the gradient by one state Jacobian ``ds_t/ds_{t-1}`` per step, so the gradient
that reaches the state k steps before the loss is a product of k Jacobians::

    dL/ds_k = (ds_{k+1}/ds_k)^T (ds_{k+2}/ds_{k+1})^T ... dL/ds_{L-1}   (+ direct terms)

Its norm against the distance ``L-1-k`` shows the decay (a tanh RNN), the near-constant carry of
an LSTM's cell state, and the singular values of each ``ds_t/ds_{t-1}`` say why (below 1:
vanishing; above 1: exploding).

What is here (torch + numpy only): the generic core :func:`state_gradients` and
:func:`step_jacobian_singular_values` over any ``step(x, state) -> state``; the front ends
:func:`layer_gradient_flow` (an rnnkit or torch.nn RNN/LSTM/GRU), :func:`lm_gradient_flow` (a
:class:`~rnnkit.models.language_model.LanguageModel`), :func:`run_gradient_flow` (a run
directory, before and after training) and :func:`fresh_gradient_flow` (an untrained model of a
cell); :func:`summary` and :func:`to_json`. What is not here: the pictures
(:mod:`rnnkit.analysis.gradient_plots`) and the command line (``rnnkit analyze gradients``).
Dropout is never applied: the probes show the network as evaluated. The probes run where the
model's parameters are (``device=`` for a run or a fresh model: built on the host, so the weights
and token windows are the same on every device, then moved); the norms come to the host in one
read, and the Jacobians' singular values one step at a time, for the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.nn.base import RecurrentLayer, State, torch_recurrence
from rnnkit.nn.unroll import scan

Step = Callable[[Tensor, State], State]
LOSSES = ("last", "sum")
VANISHED = 1e-3  # summary: the norm has "vanished" below this fraction of the last step's
_TORCH_MODES = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"),
                "LSTM": ("lstm", "tanh"), "GRU": ("gru", "tanh")}  # fmt: skip


class StateGradients(NamedTuple):
    """What :func:`state_gradients` returns."""

    norms: np.ndarray  # (L, S): ||dL/ds_k|| of each state tensor (h, then c), batch mean
    loss: float  # the value of loss_fn


class GradientFlow(NamedTuple):
    """Gradient norms through time and step-Jacobian spectra of one layer of one network.

    ``h_norm[k]`` is ``||dL/dh_k||`` (total derivative, through all later steps) for the state
    after step ``k``, the Euclidean norm per sequence averaged over the batch (``c_norm`` the
    same for the LSTM cell state, see :func:`state_gradients`); ``distance[k] =
    L-1-k`` is its distance from the last position (where the loss sits for ``loss="last"``;
    the same axis for ``loss="sum"``). ``jacobian_sv[j]`` are the singular values, descending,
    of ``ds_t/ds_{t-1}`` at step ``t = jacobian_steps[j]`` for the first sequence.
    """

    distance: np.ndarray  # (L,) L-1-k
    h_norm: np.ndarray  # (L,) ||dL/dh_k||
    c_norm: np.ndarray | None  # (L,) ||dL/dc_k|| for a cell with a cell state, else None
    jacobian_steps: np.ndarray  # (J,) the steps t whose Jacobian was taken
    jacobian_sv: np.ndarray  # (J, S) singular values, S = H (RNN/GRU) or 2H (LSTM); (J, 1),
    # the top one, for a state over JACOBIAN_LIMIT numbers (a modern layer's memory)
    cell: str  # the cell's registry name: "rnn", "lstm", "gru", "lnlstm", ...
    hidden: int  # H
    layer: int  # which layer (0 = the bottom one) the states belong to
    layers: int  # layers in the stack
    loss: str  # "last" or "sum"
    loss_value: float  # the loss per sequence, averaged over the batch
    batch: int  # N


# --------------------------------------------------------------------------- the core


def state_gradients(
    step: Step, xs: Tensor, state0: State, loss_fn: Callable[[list[State]], Tensor]
) -> StateGradients:
    """``||dL/ds_k||`` for k = 0..L-1 of every state tensor, by one backward pass.

    ``step(x_t, state) -> state`` with ``state`` a tuple of (N, H) tensors, ``(h,)`` or
    ``(h, c)``; ``xs`` (L, N, *) time-major; ``state0`` the state before step 0;
    ``loss_fn(states)`` a scalar from the L states after each step. The gradient is the *total*
    derivative with respect to the state at step k (through every later step), which
    ``torch.autograd.grad`` on the intermediate tensors gives. Each row n of ``dL/ds_k`` is
    normed and the norms averaged over the batch; for row n to be sequence n's own gradient,
    ``loss_fn`` should *sum* the per-sequence losses over the batch.

    For an LSTM, ``dL/dc_k`` is likewise the total derivative of the tensor ``c_k``: it
    includes the path through ``h_k = o_k * tanh(c_k)`` of the same step (the ``delta c`` of
    the BPTT equations, the constant error carousel), so it is non-zero at the last step too.
    ``dL/dh_k`` needs no such remark: ``h_k`` does not feed ``c_k``.
    """
    with torch.enable_grad():
        state = tuple(s.detach().clone().requires_grad_(True) for s in state0)
        states = []
        for t in range(xs.size(0)):
            state = tuple(step(xs[t], state))
            states.append(state)
        loss = loss_fn(states)
        flat = [s for st in states for s in st]
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, flat, allow_unused=True)
        else:  # the loss depends on no state
            grads = (None,) * len(flat)
    zero = loss.new_zeros((), dtype=torch.float64)
    norms = torch.stack([zero if g is None else g.detach().double().flatten(1).norm(dim=1).mean()
                         for g in grads])  # fmt: skip
    return StateGradients(norms.cpu().numpy().reshape(len(states), len(state0)), loss.item())


def step_jacobian_singular_values(
    step: Step, xs: Tensor, state0: State, steps: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Singular values of the state Jacobian ``ds_t/ds_{t-1}`` at the chosen steps.

    ``s`` is the whole state: ``h`` for an RNN or GRU, ``concat(h, c)`` for an LSTM, whose
    Jacobian is the full 2H x 2H matrix ``[[dh'/dh, dh'/dc], [dc'/dh, dc'/dc]]`` -- the matrix
    whose product over time decides whether gradients vanish or explode. Taken for the first
    sequence of the batch, with ``x_t`` fixed, at ``steps`` (default: ~20 evenly spaced steps
    of 0..L-1; step 0's Jacobian is with respect to ``state0``). Returns ``steps`` (J,) and the
    singular values (J, S), each row descending.
    """
    length = xs.size(0)
    chosen = default_steps(length, 20) if steps is None else np.asarray(steps, dtype=np.int64)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= length):
        raise UserError(f"steps must lie in [0, {length - 1}], got {chosen.tolist()}")
    sizes = [s.size(-1) for s in state0]
    before: dict[int, Tensor] = {}
    state = tuple(s[:1].detach() for s in state0)
    with torch.no_grad():
        for t in range(int(chosen.max()) + 1 if chosen.size else 0):
            before[t] = torch.cat([s[0] for s in state])  # (S,) the state s_{t-1}
            state = tuple(step(xs[t, :1], state))
    rows = []
    for t in chosen.tolist():
        x = xs[t, :1].detach()

        def f(s: Tensor, x: Tensor = x) -> Tensor:
            parts = tuple(p.unsqueeze(0) for p in torch.split(s, sizes))  # each (1, H)
            return torch.cat([p[0] for p in step(x, parts)])  # (S,)

        with torch.enable_grad():
            if sum(sizes) > JACOBIAN_LIMIT:  # a modern layer's memory: the top value only
                rows.append(np.array([_top_singular_value(f, before[t])]))
                continue
            jacobian = torch.autograd.functional.jacobian(f, before[t], vectorize=True)  # (S, S)
        rows.append(torch.linalg.svdvals(jacobian.detach().double()).cpu().numpy())
    sv = np.stack(rows) if rows else np.zeros((0, min(sum(sizes), JACOBIAN_LIMIT)))
    return chosen, sv


#: the largest state whose whole Jacobian (S x S) is built; past it (a modern layer's memory:
#: tens of thousands of numbers) only the top singular value is found, by power iteration
JACOBIAN_LIMIT = 4096


def _top_singular_value(f, s: Tensor, iterations: int = 40) -> float:
    """The largest singular value of ``df/ds`` at s, by power iteration on J^T J with one
    Jacobian-vector and one vector-Jacobian product per round (the matrix is never built)."""
    v = torch.randn(s.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = (v / v.norm()).to(s)
    for _ in range(iterations):
        _, jv = torch.autograd.functional.jvp(f, s, v)
        _, w = torch.autograd.functional.vjp(f, s, jv)  # J^T J v
        if not float(w.norm()) > 0:
            return 0.0
        v = w / w.norm()
    _, jv = torch.autograd.functional.jvp(f, s, v)
    return float(jv.double().norm())


def default_steps(length: int, count: int) -> np.ndarray:
    """``count`` (at most ``length``) evenly spaced steps of 0..length-1, ends included."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(np.int64))


# --------------------------------------------------------------------------- front ends


def layer_gradient_flow(
    layer: nn.Module,
    x: Tensor,
    *,
    layer_index: int = -1,
    loss: str = "last",
    seed: int = 0,
    jacobian_steps: int = 20,
) -> GradientFlow:
    """Gradient flow of a bare rnnkit or torch.nn RNN/LSTM/GRU (unidirectional, no projection).

    ``x`` is (L, N, H_in), or (N, L, H_in) for a ``batch_first`` layer; the stack runs from zero
    states through the layer's step functions
    (:meth:`rnnkit.nn.base.RecurrentLayer.step_function`). The loss is a fixed random unit vector
    ``u`` (seeded by ``seed``) dotted with the top layer's output at the last step
    (``loss="last"``) or summed over steps (``"sum"``), summed over the batch. The gradients are
    with respect to the states of layer ``layer_index`` (default the top one).
    """
    steps, cell, sizes = _layer_steps(layer)
    _check_loss(loss)
    if x.dim() != 3 or x.size(-1) != layer.input_size:
        shape = tuple(x.shape)
        raise UserError(f"x must be 3-D with {layer.input_size} features, got shape {shape}")
    xs = x.transpose(0, 1) if layer.batch_first else x  # (L, N, H_in)
    weight = next(layer.parameters())
    xs = xs.to(dtype=weight.dtype, device=weight.device)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(layer.hidden_size, generator=g, dtype=torch.float64)
    u = (u / u.norm()).to(xs)  # (H,)

    def readout(y: Tensor) -> Tensor:  # y (L, N, H) -> a scalar
        projected = y @ u  # (L, N)
        return projected[-1].sum() if loss == "last" else projected.sum()

    return _stack_flow(steps, xs, cell, sizes, layer_index, loss, readout,
                       jacobian_steps)  # fmt: skip


def lm_gradient_flow(
    model: nn.Module,
    idx: Tensor,
    *,
    loss: str = "last",
    layer_index: int = -1,
    jacobian_steps: int = 20,
) -> GradientFlow:
    """Gradient flow of a :class:`~rnnkit.models.language_model.LanguageModel`.

    ``idx`` (N, L+1) token ids: inputs ``idx[:, :-1]``, targets ``idx[:, 1:]``. The loss is the
    cross-entropy at the last position (``loss="last"``) or summed over the L positions
    (``"sum"``), summed over the batch (``loss_value`` is per sequence, i.e. for ``"last"`` the
    model's own mean cross-entropy at the last position). Embedding -> the stack's step
    functions -> ``model.head``, without dropout. Per-layer sizes (``--hidden 30,20``) and the
    adaptive softmax are refused in one line.
    """
    from rnnkit.models.lm_layers import refuse_uneven

    _check_loss(loss)
    refuse_uneven(model.config, "gradient flow")  # one size per layer, a linear head
    if idx.dim() != 2 or idx.size(1) < 2:
        raise UserError(f"idx must be (N, L+1) token ids with L >= 1, got shape {tuple(idx.shape)}")
    vocab_size = model.head.out_features
    if idx.min() < 0 or idx.max() >= vocab_size:
        got = f"{idx.min().item()}..{idx.max().item()}"
        raise UserError(f"token ids must lie in [0, {vocab_size - 1}], got {got}")
    steps, cell, sizes = _layer_steps(model.rnn)
    inputs, targets = idx[:, :-1].t(), idx[:, 1:].t()  # (L, N) each
    with torch.no_grad():
        xs = model.embedding(inputs.to(model.head.weight.device))  # (L, N, E)
    targets = targets.to(xs.device)

    def readout(y: Tensor) -> Tensor:  # y (L, N, H) -> a scalar
        logits = model.head(y)  # (L, N, V)
        if loss == "last":
            return F.cross_entropy(logits[-1], targets[-1], reduction="sum")
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")

    return _stack_flow(steps, xs, cell, sizes, layer_index, loss, readout,
                       jacobian_steps)  # fmt: skip


def _stack_flow(steps, xs, cell, sizes, layer_index, loss, readout, jacobian_steps):
    """Run the layers below ``layer_index`` (no gradient), probe that layer, with the layers
    above and ``readout`` inside the loss; ``sizes`` are the state tensors' (h, then c)."""
    layers = len(steps)
    if not -layers <= layer_index < layers:
        raise UserError(f"--layer must be in [{-layers}, {layers - 1}], got {layer_index}")
    layer = layer_index % layers
    n = xs.size(1)
    zeros = tuple(xs.new_zeros(n, size) for size in sizes)
    with torch.no_grad():
        for step in steps[:layer]:
            xs, _ = scan(step, xs, zeros)  # (L, N, H)

    def loss_fn(states: list[State]) -> Tensor:
        y = torch.stack([s[0] for s in states])  # (L, N, H)
        for step in steps[layer + 1 :]:
            y, _ = scan(step, y, zeros)
        return readout(y)

    grads = state_gradients(steps[layer], xs, zeros, loss_fn)
    chosen = default_steps(xs.size(0), jacobian_steps)
    jac_steps, sv = step_jacobian_singular_values(steps[layer], xs, zeros, chosen)
    length = xs.size(0)
    norms = grads.norms  # (L, 1 or 2)
    c_norm = norms[:, 1] if len(sizes) > 1 else None
    return GradientFlow(np.arange(length - 1, -1, -1), norms[:, 0], c_norm, jac_steps, sv,
                        cell, sizes[0], layer, layers, loss, grads.loss / n, n)  # fmt: skip


def _layer_steps(layer: nn.Module) -> tuple[list[Step], str, tuple[int, ...]]:
    """One step function per depth of an rnnkit recurrent layer or a torch.nn RNN/LSTM/GRU,
    its cell's name and the sizes of its state tensors (h, then c if any). A module that reads
    as one (AWD-LSTM's ``WeightDrop`` and ``LayerStack``: ``step_function`` and ``state_spec``
    of the layer they hold) is probed the same way, with its weights as trained (undropped)."""
    if isinstance(layer, RecurrentLayer) or _reads_as_recurrent(layer):
        cell, sizes = layer.cell, layer.state_spec().sizes
        make = layer.step_function
    elif isinstance(layer, nn.RNNBase) and layer.mode in _TORCH_MODES:
        cell, nonlinearity = _TORCH_MODES[layer.mode]
        sizes = (layer.hidden_size,) * (2 if cell == "lstm" else 1)

        def make(depth: int) -> Step:
            project, recur = torch_recurrence(layer, cell, nonlinearity, depth)
            return lambda x, state: recur(project(x), state)

    elif isinstance(layer, nn.RNNBase):
        raise UserError(f"unsupported torch.nn recurrent mode {layer.mode!r}")
    else:
        raise UserError(f"expected an rnnkit recurrent layer or a torch.nn RNN, LSTM or GRU, "
                        f"got {type(layer).__name__}")  # fmt: skip
    if layer.bidirectional:
        raise UserError(
            "bidirectional layers are not supported: dL/dh_k is defined along one direction"
        )
    if getattr(layer, "proj_size", 0):
        raise UserError(f"LSTM with proj_size={layer.proj_size} is not supported (use proj_size=0)")
    return [make(depth) for depth in range(layer.num_layers)], cell, sizes


def _reads_as_recurrent(layer: nn.Module) -> bool:
    return all(hasattr(layer, name) for name in ("step_function", "state_spec", "cell"))


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise UserError(f"--loss must be one of {LOSSES}, got {loss!r}")


# --------------------------------------------------------------------------- models and runs


def run_gradient_flow(
    path: str,
    *,
    text: str | None = None,
    length: int = 100,
    batch: int = 16,
    loss: str = "last",
    seed: int = 0,
    layer_index: int = -1,
    jacobian_steps: int = 20,
    device: torch.device | str = "cpu",
) -> dict[str, GradientFlow]:
    """``{"before": ..., "after": ...}`` for the language model of a run directory/checkpoint.

    "after" is the trained model; "before" a freshly initialised one of the same config
    (``torch.manual_seed(config.train.seed)`` then built, as training starts). Both read the
    same ``batch`` windows of ``length + 1`` tokens at seeded random offsets of ``text`` (the
    text itself; default the last 10% of the bundled Tiny Shakespeare, the default validation
    split), encoded with the run's vocabulary. Both models run on ``device``.
    """
    _check_window(length, batch, loss)
    from rnnkit.models.language_model import LanguageModel
    from rnnkit.tasks.saved import load_model

    model, vocab, config = load_model(path, device)
    if text is None:
        from rnnkit.data.corpus import BUNDLED

        text = BUNDLED.read_text(encoding="utf-8")
        text = text[len(text) - round(0.1 * len(text)) :]
    if vocab.kind == "char" and (missing := sorted(set(text) - set(vocab.symbols))):
        listed = ", ".join(repr(c) for c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"the text (--text) has characters not in the run's vocabulary: "
                        f"{listed}{more}")  # fmt: skip
    tokens = vocab.encode(text)
    if len(tokens) < length + 1:
        raise UserError(f"--length {length} needs a text of at least {length + 1} tokens, "
                        f"got {len(tokens)}")  # fmt: skip
    idx = _windows(tokens, length, batch, seed)
    with torch.random.fork_rng():
        torch.manual_seed(config.train.seed)
        fresh = LanguageModel(config.model).eval().to(device)  # built on the host, as trained
    options = {"loss": loss, "layer_index": layer_index, "jacobian_steps": jacobian_steps}
    return {
        "before": lm_gradient_flow(fresh, idx, **options),
        "after": lm_gradient_flow(model.eval(), idx, **options),
    }


def fresh_gradient_flow(
    cell: str,
    *,
    length: int = 100,
    batch: int = 16,
    loss: str = "last",
    seed: int = 0,
    layer_index: int = -1,
    jacobian_steps: int = 20,
    device: torch.device | str = "cpu",
    **model: Any,
) -> GradientFlow:
    """Gradient flow of an untrained LanguageModel of ``cell`` (built after
    ``torch.manual_seed(seed)``) on ``batch`` sequences of uniformly random tokens (seeded):
    the "before training" picture without a run, to compare rnn / lstm / gru.

    ``model`` overrides :class:`~rnnkit.config.ModelConfig` fields; the defaults here are one
    layer of ``hidden=128``, ``embed=64``, ``vocab_size=65`` (Tiny Shakespeare's characters),
    e.g. ``forget_bias=1.0``, ``init="orthogonal"``, ``nonlinearity="relu"``. The model and the
    tokens are made on the host (the same on every device), then run on ``device``.
    """
    _check_window(length, batch, loss)
    from rnnkit.config import ModelConfig
    from rnnkit.models.language_model import LanguageModel

    config = ModelConfig(**{"hidden": 128, "embed": 64, "vocab_size": 65, "layers": 1,
                            **model, "cell": cell})  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lm = LanguageModel(config).eval().to(device)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(config.vocab_size, (batch, length + 1), generator=g)  # (N, L+1)
    return lm_gradient_flow(lm, idx, loss=loss, layer_index=layer_index,
                            jacobian_steps=jacobian_steps)  # fmt: skip


def _check_window(length: int, batch: int, loss: str) -> None:
    if length < 2:
        raise UserError(f"--length must be an integer >= 2, got {length!r}")
    if batch < 1:
        raise UserError(f"--batch must be a positive integer, got {batch!r}")
    _check_loss(loss)


def _windows(tokens: np.ndarray, length: int, batch: int, seed: int) -> Tensor:
    """``batch`` windows of ``length + 1`` tokens at seeded random offsets: (N, L+1)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(tokens) - length, size=batch)  # the last start is len-L-1
    return torch.from_numpy(np.asarray(tokens)[starts[:, None] + np.arange(length + 1)]).long()


# --------------------------------------------------------------------------- summaries


def summary(flow: GradientFlow) -> dict[str, Any]:
    """JSON-ready numbers: ``h_ratio`` = ``||dL/dh_0|| / ||dL/dh_{L-1}||``, ``h_vanish_distance``
    = the smallest distance where the norm is below 1e-3 of the last step's (None if never),
    the same for c (None without a cell state), and the median / max top singular value."""
    result: dict[str, Any] = {
        "cell": flow.cell, "hidden": flow.hidden, "layer": flow.layer, "layers": flow.layers,
        "loss": flow.loss, "length": len(flow.distance), "batch": flow.batch,
        "loss_value": _finite(flow.loss_value),
    }  # fmt: skip
    for name, norms in (("h", flow.h_norm), ("c", flow.c_norm)):
        ratio = vanish = None
        if norms is not None and norms[-1] > 0:
            ratio = _finite(norms[0] / norms[-1])
            below = flow.distance[norms < VANISHED * norms[-1]]
            vanish = int(below.min()) if below.size else None
        result[f"{name}_ratio"], result[f"{name}_vanish_distance"] = ratio, vanish
    top = flow.jacobian_sv[:, 0] if flow.jacobian_sv.size else None
    result["top_sv_median"] = None if top is None else _finite(np.median(top))
    result["top_sv_max"] = None if top is None else _finite(top.max())
    return result


def to_json(flow: GradientFlow) -> dict[str, Any]:
    """The whole flow as a JSON-ready dict (``json.dumps`` it): the summary and every array."""
    return {
        "summary": summary(flow),
        "distance": flow.distance.tolist(),
        "h_norm": [_finite(v) for v in flow.h_norm],
        "c_norm": None if flow.c_norm is None else [_finite(v) for v in flow.c_norm],
        "jacobian_steps": flow.jacobian_steps.tolist(),
        "jacobian_sv": [[_finite(v) for v in row] for row in flow.jacobian_sv],
    }


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
