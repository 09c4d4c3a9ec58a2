"""ONNX export: the graph against PyTorch for every cell, the file, sampling on onnxruntime,
bad input, the command line, and checkpoints that carry no device.

The numerical tests run the exported file on onnxruntime's own ``InferenceSession`` (not
through ``rnnkit.export.runtime``), next to ``LanguageModel.step`` in eval mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnnkit.checkpoint.files import save_checkpoint  # noqa: E402
from rnnkit.commands.export import run as run_export  # noqa: E402
from rnnkit.config import RunConfig, apply_overrides  # noqa: E402
from rnnkit.data.vocab import Vocab  # noqa: E402
from rnnkit.errors import UserError  # noqa: E402
from rnnkit.export import OnnxLanguageModel, to_onnx, write_onnx  # noqa: E402
from rnnkit.export.checked import load_for_sample  # noqa: E402
from rnnkit.generation import generate  # noqa: E402
from rnnkit.models import LanguageModel  # noqa: E402
from rnnkit.tasks.saved import load_task  # noqa: E402
from subprocess_cli import rnnkit as run_rnnkit  # noqa: E402

TEXT = "the rose is red, the night is dark.\nso the moon shall be.\n" * 8
VOCAB = Vocab.from_text_chars(TEXT)  # 19 symbols
CASES = [  # (cell, nonlinearity, zoneout)
    ("lstm", "tanh", 0.0),
    ("gru", "tanh", 0.0),
    ("rnn", "tanh", 0.0),
    ("rnn", "relu", 0.0),
    ("rnn", "leaky_relu", 0.0),  # every nonlinearity: each is its own ONNX operator
    ("rnn", "hardtanh", 0.0),
    ("rnn", "softplus", 0.0),
    ("lnlstm", "tanh", 0.0),
    ("mingru", "tanh", 0.0),
    ("minlstm", "tanh", 0.0),
    ("lstm", "tanh", 0.3),  # eval-mode zoneout is part of the step
    *((cell, "tanh", 0.0) for cell in ("mlstm", "slstm", "deltanet", "mamba2", "gla", "rwkv7")),
]
TOLERANCE = 1e-5


def run_config(cell="lstm", nonlinearity="tanh", zoneout=0.0, task="lm") -> RunConfig:
    config = RunConfig()
    model = {"cell": cell, "nonlinearity": nonlinearity, "zoneout": zoneout, "embed": 8}
    model |= {"hidden": 16, "layers": 2, "vocab_size": len(VOCAB)}
    apply_overrides(config, {"model": model, "task": {"name": task}}, "test")
    return config


def make_model(cell="lstm", nonlinearity="tanh", zoneout=0.0, seed=0) -> LanguageModel:
    """A random model in which every parameter differs from every other (torch's init leaves
    layer-norm gains at 1 and shifts at 0: a swapped gain would go unseen)."""
    torch.manual_seed(seed)
    model = LanguageModel(run_config(cell, nonlinearity, zoneout).model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_run(directory: Path, model: LanguageModel, config: RunConfig | None = None) -> Path:
    """A checkpoint as the trainer writes one for --task lm."""
    config = config or run_config(model.config.cell, model.config.nonlinearity)
    save_checkpoint(
        directory,
        config={**config.to_dict(), "vocab_kind": VOCAB.kind},
        model_state=model.state_dict(),
        vocab=VOCAB.to_json(),
    )
    return directory


def trained_model(cell="lstm", steps=40) -> LanguageModel:
    """A tiny model trained briefly on TEXT (next-character prediction), in eval mode."""
    model = make_model(cell)
    ids = torch.as_tensor(VOCAB.encode(TEXT), dtype=torch.long)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for step in range(steps):
        starts = torch.arange(4) * 60 + step % 40
        x = torch.stack([ids[s : s + 32] for s in starts])  # (4, 32)
        y = torch.stack([ids[s + 1 : s + 33] for s in starts])
        optimiser.zero_grad()
        model(x, y).loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    return save_run(tmp_path_factory.mktemp("export") / "run", trained_model())


# ---- the graph against PyTorch ------------------------------------------------------------------


def tokens_for(batch: int, steps: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(len(VOCAB), (steps, batch), generator=torch.Generator().manual_seed(seed))


def onnx_run(path: Path, tokens: torch.Tensor) -> list[list[np.ndarray]]:
    """[logits, h(, c)] after each step of ``tokens`` (steps, N) on onnxruntime's own
    session, the state carried from each step to the next, starting from zeros."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()  # tokens, h (, c); a modern layer's: tokens, c
    dtype = np.float64 if inputs[1].type == "tensor(double)" else np.float32
    state = {v.name: np.zeros((2, tokens.size(1), v.shape[2]), dtype) for v in inputs[1:]}
    names = [v.name for v in session.get_outputs()]  # logits, h_next (, c_next)
    steps = []
    for token in tokens:
        out = session.run(None, {"tokens": token.numpy(), **state})
        steps.append(out)
        state = {name: out[names.index(f"{name}_next")] for name in state}
    return steps


def torch_run(model: LanguageModel, tokens: torch.Tensor) -> list[list[np.ndarray]]:
    """The same with ``model.step`` (eval mode, torch's one-step kernels where it has them)."""
    steps, state = [], None
    with torch.inference_mode():
        for token in tokens:
            logits, state = model.step(token, state)
            steps.append(
                [t.numpy() for t in (logits, *(state if isinstance(state, tuple) else (state,)))]
            )
    return steps


def gap(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    """Largest |difference| over every step, tensor and entry."""
    return max(
        float(np.abs(x - y).max())
        for p, q in zip(a, b, strict=True)
        for x, y in zip(p, q, strict=True)
    )


@pytest.mark.parametrize(("cell", "nonlinearity", "zoneout"), CASES)
def test_onnxruntime_matches_pytorch_step_by_step(tmp_path, cell, nonlinearity, zoneout):
    model = make_model(cell, nonlinearity, zoneout)
    path = write_onnx(to_onnx(model, VOCAB), tmp_path / "model.onnx")
    for batch in (1, 3):  # the batch axis is dynamic: one file serves both
        tokens = tokens_for(batch)
        ours, theirs = torch_run(model, tokens), onnx_run(path, tokens)
        if cell != "lnlstm":
            assert gap(ours, theirs) <= TOLERANCE, (cell, batch)
            continue
        # The layer norms make lnlstm's float32 state sensitive to rounding: over 20 steps
        # PyTorch's own is up to 1.5e-5 from a float64 run (10 random models), so two float32
        # implementations can differ by ~2.5e-5. The graph is held to float32 accuracy: as
        # close to the float64 run as PyTorch is (its equations: the float64 test below).
        exact = torch_run(make_model(cell, nonlinearity, zoneout).double(), tokens)
        assert gap(ours, theirs) <= 1e-4 and gap(theirs, exact) <= 2e-5, (cell, batch)


@pytest.mark.parametrize(("cell", "nonlinearity", "zoneout"), CASES)
def test_the_graph_computes_the_same_function_in_float64(tmp_path, cell, nonlinearity, zoneout):
    model = make_model(cell, nonlinearity, zoneout).double()
    path = write_onnx(to_onnx(model, VOCAB), tmp_path / "model.onnx")
    tokens = tokens_for(3)
    assert gap(torch_run(model, tokens), onnx_run(path, tokens)) <= 1e-9


def test_the_file_is_one_checked_model_with_its_metadata(tmp_path):
    model = make_model("lnlstm")
    path = write_onnx(to_onnx(model, VOCAB, source_sha256="ab" * 32), tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no external data, no temp file
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)

    def shape(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {v.name: (v.type.tensor_type.elem_type, shape(v)) for v in proto.graph.input}
    outputs = {v.name: shape(v) for v in proto.graph.output}
    assert inputs == {
        "tokens": (onnx.TensorProto.INT64, ["N"]),
        "h": (onnx.TensorProto.FLOAT, [2, "N", 16]),
        "c": (onnx.TensorProto.FLOAT, [2, "N", 16]),
    }
    assert outputs == {"logits": ["N", len(VOCAB)], "h_next": [2, "N", 16], "c_next": [2, "N", 16]}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert (meta["cell"], meta["layers"], meta["hidden"], meta["state"]) == (
        "lnlstm",
        "2",
        "16",
        "h,c",
    )
    assert meta["rnnkit_version"] and meta["source_sha256"] == "ab" * 32
    assert Vocab.from_json(meta["vocab_kind"], json.loads(meta["vocab"])).symbols == VOCAB.symbols


@pytest.fixture(scope="module")
def gru_dynamo():
    """``make_model("gru")`` through the torch.export-based exporter (2-4 s: made once)."""
    return to_onnx(make_model("gru"), VOCAB, exporter="dynamo")


def test_the_torch_export_based_exporter_gives_the_same_graph(tmp_path, gru_dynamo):
    model = make_model("gru")
    path = write_onnx(gru_dynamo, tmp_path / "model.onnx")
    tokens = tokens_for(3, steps=8)
    assert gap(torch_run(model, tokens), onnx_run(path, tokens)) <= TOLERANCE


# ---- sampling on onnxruntime --------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generate_on_onnxruntime_equals_generate_on_pytorch(cell):
    model = trained_model(cell, steps=20)
    runtime = OnnxLanguageModel(to_onnx(model, VOCAB).SerializeToString(), threads=1)
    assert runtime.vocab.symbols == VOCAB.symbols
    for options in (
        {"seed": 1, "temperature": 0.8},
        {"seed": 5, "temperature": 1.0, "top_k": 5, "num_samples": 3},
        {"seed": 2, "temperature": 0.7, "stop": ["."], "prime": "the "},
        {"temperature": 0},
    ):
        ours = generate(model, VOCAB, length=80, **options)
        assert generate(runtime, runtime.vocab, length=80, **options) == ours, options


def test_a_run_samples_from_its_model_onnx_only_while_it_is_current(tmp_path, capsys):
    run = tmp_path / "run"  # a run directory: the checkpoint in last/, model.onnx beside it
    save_run(run / "last", make_model("gru"))
    model, vocab = load_for_sample(run)  # no model.onnx: exported in memory
    assert "exported" in model.source and not (run / "model.onnx").exists()
    run_export(argparse.Namespace(checkpoint=str(run), format="onnx", output=None,
                                  exporter="torchscript"))  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    model, _ = load_for_sample(run)
    assert model.source == str(run / "model.onnx")
    save_run(run / "last", make_model("gru", seed=1))  # newer weights: the file is stale
    model, _ = load_for_sample(run)
    assert "exported" in model.source and "other weights" in capsys.readouterr().err
    alone, vocab = load_for_sample(run / "model.onnx")  # the file alone
    assert alone.cell == "gru" and vocab.symbols == VOCAB.symbols


# ---- bad input ----------------------------------------------------------------------------------


def export_args(checkpoint, output=None, fmt="onnx"):
    return argparse.Namespace(checkpoint=str(checkpoint), format=fmt, output=output,
                              exporter="torchscript")  # fmt: skip


def test_bad_input_is_one_line_naming_it(tmp_path, trained_run):
    (tmp_path / "plain").mkdir()
    cases = {
        "not a checkpoint": (export_args(tmp_path / "plain"), "holds no checkpoint"),
        "missing": (export_args(tmp_path / "nowhere"), "no checkpoint or run directory"),
        "missing -o dir": (
            export_args(trained_run, str(tmp_path / "no" / "m.onnx")),
            "does not exist",
        ),  # fmt: skip
        "-o a dir": (export_args(trained_run, str(tmp_path)), "is a directory"),
        "format": (export_args(trained_run, fmt="tflite"), "--format must be one of onnx"),
    }
    for what, (args, message) in cases.items():
        with pytest.raises(UserError, match=message) as error:
            run_export(args)
        assert "\n" not in str(error.value), what
    with pytest.raises(UserError, match="--exporter must be one of"):
        to_onnx(make_model(), VOCAB, exporter="jit")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not protobuf at all" * 10)
    with pytest.raises(UserError, match="not an ONNX model|not written by rnnkit export"):
        load_for_sample(tmp_path / "junk.onnx")


def hostile(base, *, meta=None, edit=None) -> bytes:
    """``base`` (a ModelProto) with metadata keys replaced and ``edit`` applied, serialised."""
    proto = onnx.ModelProto()
    proto.CopyFrom(base)
    if meta:
        props = {p.key: p.value for p in proto.metadata_props} | meta
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, props)
    if edit:
        edit(proto.graph)
    return proto.SerializeToString()


def external_constant(graph):  # a Constant node whose tensor lives in another file
    tensor = onnx.helper.make_tensor("k", onnx.TensorProto.FLOAT, [1], [0.0])
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/hostname")
    graph.node.insert(0, onnx.helper.make_node("Constant", [], ["k_out"], value=tensor))


def sliced_logits(graph):  # declares (N, V) logits but returns (N, 3)
    next(n for n in graph.node if "logits" in n.output).output[0] = "raw"
    graph.initializer.extend(onnx.numpy_helper.from_array(np.array([v]), name)
                             for name, v in (("s0", 0), ("s1", 3), ("ax", 1)))  # fmt: skip
    graph.node.append(onnx.helper.make_node("Slice", ["raw", "s0", "s1", "ax"], ["logits"]))


def huge_state(graph):
    for value in [*graph.input[1:], *graph.output[1:]]:
        value.type.tensor_type.shape.dim[0].dim_value = 10**6
        value.type.tensor_type.shape.dim[2].dim_value = 10**6


def test_a_hostile_onnx_file_is_refused_in_one_line_naming_it(tmp_path):
    base = to_onnx(make_model("gru"), VOCAB)
    tokens_float = lambda g: setattr(g.input[0].type.tensor_type, "elem_type", 1)  # noqa: E731
    long_name = lambda g: setattr(g.input[0], "name", "t" * 10_000)  # noqa: E731
    cases = {
        "external": (hostile(base, edit=external_constant), "stored in an external file"),
        "names": (hostile(base, edit=long_name), "expected inputs"),
        "type": (hostile(base, edit=tokens_float), "tokens holds float, expected int64"),
        "shape": (hostile(base, edit=sliced_logits), "shapes do not check: .* differ"),
        "cell": (hostile(base, meta={"cell": "x" * 9999}), "metadata cell must be one of"),
        "state": (hostile(base, meta={"cell": "lstm"}), "state must be 'h,c' for cell lstm"),
        "int": (hostile(base, meta={"layers": "²"}), "layers must be a positive integer"),
        "memory": (
            hostile(to_onnx(make_model("mlstm"), VOCAB), meta={"memory": "0"}),
            "metadata memory must be a positive integer",
        ),  # fmt: skip
        "width": (
            hostile(to_onnx(make_model("mamba2"), VOCAB), meta={"memory": "17"}),
            r"c has shape \[2, 'N', \d+\], the metadata describes \[2, 'N', 17",
        ),  # fmt: skip
        "json": (hostile(base, meta={"vocab": "[" * 10**5}), "vocab is not a JSON list"),
        "sizes": (
            hostile(base, meta={"layers": "1000000", "hidden": "1000000"}, edit=huge_state),
            "more than a .*-byte file holds",
        ),
        "huge": (None, "larger than an ONNX file can be"),
    }
    for what, (data, message) in cases.items():
        path = tmp_path / f"{what}.onnx"
        if data is None:  # sparse: no disk used
            with open(path, "wb") as f:
                f.truncate(2 << 30)
        else:
            path.write_bytes(data)
        with pytest.raises(UserError, match=message) as error:
            OnnxLanguageModel.from_file(path, threads=1).step(torch.zeros(2, dtype=torch.long))
        text = str(error.value)
        assert str(path) in text and "\n" not in text and len(text) < 400, (what, text[:500])


def test_other_tasks_are_refused(tmp_path):
    from rnnkit.export.onnx import check_exportable

    with pytest.raises(UserError, match="this is a --task classify run"):
        check_exportable(run_config(task="classify"))


# ---- the command line (needs rnnkit.cli to wire `export` and `sample --runtime`) ----------------


def rnnkit(*args, cwd):
    return run_rnnkit(*args, cwd=cwd, env_extra={"OMP_NUM_THREADS": "1"}, timeout=120)


def test_cli_export_then_sample_on_onnxruntime_prints_the_torch_text(trained_run):
    root = trained_run.parent
    result = rnnkit("export", "run", "--format", "onnx", "-o", "model.onnx", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and (root / "model.onnx").is_file()
    sample = rnnkit("sample", "model.onnx", "--runtime", "onnx", "--seed", 1, "--length", 60,
                    "--prime", "the ", cwd=root)  # fmt: skip
    assert sample.returncode == 0, sample.stderr
    task, model, _ = load_task(trained_run)  # what `rnnkit sample run --seed 1 ...` prints
    text = generate(model, task.vocab, prime="the ", length=60, temperature=0.8, seed=1)[0]
    assert sample.stdout == f"the {text}\n" and len(text) == 60


# ---- a checkpoint carries no device -------------------------------------------------------------


def test_a_checkpoint_names_no_device_and_loads_on_the_cpu_even_beside_a_gpu(tmp_path, monkeypatch):
    """What can be shown without a GPU: the files hold no device (safetensors headers have
    only dtype, shape and offsets; the JSON names none) and loading, exporting and sampling
    keep every tensor on the CPU even where torch reports a CUDA device -- code that moved
    tensors there would fail here, as this torch has no CUDA."""
    run = save_run(tmp_path / "run", make_model("lstm"))
    header = (run / "model.safetensors").read_bytes()
    size = int.from_bytes(header[:8], "little")
    entries = json.loads(header[8 : 8 + size])
    assert all(set(v) == {"dtype", "shape", "data_offsets"} for k, v in entries.items()
               if k != "__metadata__")  # fmt: skip
    for name in ("config.json", "vocab.json"):
        assert "cuda" not in (run / name).read_text().lower()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    task, model, _ = load_task(run)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert generate(model, task.vocab, length=10, seed=0)
    runtime, vocab = load_for_sample(run)
    assert generate(runtime, vocab, length=10, seed=0) == generate(model, vocab, length=10, seed=0)


# ---- operators: only what the exporters write ---------------------------------------------------


def test_the_allowed_operators_are_exactly_what_the_exporters_write(gru_dynamo):
    """Every case (each cell, each rnn nonlinearity, zoneout) with the default exporter, and
    with dynamo gru and the rnn's nonlinearities, whose graphs hold the operators dynamo adds
    (Split for gru, Greater for softplus; the other cells' dynamo graphs share torchscript's):
    their union is ``OPERATORS``, so the list neither misses an operator (our own files
    refused) nor keeps a stale one."""
    from rnnkit.export.onnx import OPERATORS

    written = set()
    protos = [(case, "torchscript", to_onnx(make_model(*case), VOCAB)) for case in CASES]
    protos.append((("gru", "tanh", 0.0), "dynamo", gru_dynamo))
    protos += [(case, "dynamo", to_onnx(make_model(*case), VOCAB, exporter="dynamo"))
               for case in CASES if case[0] == "rnn"]  # fmt: skip
    for case, exporter, proto in protos:
        cell = case[0]
        ops = {(n.domain, n.op_type) for n in proto.graph.node}
        assert {domain for domain, _ in ops} == {""} and not proto.functions, (cell, exporter)
        written |= {op for _, op in ops}
        OnnxLanguageModel(proto.SerializeToString(), threads=1)  # every check passes it
    assert written == OPERATORS


def constant_of_shape_bomb(graph):  # logits + mean(zeros(16384, 16384)): 1 GiB from 43 KB
    shape = onnx.numpy_helper.from_array(np.array([16384, 16384]), "bomb_shape")
    graph.initializer.append(shape)
    next(n for n in graph.node if "logits" in n.output).output[0] = "raw"
    zero = onnx.helper.make_tensor("zero", onnx.TensorProto.FLOAT, [1], [0.0])
    graph.node.extend([
        onnx.helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"], value=zero),
        onnx.helper.make_node("ReduceMean", ["bomb"], ["bomb_mean"], keepdims=0),
        onnx.helper.make_node("Add", ["raw", "bomb_mean"], ["logits"]),
    ])  # fmt: skip


def matmul_bomb(graph):  # allowed operators only: (16384, 1) @ (1, 16384)
    for name, shape in (("col", (16384, 1)), ("row", (1, 16384))):
        graph.initializer.append(onnx.numpy_helper.from_array(np.ones(shape, np.float32), name))
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(0), "i0"))
    next(n for n in graph.node if "logits" in n.output).output[0] = "raw"
    graph.node.extend([
        onnx.helper.make_node("MatMul", ["col", "row"], ["big"]),
        onnx.helper.make_node("Gather", ["big", "i0"], ["row0"]),
        onnx.helper.make_node("Gather", ["row0", "i0"], ["one"]),
        onnx.helper.make_node("Add", ["raw", "one"], ["logits"]),
    ])  # fmt: skip


def foreign_domain(graph):
    next(n for n in graph.node if n.op_type == "Gemm").domain = "com.microsoft"


def subgraph(graph):
    node = next(n for n in graph.node if n.op_type == "Add")
    node.attribute.append(
        onnx.helper.make_attribute("body", onnx.helper.make_graph([], "g", [], []))
    )


def test_an_onnx_bomb_or_a_foreign_operator_is_refused_before_it_runs(tmp_path):
    base = to_onnx(make_model("gru"), VOCAB)
    cases = {
        "bomb": (constant_of_shape_bomb, "operator 'ConstantOfShape' is not one rnnkit's"),
        "matmul": (matmul_bomb, "MatMul node makes a tensor of 268,435,456 elements"),
        "domain": (foreign_domain, "operator 'com.microsoft.Gemm' is not one"),
        "subgraph": (subgraph, "a Add node holds a subgraph"),
    }
    for what, (edit, message) in cases.items():
        path = tmp_path / f"{what}.onnx"
        path.write_bytes(hostile(base, edit=edit))
        with pytest.raises(UserError, match=message) as error:
            OnnxLanguageModel.from_file(path, threads=1)
        assert str(error.value).startswith(str(path)) and "\n" not in str(error.value), what


@pytest.mark.skipif(sys.platform != "linux", reason="mkfifo and /dev/zero")
def test_a_fifo_or_device_named_onnx_is_refused_unopened(tmp_path):
    os.mkfifo(tmp_path / "fifo.onnx")
    (tmp_path / "zero.onnx").symlink_to("/dev/zero")
    for name, kind in (("fifo.onnx", "a FIFO"), ("zero.onnx", "a character device")):
        with pytest.raises(UserError, match=f"is not a regular file \\({kind}\\)"):
            load_for_sample(tmp_path / name)


def small_embedding(graph):  # loads, then fails at run time: token ids beyond the one row
    gather = next(n for n in graph.node if n.op_type == "Gather" and "tokens" in n.input)
    table = next(t for t in graph.initializer if t.name == gather.input[0])
    table.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(table)[:1], table.name))


def test_cli_prints_only_its_own_line_when_onnxruntime_fails(tmp_path):
    (tmp_path / "m.onnx").write_bytes(
        hostile(to_onnx(make_model("gru"), VOCAB), edit=small_embedding)
    )
    result = rnnkit("sample", "m.onnx", "--runtime", "onnx", "--prime", "the", "--length", 5,
                    cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # onnxruntime's own log line silenced
    assert result.stderr.startswith("rnnkit: error: ") and "cannot run it" in result.stderr
