"""Pictures of a language model's units over a text, drawn from :mod:`rnnkit.analysis`.

What is here: :func:`plot_activation_heatmap` (Karpathy-style: the text in lines, each
character on a background coloured by one unit's value), :func:`plot_gate_saturation` (the
2015 paper's scatter of left- against right-saturation per unit, one panel per gate) and
:func:`plot_discovered_units` (for the best unit of each feature, the unit and the feature
over a stretch of text). What is not here: computing the numbers (``activations.py``,
``text_features.py``, ``gates.py``). Each writes a PNG at ``path`` and returns the path, or with
``path`` None returns the matplotlib Figure (to show in a notebook); drawn without pyplot
(``rnnkit.figures``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnnkit.analysis.activations import Trace, UnitKey, values
from rnnkit.analysis.gates import Saturation
from rnnkit.analysis.text_features import UnitMatch, text_features
from rnnkit.errors import UserError
from rnnkit.figures import figure, finish

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_MONO = "DejaVu Sans Mono"
_VISIBLE = {"\n": "\u21b5", "\t": "\u2192", "\r": "\u2190"}  # newline drawn as a return arrow


def plot_activation_heatmap(
    trace: Trace,
    key: UnitKey,
    path: str | Path | None = None,
    *,
    max_chars: int = 600,
    width: int = 100,
    start: int = 0,
) -> Path | Figure:
    """``text[start : start + max_chars]`` in lines of at most ``width`` characters (a newline,
    drawn as a return arrow, also ends a line), each on a background coloured by the unit's
    value: blue negative, red positive. h is drawn on [-1, 1] (wider if the values leave it,
    e.g. a ReLU RNN), the LSTM cell state on a symmetric range from its largest |value|."""
    for name, value, least in (("max_chars", max_chars, 1), ("width", width, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"{name} must be an integer >= {least}, got {value!r}")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(trace.text):
        raise UserError(f"start must be an integer in [0, {len(trace.text) - 1}], got {start!r}")
    unit = values(trace, UnitKey(*key))[start : start + max_chars].astype(np.float64)
    chars = trace.text[start : start + max_chars]
    cells = _layout(chars, width)  # [(row, col)] per character
    rows = cells[-1][0] + 1
    grid = np.full((rows, width), np.nan)  # (rows, width); NaN = no character there
    for (row, col), v in zip(cells, unit, strict=True):
        grid[row, col] = v
    peak = float(np.abs(unit).max())
    lim = max(1.0, peak) if key[1] == "h" else (peak or 1.0)
    from matplotlib import colormaps

    fig, (ax,) = _figure((0.11 * width + 1.6, 0.24 * rows + 1.1))
    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    image = ax.imshow(grid, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto", interpolation="none")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        for (row, col), ch in zip(cells, chars, strict=True):
            ax.text(col, row, _visible(ch), ha="center", va="center", fontsize=8, family=_MONO)
    ax.set_xticks([])
    ax.set_yticks([])
    label = UnitKey(*key).label
    end = start + len(chars) - 1
    ax.set_title(f"{trace.cell.upper()} {label} over characters {start}-{end}")
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    bar.set_label(f"{key[1]} value")
    fig.tight_layout()
    return finish(fig, path, dpi=110, bbox_inches="tight")


def plot_gate_saturation(
    saturation: Sequence[Mapping[str, Saturation]], path: str | Path | None, cell: str
) -> Path | Figure:
    """One panel per gate: each unit a dot at (fraction left-saturated, fraction
    right-saturated), one colour per layer, with the diagonal left + right = 1."""
    if not saturation or not saturation[0]:
        raise UserError("saturation is empty: expected gate_saturation's per-layer results")
    names = list(saturation[0])
    fig, axes = _figure((3.9 * len(names) + 0.4, 4.2), panels=len(names))
    for ax, name in zip(axes, names, strict=True):
        for layer, gates in enumerate(saturation):
            sat = gates[name]
            label, color = f"layer {layer + 1}", f"C{layer}"
            ax.scatter(sat.left, sat.right, s=12, alpha=0.6, color=color, label=label)
        ax.plot([0, 1], [1, 0], "k--", lw=0.8, label="left + right = 1")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
        sat = saturation[0][name]
        ax.set_xlabel(f"fraction left-saturated (< {sat.low:g})")
        ax.set_ylabel(f"fraction right-saturated (> {sat.high:g})")
        ax.set_title(f"{name} gate")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{cell.upper()} gate saturation per unit over the traced text")
    fig.set_layout_engine("constrained")  # square panels: tight_layout cut the x labels off
    return finish(fig, path, dpi=110, bbox_inches="tight")


def plot_discovered_units(
    trace: Trace,
    matches: Sequence[UnitMatch],
    path: str | Path | None = None,
    *,
    features: Mapping[str, np.ndarray] | None = None,
    feature_limit: int = 8,
    span: int = 120,
) -> Path | Figure:
    """For the best unit (largest |r|) of each feature in ``matches`` (at most
    ``feature_limit`` features, in order of first appearance): the unit's value (line) and the
    feature (grey, right axis) over ``span`` characters around the feature's first change.
    ``features`` defaults to :func:`text_features` of the trace's text."""
    if isinstance(feature_limit, bool) or not isinstance(feature_limit, int) or feature_limit < 1:
        raise UserError(f"feature_limit must be an integer >= 1, got {feature_limit!r}")
    if isinstance(span, bool) or not isinstance(span, int) or span < 2:
        raise UserError(f"span must be an integer >= 2, got {span!r}")
    best: dict[str, UnitMatch] = {}
    for match in matches:
        if match.feature not in best or abs(match.r) > abs(best[match.feature].r):
            best[match.feature] = match
    if not best:
        raise UserError("matches is empty: no unit tracks any feature of this text")
    features = text_features(trace.text) if features is None else features
    missing = sorted(set(best) - set(features))
    if missing:
        raise UserError(f"matches name features {missing} that features does not have")
    chosen = list(best.values())[:feature_limit]
    fig, axes = _figure((12.0, 1.9 * len(chosen) + 0.6), panels=len(chosen), column=True)
    for ax, match in zip(axes, chosen, strict=True):
        feature = np.asarray(features[match.feature], dtype=np.float64)
        lo = _window(feature, span)
        x = np.arange(lo, min(lo + span, len(feature)))
        ax.plot(x, values(trace, match.key)[x], color="C0", lw=1.2, label=match.key.label)
        ax.set_ylabel(f"{match.kind} value")
        twin = ax.twinx()
        twin.fill_between(x, feature[x], step="mid", color="0.5", alpha=0.3)
        twin.set_ylabel(match.feature, fontsize=8)
        ax.set_zorder(twin.get_zorder() + 1)  # the unit's line above the feature's fill
        ax.patch.set_visible(False)
        ax.set_xticks(x, [_visible(trace.text[t]) for t in x], fontsize=5, family=_MONO)
        ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
        ax.set_title(f"{match.feature}: {match.key.label}, r = {match.r:+.2f}", fontsize=9)
    fig.suptitle(f"{trace.cell.upper()} units that track text features (line: unit, grey: feature)")
    fig.tight_layout()
    return finish(fig, path, dpi=110, bbox_inches="tight")


# ---- helpers -------------------------------------------------------------------------------
def _layout(chars: str, width: int) -> list[tuple[int, int]]:
    """(row, column) of every character: wrap at ``width``, and start a new row after '\\n'."""
    cells, row, col = [], 0, 0
    for ch in chars:
        if col == width:
            row, col = row + 1, 0
        cells.append((row, col))
        col += 1
        if ch == "\n":
            row, col = row + 1, 0
    return cells


def _window(feature: np.ndarray, span: int) -> int:
    """First index of a ``span``-long window that starts a little before the first change."""
    changes = np.flatnonzero(np.diff(feature) != 0)
    first = int(changes[0]) if changes.size else 0
    return max(0, min(first - span // 4, len(feature) - span))


def _visible(ch: str) -> str:
    if ch in _VISIBLE:
        return _VISIBLE[ch]
    return "\u00b7" if not ch.isprintable() else ch


def _figure(size: tuple[float, float], *, panels: int = 1, column: bool = False):
    shape = (panels, 1) if column else (1, panels)
    fig, axes = figure(*shape, figsize=size, squeeze=False)
    return fig, axes.ravel()
