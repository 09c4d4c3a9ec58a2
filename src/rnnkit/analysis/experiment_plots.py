"""Pictures of the memory and exploding-gradient experiments (drawing only).

What is here: :func:`plot_memory` (success rate against sequence length, one panel per task) and
:func:`plot_exploding` (gradient norm and loss per step, one line per clipping mode). Each writes
one PNG at ``path`` and returns the path, or with ``path`` None returns the matplotlib Figure
(to show in a notebook); neither touches pyplot (``rnnkit.figures``).

What is not here: the numbers, which come from :mod:`rnnkit.analysis.memory` and
:mod:`rnnkit.analysis.exploding`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnnkit.analysis.exploding import ExplodingRun
from rnnkit.analysis.memory import MemoryResult
from rnnkit.figures import figure, finish
from rnnkit.wording import plural

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = {
    "rnn": "tab:red",
    "lstm": "tab:blue",
    "gru": "tab:green",
    "off": "tab:red",
    "norm": "tab:blue",
    "value": "tab:green",
}
_STYLES = {"rnn": ("o", "-", 8), "lstm": ("s", "--", 6), "gru": ("^", ":", 5)}
_MARKERS = ("o", "D", "v", "P", "X", "*", "h", "<", ">")  # cells without a style of their own
_TASK_TITLES = {"adding": "adding problem (MSE)", "copy": "copy / recall (cross-entropy)"}


def plot_memory(result: MemoryResult, path: str | Path | None = None) -> Path | Figure:
    """Success rate (fraction of seeds under margin x baseline) against T on a log axis: one
    panel per task, one line per cell; the legend gives each cell's hidden size and parameters.
    With more than three cells each line is raised by a little more than the one before (at
    most 0.04 in all), so that cells with equal rates stay visible side by side."""
    tasks, cells, lengths = result.axes()
    width = max(5.5 * len(tasks), 7.5)
    fig, axes = figure(1, len(tasks), figsize=(width, 4.6), squeeze=False)
    lift = 0.04 / (len(cells) - 1) if len(cells) > 3 else 0.0
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, cell in enumerate(cells):
            rates = [result.success_rate(task, cell, T) + lift * (i - (len(cells) - 1) / 2)
                     for T in lengths]  # fmt: skip
            some = next(t for t in result.trials if (t.task, t.cell) == (task, cell))
            marker, style, size = _STYLES.get(cell, (_MARKERS[i % len(_MARKERS)], "-", 6))
            ax.plot(
                lengths,
                rates,
                marker=marker,
                ls=style,
                ms=size,
                color=_COLORS.get(cell),
                label=f"{cell.upper()} (H={some.hidden}, {some.params} params)",
            )
        ax.set_xscale("log")
        ax.set_xticks(lengths, [str(T) for T in lengths])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("sequence length T (steps to remember across)")
        ax.set_ylabel("success rate over seeds")
        ax.set_title(_TASK_TITLES.get(task, task))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    s = result.settings
    fig.suptitle(
        f"Long-range memory at an equal budget of {s.get('budget')} parameters\n"
        f"success: test loss < {s.get('margin')} x trivial baseline; "
        f"{plural(s.get('seeds'), 'seed')}, "
        f"<= {s.get('steps')} Adam steps, batch {s.get('batch')}, lr {s.get('lr')}",
        fontsize=10,
    )
    fig.tight_layout()
    return finish(fig, path, dpi=110)


def plot_exploding(runs: dict[str, ExplodingRun], path: str | Path | None = None) -> Path | Figure:
    """Two panels: the pre-clip global gradient norm per step (log y) and the training loss per
    step (log y), one line per clipping mode; a run that diverged is marked where it stopped."""
    fig, (top, bottom) = figure(2, 1, figsize=(8, 6.5), sharex=True)
    for mode, run in runs.items():
        steps = np.arange(len(run.norms))
        label = mode if run.threshold is None else f"{mode} (threshold {run.threshold:g})"
        color = _COLORS.get(mode)
        top.plot(
            steps,
            np.where(np.isfinite(run.norms), run.norms, np.nan),
            color=color,
            lw=0.9,
            label=label,
        )
        bottom.plot(steps, run.losses, color=color, lw=0.9, label=label)
        if run.diverged_at is not None:
            for ax in (top, bottom):
                ax.axvline(run.diverged_at, color=color, ls="--", lw=0.8)
            bottom.annotate(
                f"{mode}: loss not finite from step {run.diverged_at}",
                (run.diverged_at, 0.03),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color=color,
                rotation=90,
                ha="right",
                va="bottom",
            )
    top.set_yscale("log")
    top.set_ylabel("gradient norm before clipping")
    top.set_title("Gradient norms of a tanh RNN trained with SGD, by clipping mode")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    low, high = bottom.get_ylim()
    bottom.set_ylim(low, min(high, 100.0))  # a diverging run would flatten every other line
    bottom.set_ylabel("training loss (MSE)")
    bottom.set_xlabel("training step")
    bottom.axhline(1 / 6, color="gray", ls=":", lw=0.8, label="predict 1.0 (1/6)")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return finish(fig, path, dpi=110)
