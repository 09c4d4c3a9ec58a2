"""The forecast task's options and the validation of its saved meta.

    options = ForecastOptions(window=48, horizon=12, likelihood="studentt")
    meta = check_meta(saved, exogenous=1)     # UserError naming the key, one short line

What is here: every ``--task forecast`` flag (the dataclass's field help is the ``--help``
text) with its cross-checks, and the checkpoint meta's checks (a checkpoint is untrusted
input). What is not here: the task itself (``rnnkit.tasks.forecast``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rnnkit.config import RunConfig, TaskOptions, need, opt
from rnnkit.data.panel import CALENDAR
from rnnkit.errors import UserError, short
from rnnkit.models.likelihoods import LIKELIHOODS
from rnnkit.tasks.meta import CONFIG, check_int


def _finite(value: int | float) -> bool:
    """A number a float64 holds finitely (``10**400`` is an int ``math.isfinite`` overflows on)."""
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def check_meta(meta: Any, exogenous: int = 0) -> dict[str, Any]:
    """A saved meta, validated: wrong types raise UserError naming the key. ``exogenous``:
    how many input columns the run's options name (their statistics must be there)."""
    if not isinstance(meta, dict):
        raise UserError(f"forecast checkpoint meta must be a JSON object, got {short(meta)}")
    columns = meta.get("columns")
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise UserError(
            "forecast checkpoint meta 'columns' must be a non-empty list of names, got "
            f"{short(columns)}"
        )
    for key in ("mean", "std"):
        value = meta.get(key)
        ok = isinstance(value, list) and len(value) == len(columns)
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ok = ok and all(_finite(v) and (key == "mean" or v > 0) for v in value)
        if not ok:
            kind = "finite numbers" if key == "mean" else "positive numbers"
            raise UserError(
                f"forecast checkpoint meta {key!r} must be a list of {len(columns)} {kind} "
                f"(one per column), got {short(value)}"
            )
    scales = meta.get("scales", {})
    ok = isinstance(scales, dict) and all(
        isinstance(v, list) and len(v) == len(columns) and all(_positive(x) for x in v)
        for v in scales.values()
    )
    if not ok:
        raise UserError(
            f"forecast checkpoint meta 'scales' must map series to {len(columns)} positive "
            f"numbers, got {short(scales)}"
        )
    for key in ("input_mean", "input_std") if exogenous else ():
        value = meta.get(key)
        ok = isinstance(value, list) and len(value) == exogenous
        ok = ok and all(_positive(v) or (key == "input_mean" and _number(v)) for v in value)
        if not ok:
            raise UserError(
                f"forecast checkpoint meta {key!r} must be a list of {exogenous} numbers "
                f"(one per --exogenous column), got {short(value)}"
            )
    names = meta.get("calendar", [])
    if not (isinstance(names, list) and all(n in CALENDAR for n in names)):
        raise UserError(
            f"forecast checkpoint meta 'calendar' must list some of {list(CALENDAR)}, got "
            f"{short(names)}"
        )
    return meta


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


@dataclass
class ForecastOptions(TaskOptions):
    """The next steps of a series of real values (or of many series, one model across them)."""

    window: int = opt(48, "input steps per forecast window")
    horizon: int = opt(12, "steps forecast, fed back autoregressively")
    columns: list[str] = opt([], "CSV columns to forecast (default: all numeric columns)")
    season: int = opt(0, "season length of the seasonal-naive baseline and MASE, 0: last value")
    loss: str = opt("mse", "regression loss of --likelihood point", choices=("mse", "mae"))
    time_column: str = opt(
        "", "CSV column of ISO dates/times: rows sorted by it, a gap or duplicate refused"
    )
    id_column: str = opt(
        "", "CSV column naming the series: one model across them, each scaled by its mean |y|"
    )
    exogenous: list[str] = opt(
        [], "CSV columns read as inputs known in advance (predict needs their future rows)"
    )
    calendar: bool = opt(False, "hour/weekday/month sin-cos inputs from --time-column")
    center: bool = opt(
        False, "subtract each window's last value: the model sees shapes, not levels (trends)"
    )
    likelihood: str = opt(
        "point",
        "output: point (--loss), or a distribution trained on its NLL (gaussian, studentt) "
        "or quantiles trained on the pinball loss",
        choices=LIKELIHOODS,
    )
    quantiles: list[float] = opt([0.1, 0.5, 0.9], "levels of --likelihood quantile (with 0.5)")
    num_samples: int = opt(100, "sample paths per forecast (gaussian, studentt)")
    interval: float = opt(0.8, "central prediction interval of the sampled paths")

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        for name in ("window", "horizon"):
            need(getattr(self, name) >= 1, name, "a positive integer", getattr(self, name))
        need(self.season >= 0, "season", "an integer >= 0", self.season)
        for name in ("window", "horizon"):
            check_int(getattr(self, name), CONFIG["forecast"][name], f"--{name}")
        if self.season > self.window:
            raise UserError(f"--season {self.season} needs --window >= {self.season}")
        need(0 < self.interval < 1, "interval", "a number strictly between 0 and 1", self.interval)
        q = self.quantiles
        ok = bool(q) and all(0 < v < 1 for v in q) and sorted(set(q)) == list(q) and 0.5 in q
        if self.likelihood == "quantile" and not ok:
            raise UserError(
                f"--quantiles must be increasing levels in (0, 1) including 0.5, got {short(q)}"
            )
        if self.calendar and not self.time_column:
            raise UserError("--calendar needs --time-column (the features come from the times)")
        if config.data.synthetic and not config.data.paths:
            given = [f for f in ("time_column", "id_column", "exogenous") if getattr(self, f)]
            if given:
                flag = "--" + given[0].replace("_", "-")
                raise UserError(f"{flag} reads CSV columns; --synthetic series have none")
