"""Series with a time column, an id column and exogenous inputs: the forecast task's CSV panel.

    panel = read_panel(["demand.csv"], targets=["load"], exogenous=["temp"],
                       time_column="time", id_column="region")
    for s in panel:           # one Series per id (first seen first), rows sorted by time
        s.name, s.targets, s.inputs, s.times    # (T, C), (T, K), T datetimes
    step = series_step(s)     # Step("seconds", 1800) or Step("months", 1)
    features = calendar_features(s.times, ["hour", "weekday"])   # (T, 4): sin, cos each
    after = future_times(s.times[-1], step, 12)                  # the next 12 times

What is here: reading (times parsed as ISO 8601; the rows of each id sorted by time; a
duplicate time or a gap is one line naming the file, the lines and the id), the step of a
series (a fixed number of seconds, or whole calendar months), the calendar features and the
times after a series. What is not here: the cells themselves (``rnnkit.data.series``: numbers,
the CSV reader), scaling and windows (``rnnkit.tasks.forecast``).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from rnnkit.data.corpus import resolve_paths
from rnnkit.data.series import _number, column_indices, parse_value, read_table
from rnnkit.errors import UserError

#: calendar features, each a (sin, cos) pair of its phase: the period a step must be below
CALENDAR = ("hour", "weekday", "month")
_DAY = 86_400


@dataclass
class Series:
    """One series of the panel: ``name`` (its id, "" without an id column), ``targets`` (T, C)
    and ``inputs`` (T, K) float64, ``times`` (T datetimes, empty without a time column) and
    ``where`` ("file:line" of each row, for messages), ``columns`` the targets' names."""

    name: str
    targets: np.ndarray
    inputs: np.ndarray
    times: list[datetime] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the target columns' names


@dataclass(frozen=True)
class Step:
    """The spacing of a series: ``size`` seconds, or ``size`` calendar months."""

    unit: str  # "seconds" | "months"
    size: int

    def __str__(self) -> str:
        if self.unit == "months":
            return f"{self.size} month" + ("s" if self.size > 1 else "")
        for unit, seconds in (("day", _DAY), ("hour", 3600), ("minute", 60), ("second", 1)):
            if self.size % seconds == 0:
                count = self.size // seconds
                return f"{count} {unit}" + ("s" if count > 1 else "")
        raise AssertionError("unreachable: every size is a whole number of seconds")


def parse_time(path: Path, line: int, column: str, cell: str) -> datetime:
    """An ISO 8601 date or date-time (``2000-06-05``, ``2000-06-05 13:30``); a time zone is
    dropped after conversion to UTC, so all times compare."""
    try:
        value = datetime.fromisoformat(cell)
    except ValueError:
        raise UserError(
            f"{path}:{line}: column {column!r}: {cell[:40]!r} is not an ISO date/time "
            "(YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS])"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(tz=None).replace(tzinfo=None)
    return value


def read_panel(
    paths: Sequence[str],
    targets: Sequence[str] = (),
    exogenous: Sequence[str] = (),
    time_column: str = "",
    id_column: str = "",
    future: bool = False,
) -> list[Series]:
    """The series of the CSV ``paths``: one per value of ``id_column`` (all rows one series
        without it), rows in file order or, with ``time_column``, sorted by time and checked for
        duplicates and gaps (:func:`series_step`). ``targets``: the forecast columns (default:
        every numeric column that is not the time, id or an exogenous column); ``exogenous``:
        numeric inputs known in advance. With ``future``, a row whose target cells are all empty
    reads as NaN targets (the steps to forecast, their inputs given). UserError, one line, for
    anything unreadable."""
    if not paths:
        raise UserError("--task forecast needs CSV files (PATH) or --synthetic sine|lorenz")
    overlap = set(targets) & set(exogenous)
    if overlap:
        raise UserError(f"column {sorted(overlap)[0]!r} is both a target and --exogenous")
    for flag, name in (("--time-column", time_column), ("--id-column", id_column)):
        if name and (name in targets or name in exogenous):
            raise UserError(f"{flag} {name!r} cannot also be a target or --exogenous column")
    groups: dict[str, list[tuple[str, list[float], list[float], datetime | None]]] = {}
    names: list[str] | None = None
    for path in resolve_paths(list(paths)):
        header, rows = read_table(path)
        special = [c for c in (time_column, id_column) if c]
        column_indices(path, header, [*special, *exogenous])
        wanted = list(targets) or [
            header[j]
            for j in range(len(header))
            if header[j] not in (*special, *exogenous)
            and 2 * sum(_number(cells[j]) is not None for _, cells in rows) > len(rows)
        ]
        if not wanted:
            raise UserError(f"{path}: no numeric target column (columns: {', '.join(header)})")
        if names is not None and wanted != names:
            raise UserError(
                f"{path}: target columns {wanted} differ from {names} in the first file"
            )
        names = wanted
        y, x = column_indices(path, header, wanted), column_indices(path, header, exogenous)
        t = header.index(time_column) if time_column else -1
        i = header.index(id_column) if id_column else -1
        for line, cells in rows:
            key = cells[i] if i >= 0 else ""
            if i >= 0 and not key:
                raise UserError(f"{path}:{line}: column {id_column!r}: an empty series id")
            when = parse_time(path, line, time_column, cells[t]) if t >= 0 else None
            groups.setdefault(key, []).append(
                (
                    f"{path}:{line}",
                    [math.nan] * len(y)
                    if future and all(not cells[j] for j in y)
                    else [parse_value(path, line, header[j], cells[j]) for j in y],
                    [parse_value(path, line, header[j], cells[j]) for j in x],
                    when,
                )
            )
    panel = []
    for key, group in groups.items():
        if time_column:
            group.sort(key=lambda row: row[3])  # stable: equal times stay in file order
        series = Series(
            key,
            np.array([row[1] for row in group], dtype=np.float64).reshape(len(group), -1),
            np.array([row[2] for row in group], dtype=np.float64).reshape(len(group), -1),
            [row[3] for row in group] if time_column else [],
            [row[0] for row in group],
            list(names or []),
        )
        if time_column:
            series_step(series)  # duplicates and gaps refused here, when the data is read
        panel.append(series)
    return panel


def _months(t: datetime) -> int:
    return t.year * 12 + t.month - 1


def series_step(series: Series) -> Step:
    """The spacing of ``series.times``: whole calendar months when every time falls on the
    same day of the month at the same clock time (monthly data), else the smallest difference
    in seconds. A repeated time or a difference other than one step is a UserError naming
    both rows (and the id)."""
    times, where = series.times, series.where
    who = f" (series {series.name!r})" if series.name else ""
    if len(times) < 2:
        raise UserError(f"{where[0]}: a series of one row has no time step{who}")
    for k in range(1, len(times)):
        if times[k] == times[k - 1]:
            raise UserError(f"{where[k]}: duplicate time {times[k]} (also at {where[k - 1]}){who}")
    anchor = times[0]
    monthly = (
        all((t.day, t.time()) == (anchor.day, anchor.time()) for t in times) and anchor.day <= 28
    )
    if monthly:
        diffs = [_months(b) - _months(a) for a, b in zip(times, times[1:], strict=False)]
        step = Step("months", min(diffs))
    else:
        seconds = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        diffs = [round(s) for s in seconds]
        step = Step("seconds", min(diffs))
        if step.size < 1:
            raise UserError(f"{where[0]}: times less than a second apart are not supported{who}")
    for k, d in enumerate(diffs):
        if d != step.size:
            raise UserError(
                f"{where[k + 1]}: a gap: {times[k]} -> {times[k + 1]} is not one step of "
                f"{step} (the series' smallest spacing){who}"
            )
    return step


def future_times(last: datetime, step: Step, count: int) -> list[datetime]:
    """The ``count`` times after ``last``, one ``step`` apart."""
    if step.unit == "seconds":
        return [last + timedelta(seconds=step.size * k) for k in range(1, count + 1)]
    out = []
    for k in range(1, count + 1):
        m = _months(last) + step.size * k
        year, month = divmod(m, 12)
        day = min(last.day, calendar.monthrange(year, month + 1)[1])
        out.append(last.replace(year=year, month=month + 1, day=day))
    return out


def calendar_names(step: Step) -> list[str]:
    """The calendar features a series of this spacing can see change: hour of day below a day,
    day of week below a week, month of year below a year."""
    seconds = step.size * 28 * _DAY if step.unit == "months" else step.size
    limits = {"hour": _DAY, "weekday": 7 * _DAY, "month": 365 * _DAY}
    return [name for name in CALENDAR if seconds < limits[name]]


def calendar_features(times: Sequence[datetime], names: Sequence[str]) -> np.ndarray:
    """(T, 2 * len(names)) float64: for each feature its phase phi in [0, 1) as
    (sin 2 pi phi, cos 2 pi phi), where

        hour:    phi = (hour + minute / 60 + second / 3600) / 24
        weekday: phi = (weekday + hour_phase) / 7           (Monday 0)
        month:   phi = (month - 1 + (day - 1) / days_in_month) / 12

    so midnight follows 23:30 smoothly and December follows November and precedes January."""
    out = np.empty((len(times), 2 * len(names)))
    for r, t in enumerate(times):
        hour = (t.hour + t.minute / 60 + t.second / 3600) / 24
        for k, name in enumerate(names):
            if name == "hour":
                phase = hour
            elif name == "weekday":
                phase = (t.weekday() + hour) / 7
            elif name == "month":
                days = calendar.monthrange(t.year, t.month)[1]
                phase = (t.month - 1 + (t.day - 1 + hour) / days) / 12
            else:
                raise ValueError(f"unknown calendar feature {name!r}")
            out[r, 2 * k] = math.sin(2 * math.pi * phase)
            out[r, 2 * k + 1] = math.cos(2 * math.pi * phase)
    return out
