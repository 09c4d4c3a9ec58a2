"""Export a trained language model as one ONNX file: a single step, (tokens, state) -> (logits,
state), that onnxruntime (or any ONNX runtime) runs without PyTorch or rnnkit's weights.

    rnnkit export runs/charlm --format onnx -o charlm.onnx
    proto = to_onnx(model, vocab)                     # an onnx.ModelProto, metadata included
    write_onnx(proto, Path("charlm.onnx"))            # atomically: temp file + os.replace

The graph (opset :data:`OPSET`, batch axis ``N`` dynamic)::

    tokens int64 (N,)             --+                       +--> logits float32 (N, V)
    h      float32 (layers, N, H) --+--> embedding -> cells -+--> h_next (layers, N, H)
    c      float32 (layers, N, H) --+    -> head             +--> c_next (layers, N, H)

``c`` and ``c_next`` exist for the cells with a cell state (lstm, lnlstm) only. The zero state
is all zeros, as in ``LanguageModel.initial_state``. With per-layer sizes (``--hidden 30,20``)
``H`` is the widest layer's: layer k reads and writes its first ``H_k`` columns and passes the
rest through (zeros from the zero state), the model's own layout; the metadata's ``hidden`` is
that width (what a runtime allocates) and ``hidden_sizes`` lists the layers'. The adaptive
softmax (``--softmax adaptive``) is not exported: a one-line refusal.

``metadata_props`` carry what a sampler needs besides the graph (see :func:`metadata`): the
vocabulary, the cell and the sizes, so ``rnnkit sample model.onnx --runtime onnx`` needs
nothing else.

The graph is traced from :class:`StepGraph`, the model's eval-mode step calling the step
equations of each cell (through the public cell interface,
:meth:`rnnkit.nn.base.RecurrentLayer.step_function`) on the model's own parameters, not from
``LanguageModel.step`` (whose ``_VF.*_cell`` kernels and fused layers are not what an exporter
should see). Exporter: torch's TorchScript-based one (``dynamo=False``) by default -- 0.02-0.8
s here where the ``torch.export``-based one takes 2-7 s, which matters because ``rnnkit sample
--runtime onnx`` exports a checkpoint that has no current model.onnx on the spot; it is
deprecated in torch 2.9+, so ``exporter="dynamo"`` is kept working and tested (same outputs, to
float32 rounding). Both traced the same graph for every cell.

What is not here: running the file (``runtime.py``) and the command line (``command.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import secrets
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.models.common import carries_memory, has_cell_state
from rnnkit.models.lm_layers import layer_state_sizes
from rnnkit.nn.registry import where
from rnnkit.nn.unroll import zoneout
from rnnkit.tasks import get_task

FORMAT = "rnnkit-onnx-step"
FORMAT_VERSION = 1
#: ONNX opset: 17 is the first with LayerNormalization (lnlstm); 18 is the dynamo exporter's.
OPSET = 18
EXPORTERS = ("torchscript", "dynamo")
SUPPORTED_CELLS = where(onnx=True)  # the cells whose registry row says they export
INPUTS = ("tokens", "h", "c")
OUTPUTS = ("logits", "h_next", "c_next")
MAX_BYTES = (2 << 30) - (1 << 20)  # protobuf's 2 GiB limit on one message, with room to spare
#: every operator (default domain) the two exporters write for any supported cell; a file with
#: another is refused before onnxruntime sees it (``runtime.py``), and
#: ``tests/test_export.py::test_the_allowed_operators_are_exactly_what_the_exporters_write``
#: exports each cell to keep this list exact
OPERATORS = frozenset(
    ("Add", "Clip", "Concat", "Constant", "Div", "Gather", "Gemm", "Greater", "GreaterOrEqual")
    + ("LayerNormalization", "LeakyRelu", "MatMul", "Mul", "Relu", "Shape", "Sigmoid", "Slice")
    + ("Softplus", "Split", "Sub", "Tanh", "Unsqueeze", "Where")
    # the modern layers' steps: exponential gates, norms, heads, the sLSTM's block-diagonal R
    + ("Abs", "Einsum", "Exp", "Flatten", "Log", "Max", "Neg", "Pow", "ReduceMean", "ReduceSum")
    + ("Reshape", "Sqrt", "Squeeze", "Transpose")
)


def onnx_modules():
    """(onnx, onnxruntime), or a one-line UserError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise UserError(
            f"ONNX export and --runtime onnx need the onnx packages ({error.name} is missing): "
            "pip install 'rnnkit[export]'"
        ) from None
    return onnx, onnxruntime


class StepGraph(nn.Module):
    """``LanguageModel.step`` in eval mode, by the layers' own step equations over the model's
    own parameters (no copies): embedding -> one step of each layer -> head. Layer k of size
    ``H_k`` steps on columns ``[:H_k]`` of its row of the state; the columns after pass through.

    ``forward(tokens (N,), first, second=None) -> (logits (N, V), h_next, c_next)``, the
    states as :func:`graph_inputs` names them: h (layers, N, H), and c (layers, N, C) for
    cells with a cell state; a modern layer's graph takes c alone (its memory: the step reads
    no h_{t-1}).
    Dropout is off (eval); zoneout is its eval form, ``s = p * s_prev + (1 - p) * s_new`` per
    state tensor (``rnnkit.nn.unroll.zoneout``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cell = model.config.cell
        if cell not in SUPPORTED_CELLS:
            raise UserError(f"--cell {cell} cannot be exported to ONNX (supported: "
                            f"{', '.join(SUPPORTED_CELLS)})")  # fmt: skip
        _check_softmax(model.config)
        self.model = model
        self.cell, self.layers = cell, model.config.layers
        self.sizes = [layer_state_sizes(model.rnn, k) for k in range(self.layers)]  # (H_k[, C_k])
        self.widths = model.state_widths()  # the state tensors' columns: (Hmax[, Cmax])
        self.memory = carries_memory(cell)
        if self.memory and any(sizes != self.widths for sizes in self.sizes):
            raise UserError(f"--cell {cell} with per-layer sizes cannot be exported to ONNX "
                            "(one --hidden for every layer)")  # fmt: skip
        rates = tuple(model.rnn.zoneout)  # one per state tensor; () without zoneout
        self.rates = rates if any(rates) else ()
        self.steps = [model.rnn.step_function(depth) for depth in range(self.layers)]

    def forward(self, tokens: Tensor, first: Tensor, second: Tensor | None = None):
        x = self.model.embedding(tokens)  # (N, E)
        if self.memory:  # a memory cell reads no h_{t-1}: its memory's row stands in for it
            h, c = first, first
        else:
            h, c = first, second
        hs, cs = [], []
        for depth, sizes in enumerate(self.sizes):
            rows = (h[depth],) if c is None else (h[depth], c[depth])  # (N, width) each
            old = tuple(row[:, :size] for row, size in zip(rows, sizes, strict=True))
            new = tuple(self.steps[depth](x, old))  # the layer's own step equations
            if self.rates:
                new = zoneout(old, new, self.rates)
            x = new[0]  # (N, H_k): the next layer's input
            if sizes != self.widths:  # per-layer sizes: the other columns pass through
                pairs = zip(new, rows, sizes, strict=True)
                new = tuple(torch.cat([s, row[:, size:]], dim=-1) for s, row, size in pairs)
            hs.append(new[0])
            cs.extend(new[1:])
        logits = self.model.head(x)  # (N, V)
        if c is None:
            return logits, torch.stack(hs)  # (layers, N, H)
        return logits, torch.stack(hs), torch.stack(cs)


def graph_inputs(cell: str) -> list[str]:
    """The step graph's inputs: tokens and h, with c for a cell state; a modern layer's graph
    takes tokens and c (its memory), as its step reads no h_{t-1}."""
    if not has_cell_state(cell):
        return list(INPUTS[:2])
    return ["tokens", "c"] if carries_memory(cell) else list(INPUTS)


def check_exportable(config) -> None:
    """A one-line UserError unless ``config`` (a RunConfig) is a language model we export."""
    if not get_task(config.task.name).language_model:
        raise UserError(f"ONNX export covers language models (--task lm) only; this is a "
                        f"--task {config.task.name} run")  # fmt: skip
    if config.model.cell not in SUPPORTED_CELLS:
        raise UserError(f"--cell {config.model.cell} cannot be exported to ONNX")
    _check_softmax(config.model)


def _check_softmax(m) -> None:
    if m.softmax != "full":
        raise UserError(f"--softmax {m.softmax} cannot be exported to ONNX (--softmax full only)")


def metadata(model: nn.Module, vocab, source_sha256: str = "") -> dict[str, str]:
    """The ``metadata_props`` of an exported model (all strings, as ONNX wants): format,
    versions, cell, sizes, the state's tensors, and the vocabulary as rnnkit rebuilds it
    (``Vocab.from_json(vocab_kind, json.loads(vocab))``). ``source_sha256`` is the sha256 of
    the checkpoint's model.safetensors ("" if unknown): ``rnnkit sample --runtime onnx``
    uses a run's model.onnx only while it matches."""
    from rnnkit import __version__

    m = model.config
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "rnnkit_version": __version__,
        "torch_version": torch.__version__,
        "cell": m.cell,
        "nonlinearity": getattr(model.rnn, "nonlinearity", ""),
        "layers": str(m.layers),
        "hidden": str(max(m.layer_sizes())),  # the state's width
        "hidden_sizes": ",".join(map(str, m.layer_sizes())),
        "embed": str(m.embed),
        "vocab_size": str(len(vocab)),
        "state": "h,c" if has_cell_state(m.cell) else "h",
        **({"memory": str(model.state_widths()[1])} if has_cell_state(m.cell) else {}),
        "vocab_kind": vocab.kind,
        "vocab": json.dumps(vocab.to_json(), ensure_ascii=False),
        "source_sha256": source_sha256,
    }


def to_onnx(model: nn.Module, vocab, *, exporter: str = "torchscript", source_sha256: str = ""):
    """Trace ``model``'s step (a ``LanguageModel``; unchanged, training mode restored) into an
    ``onnx.ModelProto`` with named shapes and :func:`metadata`, checked by onnx's checker."""
    onnx, _ = onnx_modules()
    if exporter not in EXPORTERS:
        raise UserError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    m = model.config
    stateful = has_cell_state(m.cell)
    names_in, names_out = graph_inputs(m.cell), list(OUTPUTS[: 2 + stateful])
    n = 2  # an example batch above 1, so the exporters keep N symbolic
    weight, widths = model.embedding.weight, dict(zip("hc", model.state_widths(), strict=False))
    states = [torch.zeros(m.layers, n, widths[name], dtype=weight.dtype) for name in names_in[1:]]
    example = (torch.zeros(n, dtype=torch.long), *states)  # distinct tensors: no aliasing
    was_training = model.training
    graph = StepGraph(model.eval())
    try:
        with torch.no_grad(), _quiet():
            if exporter == "dynamo":
                proto = _export_dynamo(graph, example, names_in, names_out)
            else:
                proto = _export_torchscript(graph, example, names_in, names_out, onnx)
    finally:
        model.train(was_training)
    shapes = {"tokens": ["N"], "logits": ["N", len(vocab)]}
    for name, width in widths.items():
        shapes |= dict.fromkeys((name, f"{name}_next"), [m.layers, "N", width])
    _name_shapes(proto, shapes)
    proto.producer_name, proto.doc_string = "rnnkit", f"rnnkit {m.cell} language model, one step"
    onnx.helper.set_model_props(proto, metadata(model, vocab, source_sha256))
    if proto.ByteSize() > MAX_BYTES:
        raise UserError(f"the model is {proto.ByteSize() / 2**30:.1f} GiB: too large for one "
                        "ONNX file (protobuf's 2 GiB limit)")  # fmt: skip
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _export_torchscript(graph, example, names_in, names_out, onnx):
    axes = {name: {0: "N"} for name in ("tokens", "logits")}
    axes |= {name: {1: "N"} for name in names_in[1:] + names_out[1:]}
    buffer = io.BytesIO()
    torch.onnx.export(graph, example, buffer, dynamo=False, opset_version=OPSET,
                      input_names=names_in, output_names=names_out, dynamic_axes=axes)  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(graph, example, names_in, names_out):
    batch = torch.export.Dim("N", min=1, max=1 << 30)
    args = ("first", "second")  # StepGraph.forward's state arguments, in graph_inputs' order
    dynamic = {"tokens": {0: batch}} | {arg: {1: batch} for arg in args[: len(names_in) - 1]}
    program = torch.onnx.export(graph, example, dynamo=True, opset_version=OPSET,
                                input_names=names_in, output_names=names_out,
                                dynamic_shapes=dynamic, verbose=False)  # fmt: skip
    return program.model_proto


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' deprecation notices and log lines (e.g. "torchvision is not
    installed"): what ``rnnkit export`` prints is its own one line."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _name_shapes(proto, shapes: dict[str, list]) -> None:
    """Write the graph's input/output shapes as rnnkit documents them (the exporters leave
    generated names such as ``Concath_next_dim_2`` on some static sizes)."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, size in zip(dims, shapes[value.name], strict=True):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def write_onnx(proto, output: Path) -> Path:
    """Serialise ``proto`` as one file at ``output``, atomically: a temp file beside it,
    fsynced, then ``os.replace`` (a reader sees the old file or the new one, never half)."""
    output = Path(os.path.abspath(output))
    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return output


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
