"""``fit``: the smallest loop that trains a task's model, shared by the task tests (the real
trainer is tested in tests/training; here a task's own batches and loss are what is checked).
Imported as ``from fitting import fit`` (pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


def fit(task, model: nn.Module, steps: int, lr: float, clip: float | None = None) -> list:
    """Adam on the task's batches in order for ``steps`` steps; returns the StepOutputs."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    outputs = []
    for step in range(steps):
        epoch, index = divmod(step, task.steps_per_epoch())
        out = task.train_loss(model, task.train_batch(epoch, index), step)
        optimiser.zero_grad()
        out.loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimiser.step()
        outputs.append(out)
    return outputs
