"""Training diagnostics: how big each parameter's gradient and update are next to the parameter.

``rnnkit train --diagnostics`` writes, every ``--log-every`` steps, one row per parameter to
``diagnostics.csv`` and redraws ``diagnostics.png``:

* ``grad_to_data   = ||g|| / ||w||``: the gradient the optimiser receives (after clipping),
  relative to the weights it will change;
* ``update_to_data = ||w_after - w_before|| / ||w_before||``: the step actually taken. A common
  rule of thumb (Karpathy, CS231n) is about 1e-3: much lower and that parameter barely learns,
  much higher and it is being thrashed.

Norms are Frobenius norms over the whole tensor (the RMS ratio, as the tensor sizes cancel). A
parameter whose weights are all zero (a fresh bias) gets ``nan`` until it moves. What is not here:
the global gradient norm (``metrics.csv``'s ``grad_norm``, before clipping) and the probes of a
finished model (``rnnkit.analysis``).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import torch
from torch import nn

from rnnkit.figures import figure, finish
from rnnkit.io_errors import writing

COLUMNS = ["step", "parameter", "grad_to_data", "update_to_data"]


class ParameterRatios:
    """Measures the two ratios around one optimiser step and appends them to ``path``.

    Usage in the loop: ``before_update(model)`` after the gradients are final (clipped) and
    before ``optimizer.step()``; ``after_update(model, step)`` right after it. On resume
    (``resume_step``), rows past that step are dropped: those steps are trained again."""

    def __init__(self, path: Path, *, resume_step: int | None = None) -> None:
        self.path = path
        self._before: dict[str, tuple[torch.Tensor, float]] = {}
        if resume_step is not None and path.exists():
            rows = [r for r in read_ratios(path) if int(r["step"]) <= resume_step]
            _write_rows(path, rows)
        elif not path.exists():
            _write_rows(path, [])

    def before_update(self, model: nn.Module) -> None:
        """Remember each parameter's weights and gradient norm before the optimiser moves it."""
        self._before = {
            name: (p.detach().clone(), float(p.grad.norm()) if p.grad is not None else math.nan)
            for name, p in model.named_parameters()
            if p.requires_grad
        }

    def after_update(self, model: nn.Module, step: int) -> list[dict]:
        """Compute both ratios for every parameter, append them, and return the rows."""
        rows = []
        for name, p in model.named_parameters():
            if name not in self._before:
                continue
            old, grad_norm = self._before[name]
            data = float(old.norm())
            update = float((p.detach() - old).norm())
            rows.append(
                {
                    "step": step,
                    "parameter": name,
                    "grad_to_data": grad_norm / data if data > 0 else math.nan,
                    "update_to_data": update / data if data > 0 else math.nan,
                }
            )
        self._before = {}
        with writing(self.path), open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writerows({k: _fmt(v) for k, v in row.items()} for row in rows)
        return rows


def read_ratios(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


def plot_ratios(csv_path: Path, png_path: Path, title: str = "") -> None:
    """log10 of both ratios against the step, one line per parameter, to ``png_path``."""

    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for row in read_ratios(csv_path):
        for kind in ("grad_to_data", "update_to_data"):
            value = float(row[kind])
            if math.isfinite(value) and value > 0:
                xs, ys = series.setdefault(kind, {}).setdefault(row["parameter"], ([], []))
                xs.append(int(row["step"]))
                ys.append(math.log10(value))
    fig, axes = figure(1, 2, figsize=(12, 4.5), dpi=110, sharex=True)
    labels = {"grad_to_data": "gradient / weights", "update_to_data": "update / weights"}
    for ax, kind in zip(axes, labels, strict=True):
        for name, (xs, ys) in sorted(series.get(kind, {}).items()):
            ax.plot(xs, ys, linewidth=1, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(f"log10 {labels[kind]}")
        ax.grid(alpha=0.3)
    axes[1].axhline(-3, color="black", linestyle="--", linewidth=1, label="1e-3 rule of thumb")
    axes[0].set_title("gradient-to-data ratio per parameter")
    axes[1].set_title("update-to-data ratio per parameter")
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(0.82, 0.5), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.81, 1))
    with writing(png_path):
        finish(fig, png_path)
