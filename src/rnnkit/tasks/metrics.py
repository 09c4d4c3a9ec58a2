"""Classification metrics from a confusion matrix (classify and tag), and its picture.

``confusion[i, j]`` counts examples of true class ``i`` predicted as ``j``. Per class:
precision = TP / predicted, recall = TP / true, F1 = their harmonic mean (0 where undefined, as
scikit-learn's ``zero_division=0``); macro-F1 is the unweighted mean over the classes that
occur in the truth or the predictions.

The evaluation loops of the tasks keep their running figures where the model runs:
:class:`Sums` adds losses and counts on the device and :func:`count_pairs` adds a batch to a
confusion matrix there, so scoring a split reads the device once at the end instead of once
per batch (each read waits for the GPU to finish its queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.figures import figure, finish


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], n: int) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=np.int64)
    rows, columns = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    np.add.at(matrix, (rows, columns), 1)
    return matrix


def count_pairs(counts: Tensor, truth: Tensor, predicted: Tensor, valid: Tensor | None = None):
    """Add the (truth, predicted) pairs of a batch to ``counts`` (n, n) int64, on its device,
    without a host sync (no boolean indexing, no ``bincount``): pairs where ``valid`` is
    False go to a spare slot that is dropped. ``truth`` and ``predicted``: equal shapes."""
    n = counts.size(0)
    flat = truth.reshape(-1) * n + predicted.reshape(-1)
    if valid is not None:
        flat = torch.where(valid.reshape(-1), flat, n * n)
    spare = torch.zeros(n * n + 1, dtype=counts.dtype, device=counts.device)
    spare.scatter_add_(0, flat, torch.ones_like(flat, dtype=counts.dtype))
    counts += spare[: n * n].view(n, n)


class Sums:
    """Named running sums on ``device``: ``add`` queues an addition (no host sync) and ``read``
    copies every sum to the host at once. They are float64 (float32 on MPS, which has no
    float64): a float32 figure added with a weight is rounded as ``float(x) * weight`` on the
    host would be, so the CPU gives the figures it gave when it summed Python floats."""

    def __init__(self, device: torch.device, *names: str) -> None:
        kind = torch.device(device).type
        self.dtype = torch.float32 if kind == "mps" else torch.float64
        self.index = {name: i for i, name in enumerate(names)}
        self.totals = torch.zeros(len(names), dtype=self.dtype, device=device)

    def add(self, name: str, value: Tensor | float, weight: float = 1) -> None:
        """``sums[name] += value * weight`` (``value``: a number or a one-element tensor)."""
        if isinstance(value, Tensor):
            value = value.detach().to(self.dtype).reshape(())
        self.totals[self.index[name]] += value * weight

    def read(self) -> dict[str, float]:
        """Every sum, as Python floats: the one host sync."""
        return dict(zip(self.index, self.totals.tolist(), strict=True))


def per_class_f1(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, f1), one value per class."""
    tp = np.diag(matrix).astype(np.float64)
    predicted, true = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return precision, recall, f1


def accuracy(matrix: np.ndarray) -> float:
    return float(np.trace(matrix) / max(1, matrix.sum()))


def macro_f1(matrix: np.ndarray) -> float:
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    return float(per_class_f1(matrix)[2][present].mean()) if present.any() else 0.0


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (each true class sums to 1) as a PNG, written atomically."""

    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(4.0, 0.4 * len(labels) + 2)
    fig, ax = figure(figsize=(size + 1, size), dpi=100)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return finish(fig, path)
