"""The trainer on a device, on this CPU-only machine: ``device=`` resolved and said, one host
read per step, fp16 with its gradient scaler (resume exact, overflow skipped), device-free
checkpoints whose CUDA generators are saved and, where they cannot be restored, named in one
line, ``--deterministic``, and the choice of nccl or gloo under torchrun.

Where CUDA is needed the tests fake its availability in-process (monkeypatched
``torch.cuda``): they prove the decisions (what is saved, what is warned, which backend and
GPU), not that CUDA kernels run -- ``test_gpu_training.py`` does that on a GPU machine.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.checkpoint.files import load_checkpoint, save_checkpoint
from rnnkit.checkpoint.state import flatten_state, rng_state, set_rng_state, unflatten_state
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.errors import UserError
from rnnkit.trainer.loop import Trainer, train
from rnnkit.trainer.state import training_state
from rnnkit.training import distributed

WORDS = "the cat sat on a mat and saw the dog run to his red hat while birds sang".split()
TEXT = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(3000)) + "\n"
quiet = lambda *_: None  # noqa: E731


def config_for(tmp_path: Path, out: str = "run", **train) -> RunConfig:
    """A tiny language model (dropout on: the generators matter) on a fixed text."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    config = RunConfig()
    settings = {
        "data": {"paths": [str(corpus)], "cache_dir": str(tmp_path / "cache")},
        "model": {"embed": 8, "hidden": 16, "layers": 2, "dropout": 0.1},
        "train": {"out": str(tmp_path / out), "seq_len": 12, "batch_size": 4, "lr": 0.01,
                  "max_steps": 12, "eval_every": 6, "eval_batches": 2, "sample_every": 0,
                  "log_every": 1, "threads": 1, "seed": 5, **train},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def rows(out: Path, kind: str | None = None) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if kind is None or r["kind"] == kind]


def rewrite(ckpt) -> None:
    """Save a loaded checkpoint back where it was read, with whatever a test changed."""
    save_checkpoint(
        ckpt.path,
        config=ckpt.config,
        model_state=ckpt.model_state,
        vocab=ckpt.vocab,
        training=ckpt.training,
    )


def losses(out: Path) -> list[tuple[str, str]]:
    return [(r["step"], r["loss"]) for r in rows(out, "train")]


# ---- the device ------------------------------------------------------------------------------


def test_the_device_is_resolved_said_and_stored_in_metrics(tmp_path):
    lines: list[str] = []
    result = train(config_for(tmp_path, max_steps=6), log=lines.append, device="cpu")
    assert any("; on cpu; run directory" in line for line in lines[:3]), lines[:3]
    written = rows(result.out)
    assert written and {r["device"] for r in written} == {"cpu"}  # every kind of row
    auto = Trainer(config_for(tmp_path, "auto"), log=quiet)  # None: auto, the CPU here
    assert auto.device == torch.device("cpu")
    assert all(p.device == auto.device for p in auto.model.parameters())


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="this PyTorch has CUDA")
def test_a_missing_device_is_refused_before_anything_is_written(tmp_path):
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(UserError, match="this PyTorch has no CUDA support"):
            Trainer(config_for(tmp_path), log=quiet, device=device)
    with pytest.raises(UserError, match="--device must be"):
        Trainer(config_for(tmp_path), log=quiet, device="gpu")
    assert not (tmp_path / "run").exists()


def test_one_host_read_per_step(tmp_path, monkeypatch):
    """The step reads the device once (loss, norm and bpc together): no ``.item()`` and one
    ``.tolist()`` from rnnkit's code per step, when no evaluation or log line falls in it."""
    trainer = Trainer(config_for(tmp_path, eval_every=100, log_every=100), log=quiet)
    calls: list[str] = []
    ours = str(Path(rnnkit.__file__).parent)  # torch's own reads (Adam's CPU step) are not ours

    def recorder(name, original):
        def read(self, *args):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(ours):
                calls.append(f"{name} in {Path(caller).name}")
            return original(self, *args)

        return read

    monkeypatch.setattr(torch.Tensor, "item", recorder("item", torch.Tensor.item))
    monkeypatch.setattr(torch.Tensor, "tolist", recorder("tolist", torch.Tensor.tolist))
    for _ in range(3):
        result = trainer._train_step()
    assert calls == ["tolist in state.py"] * 3  # trainer.state.read_step
    assert math.isfinite(result.loss) and set(result.info) == {"bpc"}
    assert result.info["bpc"] == pytest.approx(result.loss / math.log(2))


# ---- fp16 on the CPU: autocast and the gradient scaler ---------------------------------------


def test_fp16_resumes_exactly_with_its_scaler_state(tmp_path):
    straight = train(config_for(tmp_path, "straight", precision="fp16"), log=quiet)
    first = train(config_for(tmp_path, "resumed", precision="fp16", max_steps=7), log=quiet)
    saved = load_checkpoint(first.out / "last").training["scaler"]
    assert saved["scale"] == 65536.0 and saved["_growth_tracker"] == 7  # 7 good steps
    trainer = Trainer(
        config_for(tmp_path, "resumed"), resume=True, overrides={"train": {"max_steps": 12}}
    )
    assert trainer.precision.scaler.state_dict()["_growth_tracker"] == 7  # restored, not fresh
    trainer.log = quiet
    resumed = trainer.run()
    assert losses(straight.out) == losses(resumed.out)
    a = load_checkpoint(straight.out / "last").model_state
    b = load_checkpoint(resumed.out / "last").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


class _InfiniteGradient(torch.autograd.Function):
    """The identity forward; backward sends an infinite gradient (an fp16 overflow)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


def test_an_fp16_overflow_is_skipped_and_halves_the_scale_without_a_reload(tmp_path):
    trainer = Trainer(config_for(tmp_path, precision="fp16", max_steps=6), log=quiet)
    forward, calls = trainer.model.forward, {"n": 0}

    def overflowing(idx, targets=None, state=None):
        output = forward(idx, targets, state)
        if trainer.model.training:
            calls["n"] += 1
            if calls["n"] == 3:
                return output._replace(loss=_InfiniteGradient.apply(output.loss))
        return output

    trainer.model.forward = overflowing
    for _ in range(2):
        trainer._train_step()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer._train_step()
    assert math.isfinite(result.loss) and not math.isfinite(result.grad_norm)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.precision.scaler.get_scale() == 65536.0 / 2 and trainer.bad_steps == 0
    skipped = rows(trainer.out, "skip")
    assert len(skipped) == 1 and "fp16 gradient overflow" in skipped[0]["note"]
    assert not rows(trainer.out, "reload")
    trainer._train_step()  # the next step trains again
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_a_bad_scaler_state_is_one_line(tmp_path):
    first = train(config_for(tmp_path, precision="fp16", max_steps=2), log=quiet)
    ckpt = load_checkpoint(first.out / "last")
    ckpt.training["scaler"]["scale"] = -1.0
    rewrite(ckpt)
    with pytest.raises(UserError, match="training.json: scaler.scale must be a positive"):
        Trainer(config_for(tmp_path), resume=True, overrides={"train": {"max_steps": 4}})


def test_slow_precisions_are_named_once_before_the_first_step(tmp_path, monkeypatch):
    from rnnkit.tasks import get_task
    from rnnkit.trainer.logs import RunLogs

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    said = {}
    for precision, device in (("bf16", "cuda:0 (Tesla V100)"), ("fp16", "cpu"), ("fp16", "cuda:0")):
        config = config_for(tmp_path, f"{precision}-{device[:6]}", precision=precision)
        lines: list[str] = []
        task = get_task("lm")(config)
        (tmp_path / config.train.out).mkdir()
        RunLogs(tmp_path / config.train.out, task, config.train, is_main=True,
                resume_step=None, log=lines.append, device=device)  # fmt: skip
        said[precision, device] = lines
    assert said["bf16", "cuda:0 (Tesla V100)"] == [
        "--precision bf16: cuda:0 (Tesla V100) has no native bfloat16 (GPUs have it since "
        "Ampere), so it is emulated and slow: --precision fp16 is the fast one here"
    ]
    assert "--precision fp16 on the CPU" in said["fp16", "cpu"][0]
    assert said["fp16", "cuda:0"] == []  # fp16 on a GPU: what it is for


def test_a_state_carried_in_fp16_goes_on_in_an_fp32_resume(tmp_path):
    """An autocast run carries (and saves) its state in the low precision; resumed in fp32,
    the fused kernel gets the state in the weights' dtype instead of failing."""
    first = train(config_for(tmp_path, precision="fp16", max_steps=3), log=quiet)
    carried = load_checkpoint(first.out / "last").training["state"]
    assert {s.dtype for s in carried} == {torch.float16}
    resumed = train(
        config_for(tmp_path),
        resume=True,
        overrides={"train": {"precision": "fp32", "max_steps": 5}},
        log=quiet,
    )
    assert resumed.step == 5 and math.isfinite(resumed.last_val)


# ---- device-free checkpoints and the CUDA generators -----------------------------------------


def fake_cuda_states(count: int) -> list[torch.Tensor]:
    return [torch.full((16,), i, dtype=torch.uint8) for i in range(count)]


def test_cuda_generators_are_saved_as_cpu_tensors_and_round_trip(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake_cuda_states(2))
    state = rng_state(cuda=True)
    tensors, skeleton = flatten_state(state)
    back = unflatten_state(tensors, skeleton)
    assert [t.device.type for t in back["cuda"]] == ["cpu", "cpu"]
    assert all(torch.equal(a, b) for a, b in zip(back["cuda"], fake_cuda_states(2), strict=True))
    assert "cuda" not in rng_state()  # a run off CUDA saves none


def test_cuda_generators_are_restored_or_named_in_one_line(monkeypatch):
    restored: list = []
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    saved = {**rng_state(), "cuda": fake_cuda_states(2)}
    assert set_rng_state(saved, cuda=True) is None and len(restored) == 1  # same GPUs: exact
    off = set_rng_state(saved, cuda=False)
    assert "saved on CUDA (2 GPUs visible) and resumes off CUDA" in off
    assert "data order stays exact" in off and "dropout masks differ" in off
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert "resumes on CUDA (1 GPU visible)" in set_rng_state(saved, cuda=True)
    assert "saved off CUDA" in set_rng_state(rng_state(), cuda=True)  # a CPU run onto CUDA
    assert set_rng_state(rng_state(), cuda=False) is None
    assert len(restored) == 1


def test_a_run_saved_on_cuda_resumes_on_the_cpu_with_one_warning_and_the_same_data(
    tmp_path, monkeypatch
):
    """The first leg's checkpoint gets the CUDA generators a CUDA run saves (what
    ``training_state`` adds for a CUDA device, faked); resumed here on the CPU it warns once,
    and the data order -- and, since this run really drew its dropout on the CPU, every loss
    -- equals an uninterrupted run's."""
    straight = train(config_for(tmp_path, "straight"), log=quiet)
    first = Trainer(config_for(tmp_path, "resumed", max_steps=5), log=quiet)
    first.run()
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake_cuda_states(1))
    parts = first.progress, first.optimizer, first.scheduler, first.task, first.precision
    as_on_cuda = training_state(*parts, torch.device("cuda", 0))["rng"]
    assert "cuda" not in training_state(*parts, torch.device("cpu"))["rng"]
    ckpt = load_checkpoint(first.out / "last")
    ckpt.training["rng"]["cuda"] = as_on_cuda["cuda"]  # the rest: as saved at step 5
    rewrite(ckpt)
    lines: list[str] = []
    resumed = train(
        config_for(tmp_path, "resumed"),
        resume=True,
        overrides={"train": {"max_steps": 12}},
        log=lines.append,
    )
    warnings = [line for line in lines if "dropout masks differ" in line]
    assert warnings == [
        "warning: this run was saved on CUDA (1 GPU visible) and resumes off CUDA: the data "
        "order stays exact, the dropout masks differ from an uninterrupted run's"
    ]
    assert losses(straight.out) == losses(resumed.out)


# ---- --deterministic -------------------------------------------------------------------------


def test_deterministic_sets_torch_and_cublas_for_the_run_and_puts_them_back(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        trainer = Trainer(config_for(tmp_path, deterministic=True, max_steps=2), log=quiet)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.benchmark is False
        assert trainer.run().step == 2
        assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting again
    finally:
        torch.use_deterministic_algorithms(False)


# ---- torchrun: nccl on CUDA, gloo otherwise --------------------------------------------------


@pytest.fixture
def fake_torchrun(monkeypatch):
    """WORLD_SIZE 2, LOCAL_RANK 1 and a process group that records its backend."""
    joined: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend, **_: joined.append(backend)
    )
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    return joined


def test_setup_joins_with_gloo_on_the_cpu(fake_torchrun):
    world = distributed.setup(torch.device("cpu"))
    assert fake_torchrun == ["gloo"] and world == distributed.World(1, 2, torch.device("cpu"))
    assert distributed.setup() == distributed.World(1, 2)  # no device: the CPU


def test_setup_joins_with_nccl_on_the_local_ranks_gpu(fake_torchrun, monkeypatch):
    chosen: list = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    world = distributed.setup(torch.device("cuda", 0))  # auto's cuda:0 -> LOCAL_RANK's GPU
    assert fake_torchrun == ["nccl"] and chosen == [torch.device("cuda", 1)]
    assert world.device == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="no GPU of its own"):
        distributed.setup(torch.device("cuda"))


def test_nproc_on_cuda_needs_a_gpu_per_process(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda", 0)
    distributed.check_gpus(2, cuda, "cuda")
    distributed.check_gpus(2, cuda, "auto")
    distributed.check_gpus(8, torch.device("cpu"), "cpu")  # CPU processes: any number
    with pytest.raises(UserError, match="--nproc 3 on CUDA needs 3 GPUs .* 2 visible"):
        distributed.check_gpus(3, cuda, "cuda")
    with pytest.raises(UserError, match="give --device cuda"):
        distributed.check_gpus(2, torch.device("cuda", 1), "cuda:1")
    with pytest.raises(UserError, match="not on --device mps"):
        distributed.check_gpus(2, torch.device("mps"), "mps")


def test_the_workers_get_the_device_the_launcher_resolved():
    argv = ["plays.txt", "--device", "auto", "--nproc", "2", "--device=cpu", "--hidden", "8"]
    workers = distributed.worker_argv(argv, torch.device("cuda", 0))
    assert workers == ["plays.txt", "--hidden", "8", "--device", "cuda"]
    assert distributed.worker_argv(["--nproc=2"], torch.device("cpu")) == ["--device", "cpu"]


# ---- --compile -------------------------------------------------------------------------------


def test_compile_trains_the_cells_path_to_the_uncompiled_runs_losses(tmp_path):
    from rnnkit.nn.unroll import compile_unavailable

    if (why := compile_unavailable()) is not None:
        pytest.skip(why)
    steps, lines = {}, []
    for compiled in (False, True):
        config = config_for(tmp_path, f"compile-{compiled}", compile=compiled)
        config.model.impl, config.model.layers, config.model.dropout = "cells", 1, 0.0
        trainer = Trainer(config, log=lines.append if compiled else quiet)
        steps[compiled] = [trainer._train_step().loss for _ in range(3)]  # no eval: one graph
    assert "--compile: compiled the step of 1 recurrent layer(s)" in lines
    assert steps[True] == pytest.approx(steps[False], rel=1e-4)
    assert steps[True][-1] < steps[True][0]  # it trains


def test_compile_with_no_cells_path_layer_says_so(tmp_path):
    lines: list[str] = []
    trainer = Trainer(config_for(tmp_path, compile=True), log=lines.append)  # fused LSTM
    assert trainer.compiled == 0
    assert any("no layer runs on the cells path" in line for line in lines)


# ---- evaluation on the device ----------------------------------------------------------------


def test_tbptt_evaluation_sums_on_the_device_as_the_host_did_and_reads_once(monkeypatch):
    """``tbptt.evaluate`` adds each chunk's loss x tokens on the device in float64 and reads the
    total once: the same figure, to the last bit, as the per-chunk host sum it replaced."""
    import numpy as np

    from rnnkit.data.streams import TokenStreams
    from rnnkit.models import LanguageModel
    from rnnkit.training import tbptt

    torch.manual_seed(0)
    model_config = RunConfig().model
    model_config.vocab_size, model_config.embed, model_config.hidden = 11, 8, 16
    model = LanguageModel(model_config).eval()
    tokens = np.random.default_rng(0).integers(0, 11, 3000)
    streams = TokenStreams.for_evaluation(tokens, 4, 25)
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for index in range(len(streams)):
            x, y = streams.batch(index)
            output = model(x, y, state)
            total, count, state = (
                total + output.loss.item() * y.numel(),
                count + y.numel(),
                output.state,
            )
    reads: list[str] = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or item(self))
    assert tbptt.evaluate(model, streams) == (total / count, count)
    assert reads == ["item"] and len(streams) > 10  # one read for the whole text
