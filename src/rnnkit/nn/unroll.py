"""The cells path: the equations of ``cells.py`` unrolled through time, layer by layer.

What is here: ``unroll`` runs any stacked, optionally bidirectional
:class:`~rnnkit.nn.base.RecurrentLayer` over a padded, time-major batch. Each (layer,
direction) is the layer's :class:`~rnnkit.nn.base.Recurrence`: its input projection ``W_ih x_t
+ b_ih`` is computed for a block of steps in one matrix product (:data:`PROJECT_BLOCK`), and
only the recurrence (:func:`rnnkit.nn.cells.lstm_recur`, ...) is stepped one step at a time.
Variable lengths are handled the way the lecture's "variable depth" puts it: at step t only the
sequences still running are computed (the batch sorted longest first, the step applied to its
first ``active[t]`` rows, as a PackedSequence's ``batch_sizes`` say); past a sequence's end its
state is held and its output is zero, and the reverse direction reads each sequence backwards
within its own length. The regularisers that live inside the recurrence are here too: zoneout
(Krueger et al. 2016) and variational -- recurrent and input -- dropout (Gal & Ghahramani
2016).

Compiled steps (:func:`compile_steps`): on a layer switched by it, each (layer, direction)'s
``recur`` -- the per-step elementwise work: W_hh h, the gates' activations, the cell update -- runs
through ``torch.compile`` (inductor), which on CUDA fuses it into a few kernels instead of one
launch per operation; the projection, the masks and zoneout stay eager. The switch is a plain
attribute (``compile_step = True``), so it costs nothing in ``state_dict``, survives
``load_state_dict``, ``.to``, deepcopy and pickling, and the compiled step reads the layer's
parameters afresh on every call (a loaded or moved layer computes with its new weights).
``torch.compile`` caches by the code object of ``recur`` and guards (shapes, dtypes, devices,
requires_grad), so the first forward compiles and later ones reuse the graphs -- a few per cell
(the first step's state needs no gradient, later ones do; a batch shrunk to one row by
``lengths`` is specialised); each cell's ``recur`` has its own code and its own cache. Fused-path
layers (torch's kernels: cuDNN on CUDA) and MinGRU/MinLSTM (their own scan) are left alone. The
compiled step computes the plain step's numbers to rounding (``tests/test_compile_steps.py``);
:func:`compile_unavailable` says why ``torch.compile`` cannot run here, if it cannot.

What is not here: the cells (``base.py`` binds them to a layer's weights), argument checks
(``checks.py``), PackedSequence and batch_first conversion (the layers).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import RecurrentLayer, State

Inputs = Tensor | tuple[Tensor, ...]  # what a step reads at time t: x_t, or (x_t, masks_t...)


def unroll(
    layer: RecurrentLayer, x: Tensor, hx: State, lengths: Tensor | None
) -> tuple[Tensor, State]:
    """Run ``layer``'s cells over ``x`` (L, N, H_in) from ``hx`` (each (D*num_layers, N, *)).

    Each (layer, direction) is the layer's :meth:`~rnnkit.nn.base.RecurrentLayer.recurrence`. The
    layer's ``zoneout`` (one rate per state tensor), ``recurrent_dropout`` and ``input_dropout``
    apply as in :func:`regularised`. Returns the top layer's output (L, N, D*H_out) and the final
    states, stacked like ``hx``.
    """
    directions = layer.num_directions
    finals: list[State] = []
    for depth in range(layer.num_layers):
        outputs = []
        for direction in range(directions):
            project, recur = layer.recurrence(depth, direction)
            recur = _compiled(recur) if getattr(layer, "compile_step", False) else recur
            state = tuple(s[depth * directions + direction] for s in hx)
            inputs = x if direction == 0 else reverse(x, lengths)
            if layer.input_dropout and layer.training:  # one mask per sequence for all steps
                inputs = inputs * _dropout_mask(inputs[0].shape, layer.input_dropout, inputs)
            step, masks = regularised(recur, state, inputs.size(0), layer)
            inputs = (inputs, *masks) if masks else inputs
            out, state = scan(step, inputs, state, lengths, project)  # W_ih x: a block at a time
            outputs.append(out if direction == 0 else reverse(out, lengths))
            finals.append(state)
        x = torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]  # (L, N, D*H_out)
        if layer.dropout and layer.training and depth < layer.num_layers - 1:
            x = F.dropout(x, layer.dropout, training=True)  # between layers, not after the last
    return x, tuple(torch.stack(s) for s in zip(*finals, strict=True))


def compile_steps(module: nn.Module) -> int:
    """Switch every recurrent layer inside ``module`` (itself included) that runs the cells path
    to compiled steps (see the module docstring); return how many layers are switched. Layers on
    the fused path and MinGRU/MinLSTM are not touched. Nothing compiles until the first forward.
    """
    switched = 0
    for layer in module.modules():
        if isinstance(layer, RecurrentLayer) and getattr(layer, "use_fused", True) is False:
            layer.compile_step = True
            switched += 1
    return switched


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot run the compiled steps here, or None where it can: dynamo
    unsupported on this Python/platform, or no C++ compiler for inductor's CPU kernels."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile (dynamo) does not support this Python or platform"
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        return "torch.compile's inductor needs a C++ compiler (g++, c++ or clang++) on PATH"
    return None


def _compiled(recur: Callable[..., State]) -> Callable[..., State]:
    """``recur`` run by ``torch.compile``, its state handed over as a plain tuple (an LSTM's
    first state is a tuple and later ones ``LSTMState``: one graph, not two). Dynamic shapes
    from the start: with ``lengths`` the rows still running shrink step by step, and a static
    graph would be compiled again for them (torch still specialises a batch of 1)."""
    compiled = torch.compile(recur, dynamic=True)

    def step(x: Tensor, state: State, h_mask: Tensor | None = None) -> State:
        return compiled(x, tuple(state), h_mask)

    return step


def regularised(
    recur: Callable[..., State], state: State, steps: int, layer: RecurrentLayer
) -> tuple[Callable[[Inputs, State], State], tuple[Tensor, ...]]:
    """``recur`` with the layer's zoneout and recurrent dropout, as a step for :func:`scan`;
    returns the step and the per-step masks (each (L, N, *)) that :func:`scan` is to hand it
    after the projected input (none: the step is ``recur`` itself and reads x_proj_t alone).

    * Variational recurrent dropout (Gal & Ghahramani 2016), training only: one mask m per
      sequence, shared by all steps, on h_{t-1} where it meets W_hh, scaled 1/(1-p).
    * Zoneout (Krueger et al. 2016): each state tensor s keeps its previous value unit by unit,
      s_t = k * s_{t-1} + (1 - k) * s_new, with k ~ Bernoulli(p) per unit and step in training
      and k = p (the expectation) at eval.
    """
    p_drop = layer.recurrent_dropout if layer.training else 0.0
    rates = tuple(layer.zoneout) if any(layer.zoneout) else ()
    if not p_drop and not rates:
        return recur, ()
    masks: list[Tensor] = []
    if p_drop:
        masks.append(_dropout_mask(state[0].shape, p_drop, state[0]).expand(steps, -1, -1))
    if rates and layer.training:
        masks += [
            s.new_empty(steps, *s.shape).bernoulli_(p) for s, p in zip(state, rates, strict=True)
        ]
    drop, sampled = bool(p_drop), bool(rates) and layer.training

    def step(x: Inputs, s: State) -> State:
        x_t, *m = x if masks else (x,)  # x_proj_t, then this step's masks
        new = recur(x_t, s, m[0] if drop else None)
        return zoneout(s, new, m[drop:] if sampled else rates) if rates else new

    return step, tuple(masks)


def zoneout(old: State, new: State, keep: Sequence[Tensor | float]) -> State:
    """s_t = k * s_{t-1} + (1 - k) * s_new for each state tensor, k its keep mask (or rate)."""
    return tuple(torch.lerp(n, o, k) for o, n, k in zip(old, new, keep, strict=True))


def _dropout_mask(shape: torch.Size, p: float, like: Tensor) -> Tensor:
    """A dropout mask of ``shape``: 0 with probability p, else 1/(1-p) (all zeros for p=1)."""
    return F.dropout(like.new_ones(shape), p, training=True)


#: Steps whose inputs are projected by one matrix product. Measured on a 2-core AVX2 CPU (LSTM,
#: N=64, L=100, forward+backward): projecting all 100 steps at once is ~10% slower than one product
#: per step at H=512 (the (L, N, 4H) projection and its gradient fall out of cache), while blocks
#: of 8 steps match per-step at H=512 and beat it by ~5% at H=128.
PROJECT_BLOCK = 8


def scan(
    step: Callable[[Inputs, State], State],
    x: Inputs,
    state: State,
    lengths: Tensor | None = None,
    project: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, State]:
    """Apply ``step`` over time: ``x`` is a tensor (L, N, *), or a tuple of them, and step t
    reads ``x[t]`` (each tensor's), with ``project`` (if given) applied to the first tensor --
    to :data:`PROJECT_BLOCK` steps at a time. With ``lengths``, each sequence is computed for its
    own steps only ("variable depth"): its state is held past its end and its output there is
    zero, so the final state is the one at the true end. Returns the outputs (L, N, H_out) --
    the first state tensor at each step -- and the final state."""
    tupled = isinstance(x, tuple)
    xs = x if tupled else (x,)
    steps, n = xs[0].shape[:2]
    if lengths is not None:  # sort longest first, so the running sequences are the first rows
        lengths = lengths.to("cpu")  # the step counts are read on the host, once
        order = torch.argsort(lengths, descending=True, stable=True)
        moved = order.to(xs[0].device)  # one copy to the device (no-op on the CPU)
        xs = tuple(a.index_select(1, moved) for a in xs)
        state = tuple(s.index_select(0, moved) for s in state)
        active = (lengths[None, :] > torch.arange(steps)[:, None]).sum(1).tolist()  # (L,)
    else:
        active = [n] * steps
    outputs = []
    for k, x_t in zip(active, _per_step(xs, project), strict=True):
        x_t = x_t if tupled else x_t[0]
        if k == n:
            state = step(x_t, state)
            outputs.append(state[0])
            continue
        x_t = tuple(a[:k] for a in x_t) if tupled else x_t[:k]
        new = step(x_t, tuple(s[:k] for s in state))  # the k sequences still running
        state = tuple(torch.cat([a, s[k:]]) for a, s in zip(new, state, strict=True))
        outputs.append(F.pad(new[0], (0, 0, 0, n - k)))  # zeros past each sequence's end
    output = torch.stack(outputs)  # (L, N, H_out)
    if lengths is None:
        return output, state
    unorder = torch.argsort(moved)
    return output.index_select(1, unorder), tuple(s.index_select(0, unorder) for s in state)


def _per_step(xs: tuple[Tensor, ...], project: Callable[[Tensor], Tensor] | None):
    """Yield each step's slices of ``xs`` (each (L, N, *)), projecting the first block by block.
    split and unbind, not x[t]: one backward node per block, not a full-size gradient per step."""
    block = PROJECT_BLOCK if project is not None else xs[0].size(0)
    for chunk in zip(*(a.split(block) for a in xs), strict=True):
        if project is not None:
            chunk = (project(chunk[0]), *chunk[1:])  # (block, N, G)
        yield from zip(*(a.unbind(0) for a in chunk), strict=True)


def reverse(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a time-major batch within its own length (padding stays put)."""
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.size(0), device=x.device)[:, None]  # (L, 1)
    lengths = lengths.to(x.device)[None, :]  # (1, N)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (L, N)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))
