"""Run an exported step graph with onnxruntime behind the interface ``rnnkit.generation``
expects of a language model, so the same sampler, seeds and stop strings apply.

    model = OnnxLanguageModel.from_file("charlm.onnx", threads=1)
    texts = generate(model, model.vocab, prime="ROMEO:", length=200, seed=1)

What is here: :class:`OnnxLanguageModel` (``step``, ``forward`` by stepping, ``initial_state``,
``eval``/``train``/``parameters`` for ``generate``) and the checks of a file's inputs, outputs
and metadata against what ``onnx.py`` writes. Tensors at the boundary are torch tensors on the
CPU; the session is onnxruntime's CPUExecutionProvider. What is not here: writing the file
(``onnx.py``), finding it for ``rnnkit sample`` (``command.py``).

A file is untrusted input: it must be a regular file (``jsonfile.read_regular``), is read into
memory and parsed by onnx first; one with a tensor anywhere (initializer, node attribute,
subgraph) in an external file, which a runtime would open beside it, is refused -- rnnkit
writes one self-contained file. Only the operators ``onnx.py`` writes (``OPERATORS``, default
domain, no subgraphs or functions) are accepted, and onnx's shape inference must give every
node's output whose static size it infers no more elements than the largest of the file's own
tensors and the declared state and logits hold (per row of the batch), so a 43 KB file cannot
ask for a 16384 x 16384 product of its constants.
Its metadata, inputs and outputs (names, element types, static sizes) must be what ``onnx.py``
writes, its sizes must fit the file, and every step's results must have the shapes it
declares. Every problem is a one-line UserError naming the file; onnxruntime's own log lines
are silenced (severity FATAL only), so that line is all a user sees.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.checkpoint.jsonfile import VOCAB, Refused, loads, read_regular, regular_stat
from rnnkit.data.bpe import BpeVocab
from rnnkit.data.vocab import Vocab, WordVocab
from rnnkit.errors import UserError, short
from rnnkit.export.onnx import (
    FORMAT,
    FORMAT_VERSION,
    MAX_BYTES,
    OPERATORS,
    OUTPUTS,
    SUPPORTED_CELLS,
    graph_inputs,
    onnx_modules,
)
from rnnkit.io_errors import reason
from rnnkit.models import LMOutput
from rnnkit.models.common import has_cell_state
from rnnkit.nn.cells import LSTMState

State = Tensor | LSTMState
_FATAL = 4  # onnxruntime's log severity: 0 verbose ... 3 error, 4 fatal


class OnnxLanguageModel:
    """An exported language model on onnxruntime, shaped like ``LanguageModel`` for sampling.

    * ``step(token (N,), state) -> (logits (N, V), state)``: one session run.
    * ``model(idx (N, L), state=None) -> LMOutput(logits (N, L, V), None, state)``: L steps.
    * ``state`` is None (zeros), h (layers, N, H), or ``LSTMState(h, c)`` for lstm/lnlstm.
    * ``vocab`` (the run's vocabulary: ``Vocab``, ``WordVocab`` or ``BpeVocab``, as the metadata's
      ``vocab_kind`` says), ``cell``, ``layers``, ``hidden``, ``metadata``.

    It has no parameters to train: ``eval``/``train`` only set ``training``, and
    ``parameters()`` yields one empty CPU tensor, which tells ``generate`` the device.
    """

    def __init__(self, data: bytes, *, threads: int | None = None, source: str = "model") -> None:
        onnx, ort = onnx_modules()
        proto = _parse(onnx, data, source)
        _check_operators(onnx, proto, source)
        meta = {p.key: p.value for p in proto.metadata_props}
        self.source = source
        self.metadata = meta
        self.cell, self.layers, self.hidden, self.vocab = _read_metadata(meta, source)
        # c's columns: an LSTM's hidden, a modern layer's memory ("memory" since 0.1: a file
        # without it has an LSTM's c)
        self.memory = _read_size(meta, "memory", source) if "memory" in meta else self.hidden
        if self.layers * self.hidden > len(data):  # a real file holds >= 4 bytes per unit
            raise UserError(f"{source}: metadata layers x hidden = {self.layers} x "
                            f"{self.hidden}, more than a {len(data)}-byte file holds")  # fmt: skip
        self.stateful = has_cell_state(self.cell)
        self._inputs = graph_inputs(self.cell)
        self._outputs = list(OUTPUTS[: 2 + self.stateful])
        _check_signature(proto, self._inputs, self._outputs, source)
        self.widths = (self.hidden, self.memory)[: 1 + self.stateful]
        _check_values(onnx, proto, self.layers, self.widths, len(self.vocab), source)
        declared = max(self.layers * max(self.widths), len(self.vocab))
        _check_sizes(onnx, proto, declared, source)
        ort.set_default_logger_severity(_FATAL)  # its errors become our one line instead
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = _FATAL
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = _FATAL
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise UserError(f"{source}: onnxruntime cannot load it: {_line(error)}") from None
        self.training = False
        self._anchor = torch.empty(0)  # what parameters() yields: the device (CPU)

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int | None = None) -> OnnxLanguageModel:
        """Load ``path`` (one .onnx file written by ``rnnkit export``)."""
        path = Path(path)
        try:
            if (size := regular_stat(path).st_size) > MAX_BYTES:
                raise UserError(f"{path}: {size} bytes, larger than an ONNX file can be")
            data = read_regular(path, MAX_BYTES)
        except FileNotFoundError:
            raise UserError(f"no ONNX file at {path}") from None
        except Refused as error:
            raise UserError(f"{path} {error}") from None
        except OSError as error:
            raise UserError(f"{path}: cannot read it ({reason(error)})") from None
        return cls(data, threads=threads, source=str(path))

    # ---- what generate() uses ----------------------------------------------------------------
    def eval(self) -> OnnxLanguageModel:
        return self.train(False)

    def train(self, mode: bool = True) -> OnnxLanguageModel:
        self.training = bool(mode)  # nothing behaves differently: the graph is eval mode
        return self

    def parameters(self) -> Iterator[Tensor]:
        yield self._anchor

    def initial_state(self, batch_size: int) -> State:
        """Zeros: h (layers, N, H), or LSTMState(h, c) with c (layers, N, memory)."""
        h, *c = (torch.zeros(self.layers, batch_size, width) for width in self.widths)
        return LSTMState(h, *c) if self.stateful else h

    def step(self, token: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One position: ``token`` (N,) ids -> logits (N, V) and the new state."""
        if state is None:
            state = self.initial_state(token.size(0))
        feed = {"tokens": np.ascontiguousarray(token.detach().cpu().numpy(), dtype=np.int64)}
        tensors = dict(zip("hc", tuple(state) if self.stateful else (state,), strict=False))
        for name in self._inputs[1:]:  # h and c, or a modern layer's c alone
            feed[name] = np.ascontiguousarray(tensors[name].detach().cpu().numpy(), np.float32)
        try:
            results = self.session.run(self._outputs, feed, self._run_options)
        except Exception as error:  # onnxruntime's own types
            raise UserError(f"{self.source}: onnxruntime cannot run it: {_line(error)}") from None
        n = token.size(0)
        want = [(n, len(self.vocab))] + [(self.layers, n, width) for width in self.widths]
        if [a.shape for a in results] != want:
            raise UserError(f"{self.source}: the graph returned shapes "
                            f"{[a.shape for a in results]}, not {want}")  # fmt: skip
        logits, *new = (torch.from_numpy(a) for a in results)
        return logits, (LSTMState(*new) if self.stateful else new[0])  # (N, V), state

    def forward(self, idx: Tensor, targets: Tensor | None = None, state: State | None = None):
        """Logits for every position of ``idx`` (N, L) by stepping, and the final state."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be 2-D (N, L) token ids, got shape {tuple(idx.shape)}")
        if targets is not None:
            raise ValueError("an exported model computes no loss: pass targets=None")
        rows = []
        for t in range(idx.size(1)):
            logits, state = self.step(idx[:, t], state)
            rows.append(logits)
        if not rows:  # L = 0: no logits, the state as given
            state = self.initial_state(idx.size(0)) if state is None else state
            return LMOutput(torch.zeros(idx.size(0), 0, len(self.vocab)), None, state)
        return LMOutput(torch.stack(rows, dim=1), None, state)  # (N, L, V)

    __call__ = forward

    def __repr__(self) -> str:
        return (f"OnnxLanguageModel({self.source!r}, cell={self.cell}, layers={self.layers}, "
                f"hidden={self.hidden}, vocab={len(self.vocab)})")  # fmt: skip


def _parse(onnx, data: bytes, source: str):
    """The ModelProto of ``data``, refusing tensors stored outside the file."""
    try:
        proto = onnx.load_from_string(data)
    except Exception as error:  # protobuf's DecodeError and friends
        raise UserError(f"{source} is not an ONNX model ({type(error).__name__})") from None
    for message in _messages(proto):  # initializers, attributes, subgraphs, functions
        if isinstance(message, onnx.TensorProto) and message.data_location == message.EXTERNAL:
            raise UserError(f"{source}: tensor {message.name[:80]!r} is stored in an external "
                            "file; rnnkit reads self-contained ONNX files only")  # fmt: skip
    return proto


def _messages(message) -> Iterator:
    """``message`` and every protobuf message nested in it (protobuf caps the depth at 100)."""
    yield message
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in (value,) if hasattr(value, "ListFields") else value:  # one or repeated
                yield from _messages(item)


def _read_metadata(
    meta: dict[str, str], source: str
) -> tuple[str, int, int, Vocab | WordVocab | BpeVocab]:
    """(cell, layers, hidden, vocab) from ``metadata_props``, checked."""
    if meta.get("format") != FORMAT:
        raise UserError(f"{source} was not written by rnnkit export (no {FORMAT!r} metadata)")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise UserError(f"{source}: format version {meta.get('format_version')!r:.40} is not "
                        f"supported (this rnnkit reads {FORMAT_VERSION})")  # fmt: skip
    cell = meta.get("cell", "")
    if cell not in SUPPORTED_CELLS:
        raise UserError(f"{source}: metadata cell must be one of {', '.join(SUPPORTED_CELLS)}, "
                        f"got {cell[:40]!r}")  # fmt: skip
    state = "h,c" if has_cell_state(cell) else "h"
    if meta.get("state") != state:
        raise UserError(f"{source}: metadata state must be {state!r} for cell {cell}")
    sizes = {key: _read_size(meta, key, source) for key in ("layers", "hidden", "vocab_size")}
    try:
        symbols = loads(meta.get("vocab", "").encode("utf-8", "surrogatepass"), VOCAB)
    except Refused as error:
        raise UserError(f"{source}: metadata vocab is not a JSON list ({error})") from None
    vocab = _vocabulary(meta.get("vocab_kind"), symbols, f"{source}: metadata vocab")
    if len(vocab) != sizes["vocab_size"]:
        raise UserError(f"{source}: metadata vocab has {len(vocab)} symbols, vocab_size says "
                        f"{sizes['vocab_size']}")  # fmt: skip
    return cell, sizes["layers"], sizes["hidden"], vocab


def _read_size(meta: dict[str, str], key: str, source: str) -> int:
    """The positive integer ``meta[key]``, checked."""
    value = meta.get(key, "")
    if not re.fullmatch(r"[1-9][0-9]{0,9}", value) or int(value) >= 1 << 31:
        raise UserError(f"{source}: metadata {key} must be a positive integer, got "
                        f"{value[:40]!r}")  # fmt: skip
    return int(value)


def _vocabulary(kind: str | None, symbols: object, source: str) -> Vocab | WordVocab | BpeVocab:
    """The vocabulary the metadata holds, as the checkpoint's vocab.json holds it: characters
    or bytes (``Vocab``), words (``WordVocab``), or one byte-level BPE tokenizer JSON."""
    if kind == "word":
        return WordVocab.from_json(symbols, source=source)
    if kind == "bpe":
        return BpeVocab.from_json(symbols, source=source)
    if kind not in ("char", "byte"):
        raise UserError(
            f"{source}: vocab_kind must be 'char', 'byte', 'word' or 'bpe', got {short(kind)}"
        )
    return Vocab.from_json(kind, symbols, source=source)


def _check_operators(onnx, proto, source: str) -> None:
    """Only ``OPERATORS`` of the default domain, without subgraphs; no model-local functions."""
    if proto.functions:
        raise UserError(f"{source}: it defines functions ({proto.functions[0].name[:40]!r}); "
                        "rnnkit's exporter writes none")  # fmt: skip
    graphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in OPERATORS:
            name = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
            raise UserError(f"{source}: operator {name[:60]!r} is not one rnnkit's exporter "
                            "writes; refusing to run it")  # fmt: skip
        if any(attribute.type in graphs for attribute in node.attribute):
            raise UserError(f"{source}: a {node.op_type} node holds a subgraph; rnnkit's "
                            "exporter writes none")  # fmt: skip


def _check_sizes(onnx, proto, declared: int, source: str) -> None:
    """No node output's static sizes (onnx's shape inference; a symbolic or data-dependent
    axis counts 1) multiply to more than the largest of the file's own tensors (initializers,
    Constant values) and ``declared`` (the state's and the logits' sizes): ``MatMul`` of a
    (16384, 1) and a (1, 16384) constant is refused. A size onnx cannot infer (torchscript's
    ``Slice`` after ``Shape`` in every graph we write) is not bounded here."""
    tensors = [*proto.graph.initializer]
    tensors += [a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")]
    bound = max([declared, *(math.prod(t.dims) for t in tensors)])
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as error:  # onnx's InferenceError and friends
        raise UserError(f"{source}: its shapes do not check: {_line(error)}") from None
    shapes = {v.name: v.type.tensor_type for v in [*inferred.graph.value_info,
                                                   *inferred.graph.output]}  # fmt: skip
    for node in inferred.graph.node:
        for name in filter(None, node.output):
            tensor = shapes.get(name)
            dims = tensor.shape.dim if tensor is not None and tensor.HasField("shape") else []
            if (size := math.prod(d.dim_value or 1 for d in dims)) > bound:
                raise UserError(f"{source}: its {node.op_type} node makes a tensor of "
                                f"{size:,} elements, more than the model's own tensors hold "
                                f"({bound:,})")  # fmt: skip


def _check_signature(proto, inputs: list[str], outputs: list[str], source: str) -> None:
    """The graph's inputs and outputs are the ones ``onnx.py`` writes, in order."""
    got_in = [v.name for v in proto.graph.input]
    got_out = [v.name for v in proto.graph.output]
    if got_in != inputs or got_out != outputs:
        raise UserError(f"{source}: expected inputs {inputs} and outputs {outputs}, got "
                        f"{_names(got_in)} and {_names(got_out)}")  # fmt: skip


def _names(names: list[str]) -> list[str]:
    """At most 4 names of at most 40 characters, for a message."""
    return [n[:40] for n in names[:4]] + ["..."] * (len(names) > 4)


def _check_values(onnx, proto, layers: int, widths, vocab_size: int, source: str) -> None:
    """Element types (int64 tokens, float32 the rest) and static sizes of the inputs and
    outputs agree with what ``onnx.py`` writes for the metadata's sizes (``widths``: the
    state tensors' columns, h's then c's)."""
    want = {"tokens": ["N"], "logits": ["N", vocab_size]}
    for name, width in zip(("h", "c"), widths, strict=False):
        want[name] = want[f"{name}_next"] = [layers, "N", width]
    for value in [*proto.graph.input, *proto.graph.output]:
        tensor = value.type.tensor_type
        dtype = onnx.TensorProto.INT64 if value.name == "tokens" else onnx.TensorProto.FLOAT
        if tensor.elem_type != dtype:
            raise UserError(f"{source}: {value.name} holds {_type_name(onnx, tensor.elem_type)}, "
                            f"expected {_type_name(onnx, dtype)}")  # fmt: skip
        dims = [d.dim_value or d.dim_param[:20] for d in tensor.shape.dim]
        expected = want.get(value.name, [layers, "N", widths[0]])
        if [d if isinstance(d, int) else "N" for d in dims] != expected:
            raise UserError(f"{source}: {value.name} has shape {dims[:4]}, the metadata "
                            f"describes {expected}")  # fmt: skip


def _type_name(onnx, elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"


def _line(error: Exception) -> str:
    """onnxruntime's message on one line, cut to 300 characters."""
    return " ".join(str(error).split())[:300]
