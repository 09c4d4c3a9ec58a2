"""rnnkit.checkpoint.files: round trips, flatten/unflatten, atomic writes, every load error."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rnnkit.checkpoint import files as ckpt
from rnnkit.checkpoint.files import (
    FORMAT_VERSION,
    Checkpoint,
    flatten_state,
    is_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from rnnkit.errors import UserError

VOCAB = ["a", "b", "é", "\n", " "]
CONFIG = {"model": {"hidden_size": 7, "num_layers": 2}, "lr": 0.01, "name": "tiny"}


def assert_same(a, b, where="top"):
    """Structural equality: same types (tuple stays tuple), nan == nan, tensors bit-exact."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b)), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}.{i}")
    else:
        assert a == b, where


def trained_lstm(steps=3):
    torch.manual_seed(0)
    model = torch.nn.LSTM(5, 7, num_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    x = torch.randn(4, 3, 5)
    for _ in range(steps):
        train_step(model, opt, x)
        sched.step()
    return model, opt, sched, x


def train_step(model, opt, x):
    opt.zero_grad()
    out, _ = model(x)
    out.pow(2).mean().backward()
    opt.step()


def training_state(opt, sched):
    lam_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    lam = torch.optim.lr_scheduler.LambdaLR(lam_opt, lambda epoch: 0.9**epoch)
    lam_opt.step()
    lam.step()
    h, c = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    return {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "lambda_scheduler": lam.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.default_rng(1).bit_generator.state,
            "python": random.getstate(),
        },
        "step": 3,
        "hidden": (h, c),
        "big": [2**64 + 1, -(2**70), 2**53, 2**53 - 1],
        "floats": [math.inf, -math.inf, math.nan, -0.0, 1e-310],
        "flags": {"done": False, "note": None, 7: "int key"},
        "nested": [(1, [2, (3,)]), [], (), {}],
        "scalars": torch.tensor(1.5, dtype=torch.bfloat16),
    }


def test_round_trip_lstm_with_optimizer_rng_and_schedule(tmp_path):
    model, opt, sched, x = trained_lstm()
    state = training_state(opt, sched)
    path = save_checkpoint(
        tmp_path / "run", config=CONFIG, model_state=model.state_dict(), vocab=VOCAB, training=state
    )
    assert path == tmp_path / "run" and is_checkpoint(path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint) and loaded.path == path
    assert loaded.config == CONFIG and loaded.vocab == VOCAB
    assert_same(dict(sorted(model.state_dict().items())), dict(sorted(loaded.model_state.items())))
    assert_same(state, loaded.training)
    assert list(loaded.training["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5, 6, 7]

    rng = loaded.training["rng"]
    torch.set_rng_state(rng["torch"])
    first = torch.rand(3)
    torch.set_rng_state(state["rng"]["torch"])
    assert torch.equal(first, torch.rand(3))
    random.setstate(rng["python"])
    draw = random.random()
    random.setstate(state["rng"]["python"])
    assert draw == random.random()
    gen = np.random.default_rng()
    gen.bit_generator.state = rng["numpy"]
    assert gen.random() == np.random.default_rng(1).random()

    # a fresh model + optimiser restored from disk continue bit-for-bit like the originals
    twin = torch.nn.LSTM(5, 7, num_layers=2)
    twin.load_state_dict(loaded.model_state)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=0.01)
    twin_opt.load_state_dict(loaded.training["optimizer"])
    twin_sched = torch.optim.lr_scheduler.StepLR(twin_opt, step_size=2, gamma=0.5)
    twin_sched.load_state_dict(loaded.training["scheduler"])
    for _ in range(2):
        train_step(model, opt, x)
        train_step(twin, twin_opt, x)
        sched.step()
        twin_sched.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_files_are_readable_json_and_safetensors(tmp_path):
    model, opt, sched, _ = trained_lstm(1)
    save_checkpoint(
        tmp_path / "run",
        config=CONFIG,
        model_state=model.state_dict(),
        vocab=VOCAB,
        training={"optimizer": opt.state_dict()},
    )
    meta = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert meta["format"] == "rnnkit-checkpoint" and meta["format_version"] == FORMAT_VERSION
    assert meta["config"] == CONFIG
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == sorted([*meta["files"], "config.json"])
    for name, digest in meta["files"].items():
        assert hashlib.sha256((tmp_path / "run" / name).read_bytes()).hexdigest() == digest
    assert json.loads((tmp_path / "run" / "vocab.json").read_text(encoding="utf-8")) == VOCAB
    tensors = safetensors.torch.load_file(tmp_path / "run" / "training.safetensors")
    assert "optimizer.state.0.exp_avg" in tensors


def test_tied_weights_save_and_load(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 5)
            self.decoder = torch.nn.Linear(5, 11)
            self.decoder.weight = self.embed.weight

    model = Tied()
    assert model.state_dict()["embed.weight"].data_ptr() == model.decoder.weight.data_ptr()
    save_checkpoint(tmp_path / "tied", config={}, model_state=model.state_dict(), vocab=[])
    loaded = load_checkpoint(tmp_path / "tied")
    assert set(loaded.model_state) == {"embed.weight", "decoder.weight", "decoder.bias"}
    twin = Tied()
    twin.load_state_dict(loaded.model_state)
    assert twin.decoder.weight is twin.embed.weight
    assert torch.equal(twin.embed.weight, model.embed.weight)
    assert loaded.training is None


def test_training_false_skips_training_state(tmp_path):
    save_checkpoint(tmp_path / "r", config={}, model_state={}, vocab=[], training={"step": 1})
    assert load_checkpoint(tmp_path / "r", training=False).training is None
    assert load_checkpoint(tmp_path / "r").training == {"step": 1}


# --- flatten_state / unflatten_state --------------------------------------------------------

DTYPES = [torch.bool, torch.uint8, torch.int64, torch.float32, torch.float64, torch.bfloat16]


def make_tensor(dtype, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=gen, dtype=torch.float64) * 50
    if dtype.is_floating_point and values.numel():
        values.view(-1)[0] = math.nan
    return values.to(dtype) if dtype != torch.bool else values > 0


tensors_st = st.builds(
    make_tensor,
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.integers(0, 2**16),
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | tensors_st
)
nested = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(nested)
def test_flatten_unflatten_round_trip_through_json_and_safetensors(obj):
    tensors, skeleton = flatten_state(obj)
    text = json.dumps(skeleton, allow_nan=False)
    copies = {key: t.clone() for key, t in tensors.items()}
    stored = safetensors.torch.load(safetensors.torch.save(copies))
    assert_same(obj, unflatten_state(stored, json.loads(text)))
    assert_same(obj, unflatten_state(tensors, skeleton))


@settings(max_examples=15, deadline=None)
@given(nested)
@example(torch.zeros((0, 1), dtype=torch.bool))  # found by hypothesis: an empty tensor was refused
@example({"empty": torch.zeros((0, 512))})
def test_round_trip_through_a_checkpoint(obj):
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "c", config={}, model_state={}, vocab=[], training=obj)
        loaded = load_checkpoint(Path(tmp) / "c")
    assert_same(obj, loaded.training)


def test_flatten_keeps_int_keys_and_tuples_and_names_tensors_by_path():
    h = torch.zeros(2)
    tensors, skeleton = flatten_state({"state": {0: {"exp_avg": h}}, "hidden": (h, h)})
    assert list(tensors) == ["state.0.exp_avg", "hidden.0", "hidden.1"]
    back = unflatten_state(tensors, skeleton)
    assert list(back["state"]) == [0] and isinstance(back["hidden"], tuple)
    assert back["state"][0]["exp_avg"] is h


def test_flatten_colliding_paths_get_distinct_keys():
    a, b = torch.zeros(1), torch.ones(1)
    obj = {"x.y": a, "x": {"y": b}}
    tensors, skeleton = flatten_state(obj)
    assert len(tensors) == 2
    back = unflatten_state(tensors, skeleton)
    assert back["x.y"] is a and back["x"]["y"] is b


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"a": [1, {2, 3}]}, "a.1"),
        ({"opt": {"f": lambda: 0}}, "opt.f"),
        ({(1, 2): 3}, "(1, 2)"),
        (np.int64(3), "top level"),
    ],
)
def test_flatten_rejects_unsupported_types_naming_the_path(obj, where):
    with pytest.raises(TypeError, match=where.replace("(", r"\(").replace(")", r"\)")):
        flatten_state(obj)


@pytest.mark.parametrize(
    "skeleton",
    [
        {"$tensor": "missing"},
        {"$float": "12"},
        {"$int": "12"},
        {"$nope": 1},
        {"a": 1, "b": 2},
        {"$items": [[1.5, 2]]},
        {"$items": [3]},
        {"$tuple": 3},
    ],
)
def test_unflatten_rejects_malformed_skeletons(skeleton):
    with pytest.raises(UserError, match="state skeleton"):
        unflatten_state({}, {"$dict": {"x": skeleton}})


# --- atomic writes --------------------------------------------------------------------------


def small(tmp_path, value, name="run"):
    model_state = {"w": torch.full((3,), float(value))}
    training = {"step": value}
    return save_checkpoint(
        tmp_path / name,
        config={"v": value},
        model_state=model_state,
        vocab=["x"],
        training=training,
    )


def leftovers(parent):
    return sorted(p.name for p in Path(parent).iterdir() if p.name.startswith("."))


def test_overwrite_replaces_content_and_leaves_no_temp_dirs(tmp_path):
    small(tmp_path, 1)
    (tmp_path / "run" / "stray.txt").write_text("from the old copy")
    small(tmp_path, 2)
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.config == {"v": 2} and loaded.training == {"step": 2}
    assert torch.equal(loaded.model_state["w"], torch.full((3,), 2.0))
    assert not (tmp_path / "run" / "stray.txt").exists()
    assert leftovers(tmp_path) == []


def test_parent_directories_are_created(tmp_path):
    path = small(tmp_path, 1, name="a/b/c")
    assert path == tmp_path / "a" / "b" / "c" and is_checkpoint(path)


def fail_after(monkeypatch, calls_allowed):
    real, count = os.replace, {"n": 0}

    def flaky(src, dst):
        count["n"] += 1
        if count["n"] > calls_allowed:
            raise OSError("simulated crash")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)


def test_crash_between_the_two_renames_is_recovered_on_load(tmp_path, monkeypatch):
    small(tmp_path, 1)
    fail_after(monkeypatch, 1)  # the old copy moves aside, then the process "dies"
    with pytest.raises(UserError, match="cannot write .*run: simulated crash"):
        small(tmp_path, 2)
    monkeypatch.undo()
    assert not (tmp_path / "run").exists()
    (tmp_path / ".run.tmp-999-deadbeef").mkdir()  # a stale half-written copy is ignored
    with pytest.warns(UserWarning, match="interrupted save"):
        loaded = load_checkpoint(tmp_path / "run")
    assert loaded.config == {"v": 1} and loaded.path.name.startswith(".run.old-")
    small(tmp_path, 3)  # the next save cleans up both
    assert load_checkpoint(tmp_path / "run").config == {"v": 3}
    assert leftovers(tmp_path) == []


def test_failed_second_rename_puts_the_old_copy_back(tmp_path, monkeypatch):
    small(tmp_path, 1)
    real, count = os.replace, {"n": 0}

    def second_fails(src, dst):
        count["n"] += 1
        if count["n"] == 2:
            raise OSError("simulated failure")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(UserError, match="cannot write .*run: simulated failure"):
        small(tmp_path, 2)
    assert load_checkpoint(tmp_path / "run").config == {"v": 1}
    assert leftovers(tmp_path) == []


def test_crash_while_writing_files_leaves_the_target_untouched(tmp_path, monkeypatch):
    small(tmp_path, 1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_write_bytes", boom)
    with pytest.raises(UserError, match="cannot write .*run: disk full"):
        small(tmp_path, 2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert load_checkpoint(tmp_path / "run").config == {"v": 1}
    assert leftovers(tmp_path) == []


def test_unsupported_training_value_fails_before_touching_the_target(tmp_path):
    small(tmp_path, 1)
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(
            tmp_path / "run", config={}, model_state={}, vocab=[], training={"extra": object()}
        )
    assert load_checkpoint(tmp_path / "run").config == {"v": 1}
    assert leftovers(tmp_path) == []


def test_save_refuses_to_replace_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an rnnkit checkpoint"):
        small(tmp_path, 1, name="notes")
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(UserError, match="not a directory"):
        small(tmp_path, 1, name="file")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert is_checkpoint(small(tmp_path, 1, name="empty"))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"config": [1]}, TypeError, "config must be a dict"),
        ({"config": {"lr": math.nan}}, ValueError, "JSON"),
        ({"model_state": {"w": [1.0]}}, TypeError, "model_state"),
        ({"model_state": {1: torch.zeros(1)}}, TypeError, "model_state"),
        ({"vocab": ["a", 3]}, TypeError, "vocab"),
        ({"vocab": "abc"}, TypeError, "vocab"),
    ],
)
def test_save_rejects_bad_arguments(tmp_path, kwargs, exc, match):
    args = {"config": {}, "model_state": {}, "vocab": [], **kwargs}
    with pytest.raises(exc, match=match):
        save_checkpoint(tmp_path / "run", **args)
    assert not (tmp_path / "run").exists() and leftovers(tmp_path) == []


# --- load errors ----------------------------------------------------------------------------


class Payload:
    """Unpickling this would create ``marker``: proves that nothing unpickles."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def rewrite_meta(path, **changes):
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    meta.update(changes)
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def relist(path, name):
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    meta["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def corrupt(case, path):
    model = path / "model.safetensors"
    if case == "no config.json":
        (path / "config.json").unlink()
    elif case == "invalid JSON":
        (path / "config.json").write_text("{not json", encoding="utf-8")
    elif case == "not an object":
        (path / "config.json").write_text("[1, 2]", encoding="utf-8")
    elif case == "wrong format":
        rewrite_meta(path, format="someone-else")
    elif case == "version 7":
        rewrite_meta(path, format_version=7)
    elif case == "version string":
        rewrite_meta(path, format_version="1")
    elif case == "files not a mapping":
        rewrite_meta(path, files=["model.safetensors"])
    elif case == "missing file":
        model.unlink()
    elif case == "truncated":
        data = model.read_bytes()
        model.write_bytes(data[: len(data) // 2])
    elif case == "flipped byte":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
    elif case.startswith("vocab "):
        vocab = {"vocab object": {"a": 1}, "vocab string": "abc", "vocab number": ["a", 3]}[case]
        (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        relist(path, "vocab.json")
    elif case == "not safetensors":
        model.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{oops")
        relist(path, "model.safetensors")
    elif case == "bad skeleton":
        (path / "training.json").write_text('{"$tensor": "nowhere"}', encoding="utf-8")
        relist(path, "training.json")


LOAD_ERRORS = {
    "no config.json": "is not an rnnkit checkpoint (no config.json)",
    "invalid JSON": "config.json is not valid JSON",
    "not an object": "config.json must hold a JSON object",
    "wrong format": "is not an rnnkit checkpoint (config.json says format 'someone-else'",
    "version 7": "checkpoint format version 7 is not supported (this rnnkit reads version 1)",
    "version string": "checkpoint format version '1' is not supported",
    "files not a mapping": '"files" must map plain file names',
    "missing file": "model.safetensors is missing",
    "truncated": "model.safetensors is corrupted or truncated (checksum mismatch)",
    "flipped byte": "model.safetensors is corrupted or truncated (checksum mismatch)",
    "vocab object": "vocab.json must be a JSON list of strings",
    "vocab string": "vocab.json must be a JSON list of strings, found str 'abc'",
    "vocab number": "vocab.json must be a JSON list of strings, found int 3",
    "not safetensors": "model.safetensors is not a valid safetensors file",
    "bad skeleton": "training.json: state skeleton: the top level refers to missing tensor",
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_errors_name_the_path_and_the_problem_on_one_line(tmp_path, case):
    path = small(tmp_path, 1)
    corrupt(case, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert LOAD_ERRORS[case] in message and str(path) in message
    assert "\n" not in message


def test_load_missing_directory(tmp_path):
    with pytest.raises(UserError, match="no checkpoint at") as err:
        load_checkpoint(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_load_a_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "f").write_text("hi")
    with pytest.raises(UserError, match=r"not an rnnkit checkpoint \(no config.json\)"):
        load_checkpoint(tmp_path / "f")
    assert not is_checkpoint(tmp_path / "f") and not is_checkpoint(tmp_path / "nowhere")


def test_pickle_payload_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(str(marker)))
    path = small(tmp_path, 1)
    (path / "model.safetensors").write_bytes(payload)
    relist(path, "model.safetensors")
    with pytest.raises(UserError, match="model.safetensors is not a valid safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickle_files_beside_the_checkpoint_are_never_opened(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = small(tmp_path, 1)
    for name in ("pytorch_model.bin", "model.pt", "model.pth", "state.pkl", "x.pickle"):
        (path / name).write_bytes(pickle.dumps(Payload(str(marker))))
    relist(path, "model.pt")  # even when listed, it is only checked to exist
    opened = []
    real_open, real_path_open = open, Path.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def path_spy(self, *args, **kwargs):
        opened.append(str(self))
        return real_path_open(self, *args, **kwargs)

    real_load, real_os_open = safetensors.torch.load_file, os.open

    def load_spy(filename, *args, **kwargs):
        opened.append(str(filename))
        return real_load(filename, *args, **kwargs)

    def os_spy(file, *args, **kwargs):  # the loaders open with O_NONBLOCK (jsonfile.py)
        opened.append(str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    monkeypatch.setattr(os, "open", os_spy)
    monkeypatch.setattr(Path, "open", path_spy)
    monkeypatch.setattr(safetensors.torch, "load_file", load_spy)
    loaded = load_checkpoint(path)
    monkeypatch.undo()
    assert loaded.config == {"v": 1} and not marker.exists()
    assert {Path(f).name for f in opened} == {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "training.json",
        "training.safetensors",
    }


def test_sha256_is_streamed(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "_CHUNK", 7)
    big = tmp_path / "blob"
    big.write_bytes(os.urandom(1000))
    assert ckpt._sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()
