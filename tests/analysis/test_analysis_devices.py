"""``--device`` on analyze, experiment, report, export and demo (issue 17).

On the CPU: ``--device cpu`` gives what the default gives (the default is the CPU here), figure
for figure and file for file; ``--device cuda`` on this CPU build is one line and exit 2 in a
real process, with nothing written. Under the ``gpu`` marker: the probes (gradient flow, the
trace, a memory trial) on CUDA give the CPU's numbers within tolerance, and ``report`` and
``analyze gradients`` run whole on CUDA.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from analysis_runs import TEXT

from rnnkit.cli import main

#: Each command with small arguments; ``{tmp}`` is the test's directory, ``{run}`` a trained run.
COMMANDS = {
    "demo": ["demo", "--hidden", "6", "--layers", "1", "--length", "4", "--batch", "2"],
    "analyze": ["analyze", "gradients", "--fresh", "rnn", "lstm", "--hidden", "8", "--length",
                "6", "--batch", "2", "--json", "-o", "{tmp}/g.png"],
    "memory": ["experiment", "memory", "--tasks", "adding", "--cells", "gru", "--lengths", "5",
               "--seeds", "1", "--steps", "3", "--budget", "200", "--workers", "1", "--json",
               "--out", "{tmp}/m"],
    "exploding": ["experiment", "exploding", "--steps", "4", "--json", "--out", "{tmp}/e"],
    "report": ["report", "{run}", "--format", "png", "-o", "{tmp}/r", "--chars", "60",
               "--length", "5", "--sample-length", "10"],
    "export": ["export", "{run}", "-o", "{tmp}/model.onnx"],
}  # fmt: skip


def _run(name: str, tmp: Path, run: Path, capsys, *device: str) -> tuple[str, dict[str, bytes]]:
    """stdout (the directory's name replaced) and the files written, by relative path."""
    tmp.mkdir()
    argv = [a.replace("{tmp}", str(tmp)).replace("{run}", str(run)) for a in COMMANDS[name]]
    assert main([*argv, *device]) == 0
    out = capsys.readouterr().out.replace(str(tmp), "TMP")
    return out, {str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()}


def _timeless(text: str) -> str:
    """JSON output without the seconds each memory trial took (the one figure that varies)."""
    if not text.startswith("{"):
        return text
    payload = json.loads(text)
    for trial in payload.get("trials", []):
        trial.pop("seconds")
    return json.dumps(payload)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_device_cpu_gives_what_the_default_gives(name, rnn_run, tmp_path, capsys):
    default = _run(name, tmp_path / "default", rnn_run, capsys)
    cpu = _run(name, tmp_path / "cpu", rnn_run, capsys, "--device", "cpu")
    assert _timeless(cpu[0]) == _timeless(default[0])
    assert sorted(cpu[1]) == sorted(default[1])
    assert cpu[1] or name == "demo"  # every command but demo writes files
    for path, data in default[1].items():
        if path.endswith((".png", ".onnx")):  # pictures and graphs: byte for byte
            assert cpu[1][path] == data, path
        else:
            assert _timeless(cpu[1][path].decode()) == _timeless(data.decode()), path


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="a CUDA build: --device cuda may exist")
@pytest.mark.parametrize("name", ["demo", "analyze", "memory", "report", "export"])
def test_device_cuda_without_cuda_is_one_line_exit_2_nothing_written(name, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(tmp_path / "r"))
            for a in COMMANDS[name]]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "rnnkit", *argv, "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "rnnkit: error: --device cuda: this PyTorch has no CUDA support (a CPU build)\n"
    )
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


# ---- on a GPU --------------------------------------------------------------------------------
@pytest.fixture
def exact_cuda():
    """CUDA in float32 proper: no TF32 in cuDNN or cuBLAS, so CPU and GPU agree to ~1e-5."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
def test_gradient_flow_on_cuda_is_the_cpu_s(lstm_run, exact_cuda):
    from rnnkit.analysis.gradient_flow import run_gradient_flow

    options = {"length": 12, "batch": 4, "seed": 0, "text": TEXT}  # the run's own text
    cpu = run_gradient_flow(str(lstm_run), **options, device="cpu")
    gpu = run_gradient_flow(str(lstm_run), **options, device=exact_cuda)
    for when in ("before", "after"):
        for field in ("h_norm", "c_norm", "jacobian_sv"):
            np.testing.assert_allclose(
                getattr(gpu[when], field), getattr(cpu[when], field), rtol=1e-3, atol=1e-7
            )


@pytest.mark.gpu
def test_trace_and_gates_on_cuda_are_the_cpu_s(lstm_run, exact_cuda):
    from rnnkit.analysis.activations import trace
    from rnnkit.analysis.runs import language_model_run

    text = "the moon is bright (said juliet)"
    model, vocab, _ = language_model_run(lstm_run)
    cpu = trace(model, vocab, text)
    gpu = trace(model.to(exact_cuda), vocab, text)
    for k in range(cpu.layers):
        np.testing.assert_allclose(gpu.hidden[k], cpu.hidden[k], atol=1e-5)
        for gate, values in cpu.gates[k].items():
            np.testing.assert_allclose(gpu.gates[k][gate], values, atol=1e-5)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-4)


@pytest.mark.gpu
def test_memory_trial_on_cuda_is_the_cpu_s(exact_cuda):
    from rnnkit.analysis.memory import run_trial

    options = {"steps": 20, "budget": 300, "batch": 8, "stop_early": False}
    cpu = run_trial("adding", "lstm", 8, 0, **options, device="cpu")
    gpu = run_trial("adding", "lstm", 8, 0, **options, device=exact_cuda)
    assert (gpu.hidden, gpu.params, gpu.steps_run) == (cpu.hidden, cpu.params, cpu.steps_run)
    assert gpu.baseline == cpu.baseline  # the same data: drawn on the host
    assert gpu.loss == pytest.approx(cpu.loss, rel=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["report", "analyze", "memory", "demo"])
def test_commands_run_on_cuda(name, lstm_run, tmp_path, capsys):
    cpu = _run(name, tmp_path / "cpu", lstm_run, capsys, "--device", "cpu")
    gpu = _run(name, tmp_path / "gpu", lstm_run, capsys, "--device", "cuda")
    assert sorted(gpu[1]) == sorted(cpu[1])  # the same figures written
    if name == "analyze":  # the summary's figures within tolerance
        mine, theirs = json.loads(gpu[0]), json.loads(cpu[0])
        for cell, pair in theirs.items():
            for key, value in pair["fresh"].items():
                if isinstance(value, float):
                    assert mine[cell]["fresh"][key] == pytest.approx(value, rel=1e-2), key
                else:
                    assert mine[cell]["fresh"][key] == value, key
