"""A run directory belongs to one trainer at a time (``rnnkit.checkpoint.lock``), and ``--out``
is new, empty, or the run being resumed (``runs.check_new_run_dir``); a run that fails before
its first save leaves no directory behind."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnkit.checkpoint import files as checkpoint
from rnnkit.checkpoint.lock import LOCK_NAME, check_unlocked, lock_run_dir
from rnnkit.checkpoint.runs import check_new_run_dir
from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.tasks.saved import read_run_checkpoint

TEXT = "".join(f"{w}: the {x} is {y}.\n" for w in "ABCD" for x in "mnop" for y in "qrst") * 40
TINY = ["--preset", "tiny", "--threads", "1", "--eval-batches", "1", "--log-every", "1"]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working directory with plays.txt and its own token cache."""
    (tmp_path / "plays.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def refused(capsys, argv, *needles) -> str:
    """``rnnkit ARGV`` ends with one line ``rnnkit: error: ...`` (each needle in it), exit 2."""
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def metric_steps(run: Path) -> list[int]:
    with open(run / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r["kind"] == "train"]


def test_a_second_trainer_is_refused_while_the_first_trains_untouched(here, capsys):
    first = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "train", "plays.txt", *TINY, "--out", "r",
         "--max-steps", "1000000", "--eval-every", "1000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_rows(here / "r")) < 2:
            assert first.poll() is None, first.communicate()
            time.sleep(0.1)
        busy = f"is being trained by another process (pid {first.pid})"
        refused(capsys, ["train", "plays.txt", *TINY, "--out", "r"], "--out r", busy)
        refused(capsys, ["train", "--resume", "r", "--max-steps", "1"], busy)
        assert "last" in os.listdir(here / "r")  # the first run's checkpoint is still there
    finally:
        first.send_signal(signal.SIGINT)  # the first saves and stops normally
        out, err = first.communicate(timeout=120)
    assert first.returncode == 130 and "Traceback" not in err, err
    steps = metric_steps(here / "r")
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2  # every row, in order
    _, _, _ = read_run_checkpoint(here / "r" / "last", training=True)
    assert not (here / "r" / LOCK_NAME).exists()  # released: and a resume may go on
    assert main(["train", "--resume", "r", "--max-steps", "1"]) == 0


def _rows(run: Path) -> list[str]:
    try:
        return (run / "metrics.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return []


def test_a_lock_file_left_by_a_killed_trainer_blocks_nothing(here):
    assert main(["train", "plays.txt", *TINY, "--out", "r", "--max-steps", "2"]) == 0
    (here / "r" / LOCK_NAME).write_text("999999\n")  # SIGKILL: the file stays, the flock not
    assert main(["train", "--resume", "r", "--max-steps", "3"]) == 0
    assert metric_steps(here / "r") == [1, 2, 3]


def test_the_lock_is_exclusive_between_two_opens_and_freed_on_release(tmp_path):
    held = lock_run_dir(tmp_path / "new" / "run", create=True)
    assert held.held and (tmp_path / "new" / "run" / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(UserError, match=rf"being trained by another process \(pid {os.getpid()}"):
        lock_run_dir(tmp_path / "new" / "run", create=True)
    with pytest.raises(UserError, match="being trained by another process"):
        check_unlocked(tmp_path / "new" / "run")  # what `--nproc N` asks before it starts any
    held.release(abandon=True)
    assert not (tmp_path / "new").exists()  # made by the lock, removed as it was empty
    again = lock_run_dir(tmp_path / "new" / "run", create=True)
    again.release()
    assert (tmp_path / "new" / "run").is_dir() and not (
        tmp_path / "new" / "run" / LOCK_NAME
    ).exists()


def test_a_non_empty_directory_that_holds_no_run_is_refused(here, capsys):
    (here / "mine").mkdir()
    (here / "mine" / "loss.png").write_bytes(b"my own picture")
    refused(capsys, ["train", "plays.txt", *TINY, "--out", "mine"], "--out mine", "not empty")
    assert os.listdir(here / "mine") == ["loss.png"]
    assert (here / "mine" / "loss.png").read_bytes() == b"my own picture"


def test_a_file_system_root_is_refused():
    with pytest.raises(UserError, match="file system root"):
        check_new_run_dir(Path("/"))
    with pytest.raises(UserError, match="file system root"):  # --resume / : not even a lock file
        lock_run_dir(Path("/"), create=False)
    assert not os.path.lexists(Path("/") / LOCK_NAME)


def test_an_empty_directory_is_a_fine_out(here):
    (here / "empty").mkdir()
    assert main(["train", "plays.txt", *TINY, "--out", "empty", "--max-steps", "1"]) == 0
    assert {"last", "best", "metrics.csv"} <= set(os.listdir(here / "empty"))


def test_a_run_that_fails_before_its_first_save_leaves_no_directory(here, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "_write_files", full)
    argv = ["train", "plays.txt", *TINY, "--out", "new/r", "--max-steps", "1"]
    refused(capsys, argv, "cannot write new/r/last: No space left on device")
    refused(capsys, ["train", "missing.txt", *TINY, "--out", "new/r"], "missing.txt")
    assert sorted(os.listdir(here)) == ["cache", "plays.txt"]
