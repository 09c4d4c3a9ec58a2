"""Every I/O failure while writing (file-size limit, read-only file system, a path through a
regular file, a dangling link, a full disk) is one line ``rnnkit: error: cannot ... PATH: CAUSE``
with exit status 2, and the checkpoints that were there still load (``rnnkit.io_errors``)."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_run_dirs import TEXT, TINY, refused

from rnnkit.analysis import report
from rnnkit.cli import main
from rnnkit.tasks.saved import read_run_checkpoint

LIMIT = 25_000  # bytes: more than metrics.csv or config.json, less than model.safetensors


@pytest.fixture
def here(tmp_path, monkeypatch):
    (tmp_path / "plays.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def run(here):
    """A run at step 2 in ``here/r``."""
    assert main(["train", "plays.txt", *TINY, "--out", "r", "--max-steps", "2"]) == 0
    return here / "r"


def _file_size_limit():
    """In the child, before exec: ``ulimit -f`` and SIGXFSZ back to its default (which kills),
    so only rnnkit's own ``SIG_IGN`` turns the limit into an EFBIG error."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


def test_a_save_past_the_file_size_limit_is_one_line_and_the_last_checkpoint_loads(run):
    before = (run / "last" / "model.safetensors").read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "rnnkit", "train", "--resume", "r", "--max-steps", "3"],
        preexec_fn=_file_size_limit, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: cannot write r/"), lines
    assert lines[0].endswith(": File too large"), lines
    ckpt, _, _ = read_run_checkpoint(run / "last", training=True)
    assert (
        ckpt.training["step"] == 2 and (run / "last" / "model.safetensors").read_bytes() == before
    )
    assert not [n for n in os.listdir(run) if ".tmp" in n]  # no half-written copy left


def test_rnnkit_ignores_sigxfsz_itself():
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        main(["--no-such-flag"])
        assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGXFSZ, previous)


def test_out_under_a_regular_file_is_one_line(here, capsys):
    refused(capsys, ["train", "plays.txt", *TINY, "--out", "plays.txt/r"],
            "cannot create --out plays.txt/r: Not a directory")  # fmt: skip


def test_out_as_a_dangling_symlink_is_one_line(here, capsys):
    os.symlink(here / "gone", here / "link")
    refused(capsys, ["train", "plays.txt", *TINY, "--out", "link"], "--out link", "symbolic link")
    assert os.path.islink(here / "link") and not (here / "gone").exists()


def _read_only_command(folder: Path) -> list[str] | None:
    """A command prefix that runs what follows with ``folder`` read-only: as root (whom
    ``chmod`` does not stop) a read-only bind mount in a private mount namespace; None if
    this machine does not allow one."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    script = (
        f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    )
    prefix = ["unshare", "-m", "sh", "-c", script, "sh"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        return None
    return prefix


def test_a_read_only_directory_is_one_line(here):
    (here / "ro").mkdir()
    prefix = _read_only_command(here / "ro")
    if prefix is None:
        pytest.skip("running as root without mount namespaces: no way to make a read-only dir")
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "rnnkit", "train", "plays.txt", *TINY,
             "--out", "ro/r"], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        (here / "ro").chmod(0o755)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: cannot create --out ro/r: ")
    assert lines[0].endswith(("Read-only file system", "Permission denied")), lines
    assert os.listdir(here / "ro") == []


def test_export_past_the_file_size_limit_is_one_line(run, capsys):
    with _in_process_limit():
        refused(
            capsys, ["export", "r", "-o", "model.onnx"], "cannot write model.onnx: File too large"
        )
    assert not [n for n in os.listdir(run.parent) if "onnx" in n]


def test_report_and_experiment_writes_name_the_file(here, monkeypatch):
    with _in_process_limit(), pytest.raises(report.UserError, match="cannot write big.html: File"):
        report._atomic_write(Path("big.html"), b"x" * (2 * LIMIT))
    assert os.listdir(here) == ["plays.txt"]  # no temp file left
    from rnnkit.commands.args import write_json

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(report.UserError, match="cannot write out/m.json: No space left on device"):
        write_json(Path("out") / "m.json", {"a": 1})


class _in_process_limit:
    """``ulimit -f LIMIT`` in this process (Python ignores SIGXFSZ: writes fail with EFBIG)."""

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, self.saved[1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)
