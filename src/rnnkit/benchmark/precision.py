"""bfloat16 against float32: speed of a training step and validation loss at equal steps.

* ``bf16_speedup``: one training step of the canonical model (fp32 master weights, forward
  under ``torch.autocast("cpu", bfloat16)``, exactly what ``--precision bf16`` does) against the
  same step in float32, interleaved. On a CPU without native bf16 (no AVX512-BF16 / AMX) the
  products are emulated and this is far below 1.
* ``bf16_val_delta``: a small model trained the same number of steps on the bundled corpus from
  the same seed in each precision; bf16's best validation loss minus fp32's (nats/char).
"""

from __future__ import annotations

import tempfile

import torch

from rnnkit.benchmark.timing import interleaved
from rnnkit.benchmark.training import canonical_trainer

SMALL = {"vocab": 65, "embed": 32, "hidden": 128, "layers": 1, "seq_len": 64, "batch": 32}


def bf16_speedup(rounds: int = 1, shape=None) -> float:
    """fp32 step time / bf16 step time of the canonical model (or ``shape``)."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = canonical_trainer(f"{tmp}/fp32", shape=shape)
        bf16 = canonical_trainer(f"{tmp}/bf16", shape=shape, precision="bf16")
        seconds = interleaved({"fp32": fp32._train_step, "bf16": bf16._train_step}, rounds=rounds)
    return seconds["fp32"] / seconds["bf16"]


def bf16_val_delta(steps: int = 100, shape=None) -> dict[str, float]:
    """Best validation loss of each precision after ``steps`` equal steps, and the difference."""
    from rnnkit.config import RunConfig, apply_overrides
    from rnnkit.trainer.loop import train

    c = shape or SMALL
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            config = RunConfig()
            settings = {
                "model": {"embed": c["embed"], "hidden": c["hidden"], "layers": c["layers"]},
                "train": {"out": f"{tmp}/{precision}", "seq_len": c["seq_len"],
                          "batch_size": c["batch"], "lr": 1e-2, "max_steps": steps,
                          "eval_every": steps, "eval_batches": 20, "sample_every": 0,
                          "log_every": steps, "seed": 1, "precision": precision},
            }  # fmt: skip
            apply_overrides(config, settings, "rnnkit bench")
            torch.manual_seed(1)
            losses[precision] = train(config, log=lambda *_: None).best_val
    return {**losses, "delta": losses["bf16"] - losses["fp32"]}
