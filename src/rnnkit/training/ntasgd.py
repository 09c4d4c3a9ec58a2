"""NT-ASGD: SGD that switches to averaged SGD when validation stops improving.

Merity, Keskar and Socher (2017), "Regularizing and Optimizing LSTM Language Models", section 3
(Algorithm 1) and AWD-LSTM's ``main.py``: train with plain SGD (no momentum) at ``--lr``; at
each scheduled evaluation (every ``--eval-every`` steps; the one at a stop does not count, so
an interrupted and resumed run reads the same losses as an uninterrupted one), with the
validation losses ``v_1 .. v_k`` (this one last) and ``n = --nonmono``, switch to averaged SGD
when

    k - 1 > n   and   v_k > min(v_1 .. v_{k-1-n})

that is, when this evaluation is no better than the best one before the last ``n`` previous
evaluations (the paper's ``t > n and v > min(logs[0 .. t-n-1])`` over the ``t`` logged
before this one; AWD's ``len(best_val_loss) > nonmono and val_loss >
min(best_val_loss[:-nonmono])``). From then on the weights keep training as SGD does, and the
model that is evaluated and saved is their average since the switch::

    w̄_s = (1 / s) * (w_1 + ... + w_s)     w_j: the raw weights after the j-th step since the switch

:class:`NTASGD` is ``torch.optim.ASGD`` with ``lambd = 0`` (no decay: its step is SGD's,
``w <- w - lr * (g + weight_decay * w)``) whose averaging start ``t0`` sits out of reach until
:meth:`NTASGD.switch`; the averages are ASGD's own state ``ax``, so they go into the checkpoint
with the optimiser's state. :class:`Averaging` is what the loop asks of it: the rule at each
evaluation (the losses kept in the run's progress), the averaged weights swapped in for
evaluation and saving (model.safetensors holds them; the raw weights travel in the training
state, so a resume continues them exactly), nothing for any other optimiser.

.. note:: Two departures from AWD's code, both one-step lags of torch's ASGD that it inherits:
   torch's ASGD computes the next step's ``eta`` from the learning rate *after* a step, so
   AWD's per-batch scaling (``--variable-bptt``) reaches it one batch late; here ``eta`` is set
   to the step's own learning rate first. And ASGD(t0=0) averages from the second step after
   the switch (its ``mu`` lags one step too); here ``t0 = -1`` with the step count restarted,
   so the average is over every step since the switch, as the paper writes it.

ASGD keeps its rate and ``mu`` as float32 scalars: the average of float64 weights is exact to
float32's precision. Several processes apply the rule to the same (broadcast) losses and average
the same weights, so they switch together; two processes train as one does. AWD-LSTM evaluates
once an epoch; here the rule reads every ``--eval-every`` evaluation, so ``--nonmono`` counts
those.

What is not here: evaluating (the task's), the loop, the checkpoint format.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from rnnkit.errors import UserError, short

#: t0 before the switch: ASGD's mu stays 1 (its average is a copy of the weights)
NOT_SWITCHED = 1e18


def should_switch(losses: Sequence[float], nonmono: int) -> bool:
    """The non-monotone trigger on ``losses`` = v_1 .. v_k (this evaluation's last):
    ``k - 1 > nonmono and v_k > min(v_1 .. v_{k-1-nonmono})``. A nan loss never switches."""
    *before, last = losses
    return len(before) > nonmono and last > min(before[:-nonmono])


class NTASGD(torch.optim.ASGD):
    """torch.optim.ASGD as AWD-LSTM uses it (``lambd=0``), plain SGD until :meth:`switch`."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, lambd=0.0, t0=NOT_SWITCHED, weight_decay=weight_decay)

    @property
    def switched(self) -> bool:
        return self.param_groups[0]["t0"] < NOT_SWITCHED

    @torch.no_grad()
    def switch(self) -> None:
        """Start averaging with the next step: the step counts restart, ``t0 = -1`` (so the
        s-th step since now averages with ``mu = 1 / s``) and the average starts as the weights."""
        for group in self.param_groups:
            group["t0"] = -1.0
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    state["step"].zero_()
                    state["mu"].fill_(1.0)
                    state["ax"].copy_(p)

    @torch.no_grad()
    def step(self, closure=None):
        """ASGD's step at each group's current learning rate (``eta = lr`` as ``lambd = 0``)."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    state["eta"].fill_(group["lr"])
        return super().step(closure)

    def averages(self) -> list[tuple[Tensor, Tensor]]:
        """(parameter, its average) for every parameter that has one."""
        pairs = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state and "ax" in state:
                    pairs.append((p, state["ax"]))
        return pairs


class Averaging:
    """What the loop asks of ``--optimizer nt-asgd`` (for any other optimiser: nothing)."""

    def __init__(self, optimizer: torch.optim.Optimizer, nonmono: int) -> None:
        self.optimizer = optimizer if isinstance(optimizer, NTASGD) else None
        self.nonmono = nonmono

    @property
    def active(self) -> bool:
        """The averaged weights are the model's (after the switch)."""
        return self.optimizer is not None and self.optimizer.switched

    def observe(self, progress, loss: float) -> str | None:
        """An evaluation's validation ``loss``: kept in ``progress.val_losses`` (until the switch)
        and, when the rule says so, the switch; returns the line that says it (else None)."""
        if self.optimizer is None or self.optimizer.switched:
            return None
        progress.val_losses.append(loss)
        if not should_switch(progress.val_losses, self.nonmono):
            return None
        self.optimizer.switch()
        progress.averaged_from = progress.step
        best, n = min(progress.val_losses[: -1 - self.nonmono]), self.nonmono
        return (
            f"step {progress.step}: nt-asgd switches to averaged SGD (validation loss "
            f"{loss:.4f} above {best:.4f}, the best before the last {n} evaluation"
            + ("s)" if n > 1 else ")")
        )

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The averaged weights in the model for the block (evaluation, saving), the raw ones
        put back after it, bit for bit."""
        if not self.active:
            yield
            return
        pairs = self.optimizer.averages()
        raw = [p.detach().clone() for p, _ in pairs]
        with torch.no_grad():
            for p, average in pairs:
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for (p, _), weights in zip(pairs, raw, strict=True):
                    p.copy_(weights)

    def raw_weights(self) -> list[Tensor] | None:
        """The raw weights (copies, in the optimiser's order) for the training state, after
        the switch only (before it, model.safetensors holds them)."""
        return [p.detach().clone() for p, _ in self.optimizer.averages()] if self.active else None

    def training_fields(self) -> dict[str, list[Tensor]]:
        """What the training state adds: ``raw_weights`` after the switch, else nothing."""
        return {"raw_weights": self.raw_weights()} if self.active else {}

    def restore(self, saved: object, source: str = "training.json") -> None:
        """Put a checkpoint's raw weights (``raw_weights`` of its training state) back into the
        model, whose loaded weights are the averages. Raises UserError if they do not fit."""
        if not self.active:
            if saved is not None:
                raise UserError(f"{source}: raw_weights without an nt-asgd switch")
            return
        pairs = self.optimizer.averages()
        shapes = [tuple(p.shape) for p, _ in pairs]
        if not (
            isinstance(saved, list)
            and len(saved) == len(pairs)
            and all(isinstance(w, Tensor) and w.is_floating_point() for w in saved)
            and [tuple(w.shape) for w in saved] == shapes
        ):
            raise UserError(
                f"{source}: raw_weights must be {len(pairs)} float tensors shaped like the "
                f"averaged parameters, got {short(_shapes(saved))}"
            )
        with torch.no_grad():
            for (p, _), weights in zip(pairs, saved, strict=True):
                p.copy_(weights)


def _shapes(saved: object) -> object:
    if isinstance(saved, list):
        return [tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__ for w in saved]
    return type(saved).__name__
