"""``--device`` on the inference commands (eval, sample, predict, serve) and the library under
them, on the CPU: ``--device cpu`` gives exactly what the default gives where the default is
the CPU; a device that is not there is one line and exit 2 before the checkpoint is read;
``load_task(path, device)`` asks for the device; the device-side sums of the evaluation loops
add up as the host did. What this file cannot prove without a GPU -- that the numbers on CUDA
match the CPU's -- is tests/test_gpu_inference.py's (``gpu`` marker)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit import devices
from rnnkit.cli import main
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.tasks import metrics
from rnnkit.tasks.saved import load_task
from subprocess_cli import rnnkit as run_rnnkit

FIXTURE = Path(__file__).parent / "fixtures" / "release-0.1.0-lm"
NAMES = {
    "Italian": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo"],
    "Japanese": ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Nakamura"],
}
NO_CUDA_BUILD = pytest.mark.skipif(
    torch.backends.cuda.is_built(), reason="a CUDA build: --device cuda may exist"
)
INFERENCE = ("eval", "sample", "predict", "serve")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``lm``: the release fixture (a copy); ``classify``: a few steps on names."""
    from rnnkit.trainer.loop import train

    root = tmp_path_factory.mktemp("devices")
    shutil.copytree(FIXTURE, root / "lm")
    (root / "text.txt").write_text("ROMEO:\nWhat light through yonder window breaks?\n" * 40)
    names = root / "names"
    names.mkdir()
    for label, words in NAMES.items():
        (names / f"{label}.txt").write_text("\n".join(words * 4) + "\n")
    config = RunConfig()
    apply_overrides(config, {
        "task": {"name": "classify"},
        "data": {"paths": [str(names)], "cache_dir": str(root / "cache")},
        "model": {"embed": 8, "hidden": 12, "layers": 1},
        "train": {"out": str(root / "classify"), "batch_size": 8, "max_steps": 6,
                  "eval_every": 6, "sample_every": 0, "log_every": 3, "threads": 1, "seed": 0},
    }, "test")  # fmt: skip
    train(config, log=lambda *_: None)
    return root


def rnnkit(*args: str, cwd: Path, hide_gpus: bool = False) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1"}
    if hide_gpus:  # the default (auto) picks the CPU here even on a machine with a GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    return run_rnnkit(*args, cwd=cwd, env_extra=env)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), done.stderr
    assert done.stdout == ""
    return lines[0]


# ---- --device cpu changes nothing --------------------------------------------------------------

SAME = {
    "sample one": ("sample", "lm", "--length", "60", "--seed", "3", "--prime", "ROMEO:"),
    "sample three": ("sample", "lm", "--length", "30", "--seed", "5", "--num-samples", "3"),
    "sample greedy": ("sample", "lm", "--length", "30", "--temperature", "0"),
    "eval lm": ("eval", "lm", "text.txt", "--json"),
    "eval classify": ("eval", "classify", "--split", "test", "--json"),
    "predict": ("predict", "classify", "Rossi", "Tanaka", "--top", "2"),
}


@pytest.mark.parametrize("case", sorted(SAME))
def test_device_cpu_gives_what_the_default_gives(runs, case):
    default = rnnkit(*SAME[case], cwd=runs, hide_gpus=True)
    assert default.returncode == 0, default.stderr[-2000:]
    chosen = rnnkit(*SAME[case], "--device", "cpu", cwd=runs)
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    assert chosen.stdout == default.stdout and chosen.stdout.strip()
    if SAME[case][0] == "eval":
        assert '"device": "cpu"' in chosen.stdout


def test_eval_says_the_device_it_scores_on(runs):
    done = rnnkit("eval", "classify", "--device", "cpu", cwd=runs)
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("rnnkit eval: scoring the val split of ") and first.endswith(" on cpu")


def _serve_answer(runs: Path, *flags: str) -> tuple[str, dict]:
    """Start ``rnnkit serve lm --port 0 FLAGS``, ask one seeded request, stop it (SIGINT):
    (its header line, the answer)."""
    pytest.importorskip("uvicorn", reason="rnnkit[serve] is not installed")
    httpx = pytest.importorskip("httpx", reason="rnnkit[serve]'s tests need httpx")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    server = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "serve", "lm", "--port", "0", "--log-level", "warning",
         *flags],
        cwd=runs, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        header = server.stderr.readline()
        url = re.search(r" on (http://\S+) ", header)
        assert url, header + server.stderr.read()
        body = {"prime": "ROMEO:", "length": 40, "seed": 9, "temperature": 0.9}
        answer = httpx.post(f"{url[1]}/generate", json=body, timeout=60).json()
        return header, answer
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)


def test_serve_device_cpu_answers_what_the_default_answers(runs):
    header, answer = _serve_answer(runs, "--device", "cpu")
    assert "symbols, cpu) on http://" in header
    _, default = _serve_answer(runs)
    assert answer == default and answer["chars"] == 40


# ---- a device that is not there: one line, exit 2, before the checkpoint is read ---------------


@NO_CUDA_BUILD
@pytest.mark.parametrize("command", INFERENCE)
def test_cuda_without_cuda_support_in_a_real_process(runs, tmp_path, command):
    args = (command, str(runs / "lm"), *(("x",) if command == "predict" else ()))
    line = one_line_error(rnnkit(*args, "--device", "cuda", cwd=tmp_path))
    assert line == "rnnkit: error: --device cuda: this PyTorch has no CUDA support (a CPU build)"
    assert list(tmp_path.iterdir()) == []  # nothing written (not even a cache)


@pytest.mark.parametrize("device", ["cuda:x", "gpu"])
@pytest.mark.parametrize("command", INFERENCE)
def test_a_misspelt_device_names_the_flag(runs, capsys, command, device):
    assert main([command, str(runs / "lm"), "--device", device]) == 2
    out, err = capsys.readouterr()
    expected = f"--device must be auto, cpu, cuda, cuda:N or mps, got {device!r}"
    assert err == f"rnnkit: error: {expected}\n" and out == ""


@pytest.mark.parametrize("command", INFERENCE)
def test_no_visible_cuda_device_is_refused_before_the_checkpoint(monkeypatch, capsys, tmp_path,
                                                                   command):  # fmt: skip
    """A CUDA build on a machine without a GPU (faked): the device is checked first, so the
    error is about the device although the checkpoint does not even exist."""
    monkeypatch.setattr(devices, "cuda_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    absent = str(tmp_path / "no-such-run")
    assert main([command, absent, "--device", "cuda"]) == 2
    out, err = capsys.readouterr()
    assert err == "rnnkit: error: --device cuda: no CUDA device is visible\n"
    assert out == "" and list(tmp_path.iterdir()) == []


def test_onnx_runtime_refuses_a_gpu_device(runs, monkeypatch, capsys):
    """--runtime onnx runs on onnxruntime's CPU provider: a GPU asked for by name is refused
    (faked visible, so the refusal is the runtime's, not the device check's)."""
    monkeypatch.setattr(devices, "cuda_built", lambda: True)
    monkeypatch.setattr(devices, "cuda_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert main(["sample", str(runs / "lm"), "--runtime", "onnx", "--device", "cuda:0"]) == 2
    out, err = capsys.readouterr()
    assert err == "rnnkit: error: --device cuda:0 needs --runtime torch (onnx runs on the CPU)\n"
    assert out == ""


# ---- the library ------------------------------------------------------------------------------


def test_load_task_asks_for_the_device_and_leaves_everything_there(runs, monkeypatch):
    """On a CPU-only machine this proves the model is moved with ``Module.to(device)`` and
    that every tensor ends on that device (the CPU); that a move to CUDA gives the CPU's
    numbers is the GPU tests' to prove."""
    asked = []
    original = torch.nn.Module.to

    def spy(module, *args, **kwargs):
        asked.extend(a for a in (*args, *kwargs.values()) if isinstance(a, torch.device))
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    for run in ("lm", "classify"):
        asked.clear()
        task, model, _ = load_task(runs / run, torch.device("cpu"))
        assert asked == [torch.device("cpu")]
        assert not model.training
        assert all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers()))
        asked.clear()
        load_task(runs / run)  # None: the library's default leaves the model where it is built
        assert asked == []


def test_count_pairs_is_the_confusion_matrix_of_the_valid_pairs():
    rng = np.random.default_rng(0)
    counts = torch.zeros(5, 5, dtype=torch.long)
    truth_all, predicted_all = [], []
    for _ in range(4):
        truth = torch.from_numpy(rng.integers(0, 5, (6, 7)))
        predicted = torch.from_numpy(rng.integers(0, 5, (6, 7)))
        valid = torch.from_numpy(rng.random((6, 7)) < 0.7)
        metrics.count_pairs(counts, truth, predicted, valid)
        truth_all += truth[valid].tolist()
        predicted_all += predicted[valid].tolist()
    expected = metrics.confusion_matrix(truth_all, predicted_all, 5)
    assert (counts.numpy() == expected).all() and counts.sum() == len(truth_all) > 0
    metrics.count_pairs(counts, torch.tensor([4]), torch.tensor([0]))  # no mask: every pair
    assert counts[4, 0] == expected[4, 0] + 1


def test_sums_add_as_python_floats_did():
    """The evaluation loops summed ``float(x) * n`` on the host; on the device the float64
    sums are bit for bit the same (so a CPU run's figures did not move)."""
    rng = np.random.default_rng(1)
    values = torch.from_numpy(rng.random(50).astype(np.float32) * 1000)
    weights = rng.integers(1, 64, 50).tolist()
    sums = metrics.Sums(torch.device("cpu"), "loss", "count")
    host = {"loss": 0.0, "count": 0.0}
    for value, weight in zip(values, weights, strict=True):
        sums.add("loss", value, weight)
        sums.add("count", torch.tensor(weight))
        host["loss"] += float(value) * weight
        host["count"] += weight
    assert sums.read() == host
