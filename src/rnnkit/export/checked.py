"""An ONNX file checked against PyTorch (``rnnkit export``), and the graph that
``rnnkit sample --runtime onnx`` runs.

    rnnkit export runs/charlm                            # -> runs/charlm/model.onnx
    rnnkit export runs/charlm --format onnx -o charlm.onnx
    rnnkit sample runs/charlm --runtime onnx --seed 1    # runs/charlm/model.onnx if current
    rnnkit sample charlm.onnx --runtime onnx --seed 1    # the file alone: no checkpoint

Where ``rnnkit sample PATH --runtime onnx`` finds its graph (:func:`load_for_sample`): PATH
itself if it is a file; else ``PATH/model.onnx`` if it was exported from the checkpoint PATH
names now (the sha256 of its model.safetensors is in the file's metadata); else -- no file, or
one left from an older checkpoint (a note says so) -- the checkpoint is exported in memory
first (~0.1 s), and nothing is written.

``rnnkit export`` (:func:`export_checked`) checks what it writes: it runs the graph on
onnxruntime next to the PyTorch model (3 streams, 8 steps, state carried) and refuses to write
a file whose logits or state differ by more than :data:`TOLERANCE`; the line it prints gives
the difference measured.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from rnnkit.errors import UserError
from rnnkit.io_errors import writing

DEFAULT_NAME = "model.onnx"
TOLERANCE = 1e-4  # the check at export time; tests hold the graph to 1e-5 over 20 steps
FORMATS = ("onnx",)
EXPORTERS = ("torchscript", "dynamo")


def export_checked(
    checkpoint: str | Path, output: str | Path | None = None, exporter: str = "torchscript"
):
    """Export the language model of ``checkpoint`` to ONNX at ``output`` (default:
    ``CHECKPOINT/model.onnx``), after running the graph on onnxruntime beside the PyTorch model
    (:func:`max_difference`): nothing is written if they differ by more than
    :data:`TOLERANCE`. Returns ``(path, size in bytes, model, vocab, difference)``."""
    from rnnkit.checkpoint.runs import find_checkpoint
    from rnnkit.export.onnx import to_onnx, write_onnx
    from rnnkit.export.runtime import OnnxLanguageModel

    find_checkpoint(checkpoint)  # a missing DIR is reported before -o
    output = Path(output) if output else Path(checkpoint) / DEFAULT_NAME
    _check_output(output)
    model, vocab, sha256 = load_checkpoint_model(checkpoint)
    proto = to_onnx(model, vocab, exporter=exporter, source_sha256=sha256)
    data = proto.SerializeToString()
    runtime = OnnxLanguageModel(data, threads=1, source=str(output))
    diff = max_difference(model, runtime)
    if not diff <= TOLERANCE:  # also catches NaN
        raise UserError(f"the exported graph differs from the PyTorch model by {diff:.2e} "
                        f"(> {TOLERANCE:g}); nothing written (try --exporter dynamo)")  # fmt: skip
    with writing(output):  # full disk, file-size limit, read-only: one line, nothing half-written
        path = write_onnx(proto, output)
    return path, len(data), model, vocab, diff


def load_for_sample(path: str | Path, *, threads: int | None = None):
    """The exported model ``rnnkit sample PATH --runtime onnx`` runs, and its vocabulary:
    ``(OnnxLanguageModel, Vocab)``. See the module docstring for where the graph comes from;
    ``threads``: onnxruntime's intra-op threads (default: torch's thread count)."""
    from rnnkit.checkpoint.runs import find_checkpoint
    from rnnkit.export.onnx import onnx_modules, to_onnx
    from rnnkit.export.runtime import OnnxLanguageModel

    onnx_modules()  # the install hint before anything else
    path = Path(path)
    if path.exists() and not path.is_dir():  # a FIFO or device: from_file refuses it unopened
        model = OnnxLanguageModel.from_file(path, threads=threads)
        return model, model.vocab
    checkpoint = find_checkpoint(path)
    exported = path / DEFAULT_NAME
    if exported.is_file():
        current = _weights_sha256(checkpoint)
        model = OnnxLanguageModel.from_file(exported, threads=threads)
        if current and model.metadata.get("source_sha256") == current:
            return model, model.vocab
        print(f"rnnkit: note: {exported} was exported from other weights than {checkpoint}; "
              "exporting the checkpoint afresh (in memory)", file=sys.stderr)  # fmt: skip
    torch_model, vocab, sha256 = load_checkpoint_model(path)
    data = to_onnx(torch_model, vocab, source_sha256=sha256).SerializeToString()
    model = OnnxLanguageModel(data, threads=threads, source=f"{checkpoint} (exported)")
    return model, model.vocab


def load_checkpoint_model(path: str | Path):
    """(LanguageModel in eval mode, Vocab, sha256 of model.safetensors) of a run or
    checkpoint, or a one-line UserError if it is not a language model we export."""
    from rnnkit.checkpoint.runs import find_checkpoint
    from rnnkit.export.onnx import check_exportable, onnx_modules
    from rnnkit.tasks.saved import load_task

    onnx_modules()
    checkpoint = find_checkpoint(path)
    task, model, config = load_task(checkpoint)
    check_exportable(config)
    return model, task.vocab, _weights_sha256(checkpoint)


def _weights_sha256(checkpoint: Path) -> str:
    """The sha256 of ``checkpoint``'s model.safetensors ("" where there is none)."""
    from rnnkit.export.onnx import sha256_file

    weights = checkpoint / "model.safetensors"
    return sha256_file(weights) if weights.is_file() else ""


def max_difference(model, runtime, *, steps: int = 8, batch: int = 3, seed: int = 0) -> float:
    """Largest |difference| of logits and state between ``model.step`` (PyTorch, eval) and
    ``runtime.step`` over ``steps`` steps of ``batch`` streams of random tokens, state
    carried in each."""
    generator = torch.Generator().manual_seed(seed)
    vocab_size = model.head.out_features
    tokens = torch.randint(vocab_size, (steps, batch), generator=generator)
    ours = theirs = None
    worst = 0.0
    with torch.inference_mode():
        for token in tokens:
            logits, ours = model.step(token, ours)
            other, theirs = runtime.step(token, theirs)
            pairs = [(logits, other), *zip(_tensors(ours), _tensors(theirs), strict=True)]
            for a, b in pairs:
                diff = float((a - b).abs().max())
                worst = max(worst, diff if diff == diff else math.inf)  # NaN counts as inf
    return worst


def _tensors(state) -> tuple:
    return tuple(state) if isinstance(state, tuple) else (state,)


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise UserError(f"-o {output} is a directory; name the .onnx file to write")
    if not output.parent.is_dir():
        raise UserError(f"-o {output}: directory {output.parent} does not exist")
