"""The trainer on a CUDA GPU (``-m gpu``; skipped with the reason where no CUDA device is
visible; ``benchmarks/gpu_check.sh`` runs them): a few steps in fp32, bf16 and fp16, a CUDA
run resumed on the CPU and a CPU run resumed on CUDA (state where it must be, one warning
line, the same data order), one host read per step on CUDA, and a CUDA-trained checkpoint that
samples on the CPU exactly as its trained weights do; with two GPUs, nccl.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_trainer_devices import TEXT, config_for, losses, quiet, rows

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.generation import generate
from rnnkit.tasks.saved import load_model
from rnnkit.trainer.loop import Trainer, train

pytestmark = pytest.mark.gpu
CUDA = "cuda"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("impl", ["fused", "cells"])
def test_training_on_cuda_in_each_precision(tmp_path, precision, impl):
    config = config_for(tmp_path, max_steps=40, eval_every=20, precision=precision)
    config.model.impl = impl
    trainer = Trainer(config, log=quiet, device=CUDA)
    assert trainer.device.type == "cuda"
    assert all(p.is_cuda for p in trainer.model.parameters())
    result = trainer.run()
    train_rows = rows(result.out, "train")
    first = sum(float(r["loss"]) for r in train_rows[:5]) / 5
    last = sum(float(r["loss"]) for r in train_rows[-5:]) / 5
    assert math.isfinite(result.best_val) and last < first, (first, last)
    assert all(r["device"].startswith("cuda:") for r in rows(result.out))
    state = trainer.optimizer.state
    assert all(v.is_cuda for s in state.values() for k, v in s.items() if k != "step")
    carried = trainer.task.state
    assert all(s.is_cuda for s in (carried if isinstance(carried, tuple) else (carried,)))


def test_a_cuda_run_resumes_on_the_cpu_and_a_cpu_run_on_cuda(tmp_path):
    """Without dropout the losses on the two devices agree to float rounding; the data order
    is the same; each resume says once that the dropout masks differ."""
    for first, then in (("cuda", "cpu"), ("cpu", "cuda")):
        out = f"{first}-{then}"
        whole, leg = config_for(tmp_path, f"{out}-whole"), config_for(tmp_path, out, max_steps=6)
        whole.model.dropout = leg.model.dropout = 0.0
        straight = train(whole, log=quiet, device=first)
        train(leg, log=quiet, device=first)
        saved = load_checkpoint(tmp_path / out / "last").training
        assert ("cuda" in saved["rng"]) == (first == "cuda")
        lines: list[str] = []
        trainer = Trainer(
            config_for(tmp_path, out),
            resume=True,
            overrides={"train": {"max_steps": 12}},
            log=lines.append,
            device=then,
        )
        state = trainer.optimizer.state  # loaded from the CPU file onto this run's device
        assert all(
            v.device.type == then for s in state.values() for k, v in s.items() if k != "step"
        )
        trainer.run()
        assert sum("dropout masks differ" in line for line in lines) == 1, lines
        a, b = losses(straight.out), losses(trainer.out)
        assert [s for s, _ in a] == [s for s, _ in b]
        for (_, x), (_, y) in zip(a, b, strict=True):
            assert float(x) == pytest.approx(float(y), abs=2e-3)


def test_one_host_read_per_step_on_cuda(tmp_path, monkeypatch):
    import test_trainer_devices

    cuda_trainer = lambda *a, **k: Trainer(*a, **k, device=CUDA)  # noqa: E731
    monkeypatch.setattr(test_trainer_devices, "Trainer", cuda_trainer)
    test_trainer_devices.test_one_host_read_per_step(tmp_path, monkeypatch)


def test_a_cuda_trained_checkpoint_samples_on_the_cpu_as_its_trained_weights_do(tmp_path):
    """The checkpoint of a CUDA run holds the trained weights bit for bit (written from the
    CPU copies), so sampling it on the CPU gives the text that the trained model itself, moved
    to the CPU, gives for the same seed."""
    trainer = Trainer(config_for(tmp_path, max_steps=30), log=quiet, device=CUDA)
    result = trainer.run()
    trained = copy.deepcopy(trainer.model).cpu().eval()
    saved, vocab, _ = load_model(result.out / "last")  # device-free: onto the CPU
    assert all(p.device.type == "cpu" for p in saved.parameters())
    for name, value in trained.state_dict().items():
        assert torch.equal(saved.state_dict()[name], value), name
    texts = [generate(m, vocab, length=200, seed=7)[0] for m in (trained, saved)]
    assert texts[0] == texts[1] and len(texts[0]) >= 200
    cuda_model, _, _ = load_model(result.out / "last", CUDA)  # and it samples on CUDA too
    assert len(generate(cuda_model, vocab, length=50, seed=7)[0]) >= 50


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="nccl needs two GPUs, one per process")
def test_two_gpu_processes_on_nccl_train_as_one_gpu_process(tmp_path):
    """``rnnkit train --nproc 2 --device cuda``: nccl, each process on its LOCAL_RANK's GPU,
    identical weights on both, and the weights of one process with the same global batch."""
    import subprocess
    import sys

    (tmp_path / "text.txt").write_text(TEXT)
    flags = (
        "--hidden 16 --embed 8 --seq-len 16 --batch-size 4 --eval-every 3 --eval-batches 1 "
        "--sample-every 0 --log-every 1 --lr 0.01 --seed 3 --max-steps 8 --device cuda"
    ).split()
    outs = {}
    for out, extra in (("two", ["--nproc", "2"]), ("one", [])):
        run = subprocess.run(
            [sys.executable, "-m", "rnnkit", "train", "text.txt", "--out", out, *flags, *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        outs[out] = run.stdout
    assert "parameters identical on all 2 ranks" in outs["two"]
    assert all(r["device"].startswith("cuda:0") for r in rows(tmp_path / "two"))  # rank 0's
    two = load_checkpoint(tmp_path / "two" / "last").model_state
    one = load_checkpoint(tmp_path / "one" / "last").model_state
    for name in one:  # the batch's sum is reduced in another order: float tolerance
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-4, msg=name)
