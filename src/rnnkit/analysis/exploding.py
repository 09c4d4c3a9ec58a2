"""Exploding gradients and the two ways of clipping them (Pascanu, Mikolov & Bengio 2013).

What is here (torch + numpy only): :func:`exploding_experiment` trains one vanilla tanh RNN set
up to explode -- its recurrent matrix initialised orthogonal times ``gain`` > 1, so its spectral
radius is ``gain`` -- by plain SGD on the adding problem (:func:`rnnkit.analysis.memory.
adding_problem`), three times from the same weights on the same batches:

* ``"off"``   -- no clipping: the update is ``-lr * g`` whatever the size of ``g``;
* ``"norm"``  -- ``torch.nn.utils.clip_grad_norm_``: ``g`` rescaled to global norm <= threshold
  (the direction is kept);
* ``"value"`` -- ``torch.nn.utils.clip_grad_value_``: each component clamped to [-v, v] (the
  direction may turn).

Every step logs the global gradient norm *before* clipping (what the network produced), the norm
and the largest component *after* clipping (what the update used) and the training loss. The
runs share the seed, so their first steps see identical gradients and only the clipping differs.

On a ``device`` the model trains there (weights initialised and batches drawn on the host, so
every device sees the same numbers; each batch moved once); a step's four logged figures are
computed there and read together, one host read per step -- the figure logs every step.

What is not here: the figure (:func:`rnnkit.analysis.experiment_plots.plot_exploding`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from rnnkit.analysis.memory import MemoryModel, adding_problem, task_loss
from rnnkit.devices import to_device
from rnnkit.errors import UserError

MODES = ("off", "norm", "value")
#: the setting whose unclipped run explodes (seed 0): adding problem, tanh RNN, SGD
DEFAULTS = {"T": 10, "hidden": 32, "gain": 2.0, "lr": 0.05, "batch": 32, "max_norm": 1.0,
            "max_value": 0.1}  # fmt: skip


class ExplodingRun(NamedTuple):
    """One training run; every array has one entry per step."""

    mode: str  # "off", "norm" or "value"
    threshold: float | None  # max norm (norm), max |component| (value), None (off)
    norms: np.ndarray  # global gradient norm before clipping
    post_norms: np.ndarray  # global gradient norm after clipping (= norms when off)
    post_max: np.ndarray  # largest |gradient component| after clipping
    losses: np.ndarray  # training loss (MSE) of the step's batch, before its update

    @property
    def diverged_at(self) -> int | None:
        """The first step whose loss is not finite (None if the run never diverged)."""
        bad = np.flatnonzero(~np.isfinite(self.losses))
        return int(bad[0]) if len(bad) else None


def exploding_model(hidden: int, gain: float, seed: int) -> MemoryModel:
    """A 1-layer tanh RNN (2 inputs, ``hidden`` units) + linear readout, torch's default init but
    ``weight_hh`` = a random orthogonal matrix times ``gain`` (spectral radius = ``gain``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MemoryModel("rnn", 2, 1, hidden)
        nn.init.orthogonal_(model.rnn.weight_hh_l0, gain=gain)
    return model


def _norm(grads: list[torch.Tensor]) -> torch.Tensor:
    return nn.utils.get_total_norm(grads, norm_type=2.0)


def train_once(
    mode: str,
    *,
    steps: int,
    seed: int,
    T: int,
    hidden: int,
    gain: float,
    lr: float,
    batch: int,
    max_norm: float,
    max_value: float,
    device: torch.device | str = "cpu",
) -> ExplodingRun:
    """One SGD run with clipping ``mode`` on ``device``; the weights and batches depend on
    ``seed`` only."""
    model = exploding_model(hidden, gain, seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    log = np.full((4, steps), np.nan)  # norms, post_norms, post_max, losses
    for step in range(steps):
        inputs, targets, _ = adding_problem(batch, T, data)
        inputs, targets = to_device((inputs, targets), device)
        loss = task_loss("adding", model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        before = _norm([p.grad for p in params])
        if mode == "norm":
            nn.utils.clip_grad_norm_(params, max_norm)
        elif mode == "value":
            nn.utils.clip_grad_value_(params, max_value)
        grads = [p.grad for p in params]
        largest = torch.stack([g.abs().max() for g in grads]).max()
        figures = torch.stack([before, _norm(grads), largest, loss.detach()]).tolist()  # one read
        if not math.isfinite(figures[3]):
            break  # diverged: nothing after this is meaningful; the rest stays nan
        log[:, step] = figures
        optimizer.step()
    threshold = {"off": None, "norm": max_norm, "value": max_value}[mode]
    return ExplodingRun(mode, threshold, *log)


def exploding_experiment(
    steps: int = 500,
    seed: int = 0,
    modes: Iterable[str] = MODES,
    *,
    T: int = DEFAULTS["T"],
    hidden: int = DEFAULTS["hidden"],
    gain: float = DEFAULTS["gain"],
    lr: float = DEFAULTS["lr"],
    batch: int = DEFAULTS["batch"],
    max_norm: float = DEFAULTS["max_norm"],
    max_value: float = DEFAULTS["max_value"],
    progress: Callable[[ExplodingRun], None] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, ExplodingRun]:
    """Train the same exploding RNN once per clipping mode; returns ``{mode: ExplodingRun}``.

    Defaults: adding problem with T=10, 32 tanh units, recurrent spectral radius 2, SGD lr 0.05,
    batch 32; clip by norm to 1.0 or by value to 0.1. With them (seed 0) the unclipped run's
    gradient norm climbs through spikes to overflow and its loss to nan within ~80 steps, while
    both clipped runs train to a loss below the 1/6 of predicting 1.0. A run whose loss turns
    non-finite stops there; its remaining entries are nan. ``progress(run)`` is called as each
    mode's run finishes. The runs train on ``device``."""
    modes = list(modes)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"modes must be among {', '.join(MODES)}, got {modes}")
    for name, value in (("steps", steps), ("T", T), ("hidden", hidden), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{_flag(name)} must be an integer >= 1, got {value!r}")
    for name, value in (("gain", gain), ("lr", lr), ("max_norm", max_norm),
                        ("max_value", max_value)):  # fmt: skip
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise UserError(f"{_flag(name)} must be a positive number, got {value!r}")
    settings = dict(
        steps=steps,
        seed=seed,
        T=T,
        hidden=hidden,
        gain=gain,
        lr=lr,
        batch=batch,
        max_norm=max_norm,
        max_value=max_value,
    )
    runs = {}
    for mode in modes:
        runs[mode] = train_once(mode, **settings, device=device)
        if progress:
            progress(runs[mode])
    return runs


def _flag(name: str) -> str:
    """How the command line names an argument, for the error a bad one gets."""
    return "--length (T)" if name == "T" else "--" + name.replace("_", "-")


def spikiness(run: ExplodingRun) -> float:
    """Largest finite pre-clip gradient norm over the median finite one (1 for a flat trace)."""
    finite = run.norms[np.isfinite(run.norms)]
    return float(finite.max() / np.median(finite))


def summarize(runs: dict[str, ExplodingRun]) -> dict[str, dict]:
    """JSON-ready figures per mode: pre-clip norm median / max, spikiness, the step the loss
    went non-finite (None if never) and the mean loss of the last 10% of finite steps."""
    out = {}
    for mode, run in runs.items():
        finite = run.norms[np.isfinite(run.norms)]
        losses = run.losses[np.isfinite(run.losses)]
        tail = losses[-max(1, len(losses) // 10) :] if len(losses) else losses
        out[mode] = {
            "threshold": run.threshold,
            "steps": int(len(run.norms)),
            "norm_median": float(np.median(finite)) if len(finite) else None,
            "norm_max": float(finite.max()) if len(finite) else None,
            "spikiness": spikiness(run) if len(finite) else None,
            "diverged_at": run.diverged_at,
            "final_loss": float(tail.mean()) if len(tail) else None,
        }
    return out
