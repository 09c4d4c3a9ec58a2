"""Run an exported step graph with onnxruntime behind the interface ``rnnkit.generation``
expects of a language model, so the same sampler, seeds and stop strings apply.

    model = OnnxLanguageModel.from_file("charlm.onnx", threads=1)
    texts = generate(model, model.vocab, prime="ROMEO:", length=200, seed=1)

What is here: :class:`OnnxLanguageModel` (``step``, ``forward`` by stepping, ``initial_state``,
``eval``/``train``/``parameters`` for ``generate``) and the checks of a file's inputs, outputs
and metadata against what ``onnx.py`` writes. Tensors at the boundary are torch tensors on the
CPU; the session is onnxruntime's CPUExecutionProvider. What is not here: writing the file
(``onnx.py``), finding it for ``rnnkit sample`` (``command.py``).

A file is untrusted input: it is read into memory and parsed by onnx first, and one with
tensors in external files (which a runtime would open beside it) is refused -- rnnkit writes
one self-contained file. Every problem is a one-line UserError naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.cells import LSTMState
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.export.onnx import FORMAT, FORMAT_VERSION, INPUTS, MAX_BYTES, OUTPUTS, onnx_modules
from rnnkit.models import LMOutput

State = Tensor | LSTMState


class OnnxLanguageModel:
    """An exported language model on onnxruntime, shaped like ``LanguageModel`` for sampling.

    * ``step(token (N,), state) -> (logits (N, V), state)``: one session run.
    * ``model(idx (N, L), state=None) -> LMOutput(logits (N, L, V), None, state)``: L steps.
    * ``state`` is None (zeros), h (layers, N, H), or ``LSTMState(h, c)`` for lstm/lnlstm.
    * ``vocab`` (the run's ``Vocab``), ``cell``, ``layers``, ``hidden``, ``metadata``.

    It has no parameters to train: ``eval``/``train`` only set ``training``, and
    ``parameters()`` yields one empty CPU tensor, which tells ``generate`` the device.
    """

    def __init__(self, data: bytes, *, threads: int | None = None, source: str = "model") -> None:
        onnx, ort = onnx_modules()
        proto = _parse(onnx, data, source)
        meta = {p.key: p.value for p in proto.metadata_props}
        self.source = source
        self.metadata = meta
        self.cell, self.layers, self.hidden, self.vocab = _read_metadata(meta, source)
        self.stateful = meta["state"] == "h,c"
        self._inputs = list(INPUTS[: 2 + self.stateful])
        self._outputs = list(OUTPUTS[: 2 + self.stateful])
        _check_signature(proto, self._inputs, self._outputs, source)
        _check_shapes(proto, self.layers, self.hidden, len(self.vocab), source)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
            message = " ".join(str(error).split())[:300]
            raise UserError(f"{source}: onnxruntime cannot load it: {message}") from None
        self.training = False
        self._anchor = torch.empty(0)  # what parameters() yields: the device (CPU)

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int | None = None) -> OnnxLanguageModel:
        """Load ``path`` (one .onnx file written by ``rnnkit export``)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no ONNX file at {path}")
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"{path}: {path.stat().st_size} bytes, larger than an ONNX file can be")
        return cls(path.read_bytes(), threads=threads, source=str(path))

    # ---- what generate() uses ----------------------------------------------------------------
    def eval(self) -> OnnxLanguageModel:
        return self.train(False)

    def train(self, mode: bool = True) -> OnnxLanguageModel:
        self.training = bool(mode)  # nothing behaves differently: the graph is eval mode
        return self

    def parameters(self) -> Iterator[Tensor]:
        yield self._anchor

    def initial_state(self, batch_size: int) -> State:
        """Zeros: h (layers, N, H), or LSTMState(h, c) for lstm/lnlstm."""
        h = torch.zeros(self.layers, batch_size, self.hidden)
        return LSTMState(h, torch.zeros_like(h)) if self.stateful else h

    def step(self, token: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One position: ``token`` (N,) ids -> logits (N, V) and the new state."""
        if state is None:
            state = self.initial_state(token.size(0))
        feed = {"tokens": np.ascontiguousarray(token.detach().cpu().numpy(), dtype=np.int64)}
        tensors = tuple(state) if self.stateful else (state,)
        for name, tensor in zip(self._inputs[1:], tensors, strict=True):
            feed[name] = np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)
        logits, *new = (torch.from_numpy(a) for a in self.session.run(self._outputs, feed))
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
        if state is None:  # L = 0
            state = self.initial_state(idx.size(0))
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
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise UserError(f"{source}: tensor {tensor.name[:80]!r} is stored in an external "
                            "file; rnnkit reads self-contained ONNX files only")  # fmt: skip
    return proto


def _read_metadata(meta: dict[str, str], source: str) -> tuple[str, int, int, Vocab]:
    """(cell, layers, hidden, vocab) from ``metadata_props``, checked."""
    if meta.get("format") != FORMAT:
        raise UserError(f"{source} was not written by rnnkit export (no {FORMAT!r} metadata)")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise UserError(f"{source}: format version {meta.get('format_version')!r:.40} is not "
                        f"supported (this rnnkit reads {FORMAT_VERSION})")  # fmt: skip
    sizes = {}
    for key in ("layers", "hidden", "vocab_size"):
        value = meta.get(key, "")
        if not value.isdigit() or not 0 < int(value) < 1 << 31:
            raise UserError(f"{source}: metadata {key} must be a positive integer, got "
                            f"{value[:40]!r}")  # fmt: skip
        sizes[key] = int(value)
    if meta.get("state") not in ("h", "h,c"):
        raise UserError(f"{source}: metadata state must be 'h' or 'h,c'")
    try:
        symbols = json.loads(meta.get("vocab", ""))
    except ValueError:
        raise UserError(f"{source}: metadata vocab is not a JSON list") from None
    vocab = Vocab.from_json(meta.get("vocab_kind"), symbols, source=f"{source}: metadata vocab")
    if len(vocab) != sizes["vocab_size"]:
        raise UserError(f"{source}: metadata vocab has {len(vocab)} symbols, vocab_size says "
                        f"{sizes['vocab_size']}")  # fmt: skip
    return meta.get("cell", "?"), sizes["layers"], sizes["hidden"], vocab


def _check_signature(proto, inputs: list[str], outputs: list[str], source: str) -> None:
    """The graph's inputs and outputs are the ones ``onnx.py`` writes, in order."""
    got_in = [v.name for v in proto.graph.input]
    got_out = [v.name for v in proto.graph.output]
    if got_in != inputs or got_out != outputs:
        raise UserError(f"{source}: expected inputs {inputs} and outputs {outputs}, got "
                        f"{got_in[:4]} and {got_out[:4]}")  # fmt: skip


def _check_shapes(proto, layers: int, hidden: int, vocab_size: int, source: str) -> None:
    """Static sizes of the state tensors and the logits agree with the metadata."""
    want = {"tokens": ["N"], "logits": ["N", vocab_size]}
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]
        expected = want.get(value.name, [layers, "N", hidden])
        if [d if isinstance(d, int) else "N" for d in dims] != expected:
            raise UserError(f"{source}: {value.name} has shape {dims[:4]}, the metadata "
                            f"describes {expected}")  # fmt: skip
