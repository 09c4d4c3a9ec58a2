"""Figures without pyplot: every picture rnnkit draws is a matplotlib ``Figure`` of its own.

    fig, ax = figure(figsize=(7, 4), dpi=110)     # as plt.subplots, without pyplot
    fig, axes = figure(1, 3, squeeze=False)
    path_or_figure = finish(fig, path, dpi=110)    # path None: the Figure itself, to show

Drawing on ``matplotlib.figure.Figure`` instead of through ``pyplot`` keeps rnnkit out of
matplotlib's global state: no backend is chosen or switched (a notebook's inline plots go on
working after a training run has written its ``loss.png``), no figure stays registered with
pyplot, and nothing needs closing. A Figure renders with the Agg canvas when it is saved, and a
notebook shows a returned one as it is. matplotlib is imported when a figure is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float | None = None,
    **subplots: Any,
) -> tuple[Figure, Any]:
    """A new Figure and its axes, as ``plt.subplots(nrows, ncols, figsize=, dpi=, ...)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)  # its own Agg canvas, as pyplot's Agg figures have: text is measured
    return fig, fig.subplots(nrows, ncols, **subplots)  # by the renderer that draws it


def finish(fig: Figure, path: str | Path | None, **savefig: Any) -> Path | Figure:
    """``fig`` saved at ``path`` (its folder made), returning the path; with ``path`` None,
    ``fig`` itself (to show in a notebook, or to draw more on). The picture is written beside
    ``path`` and renamed over it, so a failed write leaves the previous picture whole (and no
    partial file behind)."""
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)  # same format, by its suffix
    try:
        fig.savefig(tmp, **savefig)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
