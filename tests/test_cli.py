"""The ``rnnkit`` command end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import tempfile

import pytest

import rnnkit
from subprocess_cli import rnnkit as run_rnnkit


def run(*args: str) -> subprocess.CompletedProcess:
    return run_rnnkit(*args, cwd=tempfile.gettempdir(), timeout=120)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_demo_prints_shapes_and_agrees_with_torch(cell):
    result = run("demo", "--cell", cell, "--bidirectional", "--num-layers", "3", "--batch", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "weight_hh_l2_reverse" in out
    assert "output (N, L, D*H_out)         (3, 12, 64)" in out
    assert "h_n    (D*num_layers, N, H_out) (6, 3, 32)" in out
    diffs = [float(v) for v in re.findall(r"max \|.*\|\s+(\S+)", out)]
    assert len(diffs) == 2 and max(diffs) < 1e-12
    assert out.count("final state == run alone: True") == 3
    assert "False" not in out


def test_version_and_console_script_entry_point():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rnnkit {rnnkit.__version__}"
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "rnnkit"]
    assert script.value == "rnnkit.cli:main"


@pytest.mark.parametrize(
    "args,message",
    [
        (["fly"], "invalid choice: 'fly'"),
        (["demo", "--batch", "0"], "argument --batch: expected a positive integer, got 0"),
        (["demo", "--hidden-size", "many"], "expected a positive integer, got 'many'"),
        (["demo", "--cell", "transformer"], "argument --cell: invalid choice: 'transformer'"),
        (["demo", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rnnkit: error:") and message in lines[0]
    assert "Traceback" not in result.stderr
