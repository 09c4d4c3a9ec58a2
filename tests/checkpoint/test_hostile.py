"""Hostile checkpoint files are refused with one line, run nothing and allocate nothing big.

Whoever forges a file can forge its sha256 in config.json too, so every case here re-lists the
digest and reaches the parser itself: a pickle payload under a checkpoint's names, forged
safetensors headers, config.json with wrong types or huge sizes, vocab.json that is not a list
of characters, training.json skeletons that nest or point nowhere. The memory test loads the
huge-size cases in a child process whose address space is capped a little above what a valid
load needs: a loader that trusted ``hidden = 10**5`` would ask for gigabytes and fail there.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.checkpoint import files as ckpt_module
from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.checkpoint.jsonfile import Limits
from rnnkit.config import RunConfig, apply_overrides, validate
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel
from rnnkit.tasks.lm import LanguageModelTask
from rnnkit.tasks.saved import load_task, read_run_checkpoint, save_run_checkpoint

VOCAB = list("\n !.abcdefghijklmnopqrstuvwxyz")


class Payload:
    """Unpickling this creates ``marker``: proves that nothing unpickles."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_checkpoint(path: Path, **model) -> Path:
    """A valid tiny character-LM checkpoint with an Adam state, as the trainer saves it."""
    config = RunConfig()
    settings = {"vocab_size": len(VOCAB), "embed": 8, "hidden": 8, "layers": 1, **model}
    apply_overrides(config, {"model": settings, "train": {"threads": 1}}, "test")
    validate(config)
    torch.manual_seed(0)
    net = LanguageModel(config.model)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net(torch.randint(0, len(VOCAB), (2, 5)), torch.randint(0, len(VOCAB), (2, 5))).loss.backward()
    opt.step()
    task = LanguageModelTask(config, {"vocab_kind": "char", "symbols": VOCAB})
    training = {"optimizer": opt.state_dict(), "step": 1, "rng": torch.get_rng_state()}
    save_run_checkpoint(path, config, net, task, training)
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("hostile") / "ckpt")


@pytest.fixture
def ckpt(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "ckpt"))


def relist(path: Path, name: str) -> None:
    """Forge the digest of ``name`` in config.json, as an attacker can."""
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    meta["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def plant(path: Path, name: str, data: bytes) -> None:
    (path / name).write_bytes(data)
    relist(path, name)


def set_config(path: Path, section: str, key: str, value: object) -> None:
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if key:
        meta["config"][section][key] = value
    else:
        meta["config"][section] = value
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def refused(call, *fragments: str) -> str:
    """``call()`` raises a UserError of one short line holding every fragment."""
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and len(message) < 600, message[:2000]
    for fragment in fragments:
        assert fragment in message, message
    return message


def safetensors_bytes(header: object, data: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


# --- pickle -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.safetensors", "training.safetensors"])
def test_pickle_payload_under_a_checkpoint_name_is_refused_and_never_run(ckpt, tmp_path, name):
    marker = tmp_path / "pwned"
    plant(ckpt, name, pickle.dumps(Payload(str(marker))))
    refused(lambda: read_run_checkpoint(ckpt, training=True), f"{name} is not a valid safetensors")
    if name == "model.safetensors":
        refused(lambda: load_task(ckpt), name)
    assert not marker.exists()


def test_pickle_files_beside_a_checkpoint_are_ignored(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    for name in ("pytorch_model.bin", "model.pt", "training.pt", "optimizer.pkl"):
        (ckpt / name).write_bytes(pickle.dumps(Payload(str(marker))))
    relist(ckpt, "model.pt")  # listed: only checked to exist
    _, model, config = load_task(ckpt)
    read_run_checkpoint(ckpt, training=True)
    assert config.model.hidden == 8 and not marker.exists()


def test_cli_sample_refuses_a_pickle_payload_with_one_line(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    plant(ckpt, "model.safetensors", pickle.dumps(Payload(str(marker))))
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(str(marker))))
    result = subprocess.run(
        [sys.executable, "-m", "rnnkit", "sample", str(ckpt), "--length", "5"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("rnnkit: error: ") and "model.safetensors" in lines[0]
    assert "Traceback" not in result.stderr and not marker.exists()


# --- forged safetensors headers -----------------------------------------------------------

F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
DUPLICATE = (
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
    b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
)
FORGED = {
    "header length 2**63": (safetensors_bytes({}, length=2**63), "header length"),
    "header longer than the file": (safetensors_bytes({"a": F32}, bytes(8), 10**6), "exceeds"),
    "shorter than 8 bytes": (b"\x01\x02", "shorter than the 8-byte header length"),
    "header not JSON": (struct.pack("<Q", 5) + b"{oops", "Expecting"),
    "header a list": (safetensors_bytes([1, 2]), "not a JSON object"),
    "offsets beyond the file": (safetensors_bytes({"a": F32}, bytes(4)), "outside the data"),
    "negative offsets": (
        safetensors_bytes({"a": {**F32, "data_offsets": [-8, 0]}}, bytes(8)),
        "outside the data region",
    ),
    "overlapping tensors": (
        safetensors_bytes(
            {"a": F32, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)
        ),
        "overlap",
    ),
    "numel disagrees with offsets": (
        safetensors_bytes({"a": {**F32, "shape": [3]}}, bytes(8)),
        "does not fill 8 bytes",
    ),
    "unknown dtype": (safetensors_bytes({"a": {**F32, "dtype": "Q99"}}, bytes(8)), "'Q99'"),
    "sub-byte dtype": (
        safetensors_bytes({"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, bytes(1)),
        "not supported",
    ),
    "huge dims": (
        safetensors_bytes({"a": {**F32, "shape": [2**40, 2**40]}}, bytes(8)),
        "shape must be",
    ),
    "empty tensor claiming 2**62 rows": (
        safetensors_bytes({"a": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}),
        "shape must be",
    ),
    "100000 dims": (
        safetensors_bytes({"a": {**F32, "shape": [1] * 100_000 + [2]}}, bytes(8)),
        "shape must be",
    ),
    "duplicate tensor name": (
        struct.pack("<Q", len(DUPLICATE)) + DUPLICATE + bytes(8),
        "the header repeats a key",
    ),
    "extra field": (safetensors_bytes({"a": {**F32, "x": 1}}, bytes(8)), "exactly dtype"),
    "metadata not strings": (
        safetensors_bytes({"__metadata__": {"a": 1}, "a": F32}, bytes(8)),
        "__metadata__",
    ),
    "gap between tensors": (  # ours passes it; the library refuses
        safetensors_bytes({"a": {**F32, "shape": [1], "data_offsets": [4, 8]}}, bytes(8)),
        "invalid offset",
    ),
}


@pytest.mark.parametrize("case", list(FORGED))
@pytest.mark.parametrize("name", ["model.safetensors", "training.safetensors"])
def test_forged_safetensors_header_is_refused(ckpt, case, name):
    data, fragment = FORGED[case]
    plant(ckpt, name, data)
    message = refused(
        lambda: read_run_checkpoint(ckpt, training=True), f"{name} is not a valid safetensors"
    )
    assert fragment in message


def test_a_valid_file_with_foreign_tensors_does_not_fit_the_config(ckpt):
    plant(ckpt, "model.safetensors", safetensors_bytes({"a": F32}, bytes(8)))
    refused(lambda: load_task(ckpt), "model.safetensors lacks", "config.json")


# --- config.json --------------------------------------------------------------------------

WRONG_TYPES = [
    ("model", "hidden", "8", "model.hidden must be int"),
    ("model", "hidden", True, "model.hidden must be int"),
    ("model", "hidden", None, "model.hidden must be int"),
    ("model", "layers", [1], "model.layers must be int"),
    ("model", "embed", {"a": 1}, "model.embed must be int"),
    ("model", "dropout", "0.1", "model.dropout must be float"),
    ("model", "cell", 5, "model.cell must be str"),
    ("model", "cell", "transformer", "--cell must be one of"),
    ("model", "hidden", 0, "--hidden must be a positive integer"),
    ("model", "hidden", -8, "--hidden must be a positive integer"),
    ("model", "dropout", 7.0, "--dropout must be in [0, 1)"),
    ("train", "lr", float("inf"), "holds Infinity (JSON has no such number) at config.train.lr"),
    ("train", "warmup", 10**400, "holds an integer of 401 digits (integers must be below 2**64)"),
    (
        "train",
        "lr",
        10**400,
        "integer of 401 digits (integers must be below 2**64) at config.train.lr",
    ),
    ("model", "bogus", 1, "unknown key model.bogus"),
    ("model", "x" * 100_000, 1, "unknown key model.xxx"),
    ("model", "", [1] * 100_000, "[model] must be a table"),
    ("nonsense", "", {}, "unknown section [nonsense]"),
    ("data", "paths", ["a", 3], "data.paths must be list[str]"),
    ("data", "tokenizer", "x" * 1_000_000, "--tokenizer must be one of"),
    ("task", "beam_width", 10**9, "--beam-width must be at most 1024"),
    ("task", "max_len", 10**12, "--max-len must be at most 1,000,000"),
]


@pytest.mark.parametrize("section, key, value, fragment", WRONG_TYPES)
def test_config_with_wrong_types_is_refused_naming_config_json(ckpt, section, key, value, fragment):
    set_config(ckpt, section, key, value)
    refused(lambda: load_task(ckpt), "config.json", fragment)


HUGE = [
    ("hidden", 10**8, "model.safetensors rnn.weight_ih_l0 has shape (32, 8) but config.json"),
    ("hidden", 10**9, "cannot build the model it describes (model.embed 8, hidden 1000000000"),
    ("embed", 10**9, "model.safetensors embedding.weight has shape"),
    ("layers", 10**6, "model.layers is 1000000 but model.safetensors holds"),
    ("vocab_size", 10**9, "model.vocab_size is 1000000000 but vocab.json has 30 symbols"),
    (
        "hidden",
        2**70,
        "holds an integer of 22 digits (integers must be below 2**64) at config.model.hidden",
    ),
]


@pytest.mark.parametrize("key, value, fragment", HUGE)
def test_huge_sizes_are_refused_before_the_model_is_built(ckpt, key, value, fragment):
    set_config(ckpt, "model", key, value)
    refused(lambda: load_task(ckpt), "config.json", fragment)
    refused(lambda: read_run_checkpoint(ckpt, training=True), fragment)


def test_weights_of_another_cell_or_dtype_are_refused(ckpt, tmp_path):
    set_config(ckpt, "model", "cell", "gru")
    refused(lambda: load_task(ckpt), "has shape (32, 8) but config.json describes (24, 8)")
    other = make_checkpoint(tmp_path / "other")
    state = load_checkpoint(other).model_state
    data = {k: (v * 1000).to(torch.int8) for k, v in state.items()}
    from safetensors.torch import save_file

    save_file(data, str(other / "model.safetensors"))
    relist(other, "model.safetensors")
    refused(lambda: load_task(other), "is torch.int8, expected torch.float32")


def test_files_listing_with_odd_names_is_refused(ckpt):
    meta = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    for name in ("a" * 300, "nul\x00name", "../model.safetensors", "sub/x"):
        bad = {**meta, "files": {**meta["files"], name: "0" * 64}}
        (ckpt / "config.json").write_text(json.dumps(bad), encoding="utf-8")
        refused(lambda: load_checkpoint(ckpt), '"files" must map plain file names')


def test_json_files_over_the_size_limit_are_refused_unread(ckpt, monkeypatch):
    monkeypatch.setitem(ckpt_module.JSON_LIMITS, "vocab.json", Limits(4000, 4000, 1))
    plant(ckpt, "vocab.json", b" " * 4001)
    refused(lambda: load_checkpoint(ckpt), "vocab.json is 4001 bytes; the limit is 4000")


# --- vocab.json ---------------------------------------------------------------------------

HOSTILE_VOCABS = {
    "object": ({"a": 0}, "vocab.json must be a JSON list of strings, found dict"),
    "ints": (["a", 1], "found int 1"),
    "null": (["a", None], "found NoneType None"),
    "nested lists": (["a", [["b"]]], "found list"),
    "duplicates": (["a", "b", "a"] + VOCAB[3:], "duplicate symbols 'a'"),
    "10 MB symbol": (["x" * 10_000_000], "symbol 0 must be one character, got 'xxx"),
    "empty": ([], "the vocabulary is empty"),
    "lone surrogate": (["a", "\ud800"], "vocab.json holds a lone surrogate"),
    "two characters": (["ab"], "symbol 0 must be one character, got 'ab'"),
    "deeply nested": (None, "vocab.json nests deeper than 64 levels"),  # 5000: written raw
}


@pytest.mark.parametrize("case", list(HOSTILE_VOCABS))
def test_hostile_vocab_is_refused_with_one_line(ckpt, case):
    value, fragment = HOSTILE_VOCABS[case]
    raw = ("[" * 5000 + "]" * 5000) if case == "deeply nested" else json.dumps(value)
    plant(ckpt, "vocab.json", raw.encode())
    refused(lambda: load_task(ckpt), "vocab.json", fragment)


def test_hostile_vocab_kind_is_refused(ckpt):
    set_config(ckpt, "vocab_kind", "", ["char"] * 100_000)
    refused(
        lambda: load_task(ckpt), "config.json", "vocab_kind must be 'char', 'byte', 'word' or 'bpe'"
    )


# --- training.json ------------------------------------------------------------------------

HOSTILE_SKELETONS = {
    "missing tensor": ({"$tensor": "nowhere"}, "refers to missing tensor 'nowhere'"),
    "unknown tag": ({"$pickle": "os.system"}, "expected a JSON value or a one-key object"),
    "bad $int": ({"$int": "0xZZ"}, "expected a JSON value"),
    "bad $items": ({"$items": [[[], 1]]}, "expected a [str or int key, value] pair"),
    "deep lists": (json.loads("[" * 500 + "]" * 500), "nests deeper than 64"),
    "deep $items keys": (
        json.loads('{"$items": [[' * 200 + "1" + ", 2]]}" * 200),
        "nests deeper than 64",
    ),
    "deep $tuple": (json.loads('{"$tuple": [' * 300 + "]}" * 300), "nests deeper than 64"),
    "huge key": ({"$dict": {"k" * 1_000_000: {"$tensor": "nowhere"}}}, "missing tensor"),
}


@pytest.mark.parametrize("case", list(HOSTILE_SKELETONS))
def test_hostile_training_skeleton_is_refused_with_one_line(ckpt, case):
    value, fragment = HOSTILE_SKELETONS[case]
    plant(ckpt, "training.json", json.dumps(value).encode())
    refused(lambda: read_run_checkpoint(ckpt, training=True), "training.json", fragment)
    load_task(ckpt)  # the model alone does not read the training state


# --- memory: nothing allocated beyond the file's size --------------------------------------

CHILD = r"""
import json, resource, sys
from rnnkit.errors import UserError
from rnnkit.tasks.saved import load_task
load_task(sys.argv[1])  # warm up: imports, first builds
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
limit = vm * 1024 + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
out = {}
for path in sys.argv[3:]:
    try:
        load_task(path)
        out[path] = "accepted"
    except UserError as err:
        out[path] = "refused: " + str(err)
    except BaseException as err:
        out[path] = f"CRASH {type(err).__name__}: {err}"[:300]
print(json.dumps(out))
"""

MEMORY_CASES = {
    "hidden": ("model", "hidden", 100_000),  # trusted: 4e5 x 1e5 floats, 160 GB
    "embed": ("model", "embed", 10**8),
    "layers": ("model", "layers", 10**6),
    "hidden and layers": ("model", "hidden", 20_000),
}


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")
def test_huge_configs_and_headers_allocate_nothing_under_a_capped_address_space(pristine, tmp_path):
    dirs = {}
    for case, (section, key, value) in MEMORY_CASES.items():
        dirs[case] = Path(shutil.copytree(pristine, tmp_path / case.replace(" ", "_")))
        set_config(dirs[case], section, key, value)
    set_config(dirs["hidden and layers"], "model", "layers", 4)
    forged = {"huge dims": FORGED["huge dims"][0], "2**63": FORGED["header length 2**63"][0]}
    for case, data in forged.items():
        dirs[case] = Path(shutil.copytree(pristine, tmp_path / case.replace(" ", "_")))
        plant(dirs[case], "model.safetensors", data)
    margin = 256 << 20  # the files are a few KB; any trusting loader needs gigabytes
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(pristine), str(margin), *map(str, dirs.values())],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    for case, path in dirs.items():
        assert outcome[str(path)].startswith("refused: "), (case, outcome[str(path)])
