r"""The shell shared by the modern recurrent layers: stacked residual blocks around a *mixer*.

MLSTM, SLSTM (``xlstm.py``), GatedDeltaNet, Mamba2, GLA and RWKV7 (``linear.py``) are each a
:class:`ModernLayer`: ``num_layers`` blocks (per direction), stacked the way their papers stack
them, pre-norm and residual::

    r_t = R x_t            u_t = RMSNorm(r_t)          y_t, M_t = mixer(u_t, M_{t-1})
    h_t = r_t + y_t

with R the identity, or a linear map where the block's input width differs from hidden_size
(the first block, and the blocks after a bidirectional one). The mixer is the paper's layer:
its projections, its recurrence over a memory M (matrices, normalisers, stabilisers,
convolution windows: whatever the paper carries from step to step), its gates and its output
projection. A mixer (:class:`Mixer`) writes four things:

* ``memory``: name -> shape per stream, e.g. ``{"C": (heads, d_k, d_v), "n": ..., "m": ...}``;
* ``project(u)``: the position-wise part (its input projections), for many steps at once;
* ``step(p_t, memory) -> (y_t, memory)``: the paper's recurrence, one line per equation -- the
  step form, O(1) in the sequence so far;
* ``sequence(p, memory, lengths) -> (y, memory)``: the training form over a whole (L, N, *)
  projection, equal to stepping (chunkwise-parallel for the linear recurrences, see
  ``chunked.py``; the default steps). Past each sequence's ``lengths`` the memory is kept.

To everything outside, a modern layer looks like an LSTM whose cell state is wide: its state is
``("h", "c")``, h the block's output h_t (N, H) and c the mixer's memory flattened (N, M), so
truncated BPTT, generation, checkpoints, ONNX export and the probes carry it unchanged.
``impl``: ``"chunk"`` (the training form), ``"sequential"`` (the step form through the cells
path, :func:`rnnkit.nn.unroll.unroll`; the reference) or ``"auto"`` (sequential for one step,
chunk otherwise).

.. note:: The blocks have no feed-forward (MLP) sublayer: each is a recurrent layer of width
   H, comparable with an LSTM of the same width, and a model stacks them like any layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.nn.base import Recurrence, RecurrentLayer, State, StateSpec
from rnnkit.nn.cell_layer import forward_padded
from rnnkit.nn.checks import check_choice, check_size, set_stack_arguments
from rnnkit.nn.chunked import CHUNK
from rnnkit.nn.unroll import reverse, unroll

IMPLS = ("auto", "chunk", "sequential")
Memory = dict[str, Tensor]


class Mixer(nn.Module):
    """The recurrent core of one block (see the module docstring); subclasses set ``memory``
    in their constructor and write ``step`` and, for a fast training form, ``sequence``."""

    memory: dict[str, tuple[int, ...]]
    gate_names: tuple[str, ...] = ()  # the sigmoid-like gates ``gates`` reads out, if any

    def __init__(self, hidden: int, chunk: int = CHUNK) -> None:
        super().__init__()
        self.hidden, self.chunk = hidden, chunk

    def memory_size(self) -> int:
        """M: numbers of memory per stream."""
        return sum(math.prod(shape) for shape in self.memory.values())

    def unpack(self, c: Tensor) -> Memory:
        """The flat memory c (N, M) as named tensors (N, *shape) (views)."""
        sizes = [math.prod(shape) for shape in self.memory.values()]
        parts = c.split(sizes, dim=-1)
        return {
            name: part.reshape(*c.shape[:-1], *shape)
            for (name, shape), part in zip(self.memory.items(), parts, strict=True)
        }

    def pack(self, memory: Memory) -> Tensor:
        """Named tensors (N, *shape) -> the flat memory (N, M)."""
        return torch.cat([memory[name].flatten(1) for name in self.memory], -1)

    def project(self, u: Tensor) -> Tensor:
        """The position-wise input projections of u (..., H) -> (..., G); identity here."""
        return u

    def step(self, p: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        raise NotImplementedError

    def sequence(self, p: Tensor, memory: Memory, lengths: Tensor | None):
        """All steps of p (L, N, G) from ``memory``: (y (L, N, H), final memory), the memory
        kept past each sequence's ``lengths`` (N,) (on p's device, or None: all L)."""
        valid = None if lengths is None else valid_steps(lengths, p.size(0))
        outputs = []
        for t, p_t in enumerate(p.unbind(0)):
            y, new = self.step(p_t, memory)
            if valid is not None:
                new = {k: keep(valid[t], new[k], memory[k]) for k in memory}
            memory = new
            outputs.append(y)
        return torch.stack(outputs), memory

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def gates(self, p: Tensor, memory: Memory) -> dict[str, Tensor]:
        """This step's gates, name -> (N, units), values in [0, 1]; {} for none."""
        return {}


def divisor(name: str, width: int, value: object, most: int) -> int:
    """``value`` if it divides ``width``; None: the largest divisor of width up to ``most``
    (heads of a width that ``most`` does not divide); else ValueError naming ``name``."""
    if value is None:
        return max(d for d in range(1, min(most, width) + 1) if width % d == 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or width % value:
        raise ValueError(f"{name} must be a positive divisor of {width}, got {value!r}")
    return value


def uniform_init(*linears: nn.Linear, fan_in: int) -> None:
    """torch's default for recurrent layers on each Linear: weight uniform in (-1/sqrt(fan_in),
    1/sqrt(fan_in)), bias zero."""
    for linear in linears:
        nn.init.uniform_(linear.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)


def valid_steps(lengths: Tensor, steps: int) -> Tensor:
    """(L, N) bool: step t is within sequence n's length."""
    return torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]


def keep(valid: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where ``valid`` (N,), else ``old``: a padded step keeps the memory."""
    return torch.where(valid.view(-1, *[1] * (new.dim() - 1)), new, old)


def invalid(lengths: Tensor | None, steps: int) -> Tensor | None:
    """(L, N, 1) bool, True past each sequence's end; None without lengths."""
    return None if lengths is None else ~valid_steps(lengths, steps).unsqueeze(-1)


def masked(t: Tensor, pad: Tensor | None, value: float = 0.0) -> Tensor:
    return t if pad is None else t.masked_fill(pad, value)


def outer(k: Tensor, v: Tensor) -> Tensor:
    """k v^T per head: k (N, heads, d_k), v (N, heads, d_v) -> (N, heads, d_k, d_v)."""
    return k.unsqueeze(-1) * v.unsqueeze(-2)


def read(S: Tensor, q: Tensor) -> Tensor:  # noqa: N803
    """S^T q per head: S (N, heads, d_k, d_v), q (N, heads, d_k) -> (N, heads, d_v)."""
    return (S * q.unsqueeze(-1)).sum(-2)


def heads_of(x: Tensor, heads: int) -> Tensor:
    """(..., heads*d) -> (..., heads, d) (a reshape with -1: what the ONNX exporter writes as
    one Reshape; ``unflatten`` would add arithmetic on the shape)."""
    return x.reshape(*x.shape[:-1], heads, -1)


def unit(x: Tensor, eps: float = 1e-12) -> Tensor:
    """x / max(|x|, eps) over the last dimension (``F.normalize``'s numbers, written with
    broadcasting, so the exported graph has no Expand; a zero x has a zero gradient, not the
    NaN of a square root's at 0)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True).clamp_min(eps * eps))


def to_heads(x: Tensor, heads: int) -> Tensor:
    """A time-major (L, N, heads*d) -> (N, heads, L, d), as the chunked kernels take it."""
    return heads_of(x, heads).permute(1, 2, 0, 3)


def from_heads(x: Tensor) -> Tensor:
    """(N, heads, L, d) -> (L, N, heads*d)."""
    return x.permute(2, 0, 1, 3).flatten(2)


def head_norm(x: Tensor, heads: int, weight: Tensor, bias: Tensor | None = None, *,
              rms: bool = True, eps: float = 1e-5) -> Tensor:  # fmt: skip
    """Each head of x (..., heads*d) normalised on its own (RMS, or layer norm with ``rms``
    False; GroupNorm with ``heads`` groups), then scaled by ``weight`` -- (heads*d,), or (d,)
    shared by the heads -- (+ bias, (heads*d,))."""
    parts = heads_of(x, heads)
    if not rms:  # layer norm: centred first (written out: no static shape for the exporter)
        parts = parts - parts.mean(-1, keepdim=True)
    parts = rms_norm(parts, 1.0, eps)
    out = (parts * weight.reshape(-1, parts.size(-1))).flatten(-2)
    return out if bias is None else out + bias


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension (written out, so the ONNX
    exporters see the plain operators at any opset)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a gain (Zhang & Sennrich 2019), as the papers' blocks
    use it; torch.nn.RMSNorm's numbers, written out (see :func:`rms_norm`)."""

    def __init__(self, size: int, eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class Block(nn.Module):
    """One residual block: ``h = R x + mixer(RMSNorm(R x))`` (see the module docstring)."""

    def __init__(self, input_size: int, hidden: int, mixer: Mixer, factory: dict) -> None:
        super().__init__()
        same = input_size == hidden
        self.skip = None if same else nn.Linear(input_size, hidden, bias=False, **factory)
        self.norm = RMSNorm(hidden, **factory)
        self.mixer = mixer

    def residual(self, x: Tensor) -> Tensor:
        return x if self.skip is None else self.skip(x)

    def project(self, x: Tensor) -> Tensor:
        """x (..., H_in) -> [r, mixer.project(RMSNorm(r))] (..., H + G)."""
        r = self.residual(x)
        return torch.cat([r, self.mixer.project(self.norm(r))], -1)

    def recur(self, p: Tensor, state: State, h_mask: Tensor | None = None) -> State:
        """One step from :meth:`project`'s p (N, H + G): state (h, c) -> (h_t, c_t)."""
        r, p_mix = p.split([self.mixer.hidden, p.size(-1) - self.mixer.hidden], -1)
        y, memory = self.mixer.step(p_mix, self.mixer.unpack(state[1]))
        return (r + y, self.mixer.pack(memory))

    def sequence(self, x: Tensor, c: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (L, N, H_in) from the memory c (N, M) -> (h (L, N, H), final c (N, M))."""
        r = self.residual(x)
        y, memory = self.mixer.sequence(self.mixer.project(self.norm(r)),
                                        self.mixer.unpack(c), lengths)  # fmt: skip
        return r + y, self.mixer.pack(memory)


class ModernLayer(RecurrentLayer):
    """A stack of :class:`Block` s of one mixer; ``forward(input, hx=None, lengths=None) ->
    (output, LSTMState(h_n, c_n))`` with torch.nn's LSTM contract (input (L, N, H_in),
    batch-first, unbatched or packed; h_n (D*num_layers, N, H), c_n (D*num_layers, N, M), M
    the mixer's memory per stream). Subclasses set ``cell``, ``mixer_class`` and
    ``defaults`` (the mixer's own options and their default values)."""

    cell = ""
    mixer_class: type[Mixer] = Mixer
    defaults: dict[str, object] = {}
    use_fused = False

    # fmt: off
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, impl="auto",
                 chunk_size=CHUNK, **options):
        # fmt: on
        super().__init__()
        set_stack_arguments(self, input_size, hidden_size, num_layers, bias, batch_first,
                            bidirectional, dropout, stacklevel=5)  # fmt: skip
        self.impl = check_choice("impl", impl, IMPLS)
        chunk_size = check_size("chunk_size", chunk_size)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            name = type(self).__name__
            raise TypeError(f"{name} got unknown options {unknown}; its own: {known}")
        self.options = {**self.defaults, **options}
        factory = {"device": device, "dtype": dtype}
        self.blocks = nn.ModuleList()
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                mixer = self.mixer_class(hidden_size, bias=bias, chunk=chunk_size,
                                         factory=factory, **self.options)  # fmt: skip
                self.blocks.append(Block(layer_in, hidden_size, mixer, factory))

    @property
    def chunk_size(self) -> int:
        """Steps per chunk of the training form (the result does not depend on it; the speed
        does). Settable: ``layer.chunk_size = 64`` reaches every block."""
        return self.blocks[0].mixer.chunk

    @chunk_size.setter
    def chunk_size(self, value: int) -> None:
        value = check_size("chunk_size", value)
        for block in self.blocks:
            block.mixer.chunk = value

    def reset_parameters(self) -> None:
        """Each block's norm and input map as torch initialises them, each mixer as its
        paper's reference code does (its ``reset_parameters``)."""
        for block in self.blocks:
            block.norm.reset_parameters()
            if block.skip is not None:
                block.skip.reset_parameters()
            block.mixer.reset_parameters()

    def block(self, layer: int, direction: int = 0) -> Block:
        return self.blocks[layer * self.num_directions + direction]

    def state_spec(self) -> StateSpec:
        return StateSpec(("h", "c"), (self.hidden_size, self.blocks[0].mixer.memory_size()))

    def recurrence(self, layer: int, direction: int = 0) -> Recurrence:
        block = self.block(layer, direction)
        return Recurrence(block.project, block.recur)

    def gate_function(self, layer: int, direction: int = 0):
        """``(x_t, state) -> {gate: (N, units)}``: the mixer's gates at this step."""
        block = self.block(layer, direction)

        def gates(x: Tensor, state: State) -> dict[str, Tensor]:
            p = block.project(x)[..., self.hidden_size :]
            return block.mixer.gates(p, block.mixer.unpack(state[1]))

        return gates

    def fused_step(self, layer: int, direction: int = 0) -> None:
        """None: no torch kernel; generation steps :meth:`step_function`."""
        return None

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False, "impl": "auto", "chunk_size": CHUNK}  # fmt: skip
        for key, default in defaults.items():
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)!r}"
        for key, default in self.defaults.items():
            if self.options[key] != default:
                s += f", {key}={self.options[key]!r}"
        return s

    def forward(self, input, hx=None, lengths=None):
        """See the class docstring."""
        weight = next(self.parameters())
        return forward_padded(self, input, hx, lengths, _run, weight)

    def path(self, steps: int) -> str:
        """The path a forward of ``steps`` steps takes."""
        if self.impl != "auto":
            return self.impl
        return "sequential" if steps == 1 else "chunk"


def _run(layer: ModernLayer, x: Tensor, hx: State, lengths: Tensor | None):
    """The stack over x (L, N, H_in) from hx (h, c): the step form through the cells path, or
    each block's training form (``Block.sequence``) layer by layer, both directions."""
    if layer.path(x.size(0)) == "sequential":
        return unroll(layer, x, hx, lengths)
    on_device = None if lengths is None else lengths.to(x.device)
    hs, cs = [], []
    for depth in range(layer.num_layers):
        outputs = []
        for direction in range(layer.num_directions):
            row = depth * layer.num_directions + direction
            inputs = x if direction == 0 else reverse(x, lengths)
            h, c = layer.block(depth, direction).sequence(inputs, hx[1][row], on_device)
            if on_device is None:
                hs.append(h[-1])
            else:  # the state at each sequence's end; zeros past it, as the cells path gives
                hs.append(h.gather(0, (on_device - 1).view(1, -1, 1).expand(1, -1, h.size(-1)))[0])
                h = h.masked_fill(invalid(on_device, h.size(0)), 0.0)
            cs.append(c)
            outputs.append(h if direction == 0 else reverse(h, lengths))
        x = torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]  # (L, N, D*H)
        if layer.dropout and layer.training and depth < layer.num_layers - 1:
            x = F.dropout(x, layer.dropout, training=True)
    return x, (torch.stack(hs), torch.stack(cs))


__all__ = [
    "IMPLS",
    "Block",
    "Memory",
    "Mixer",
    "ModernLayer",
    "RMSNorm",
    "divisor",
    "from_heads",
    "head_norm",
    "heads_of",
    "invalid",
    "keep",
    "masked",
    "outer",
    "read",
    "rms_norm",
    "to_heads",
    "uniform_init",
    "unit",
    "valid_steps",
]
