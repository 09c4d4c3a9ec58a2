"""The tests' runner of ``python -m rnnkit`` (tests/subprocess_cli.py): a process forked from a
warm server gives what a fresh interpreter gives (output, errors, exit status, non-ASCII text),
times out as ``subprocess.run`` does, and starts a fresh interpreter where the environment holds
something read at start."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from subprocess_cli import rnnkit

FIXTURE = Path(__file__).parent / "fixtures" / "release-0.1.0-lm"


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("train", "--hidden", "0"),  # a one-line error, exit status 2
        (
            "sample",
            "run",
            "--seed",
            "1",
            "--length",
            "80",
            "--prime",
            "ROMEO: é…",
            "--unknown",
            "skip",
            "--device",
            "cpu",
        ),  # fmt: skip
        ("eval", "run", "--json", "--device", "cpu"),
        ("bogus-command",),  # argparse's usage error
    ],
)
def test_forked_and_fresh_runs_agree(tmp_path, args):
    shutil.copytree(FIXTURE, tmp_path / "run")
    forked = rnnkit(*args, cwd=tmp_path)
    fresh = rnnkit(*args, cwd=tmp_path, fresh=True)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert forked.args == fresh.args


def test_a_forked_run_past_its_timeout_is_killed(tmp_path):
    (tmp_path / "text.txt").write_text("abcdefgh " * 400, encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        rnnkit("train", "text.txt", "--max-time", "120", "--threads", "1", cwd=tmp_path, timeout=3)
    assert time.monotonic() - start < 60


def test_a_variable_read_at_start_gets_a_fresh_interpreter(tmp_path):
    """PYTHONPATH is read when Python starts: a sitecustomize on it runs only in a fresh
    interpreter, so its mark on stderr shows which one ran."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nprint('fresh start', file=sys.stderr)\n")
    done = rnnkit("--version", cwd=tmp_path, env_extra={"PYTHONPATH": str(site)})
    assert done.returncode == 0 and "fresh start" in done.stderr
    done = rnnkit("--version", cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and "fresh start" not in done.stderr
