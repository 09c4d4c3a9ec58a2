"""Every command takes ``--device``: a device this machine lacks, or a misspelt one, is one line
on stderr and exit status 2 before any work, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.cli import COMMANDS, main

RUN = str(Path(__file__).parent / "fixtures" / "release-0.1.0-lm")

#: the arguments of each command, with which it would run (the device aside)
ARGS = {
    "train": ["--preset", "tiny", "--max-steps", "1", "--out", "{tmp}/run"],
    "sample": [RUN, "--length", "5"],
    "eval": [RUN],
    "predict": [RUN, "x"],
    "demo": [],
    "analyze": ["gradients", RUN, "-o", "{tmp}/g.png"],
    "experiment": ["memory", "--out", "{tmp}/memory"],
    "report": [RUN, "-o", "{tmp}/report.html"],
    "bench": ["--only", "machine", "--quick"],
    "export": [RUN, "-o", "{tmp}/model.onnx"],
    "serve": [RUN, "--port", "0"],
}


def test_every_command_is_listed_here():
    assert set(ARGS) == set(COMMANDS)


def _argv(command: str, tmp_path: Path, device: str) -> list[str]:
    rest = [arg.replace("{tmp}", str(tmp_path)) for arg in ARGS[command]]
    if command in ("analyze", "experiment"):  # the device goes to the subcommand
        return [command, rest[0], *rest[1:], "--device", device]
    return [command, *rest, "--device", device]


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="a CUDA build: --device cuda may exist")
@pytest.mark.parametrize("command", sorted(ARGS))
def test_a_missing_cuda_is_one_line_and_exit_2(command, tmp_path, capsys):
    assert main(_argv(command, tmp_path, "cuda")) == 2
    out, err = capsys.readouterr()
    assert err == "rnnkit: error: --device cuda: this PyTorch has no CUDA support (a CPU build)\n"
    assert out == ""
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command", sorted(ARGS))
def test_a_misspelt_device_is_one_line_and_exit_2(command, tmp_path, capsys):
    assert main(_argv(command, tmp_path, "gpu0")) == 2
    out, err = capsys.readouterr()
    assert err == (
        "rnnkit: error: --device must be auto, cpu, cuda, cuda:N or mps, got 'gpu0'\n"
    ), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="a CUDA build: --device cuda may exist")
def test_in_a_real_process_too(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnkit",
            "train",
            "--device",
            "cuda:1",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "rnnkit: error: --device cuda:1: this PyTorch has no CUDA support (a CPU build)\n"
    )
    assert not (tmp_path / "r").exists()
