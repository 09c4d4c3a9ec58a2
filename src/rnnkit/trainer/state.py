"""What the trainer carries from step to step, as values: its resumable progress and what one
step returns.

``TrainProgress`` is the run's position (step, epoch, batch), its scores, its clock and
nt-asgd's record (the validation losses its rule reads, the step it switched at): one
dataclass, saved into training.json and restored from it as a unit, beside the optimiser, the
schedule, the gradient scaler (fp16), the random generators and the task's carried state
(``training_state`` and ``restore_training``); after an nt-asgd switch the raw weights too
(``raw_weights``: the model's files hold the averages). ``StepResult`` is what one optimiser step
reports to the loop.

The training state is device-free: its tensors are written from the CPU (``checkpoint.files``),
read back onto the CPU and moved where this run is: the optimiser's by
``Optimizer.load_state_dict`` (it casts each state tensor to its parameter's device), the
carried state by the task. The CUDA generators are saved when the run uses CUDA; a resume on
another device (or on another number of GPUs) says in one line that the data order stays
exact and the dropout masks differ.
What is not here: the file format and the checks of a hostile training.json
(``rnnkit.checkpoint``), the loop itself (``loop.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from rnnkit.checkpoint.state import (
    check_like,
    check_optimizer_state,
    check_progress,
    rng_state,
    set_rng_state,
)
from rnnkit.errors import UserError, short
from rnnkit.tasks import Task
from rnnkit.tasks.base import StepOutput
from rnnkit.training import distributed
from rnnkit.training.optim import TimeBudget
from rnnkit.training.precision import Precision


@dataclass
class TrainProgress:
    """Where a run is and how it has done: everything a resume needs besides the weights, the
    optimiser, the schedule, the random generators and the carried state."""

    step: int = 0  # optimiser steps taken (skipped non-finite steps count)
    epoch: int = 0
    batch_index: int = 0  # the next batch of this epoch
    best_val: float = math.inf  # of the task's selection metric, lower is better
    last_val: float = math.inf
    bad_evals: int = 0  # evaluations in a row without a new best (early stopping)
    last_eval_step: int = -1
    elapsed_s: float = 0.0  # seconds trained, every session together (as of the last save)
    time_used: float = 0.0  # the share of --max-time the schedule has followed (TimeBudget)
    val_losses: list[float] = field(default_factory=list)  # nt-asgd: v_1 .. v_k until it switches
    averaged_from: int = -1  # nt-asgd: the step it switched to averaged SGD at (-1: not yet)

    @classmethod
    def from_saved(cls, saved: dict) -> TrainProgress:
        """The progress in a training.json, checked first by type and range
        (``check_progress``); the clock is absent from checkpoints written before it was kept."""
        check_progress(saved)
        values = {f.name: saved[f.name] for f in fields(cls) if f.name in saved}
        values["elapsed_s"] = min(float(values.get("elapsed_s", 0.0)), 1e12)
        values["time_used"] = float(values.get("time_used", 0.0))
        losses, since = values.get("val_losses", []), values.get("averaged_from", -1)
        if not isinstance(losses, list) or not all(_number(v) for v in losses):
            raise UserError(f"val_losses must be a list of numbers, got {short(losses)}")
        if not (_number(since) and isinstance(since, int) and -1 <= since <= saved["step"]):
            raise UserError(f"averaged_from must be an integer in [-1, step], got {short(since)}")
        values["val_losses"] = [float(v) for v in losses]
        return cls(**values)

    def load(self, other: TrainProgress) -> None:
        """Take ``other``'s values in place (the loop holds this object)."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


@dataclass(frozen=True)
class StepResult:
    """What one train step reports."""

    loss: float | None  # the batch's mean loss over the ranks; None: skipped (non-finite)
    units: int  # what the batch held (chars, tokens, examples): the speed column
    grad_norm: float  # the global gradient norm before clipping (nan when not computed)
    info: dict[str, float] = field(default_factory=dict)  # the task's StepOutput.info


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_step(
    world: distributed.World,
    loss: torch.Tensor,
    norm: torch.Tensor,
    output: StepOutput,
    *,
    l1: bool,
) -> tuple[float, float, float, dict[str, float]]:
    """The step's one host sync: the loss backward ran on (averaged over the ranks), the
    gradient norm, the task's loss without the L1 term (what is logged; ``l1``) and the task's
    tensor-valued info (``bpc``...), stacked on the device and read together. Returns (loss,
    norm, logged loss, info with every value a float)."""
    mean = lambda value: distributed.mean_over_ranks(world, value.detach())  # noqa: E731
    figures = [mean(loss), norm, *([mean(output.loss)] if l1 else [])]
    names = [k for k, v in output.info.items() if isinstance(v, torch.Tensor)]
    figures += [output.info[k].detach() for k in names]
    read = torch.stack([f.to(world.device, torch.float32).reshape(()) for f in figures]).tolist()
    info = {**output.info, **dict(zip(names, read[len(read) - len(names) :], strict=True))}
    return read[0], read[1], read[2] if l1 else read[0], info


def training_state(
    progress: TrainProgress,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    task: Task,
    precision: Precision | None = None,
    device: torch.device | None = None,
) -> dict:
    """training.json's content: the progress, then the optimiser, schedule, gradient scaler,
    RNG (CUDA's too when ``device`` is CUDA) and the task's carried state (a collective under
    several processes: every rank calls it); the loop adds nt-asgd's raw weights
    (``Averaging.training_fields``)."""
    cuda = device is not None and torch.device(device).type == "cuda"
    return {
        **asdict(progress),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": precision.state_dict() if precision is not None else {},
        "rng": rng_state(cuda=cuda),
        "state": task.carried_state(),
    }


def restore_training(
    ckpt: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    task: Task,
    budget: TimeBudget | None,
    precision: Precision | None = None,
    device: torch.device | None = None,
    log=print,
) -> TrainProgress:
    """Load a checkpoint's training state into the optimiser, schedule, gradient scaler,
    random generators, task and time budget; return its progress. Every field is checked
    before any is used; a problem is one UserError naming the checkpoint's training.json.
    ``device``: where this run is; ``log`` gets the one line of a resume whose dropout masks
    cannot continue exactly here (saved on CUDA, resumed elsewhere, or the reverse)."""
    saved = ckpt.training
    if not isinstance(saved, dict) or "step" not in saved:
        raise UserError(f"{ckpt.path}: no training state to resume from")
    try:
        progress = TrainProgress.from_saved(saved)
        check_like(optimizer.state_dict(), saved["optimizer"], "optimizer")
        check_like(scheduler.state_dict(), saved["scheduler"], "scheduler", strict_keys=True)
        optimizer.load_state_dict(saved["optimizer"])
        check_optimizer_state(optimizer)
        scheduler.load_state_dict(saved["scheduler"])
        if precision is not None and precision.scaler is not None and saved.get("scaler"):
            check_like(precision.state_dict(), saved["scaler"], "scaler", strict_keys=True)
            precision.load_state_dict(saved["scaler"])
        task.restore_carried_state(saved["state"])
        cuda = device is not None and torch.device(device).type == "cuda"
        note = set_rng_state(saved["rng"], cuda=cuda)
    except UserError as error:
        raise UserError(f"{ckpt.path}/training.json: {error}") from None
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise UserError(
            f"{ckpt.path}: training.json does not fit this run ({short(error)})"
        ) from None
    if note:
        log(note)
    if budget is not None:
        budget.done = budget.fraction = progress.time_used
    return progress
