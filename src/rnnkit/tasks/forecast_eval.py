"""Scoring forecasts: point and probabilistic metrics, rolling-origin windows, the figure.

    origins = backtest_origins(length=500, horizon=24, windows=5, window=48, season=24)
    mase(forecast, truth, mase_scale(history, season=24))     # per window
    crps_from_samples(paths, truth)      # paths (..., S), truth (...): the energy form
    coverage(lower, upper, truth)

What is here: the numbers ``rnnkit eval --backtest`` and the forecast task's evaluation report
(MASE, sMAPE, CRPS, quantile loss, interval coverage), where the backtest windows sit, and
``forecast.png``. Everything is NumPy, float64, original units. What is not here: running the
model (``rnnkit.tasks.forecast``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.errors import UserError
from rnnkit.figures import figure, finish
from rnnkit.wording import plural


def backtest_origins(
    length: int, horizon: int, windows: int, window: int, season: int
) -> np.ndarray:
    """The forecast origins of a rolling-origin backtest over a series of ``length`` steps:
    the last ``windows`` non-overlapping stretches of ``horizon`` steps,

        origin_k = length - (windows - k) * horizon,   k = 0 .. windows - 1,

    each forecast from the ``window`` steps before it (the steps from its origin on are the
    truth, never read). The first origin needs ``window`` steps of history and more than one
    season (the MASE scale): UserError otherwise, naming what is missing."""
    origins = length - (windows - np.arange(windows)) * horizon
    need = max(window, max(season, 1) + 1)
    if origins[0] < need:
        raise UserError(
            f"--windows {windows} x --horizon {horizon} = {windows * horizon} steps leave "
            f"{max(int(origins[0]), 0)} of the {length}-step series before the first origin; "
            f"it needs {need} (--window {window}, --season {season})"
        )
    return origins


def mase_scale(history: np.ndarray, season: int) -> np.ndarray:
    """(C,): the in-sample MAE of the seasonal-naive forecast on ``history`` (T, C),
    mean_t |y_t - y_{t-m}| over t = m .. T - 1, with m = ``season`` (1 when 0)."""
    m = max(season, 1)
    return np.abs(history[m:] - history[:-m]).mean(axis=0)


def mase(forecast: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per window (M,): mean over steps and channels of |f - y| / scale, for ``forecast`` and
    ``truth`` (M, H, C) and ``scale`` (M, C) (Hyndman and Koehler 2006)."""
    return (np.abs(forecast - truth) / scale[:, None, :]).mean(axis=(1, 2))


def smape(forecast: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per window (M,), in percent: mean of 200 |f - y| / (|f| + |y|), a term 0 where both
    are 0."""
    denominator = np.abs(forecast) + np.abs(truth)
    safe = np.where(denominator > 0, denominator, 1.0)
    terms = np.where(denominator > 0, 200 * np.abs(forecast - truth) / safe, 0.0)
    return terms.mean(axis=(1, 2))


def crps_from_samples(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """CRPS of the empirical distribution of ``samples`` (..., S) at ``truth`` (...), the
    energy form (Gneiting and Raftery 2007)

        CRPS = E|X - y| - 1/2 E|X - X'|,

    with the pair term computed exactly from the sorted draws x_(1) <= ... <= x_(S):
    E|X - X'| = 2 / S^2 sum_i (2 i - S - 1) x_(i)."""
    S = samples.shape[-1]
    first = np.abs(samples - truth[..., None]).mean(axis=-1)
    ordered = np.sort(samples, axis=-1)
    weights = 2 * np.arange(1, S + 1) - S - 1
    pairs = 2 * (ordered * weights).sum(axis=-1) / S**2
    return first - 0.5 * pairs


def quantile_loss(quantiles: np.ndarray, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(...): the pinball loss rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q)) averaged
    over the levels, for ``quantiles`` (..., Q) at ``levels`` (Q,) and ``truth`` (...)."""
    diff = truth[..., None] - quantiles
    return np.maximum(levels * diff, (levels - 1) * diff).mean(axis=-1)


def coverage(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> float:
    """The fraction of ``truth`` inside [lower, upper] (bounds included)."""
    return float(((lower <= truth) & (truth <= upper)).mean())


def plot_forecasts(run: dict, columns: list[str], path: Path, split: str, season: int) -> Path:
    """One row per window, one column per channel (at most four): history, truth, the
    (median) forecast with its interval band when the model has one, and the seasonal-naive
    baseline; written atomically."""

    rows, cols = len(run["truth"]), min(4, len(columns))
    fig, axes = figure(rows, cols, figsize=(4 * cols, 2.4 * rows), dpi=100, squeeze=False)
    W, H = run["history"].shape[1], run["truth"].shape[1]
    past, future = np.arange(-W + 1, 1), np.arange(1, H + 1)
    baseline = f"seasonal naive (s={season})" if season else "last value"
    band = "lower" in run
    for i in range(rows):
        for c in range(cols):
            ax = axes[i, c]
            ax.plot(past, run["history"][i, :, c], color="0.4", lw=1, label="history")
            ax.plot(future, run["truth"][i, :, c], color="k", lw=1.5, label="truth")
            if band:
                lo, hi = run["levels"]
                ax.fill_between(
                    future,
                    run["lower"][i, :, c],
                    run["upper"][i, :, c],
                    color="C3",
                    alpha=0.25,
                    lw=0,
                    label=f"{round(100 * (hi - lo))}% interval",
                )
            label = "median forecast" if band else "forecast"
            ax.plot(future, run["forecast"][i, :, c], color="C3", lw=1.5, label=label)
            ax.plot(future, run["baseline"][i, :, c], color="C0", ls="--", lw=1, label=baseline)
            ax.axvline(0.5, color="0.8", lw=0.8)
            if i == 0:
                ax.set_title(columns[c])
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{split}: {H}-step forecasts after {plural(W, 'step')}")
    fig.tight_layout()
    return finish(fig, path)


def backtest(task, model, paths: list[str], horizon: int, windows: int) -> dict[str, float]:
    """Rolling-origin evaluation of a trained forecast ``task``'s ``model`` on the CSV
    ``paths``: in each series, the last ``windows`` stretches of ``horizon`` steps
    (:func:`backtest_origins`), each forecast from the ``window`` steps before its origin,
    with the inputs known in advance of the steps forecast. Reported, averaged over windows
    and series: ``mase`` (each window's MAE over the in-sample seasonal-naive MAE of the
    series before its origin, ``--season``), ``smape``, ``mae``, the same for the
    seasonal-naive forecast, and for a probabilistic model ``crps`` (sampled paths) or
    ``quantile_loss``, with ``coverage`` of the central interval ``interval`` wide."""
    from rnnkit.data.corpus import resolve_paths

    if not paths:
        raise UserError("rnnkit eval --backtest needs the CSV files to backtest on")
    found: dict[str, list[np.ndarray]] = {}
    count, levels = 0, None
    for path in resolve_paths(paths):
        for series in task.read([str(path)]):
            who = f"{path}" + (f" (series {series.name!r})" if series.name else "")
            try:
                origins = backtest_origins(
                    len(series.targets), horizon, windows, task.window, task.season
                )
            except UserError as error:
                raise UserError(f"{who}: {error}") from None
            scale = np.stack([mase_scale(series.targets[:o], task.season) for o in origins])
            if (scale <= 0).any():
                raise UserError(f"{who}: constant before an origin, so the MASE scale is 0")
            scaler = task._scaler(series, int(origins[0]))  # nothing after the first origin
            block = task.block([(series, slice(None), scaler)])
            run = task.run_windows(model, block, origins - task.window, horizon)
            truth, forecast, baseline = run["truth"], run["forecast"], run["baseline"]
            rows = {
                "mase": mase(forecast, truth, scale),
                "smape": smape(forecast, truth),
                "mae": np.abs(forecast - truth).mean(axis=(1, 2)),
                "baseline_mase": mase(baseline, truth, scale),
                "baseline_smape": smape(baseline, truth),
                "baseline_mae": np.abs(baseline - truth).mean(axis=(1, 2)),
            }
            if "lower" in run:
                score = "quantile_loss" if task.likelihood.quantile_levels else "crps"
                rows[score] = run["score"].mean(axis=(1, 2))
                inside = (run["lower"] <= truth) & (truth <= run["upper"])
                rows["coverage"] = inside.mean(axis=(1, 2))
                levels = run["levels"]
            for key, value in rows.items():
                found.setdefault(key, []).append(value)
            count += 1
    figures = {key: float(np.concatenate(v).mean()) for key, v in found.items()}
    figures.update(series=count, windows=windows, horizon=horizon)
    if levels is not None:
        figures["interval"] = round(levels[1] - levels[0], 6)
    return figures


def backtest_line(figures: dict[str, float]) -> str:
    """``rnnkit eval --backtest``'s line: what was scored, then each figure."""
    head = (
        f"backtest: {plural(int(figures['series']), 'series', 'series')} x "
        f"{plural(int(figures['windows']), 'window')} of {figures['horizon']} steps"
    )
    parts = [head]
    for key in ("mase", "smape", "mae", "crps", "quantile_loss", "coverage"):
        if key in figures:
            value = figures[key]
            text = f"{key} {value:.4g}"
            if key == "coverage":
                text += f" (nominal {figures['interval']:.2g})"
            elif f"baseline_{key}" in figures:
                text += f" (seasonal naive {figures['baseline_' + key]:.4g})"
            parts.append(text)
    return " | ".join(parts)
