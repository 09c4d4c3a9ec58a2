"""``rnnkit predict RUN FILE.csv`` for ``--task forecast``: the steps after each series, as CSV.

    rnnkit predict runs/forecast recent.csv                  # horizon rows per series
    rnnkit predict runs/demand next_day.csv --num-samples 500

The forecast follows the last ``window`` rows with values of each series. A run with
``--exogenous`` inputs needs their future: the file ends with one row per step to forecast,
its target cells empty and its input cells filled (the number of such rows is the horizon).
Without, ``--horizon`` (default: the run's) steps follow, their times (``--time-column``) one
step apart. Output columns: ``input`` (several files), the id and time columns when the run
has them, then per target its median forecast and, for a probabilistic run, the interval's
bounds ``NAME_pLO``/``NAME_pHI`` (percent levels).
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from rnnkit.data.panel import Series, future_times, series_step
from rnnkit.errors import UserError
from rnnkit.tasks.meta import CONFIG, check_int


def _percent(level: float) -> str:
    return f"{100 * level:.4g}".replace(".", "_")


def predict(task, model: nn.Module, inputs: list[str], options: dict[str, Any]) -> str:
    """The forecast CSV text (see the module docstring)."""
    assert task.normaliser is not None
    k = task.options
    horizon = check_int(
        options.get("horizon") or task.horizon, CONFIG["forecast"]["horizon"], "--horizon"
    )
    samples = check_int(
        options.get("num_samples") or k.num_samples,
        CONFIG["forecast"]["num_samples"],
        "--num-samples",
    )
    if options.get("seed") is not None:  # the sampled paths' seed (default: the run's)
        task.config.train.seed = options["seed"]
    lik = task.likelihood
    probabilistic = lik.sampled
    if probabilistic:
        lo = lik.quantile_levels[0] if lik.quantile_levels else (1 - k.interval) / 2
        hi = lik.quantile_levels[-1] if lik.quantile_levels else 1 - lo
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    several = len(inputs) > 1
    header = (["input"] if several else []) + [c for c in (k.id_column, k.time_column) if c]
    for name in task.columns:
        header += [name] + (
            [f"{name}_p{_percent(lo)}", f"{name}_p{_percent(hi)}"] if probabilistic else []
        )
    writer.writerow(header)
    for path in inputs:
        for series in task.read([path], future=True):
            who = path + (f" (series {series.name!r})" if series.name else "")
            ext, known = _extend(task, series, horizon, who)
            block = task.block([(ext, slice(None), task._scaler(ext, known))])
            run = task.run_windows(
                model,
                block,
                np.array([known - task.window]),
                len(ext.targets) - known,
                samples,
                with_loss=False,
            )
            for j in range(len(ext.targets) - known):
                row = [path] if several else []
                row += [series.name] if k.id_column else []
                row += [ext.times[known + j].isoformat(sep=" ")] if k.time_column else []
                for c in range(len(task.columns)):
                    row.append(f"{run['forecast'][0, j, c]:.6g}")
                    if probabilistic:
                        row += [f"{run['lower'][0, j, c]:.6g}", f"{run['upper'][0, j, c]:.6g}"]
                writer.writerow(row)
    return buffer.getvalue().rstrip("\n")


def _extend(task, series: Series, horizon: int, who: str) -> tuple[Series, int]:
    """``series`` with the steps to forecast after its known rows (NaN targets), and how many
    rows are known. Trailing rows with empty targets are those steps (and required with
    --exogenous); without any, ``horizon`` steps are appended, their times one step on."""
    missing = np.isnan(series.targets).any(axis=1)
    known = len(missing) - int(np.argmin(missing[::-1])) if not missing.all() else 0
    if missing[:known].any():
        where = series.where[int(np.argmax(missing[:known]))]
        raise UserError(f"{where}: empty target cells before the last row with values")
    if known < task.window:
        raise UserError(f"{who}: {known} rows, fewer than --window {task.window}")
    future = len(missing) - known
    if future:
        check_int(future, CONFIG["forecast"]["horizon"], f"{who}: rows to forecast")
        return series, known
    if task.options.exogenous:
        raise UserError(
            f"{who}: the run reads --exogenous {','.join(task.options.exogenous)}: end the file "
            "with one row per step to forecast, target cells empty, input cells filled"
        )
    times = series.times
    if times:
        times = times + future_times(times[-1], series_step(series), horizon)
    C = series.targets.shape[1]
    return (
        replace(
            series,
            targets=np.concatenate([series.targets, np.full((horizon, C), np.nan)]),
            inputs=np.zeros((known + horizon, 0)),
            times=times,
            where=series.where + [f"{who}: forecast step {j + 1}" for j in range(horizon)],
        ),
        known,
    )
