"""Mixed precision against float32: speed of a training step and validation loss at equal steps.

* ``precision_speedups``: one training step of the canonical model (or a given shape) with fp32
  master weights and the forward under ``torch.autocast(device, bfloat16 | float16)`` --
  exactly what ``--precision bf16`` / ``--precision fp16`` do (fp16 with a gradient scaler) --
  against the same step in float32, all interleaved. On a CPU without native bf16 (no
  AVX512-BF16 / AMX) the products are emulated and bf16 is far below 1.
* ``precision_val_losses``: a small model trained the same number of steps on the bundled
  corpus from the same seed in each precision; the best validation loss of each (nats/char),
  whose difference with fp32's is the cost of the precision.

A precision the trainer refuses on this device (a ``UserError``, e.g. fp16 where its autocast
does not run) is left out of the result, with the trainer's one-line reason under ``refused``.
"""

from __future__ import annotations

import tempfile

import torch

from rnnkit.benchmark.shapes import SMALL
from rnnkit.benchmark.timing import interleaved
from rnnkit.benchmark.training import canonical_trainer
from rnnkit.errors import UserError


def precision_speedups(
    precisions=("bf16", "fp16"), rounds: int = 1, shape=None, device=None
) -> dict:
    """``{precision: fp32 step time / its step time}`` of the canonical model (or ``shape``)
    on ``device`` (the CPU when None), and ``refused``: ``{precision: reason}``."""
    device = torch.device(device or "cpu")
    refused = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {"fp32": canonical_trainer(f"{tmp}/fp32", shape=shape, device=device)}
        for name in precisions:
            try:
                trainers[name] = canonical_trainer(
                    f"{tmp}/{name}", shape=shape, precision=name, device=device
                )
            except UserError as error:
                refused[name] = str(error)
        steps = {name: trainer._train_step for name, trainer in trainers.items()}
        seconds = interleaved(steps, rounds=rounds, device=device)
    speedups = {name: seconds["fp32"] / seconds[name] for name in trainers if name != "fp32"}
    return {**speedups, "refused": refused}


def bf16_speedup(rounds: int = 1, shape=None, device=None) -> float:
    """fp32 step time / bf16 step time of the canonical model (or ``shape``)."""
    return precision_speedups(("bf16",), rounds, shape, device)["bf16"]


def precision_val_losses(
    precisions=("fp32", "bf16"), steps: int = 100, shape=None, device=None
) -> dict:
    """Best validation loss of each precision after ``steps`` equal steps from the same seed
    (``refused``: the precisions the trainer would not run here, with its reason)."""
    from rnnkit.config import RunConfig, apply_overrides
    from rnnkit.trainer.loop import train

    c = shape or SMALL
    losses: dict = {"refused": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            config = RunConfig()
            settings = {
                "model": {"embed": c["embed"], "hidden": c["hidden"], "layers": c["layers"]},
                "train": {"out": f"{tmp}/{precision}", "seq_len": c["seq_len"],
                          "batch_size": c["batch"], "lr": 1e-2, "max_steps": steps,
                          "eval_every": steps, "eval_batches": 20, "sample_every": 0,
                          "log_every": steps, "seed": 1, "precision": precision},
            }  # fmt: skip
            torch.manual_seed(1)
            try:
                apply_overrides(config, settings, "rnnkit bench")
                run = train(config, log=lambda *_: None, device=device or torch.device("cpu"))
            except UserError as error:
                losses["refused"][precision] = str(error)
                continue
            losses[precision] = run.best_val
    return losses


def bf16_val_delta(steps: int = 100, shape=None, device=None) -> dict[str, float]:
    """Best validation loss of fp32 and bf16 after ``steps`` equal steps, and the difference."""
    losses = precision_val_losses(("fp32", "bf16"), steps, shape, device)
    return {
        "fp32": losses["fp32"],
        "bf16": losses["bf16"],
        "delta": losses["bf16"] - losses["fp32"],
    }
