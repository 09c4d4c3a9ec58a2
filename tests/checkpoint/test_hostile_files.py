"""Files that are not what their names say: FIFOs, devices, directories, JSON bombs.

A FIFO named config.json would block ``open`` forever and a link to /dev/zero never ends, so
each loader checks for a regular file before it opens one; the cases run in a child process
with a timeout, so a loader that hangs fails the test instead of hanging the suite. JSON is
checked before it is parsed: ``[[],[],...]`` costs ~20 bytes of memory per byte of file once
built, so the bombs load in a child whose address space is capped (``RLIMIT_AS``) well below
what parsing them would take. JSON's own traps (repeated keys, deep nesting, huge integers,
NaN) are refused naming where they are.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.checkpoint import files as ckpt_module
from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.checkpoint.jsonfile import Limits
from rnnkit.errors import UserError
from rnnkit.tasks.saved import load_task, read_run_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile import make_checkpoint, plant, refused  # noqa: E402

FILES = ["config.json", "model.safetensors", "vocab.json", "training.json", "training.safetensors"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LINUX = pytest.mark.skipif(sys.platform != "linux", reason="mkfifo, /dev/zero and RLIMIT_AS")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("files") / "ckpt")


def copy(pristine: Path, where: Path) -> Path:
    return Path(shutil.copytree(pristine, where))


LOAD_EACH = r"""
out = {}
for path in PATHS:
    try:
        read_run_checkpoint(path, training=True)
        out[path] = "accepted"
    except UserError as err:
        out[path] = "refused: " + str(err)
    except BaseException as err:
        out[path] = f"CRASH {type(err).__name__}: {err}"[:300]
print(json.dumps(out))
"""
LOAD_ALL = (
    r"""
import json, sys
from rnnkit.errors import UserError
from rnnkit.tasks.saved import read_run_checkpoint
PATHS = sys.argv[1:]
"""
    + LOAD_EACH
)


@LINUX
def test_a_fifo_device_or_directory_in_place_of_a_file_is_refused_unopened(pristine, tmp_path):
    cases = {}
    for name in FILES:
        for kind, expected in (("fifo", "a FIFO"), ("zero", "a character device"),
                               ("dir", "a directory")):  # fmt: skip
            path = copy(pristine, tmp_path / f"{name}-{kind}")
            (path / name).unlink()
            if kind == "fifo":
                os.mkfifo(path / name)
            elif kind == "zero":
                (path / name).symlink_to("/dev/zero")
            else:
                (path / name).mkdir()
            cases[str(path)] = f"{name} is not a regular file ({expected})"
    result = subprocess.run([sys.executable, "-c", LOAD_ALL, *cases], capture_output=True,
                            text=True, env=ENV, timeout=90)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    for path, fragment in cases.items():
        assert outcome[path].startswith(f"refused: {path}") and fragment in outcome[path], (
            path,
            outcome[path],
        )


@LINUX
def test_cli_sample_on_a_fifo_config_json_is_one_line_at_once(pristine, tmp_path):
    path = copy(pristine, tmp_path / "ckpt")
    (path / "config.json").unlink()
    os.mkfifo(path / "config.json")
    result = subprocess.run([sys.executable, "-m", "rnnkit", "sample", str(path), "--length", "5"],
                            capture_output=True, text=True, env=ENV, timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"rnnkit: error: {path}: config.json is not a regular file")


def test_a_dangling_link_is_missing_and_a_listed_fifo_is_not_a_regular_file(pristine, tmp_path):
    path = copy(pristine, tmp_path / "ckpt")
    (path / "vocab.json").unlink()
    (path / "vocab.json").symlink_to(tmp_path / "nowhere")
    refused(lambda: load_checkpoint(path), "vocab.json is missing")
    path = copy(pristine, tmp_path / "listed")
    os.mkfifo(path / "extra.bin")  # listed in "files": only checked, never opened
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    meta["files"]["extra.bin"] = "0" * 64
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    refused(lambda: load_checkpoint(path), "extra.bin is not a regular file (a FIFO)")


# --- JSON bombs ---------------------------------------------------------------------------

CHILD = (
    r"""
import json, resource, sys
from rnnkit.errors import UserError
from rnnkit.tasks.saved import read_run_checkpoint
read_run_checkpoint(sys.argv[1], training=True)  # warm up: imports, first builds
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
limit = vm * 1024 + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
PATHS = sys.argv[3:]
"""
    + LOAD_EACH
)


def empty_lists(size: int) -> bytes:
    """``[[],[],...]`` of about ``size`` bytes: ~20 bytes of memory per byte once parsed."""
    return b"[" + b"[]," * (size // 3) + b"[]]"


def with_extra(path: Path, raw: bytes) -> bytes:
    """config.json with one more top-level key holding ``raw`` (a loader ignores the key)."""
    text = (path / "config.json").read_bytes().rstrip()
    return text[:-1] + b', "extra": ' + raw + b"}"


@LINUX
def test_json_bombs_are_refused_before_they_are_parsed_under_a_capped_address_space(
    pristine, tmp_path
):
    size = 10 << 20  # under every JSON cap; ~250 MB once parsed
    bombs = {
        "vocab.json": ("vocab.json", empty_lists(size), "vocab.json holds"),
        "config.json": ("config.json", None, "config.json holds"),
        "training.json": ("training.json", empty_lists(size), "training.json holds"),
        "safetensors header": ("model.safetensors", None, "the header holds"),
    }
    dirs = {}
    for case, (name, data, _) in bombs.items():
        path = dirs[case] = copy(pristine, tmp_path / case.replace(" ", "_"))
        if name == "config.json":
            (path / name).write_bytes(with_extra(path, empty_lists(size)))
        elif name == "model.safetensors":
            header = b'{"a": ' + empty_lists(size) + b"}"
            plant(path, name, struct.pack("<Q", len(header)) + header)
        else:
            plant(path, name, data)
    margin = 160 << 20  # refusing holds the bytes 3-4 times; parsing needs ~250 MB
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(pristine), str(margin), *map(str, dirs.values())],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    for case, (_, _, fragment) in bombs.items():
        message = outcome[str(dirs[case])]
        assert message.startswith("refused: ") and fragment in message, (case, message)
        assert "arrays and objects; at most" in message, (case, message)


def test_json_over_its_byte_cap_is_refused_unread(pristine, tmp_path, monkeypatch):
    path = copy(pristine, tmp_path / "ckpt")
    plant(path, "training.json", b" " * 5000)
    monkeypatch.setitem(ckpt_module.JSON_LIMITS, "training.json", Limits(4000, 10, 10))
    refused(lambda: read_run_checkpoint(path, training=True), "training.json is 5000 bytes; the")


# --- what JSON cannot hold ----------------------------------------------------------------

TRAPS = {  # raw JSON under config.json's ignored "extra" key -> what the refusal says
    "repeated key": (b'{"a": 1, "a": 2}', "config.json repeats a key, 'a', in one object"),
    "500 levels": (b"[" * 500 + b"]" * 500, "config.json nests deeper than 64 levels"),
    "10**4299": (b"1" + b"0" * 4299, "holds an integer of 4300 digits (integers must be below"),
    "2**64": (str(2**64).encode(), "an integer of 20 digits (integers must be below 2**64) at"),
    "NaN": (b"[1, NaN]", "holds NaN (JSON has no such number) at extra[1]"),
    "Infinity": (b'{"x": Infinity}', "holds Infinity (JSON has no such number) at extra.x"),
    "-Infinity": (b"-Infinity", "holds -Infinity (JSON has no such number) at extra"),
    "1e400": (b"1e400", "holds '1e400', which overflows to infinity at extra"),
    "lone surrogate key": (b'{"\\udc00": 1}', "holds a lone surrogate"),
}


@pytest.mark.parametrize("case", list(TRAPS))
def test_what_json_cannot_hold_is_refused_naming_where(pristine, tmp_path, case):
    raw, fragment = TRAPS[case]
    path = copy(pristine, tmp_path / "ckpt")
    (path / "config.json").write_bytes(with_extra(path, raw))
    refused(lambda: load_task(path), "config.json", fragment)


def test_a_repeated_key_in_a_vocabulary_or_training_state_is_refused(pristine, tmp_path):
    path = copy(pristine, tmp_path / "ckpt")
    plant(path, "training.json", b'{"$dict": {"step": 1, "step": 2}}')
    refused(lambda: read_run_checkpoint(path, training=True), "training.json repeats a key")


def test_config_json_is_parsed_once_per_load(pristine, tmp_path, monkeypatch):
    path = copy(pristine, tmp_path / "ckpt")
    parsed = []
    real = json.loads

    def spy(text, *args, **kwargs):
        if "rnnkit-checkpoint" in (text if isinstance(text, str) else text.decode("latin-1")):
            parsed.append(1)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", spy)
    load_task(path)
    assert len(parsed) == 1


def test_json_that_would_not_load_back_is_refused_when_saved(pristine, tmp_path, monkeypatch):
    path = copy(pristine, tmp_path / "ckpt")
    before = {name: (path / name).read_bytes() for name in FILES}
    monkeypatch.setitem(ckpt_module.JSON_LIMITS, "vocab.json", Limits(100, 1000, 1))
    with pytest.raises(UserError, match="cannot save vocab.json: it is .* bytes; the limit is 100"):
        make_checkpoint(path)
    assert {name: (path / name).read_bytes() for name in FILES} == before
    monkeypatch.undo()
    load_checkpoint(path)  # the checkpoint that was there still loads
