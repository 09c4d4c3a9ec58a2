"""What a run writes besides checkpoints: ``metrics.csv`` rows and the ``loss.png`` curve.

``MetricsLog`` appends one row per logged step or evaluation and flushes it, so a crash loses at
most the row being written; on resume, rows past the checkpoint's step are dropped (those steps
are about to be trained again). ``plot_losses`` draws train and validation loss against the
step with matplotlib (imported here, lazily, with the Agg backend; a log axis when the loss spans
more than two decades) and writes the PNG atomically.
A failed write (full disk, file-size limit, read-only) is a UserError naming the file.
"""

from __future__ import annotations

import csv
import math
import os
from contextlib import contextmanager
from pathlib import Path

from rnnkit.figures import figure, finish
from rnnkit.io_errors import writing

BASE_COLUMNS = ["step", "epoch", "kind", "loss", "lr", "grad_norm"]


class MetricsLog:
    """Append-only CSV of training (``kind=train``) and validation (``kind=val``) figures.

    Columns: step, epoch, kind, loss, lr, grad_norm, the task's metrics and step info
    (``extra``: bpc for the language model, accuracy..., teacher_prob...), the speed
    (``speed``: chars_per_s, examples_per_s...), elapsed_s and note."""

    def __init__(
        self,
        path: Path,
        *,
        resume_step: int | None = None,
        speed: str = "chars_per_s",
        extra: list[str] | None = None,
    ) -> None:
        self.path = path
        self.columns = [*BASE_COLUMNS, *(extra or []), speed, "elapsed_s", "note"]
        if resume_step is not None and path.exists():
            rows = [r for r in read_metrics(path) if int(r["step"]) <= resume_step]
            _write_rows(path, rows, self.columns)
        elif not path.exists():
            _write_rows(path, [], self.columns)

    def write(self, **row) -> None:
        """Append one row; keys outside the columns are ignored."""
        with writing(self.path), open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _write_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(path), _removed_on_failure(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_losses(
    metrics_path: Path, png_path: Path, title: str = "", ylabel: str = "loss (nats/char)"
) -> None:
    """Train and validation loss against the step, written to ``png_path``."""

    rows = read_metrics(metrics_path)
    curves: dict[str, tuple[list[int], list[float]]] = {"train": ([], []), "val": ([], [])}
    for row in rows:
        if row["kind"] in curves and row["loss"] not in ("", "nan", "inf"):
            curves[row["kind"]][0].append(int(row["step"]))
            curves[row["kind"]][1].append(float(row["loss"]))
    fig, ax = figure(figsize=(7, 4), dpi=110)
    ax.plot(*curves["train"], label="train", color="#4c72b0", linewidth=1, alpha=0.8)
    ax.plot(*curves["val"], label="validation", color="#dd8452", marker="o", markersize=3)
    ax.set_xlabel("step")
    if log_scale(curves["train"][1] + curves["val"][1]):
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with writing(png_path):
        finish(fig, png_path)


def log_scale(values: list[float]) -> bool:
    """Whether a loss curve needs a log axis: positive values over more than two decades (a
    normalised MSE from 1 to 1e-5 is a flat line at zero on a linear axis)."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 100


@contextmanager
def _removed_on_failure(tmp: Path):
    """A temp file a failed write leaves (half a CSV, a truncated PNG) is removed."""
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class NullLog:
    """The metrics log of ranks > 0 under torchrun: rank 0 writes the run's files."""

    def write(self, **row) -> None:
        pass
