"""Real-valued time series for the forecast task: CSV files, synthetic series, windows.

    names, values = read_series(["weather.csv"], columns=[])    # (T, C) float64
    train, val, test = split_series(values, 0.1, 0.1)            # contiguous in time
    norm = Normaliser.fit(train)                                 # training part only
    starts = make_windows(norm.transform(val), window=48, horizon=12)

What is here: the CSV reader (header row, one time step per row; every error names the file
and line), two generators (``noisy_sines``, ``lorenz``), the per-column ``Normaliser``, the
contiguous train/val/test split and the window starts inside one part. What is not here:
batching and the model (``rnnkit.tasks.forecast``, ``rnnkit.models.forecaster``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.data.corpus import resolve_paths
from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError

# --------------------------------------------------------------------------- CSV

#: the largest magnitude a cell may have: the normaliser squares the values (1e308**2 is inf)
MAX_ABS_VALUE = 1e100


def read_series(paths: Sequence[str], columns: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """The columns ``names`` and their values ``(T, C)`` float64 from CSV files.

    Each file has a header row and one time step per row; several files are concatenated in
    time, in the order given (directories: their files sorted), and must share the columns.
    Without ``columns``, every numeric column is used: a column counts as numeric when most of
    its cells are numbers (so a leading date or a label column is skipped), and then every one
    of its cells must be a finite number. With ``columns``, exactly those, in that order.
    Raises UserError naming the file and line for anything unreadable.
    """
    if not paths:
        raise UserError("--task forecast needs CSV files (PATH) or --synthetic sine|lorenz")
    names: list[str] | None = None
    parts = []
    for path in resolve_paths(list(paths)):
        file_names, values = _read_csv(path, list(columns) or None)
        if names is not None and file_names != names:
            raise UserError(
                f"{path}: columns {file_names} differ from {names} in the first file "
                "(give the same columns, or choose them with --columns)"
            )
        names = file_names
        parts.append(values)
    assert names is not None
    return names, np.concatenate(parts, axis=0)


def _number(text: str) -> float | None:
    """``text`` as a float, or None if it is not a number (empty cells are not)."""
    try:
        return float(text)
    except ValueError:
        return None


def _csv_rows(path: Path, text: str):
    """``(line, cells)`` per CSV record of ``text`` (``line``: where the record ends); a
    quote that never closes or a field past ``csv.field_size_limit()`` is a UserError naming
    the line where the record begins, not csv's traceback."""
    reader = csv.reader(text.splitlines(), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if "field limit" in str(error):
                raise UserError(
                    f"{path}:{start}: a field longer than {csv.field_size_limit():,} characters "
                    f"(an unbalanced quote at line {start}?)"
                ) from None
            if "unexpected end of data" in str(error):
                raise UserError(
                    f"{path}:{start}: unbalanced quote at line {start} (a quoted field that "
                    "never closes)"
                ) from None
            raise UserError(f"{path}:{reader.line_num}: malformed CSV ({error})") from None
        yield reader.line_num, row


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank data rows ``(line, cells)`` of one CSV file, every row as
    wide as the header (cells stripped). UserError naming the file and line otherwise."""
    text = read_text(path, empty_hint="expected a CSV header row and data rows")
    records = _csv_rows(path, text)
    first = next(records, None)
    if first is None:
        raise UserError(f"{path}: no header row (expected a CSV header row and data rows)")
    header = [name.strip() for name in first[1]]
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise UserError(f"{path}:1: header repeats column name(s) {duplicates}")
    rows: list[tuple[int, list[str]]] = []
    for line, row in records:
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            raise UserError(
                f"{path}:{line}: {len(row)} cells, but the header has {len(header)} columns"
            )
        rows.append((line, [cell.strip() for cell in row]))
    if not rows:
        raise UserError(f"{path}: no data rows after the header (one time step per row)")
    return header, rows


def column_indices(path: Path, header: list[str], columns: Sequence[str]) -> list[int]:
    """Where each of ``columns`` sits in ``header``; UserError naming the first unknown one."""
    unknown = [c for c in columns if c not in header]
    if unknown:
        raise UserError(f"{path}: no column {unknown[0]!r} (available: {', '.join(header)})")
    return [header.index(c) for c in columns]


def parse_value(path: Path, line: int, column: str, cell: str) -> float:
    """One cell as a finite float of magnitude at most MAX_ABS_VALUE, or a UserError naming
    the file, line and column."""
    value = _number(cell)
    if value is None:
        what = "an empty cell" if not cell else f"{cell!r}"
        raise UserError(f"{path}:{line}: column {column!r}: {what} is not a number")
    if not math.isfinite(value):
        raise UserError(f"{path}:{line}: column {column!r}: {cell!r} is not a finite number")
    if abs(value) > MAX_ABS_VALUE:
        raise UserError(
            f"{path}:{line}: column {column!r}: {cell!r} is too large to "
            f"normalise (|value| must be at most {MAX_ABS_VALUE:g})"
        )
    return value


def _read_csv(path: Path, columns: list[str] | None) -> tuple[list[str], np.ndarray]:
    header, rows = read_table(path)
    if columns is None:
        used = [
            j
            for j in range(len(header))
            if 2 * sum(_number(cells[j]) is not None for _, cells in rows) > len(rows)
        ]
        if not used:
            raise UserError(f"{path}: no numeric column (columns: {', '.join(header)})")
    else:
        used = column_indices(path, header, columns)
    values = np.empty((len(rows), len(used)), dtype=np.float64)
    for i, (line, cells) in enumerate(rows):
        for k, j in enumerate(used):
            values[i, k] = parse_value(path, line, header[j], cells[j])
    return [header[j] for j in used], values


# --------------------------------------------------------------------------- synthetic


def noisy_sines(n: int, seed: int, channels: int = 1) -> tuple[list[str], np.ndarray]:
    """``channels`` series of ``n`` steps, each a sum of two or three sines with periods
    between 8 and 64 steps, random amplitudes and phases, plus N(0, 0.1^2) noise."""
    rng = np.random.default_rng([seed, 17])
    t = np.arange(n, dtype=np.float64)
    values = np.empty((n, channels))
    for c in range(channels):
        k = int(rng.integers(2, 4))
        periods = rng.uniform(8, 64, size=k)
        amplitudes = rng.uniform(0.3, 1.0, size=k)
        phases = rng.uniform(0, 2 * np.pi, size=k)
        waves = amplitudes * np.sin(2 * np.pi * t[:, None] / periods + phases)  # (n, k)
        values[:, c] = waves.sum(axis=1) + rng.normal(0, 0.1, size=n)
    names = ["sine"] if channels == 1 else [f"sine{c + 1}" for c in range(channels)]
    return names, values


def _lorenz_derivative(s: np.ndarray, sigma=10.0, rho=28.0, beta=8.0 / 3.0) -> np.ndarray:
    """dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z."""
    x, y, z = s
    return np.array([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])


def lorenz(n: int, seed: int, dt: float = 0.01) -> tuple[list[str], np.ndarray]:
    """``n`` steps of the Lorenz-63 system (sigma 10, rho 28, beta 8/3), integrated with
    classical RK4 at step ``dt`` from a seeded start near the attractor (1000 steps of
    burn-in are dropped). Columns x, y, z."""
    rng = np.random.default_rng([seed, 63])
    s = np.array([1.0, 1.0, 20.0]) + rng.normal(0, 1.0, size=3)
    f = _lorenz_derivative
    values = np.empty((n, 3))
    for i in range(-1000, n):
        k1 = f(s)
        k2 = f(s + 0.5 * dt * k1)
        k3 = f(s + 0.5 * dt * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i >= 0:
            values[i] = s
    return ["x", "y", "z"], values


# --------------------------------------------------------------------------- windows


@dataclass
class Normaliser:
    """Per-column ``(x - mean) / std``; a constant column (std 0) gets std 1."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)

    @classmethod
    def fit(cls, values: np.ndarray) -> Normaliser:
        """Statistics of ``values`` (T, C): pass the training part only."""
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


def split_series(
    values: np.ndarray, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test): the first, middle and last stretches of ``values`` (T, C) in time,
    the last two of ``round(T * fraction)`` steps (test may be empty with fraction 0)."""
    T = len(values)
    n_test = round(T * test_fraction)
    n_val = round(T * val_fraction)
    n_train = T - n_val - n_test
    return values[:n_train], values[n_train : n_train + n_val], values[n_train + n_val :]


def make_windows(values: np.ndarray, window: int, horizon: int, part: str = "") -> np.ndarray:
    """Start indices of every stretch of ``window + horizon`` steps inside ``values`` (T, C),
    so a window and its horizon never leave the part. ``part`` names it in the error raised
    when not even one fits."""
    span = window + horizon
    if span > len(values):
        where = (
            f"the {len(values)}-step {part} part of the series"
            if part
            else (f"the {len(values)}-step series")
        )
        raise UserError(
            f"--window {window} + --horizon {horizon} = {span} steps, longer than {where} "
            "(use a shorter --window/--horizon or more data)"
        )
    return np.arange(len(values) - span + 1)
