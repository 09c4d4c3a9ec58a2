"""Pictures of gradient flow through time, drawn from :mod:`rnnkit.analysis.gradient_flow`.

What is here: :func:`plot_gradient_flow` (``log10 ||dL/dh_k||`` against the distance from the
loss, one panel per run or cell, "before" and "after" training as curves, an LSTM's cell state
dashed) and :func:`plot_jacobian_spectrum` (the singular values of the step Jacobians per step,
with the line sigma = 1 between shrinking and growing directions). What is not here: computing the
numbers (``gradient_flow.py``). Drawn without pyplot (``rnnkit.figures``): no ``path``, the
Figure is returned, to show in a notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnnkit.analysis.gradient_flow import GradientFlow
from rnnkit.figures import figure, finish

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Flows = dict[str, dict[str, GradientFlow]]  # panel (run or cell) -> curve ("before", ...) -> flow
_TINY = 1e-300  # floor before taking logarithms, so an exact zero stays drawable


def _figure(count: int, title: str, sharey: bool = False):
    size = (4.6 * count + 0.6, 4.0)
    fig, axes = figure(1, count, figsize=size, squeeze=False, sharey=sharey)
    fig.suptitle(title)
    return fig, axes[0]


def _panel_title(name: str, flows: dict[str, GradientFlow]) -> str:
    flow = next(iter(flows.values()))
    layer = f", layer {flow.layer + 1}/{flow.layers}" if flow.layers > 1 else ""
    what = f"{flow.cell.upper()} H={flow.hidden}{layer}, loss={flow.loss}"
    if name.upper() == flow.cell.upper():
        return what
    if name.upper().startswith(flow.cell.upper() + " ("):  # "LSTM (forget-gate bias 1)"
        return f"{what}, {name[len(flow.cell) + 2 : -1]}"
    return f"{name}\n{what}"


def plot_gradient_flow(flows: Flows, path: str | Path | None = None) -> Path | Figure:
    """``log10 ||dL/dh_k||`` against ``L-1-k``: one panel per key of ``flows`` (e.g. "RNN",
    "LSTM", "GRU" or run names), one curve per inner key (e.g. "before", "after"); the LSTM cell
    state ``||dL/dc_k||`` dashed in the same colour. Saves a PNG at ``path`` and returns it (no
    ``path``: returns the Figure)."""
    if not flows:
        raise ValueError("flows is empty: nothing to draw")
    title = "Gradient flow through time: ||dL/dh_k|| by distance"
    fig, axes = _figure(len(flows), title, sharey=True)  # one scale: panels compare
    for ax, (name, curves) in zip(axes, flows.items(), strict=True):
        for i, (label, flow) in enumerate(curves.items()):
            color = f"C{i}"
            ax.plot(flow.distance, np.log10(np.maximum(flow.h_norm, _TINY)), color=color,
                    label=f"{label}: h")  # fmt: skip
            if flow.c_norm is not None:
                ax.plot(flow.distance, np.log10(np.maximum(flow.c_norm, _TINY)), color=color,
                        linestyle="--", label=f"{label}: c (cell)")  # fmt: skip
        ax.set_title(_panel_title(name, curves), fontsize=10)
        ax.set_xlabel("distance from the last position, L-1-k (steps)")
        ax.set_ylabel("log10 ||dL/dh_k||")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return finish(fig, path, dpi=110, bbox_inches="tight")  # legends under panels included


def plot_jacobian_spectrum(flows: Flows, path: str | Path | None = None) -> Path | Figure:
    """Singular values of ``ds_t/ds_{t-1}`` per step t: the largest (solid), the median
    (dashed) and the middle half of them (band), a dotted line at 1; one panel per key of
    ``flows``, one colour per inner key. Saves a PNG at ``path`` and returns it (no ``path``:
    returns the Figure)."""
    if not flows:
        raise ValueError("flows is empty: nothing to draw")
    fig, axes = _figure(len(flows), "Singular values of the step Jacobian ds_t/ds_{t-1}")
    for ax, (name, curves) in zip(axes, flows.items(), strict=True):
        for i, (label, flow) in enumerate(curves.items()):
            if not flow.jacobian_sv.size:
                continue
            color = f"C{i}"
            sv = np.maximum(flow.jacobian_sv, 1e-12)  # (J, S) descending; floor for the log axis
            q25, q50, q75 = np.quantile(sv, [0.25, 0.5, 0.75], axis=1)  # (J,) each
            ax.fill_between(flow.jacobian_steps, q25, q75, color=color, alpha=0.2)
            ax.plot(flow.jacobian_steps, q50, color=color, linestyle="--", linewidth=1,
                    label=f"{label}: median (band: middle half)")  # fmt: skip
            ax.plot(flow.jacobian_steps, sv[:, 0], color=color, marker="o", markersize=3,
                    label=f"{label}: largest")  # fmt: skip
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="sigma = 1")
        ax.set_yscale("log")
        ax.set_title(_panel_title(name, curves), fontsize=10)
        ax.set_xlabel("step t")
        ax.set_ylabel("singular value")
        ax.grid(alpha=0.3)
        # under the panel: inside, it covered the bands
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2)
    fig.tight_layout()
    return finish(fig, path, dpi=110, bbox_inches="tight")  # legends under panels included
