"""What a run writes beside its checkpoints, on rank 0 only: metrics.csv (one row per logged
step, skipped step, reload and evaluation; its ``device`` column says where each row was
trained: a resumed run may have moved), TensorBoard scalars (``--tensorboard``),
diagnostics.csv (``--diagnostics``) and their pictures, loss.png and diagnostics.png.
What is not here: the console (``rnnkit.training.progress``) and the checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.config import TrainConfig
from rnnkit.tasks import Task
from rnnkit.trainer.state import StepResult
from rnnkit.training.diagnostics import ParameterRatios, plot_ratios
from rnnkit.training.metrics import MetricsLog, NullLog, plot_losses


class RunLogs:
    """The run's files of figures; on ranks > 0 (or ``is_main`` false) they write nothing."""

    def __init__(
        self,
        out: Path,
        task: Task,
        t: TrainConfig,
        *,
        is_main: bool,
        resume_step: int | None,
        log=print,
        device: str = "cpu",
    ) -> None:
        """``device``: the run's device as ``describe_device`` says it (metrics.csv's column)."""
        self.out, self.task, self.device = out, task, device
        self.speed_column = f"{task.unit}s_per_s"
        self.metrics: MetricsLog | NullLog = NullLog()
        self.tensorboard: Any = None
        self.ratios: ParameterRatios | None = None
        if not is_main:
            return
        extra = [c for c in (*task.metric_names, *task.info_names) if c != "loss"]
        self.metrics = MetricsLog(
            out / "metrics.csv",
            resume_step=resume_step,
            speed=self.speed_column,
            extra=[*dict.fromkeys(extra), "device"],  # after the first six, which stay put
        )
        self.tensorboard = _open_tensorboard(out, log) if t.tensorboard else None
        _precision_note(t.precision, device, log)
        if t.diagnostics:
            self.ratios = ParameterRatios(out / "diagnostics.csv", resume_step=resume_step)

    def write(self, **row: Any) -> None:
        """One row of metrics.csv (``step``, ``epoch``, ``kind`` and what the kind has)."""
        self.metrics.write(**row, device=self.device)

    def train(self, step: int, epoch: int, result: StepResult, lr: float, speed: float,
              elapsed: float) -> None:  # fmt: skip
        """A logged train step: its loss, learning rate, gradient norm, clock and speed."""
        self.write(
            step=step,
            epoch=epoch,
            kind="train",
            loss=result.loss,
            lr=lr,
            grad_norm=result.grad_norm,
            elapsed_s=elapsed,
            **{self.speed_column: speed},
            **result.info,
        )
        self.scalar("train/loss", result.loss, step)

    def skip(self, step: int, epoch: int, loss: float, norm: float, note: str) -> None:
        """A step whose update was skipped (a non-finite loss or gradient), and why."""
        self.write(step=step, epoch=epoch, kind="skip", loss=loss, grad_norm=norm, note=note)

    def val(self, step: int, epoch: int, lr: float, improved: bool, figures: dict) -> None:
        """An evaluation's figures."""
        note = "best" if improved else ""
        self.write(step=step, epoch=epoch, kind="val", lr=lr, note=note, **figures)
        self.scalar("val/loss", figures["loss"], step)

    def plot(self) -> None:
        """loss.png (and diagnostics.png) redrawn from the CSV files."""
        if isinstance(self.metrics, NullLog):
            return
        title, ylabel = self.task.title(), f"loss ({self.task.loss_name})"
        plot_losses(self.out / "metrics.csv", self.out / "loss.png", title=title, ylabel=ylabel)
        if self.ratios is not None:
            plot_ratios(self.out / "diagnostics.csv", self.out / "diagnostics.png", title)

    def before_update(self, model: nn.Module) -> None:
        if self.ratios is not None:
            self.ratios.before_update(model)

    def after_update(self, model: nn.Module, step: int) -> None:
        if self.ratios is not None:
            self.ratios.after_update(model, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(tag, value, step)


def _precision_note(precision: str, device: str, log) -> None:
    """What bf16 or fp16 costs on this device (as ``describe_device`` names it), said once
    before the first step where it is slow: bf16 on a CPU or GPU without native bfloat16
    (emulated), fp16 on the CPU."""
    if precision == "bf16" and device == "cpu":
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            log(
                "--precision bf16: this CPU has no native bfloat16 instructions (oneDNN reports "
                "none), so bf16 products are emulated: expect training far slower than fp32"
            )
    elif precision == "bf16" and device.startswith("cuda"):
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            log(
                f"--precision bf16: {device} has no native bfloat16 (GPUs have it since Ampere), "
                "so it is emulated and slow: --precision fp16 is the fast one here"
            )
    elif precision == "fp16" and device == "cpu":
        log(
            "--precision fp16 on the CPU: correct (autocast and the gradient scaler) but slow; "
            "it pays on CUDA"
        )


def _open_tensorboard(out: Path, log):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("--tensorboard: the tensorboard package is not installed; skipping it")
        return None
    return SummaryWriter(str(out / "tensorboard"))
