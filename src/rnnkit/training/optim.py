"""Optimisers, learning-rate schedules, gradient clipping and the L1 penalty, from TrainConfig.

Everything here is torch's own (``torch.optim``, ``torch.optim.lr_scheduler``,
``torch.nn.utils``; nt-asgd is torch's ASGD, ``ntasgd.py``): this file only maps the config's
names onto them, so their state dicts go into checkpoints unchanged. With ``--max-time`` the
cosine schedule also follows the clock (``TimeBudget``): its progress is the larger of steps
done / planned and time used / the time limit, so a slower or busier machine gets a whole
schedule over fewer steps rather than one cut off at a high learning rate. Without
``--max-time`` it is a function of the step alone (a resumed run is bit-exact). What is not
here: the loop that calls them (``rnnkit.trainer.loop``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from rnnkit.config import TrainConfig
from rnnkit.errors import UserError
from rnnkit.training.ntasgd import NTASGD


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """adam, adamw, sgd (momentum, nesterov), rmsprop, adagrad or nt-asgd (plain SGD, then
    averaged: ``ntasgd.py``; --momentum does not apply) with ``weight_decay``."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = config.lr, config.weight_decay
    betas = (0.9, config.beta2)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    if config.optimizer == "sgd":
        if config.nesterov and config.momentum <= 0:
            raise UserError(f"--nesterov needs --momentum > 0, got {config.momentum}")
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd
        )
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "nt-asgd":
        return NTASGD(params, lr=lr, weight_decay=wd)
    return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)


def schedule_horizon(config: TrainConfig, steps_per_epoch: int) -> int:
    """The number of steps a cosine schedule decays over: --max-steps, else --max-epochs."""
    if config.max_steps:
        return config.max_steps
    if config.max_epochs:
        return max(1, math.ceil(config.max_epochs * steps_per_epoch))
    raise UserError("--schedule cosine needs --max-steps or --max-epochs to know its length")


class TimeBudget:
    """The share of ``--max-time`` a run has used, for the cosine schedule to follow.

    ``done`` is what earlier sessions used (saved in training.json; a resumed session spreads
    the rest over its own ``--max-time``); the loop calls ``advance`` before each scheduler
    step with the seconds this session has run, the same value on every rank."""

    def __init__(self, max_time: float, done: float = 0.0) -> None:
        self.max_time, self.done, self.fraction = max_time, done, done

    def advance(self, elapsed: float) -> float:
        """The fraction used after ``elapsed`` seconds of this session (at most 1)."""
        self.fraction = min(1.0, self.done + (1 - self.done) * elapsed / self.max_time)
        return self.fraction


def time_budget(config: TrainConfig) -> TimeBudget | None:
    """A budget for the schedule to follow: with --max-time and --schedule cosine only."""
    return TimeBudget(config.max_time) if config.max_time and config.schedule == "cosine" else None


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    steps_per_epoch: int,
    budget: TimeBudget | None = None,
):
    """The schedule, stepped once per optimiser step (``plateau``: once per evaluation).

    constant: lr (after an optional linear warm-up); cosine: linear warm-up then cosine decay
    to ``min_lr_ratio * lr`` at the horizon (with a ``budget``: at the horizon or the time
    limit, whichever comes first, the warm-up taking its share of either); step: multiply by
    ``gamma`` every ``step_size`` steps; plateau: multiply by ``gamma`` when the validation
    loss stops improving.
    """
    warmup = config.warmup
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.gamma, patience=1
        )
    if config.schedule == "cosine":
        horizon, floor = schedule_horizon(config, steps_per_epoch), config.min_lr_ratio

        def factor(step: int) -> float:
            if budget is not None:
                return _timed_cosine(step, warmup, horizon, floor, budget.fraction)
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    else:

        def factor(step: int) -> float:
            return (step + 1) / warmup if step < warmup else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _timed_cosine(step: int, warmup: int, horizon: int, floor: float, used: float) -> float:
    """The cosine factor at the larger of the step's and the clock's progress: the warm-up is
    its ``warmup / horizon`` share of the time as of the steps, the decay the rest."""
    share = min(0.5, warmup / horizon)  # of the time limit, for the warm-up
    if step < warmup:
        warm = max((step + 1) / warmup, used / share if share else 1.0)
        if warm < 1:
            return warm
    by_steps = (step - warmup) / max(1, horizon - warmup)
    by_time = (used - share) / (1 - share)
    progress = min(1.0, max(0.0, by_steps, by_time))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def scale_learning_rate(optimizer: torch.optim.Optimizer, scheduler, factor: float) -> None:
    """Multiply the learning rate by ``factor`` for the rest of the run (used after NaNs)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


@contextmanager
def scaled_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> Iterator[None]:
    """The learning rate times ``factor`` for the block (one optimiser step: a --variable-bptt
    batch's length / T), each group's own value put back after it, so the schedule never
    sees the scaling. ``factor == 1``: nothing is touched."""
    if factor == 1.0:
        yield
        return
    saved = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, saved, strict=True):
        group["lr"] = lr * factor
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, saved, strict=True):
            group["lr"] = lr


def l1_penalty(model: nn.Module) -> Tensor:
    """Sum of |w| over the weight matrices (biases and norms excluded)."""
    return sum(p.abs().sum() for name, p in model.named_parameters() if p.dim() > 1)


def clip_gradients(params: list[Tensor], config: TrainConfig) -> Tensor:
    """Clip by global norm and/or by value; return the global norm *before* clipping.

    The norm is returned as a tensor (no host sync here); a non-finite norm means the step must
    be skipped, which the caller checks before the optimiser touches anything.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm = nn.utils.get_total_norm(grads, foreach=True)
    if config.clip_norm > 0:
        nn.utils.clip_grads_with_norm_(params, config.clip_norm, norm, foreach=True)
    if config.clip_value > 0:
        nn.utils.clip_grad_value_(params, config.clip_value, foreach=True)
    return norm
