"""Labelled numeric sequences on disk -> ``Series``: real-valued, possibly multivariate, possibly
of different lengths, for sequence classification (UCR/UEA archives, sensor recordings).

Four layouts, told apart by what the path is::

    X_TRAIN.ts        the UCR/UEA .ts format (sktime's writer): @headers, then @data, one
                      case a line: dimensions separated by ':', values by ',', '?' missing,
                      the class label last (@classLabel true a b c)
    X.npz             arrays x (N, T, C) or (N, T), y (N,) labels, optional lengths (N,)
    X.csv             one univariate sequence per row: a header row naming the label column
                      (``--label-column``, default label) and the time steps, e.g.
                      label,t1,t2,t3 / walk,0.1,0.4,0.2 / run,1.5,2.0 (trailing empty cells:
                      a shorter sequence)
    DIR/              one CSV file per sequence in one subdirectory per class:
      walk/001.csv      rows are time steps, columns channels (an optional header row)

Missing values (``?`` or an empty cell inside a sequence, NaN in an NPZ) are NaN here; the task
fills them with the training mean after normalising (``normalise``). Not allowed, each a
:class:`UserError` naming the file and line: unparseable or infinite numbers, ragged rows, a
dimension count that differs, ``?`` in a .ts file that says ``@missing false``, a label not in
``@classLabel``, a sequence without a single value, an empty file.

Not here: splitting and batching (``rnnkit.data.batching``), the labels' index (the task).
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError

MISSING = ("?", "", "nan", "NaN")  # CSV cells read as a missing value (.ts: "?" only)
_TS_FLAGS = ("timestamps", "missing", "univariate", "equallength", "classlabel", "targetlabel")
_TS_HEADERS = ("problemname", "dimensions", "serieslength", *_TS_FLAGS)


@dataclass
class Series:
    """Sequences ``values[i]`` (T_i, C) float32 with NaN where a value is missing, their
    ``labels`` ("" when the file holds none) and ``sources`` ("file:line", for messages)."""

    values: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return self.values[0].shape[1] if self.values else 0

    def extend(self, other: Series) -> None:
        if self.values and other.values and other.channels != self.channels:
            raise UserError(
                f"{other.sources[0]}: {other.channels} channels, but {self.sources[0]} has "
                f"{self.channels} (every file of a run has the same channels)"
            )
        self.values += other.values
        self.labels += other.labels
        self.sources += other.sources


def is_series(paths: list[str], label_column: str = "label") -> bool:
    """Whether ``paths`` hold numeric sequences rather than labelled text: a .ts or .npz
    file, a directory of class subdirectories holding .csv files, or a .csv whose header row
    names ``label_column`` and at least two other columns (a text CSV is ``label,text``)."""
    for item in paths:
        path = Path(item).expanduser()
        if path.suffix.lower() in (".ts", ".npz"):
            return True
        if path.is_dir() and any(path.glob("*/*.csv")):
            return True
        if path.suffix.lower() == ".csv" and path.is_file():
            header = _csv_header(path)
            if label_column in header and len(header) >= 3:
                return True
    return False


def read_series(paths: list[str], label_column: str = "label", labelled: bool = True) -> Series:
    """Every sequence of ``paths``, in order. ``labelled``: each sequence must carry a label
    (training, ``rnnkit eval``); else labels may be absent (``rnnkit predict``)."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise UserError("no series given: name a .ts, .npz or .csv file or a directory")
    out = Series()
    for item in paths:
        path = Path(item).expanduser()
        suffix = path.suffix.lower()
        if path.is_dir():
            out.extend(_read_directory(path))
        elif not path.is_file():
            raise UserError(f"no such file or directory: {item} (give a .ts, .npz or .csv file)")
        elif suffix == ".npz":
            out.extend(_read_npz(path, labelled))
        elif suffix == ".ts":
            out.extend(_read_ts(path, read_text(path, empty_hint=_EMPTY), labelled))
        elif suffix == ".csv":
            out.extend(_read_csv(path, label_column, labelled))
        else:
            raise UserError(f"{path}: not a series file (give a .ts, .npz or .csv file)")
    return out


def fit_scaler(values: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation over every present value of ``values`` (the
    training split): mu_c = mean x_tc, sigma_c = sqrt(mean (x_tc - mu_c)^2); a channel with no
    spread gets sigma 1, one with no value mu 0."""
    stacked = np.concatenate(values, axis=0).astype(np.float64)  # (sum T_i, C)
    present = ~np.isnan(stacked)
    count = present.sum(0)
    mean = np.where(count > 0, np.nansum(stacked, 0) / np.maximum(count, 1), 0.0)
    var = np.nansum((stacked - mean) ** 2, 0) / np.maximum(count, 1)
    std = np.sqrt(var)
    std = np.where((count > 0) & (std > 1e-12), std, 1.0)
    return [float(m) for m in mean], [float(s) for s in std]


def normalise(values: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """(x - mu) / sigma per channel, missing values (NaN) -> 0, the training mean."""
    out = (values.astype(np.float64) - np.asarray(mean)) / np.asarray(std)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


# ---- .ts ---------------------------------------------------------------------------------
_EMPTY = "add sequences to it or remove it from the inputs"


def _read_ts(path: Path, text: str, labelled: bool) -> Series:
    """The UCR/UEA .ts format: headers (case-insensitive), ``@data``, one case a line."""
    headers: dict[str, str] = {}
    out, width, data_line = Series(), None, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not data_line:
            headers, data_line = _ts_header(path, number, line, headers)
            continue
        fields = line.split(":")
        if headers["classlabel"] == "true":
            label = fields.pop().strip()
            if not label:
                raise UserError(f"{path}:{number}: empty class label after the last ':'")
            if label not in headers["labels"].split():
                raise UserError(
                    f"{path}:{number}: class label {label!r} is not in @classLabel "
                    f"({headers['labels']})"
                )
        elif labelled:
            raise UserError(f"{path}: @classLabel false: the cases have no labels to learn")
        else:
            label = ""
        if not fields or not "".join(fields).strip():
            raise UserError(f"{path}:{number}: a case without values")
        dims = len(fields)
        width = width or int(headers.get("dimensions", dims))
        if dims != width:
            raise UserError(f"{path}:{number}: {dims} dimensions, expected {width}")
        columns = [_ts_values(path, number, d, f, headers) for d, f in enumerate(fields, 1)]
        if len({len(c) for c in columns}) > 1:
            sizes = ", ".join(str(len(c)) for c in columns)
            raise UserError(f"{path}:{number}: dimensions of different lengths ({sizes})")
        _check_lengths(path, number, len(columns[0]), headers, out)
        out.values.append(_present(np.array(columns, dtype=np.float32).T, f"{path}:{number}"))
        out.labels.append(label)
        out.sources.append(f"{path}:{number}")
    if not data_line:
        raise UserError(f"{path}: no @data line (is it a .ts file?)")
    if not out.values:
        raise UserError(f"{path}: no cases after @data ({_EMPTY})")
    return out


def _ts_header(path: Path, number: int, line: str, headers: dict) -> tuple[dict, int]:
    """One header line into ``headers``; returns ``(headers, number)`` at @data."""
    if not line.startswith("@"):
        raise UserError(f"{path}:{number}: expected an @header or @data, found {line[:40]!r}")
    key, _, value = line[1:].partition(" ")
    key, value = key.lower(), value.strip()
    if key == "data":
        if "classlabel" not in headers:
            raise UserError(f"{path}:{number}: @data before @classLabel (true LABELS or false)")
        if headers.get("timestamps") == "true":
            raise UserError(f"{path}: @timeStamps true is not supported (give plain values)")
        return headers, number
    if key not in _TS_HEADERS:
        raise UserError(f"{path}:{number}: unknown header @{key}")
    if key in _TS_FLAGS:
        flag, _, rest = value.partition(" ")
        if flag.lower() not in ("true", "false"):
            raise UserError(f"{path}:{number}: @{key} must be true or false, got {flag!r}")
        value = flag.lower()
        if key == "classlabel":
            if value == "true" and not rest.split():
                raise UserError(f"{path}:{number}: @classLabel true names no labels")
            headers["labels"] = rest.strip()
    if key in ("dimensions", "serieslength") and not (value.isdigit() and int(value) >= 1):
        raise UserError(f"{path}:{number}: @{key} must be a positive integer, got {value!r}")
    if key == "dimensions" and headers.get("univariate") == "true" and value != "1":
        raise UserError(f"{path}:{number}: @univariate true but @dimensions {value}")
    headers[key] = value
    return headers, 0


def _ts_values(path: Path, number: int, dim: int, text: str, headers: dict) -> list[float]:
    values = []
    for cell in text.split(","):
        cell = cell.strip()
        if cell == "?":
            if headers.get("missing") == "false":
                raise UserError(f"{path}:{number}: '?' in dimension {dim}, but @missing false")
            values.append(math.nan)
            continue
        values.append(_number(cell, f"{path}:{number}", f"dimension {dim}"))
    return values


def _check_lengths(path: Path, number: int, length: int, headers: dict, out: Series) -> None:
    if "serieslength" in headers and length != int(headers["serieslength"]):
        raise UserError(
            f"{path}:{number}: {length} values, but @seriesLength {headers['serieslength']}"
        )
    if headers.get("equallength") == "true" and out.values and len(out.values[0]) != length:
        raise UserError(
            f"{path}:{number}: {length} values, the first case has {len(out.values[0])} "
            "(@equalLength true)"
        )


# ---- CSV ---------------------------------------------------------------------------------
def _csv_header(path: Path) -> list[str]:
    """The first row of a CSV file, stripped ([] when unreadable: the reader says why)."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line, cells) of every non-blank row, one width throughout."""
    text = read_text(path, empty_hint=_EMPTY)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if rows and len(row) != len(rows[0][1]):
                raise UserError(
                    f"{path}:{reader.line_num}: ragged row: {len(row)} columns, "
                    f"the first row has {len(rows[0][1])}"
                )
            rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: bad CSV: {e}") from None
    return rows


def _read_csv(path: Path, label_column: str, labelled: bool) -> Series:
    """A header row naming ``label_column``: one univariate sequence per row. Without it: one
    multivariate sequence (rows are time steps), unlabelled (``rnnkit predict``)."""
    rows = _csv_rows(path)
    header = rows[0][1] if rows else []
    if label_column not in header:
        if labelled:
            raise UserError(
                f"{path}:1: no {label_column!r} column in the header row "
                "(name the label column with --label-column)"
            )
        return _read_sequence_file(path, "", rows)
    if len(rows) < 2:
        raise UserError(f"{path} has a header but no sequences ({_EMPTY})")
    where = header.index(label_column)
    out = Series()
    for number, row in rows[1:]:
        label = row[where]
        if labelled and not label:
            raise UserError(f"{path}:{number}: empty label in column {label_column!r}")
        cells = [(i + 1, cell) for i, cell in enumerate(row) if i != where]
        while cells and cells[-1][1] == "":  # trailing empty cells: a shorter sequence
            cells.pop()
        values = [_cell(c, f"{path}:{number}", f"column {i}") for i, c in cells]
        out.values.append(_present(np.array(values, dtype=np.float32)[:, None], f"{path}:{number}"))
        out.labels.append(label)
        out.sources.append(f"{path}:{number}")
    return out


def _read_sequence_file(path: Path, label: str, rows: list[tuple[int, list[str]]]) -> Series:
    """One sequence: rows are time steps, columns channels; a first row that is not all
    numbers is a header."""
    if rows and any(_is_text(cell) for cell in rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise UserError(f"{path} has no rows of values ({_EMPTY})")
    values = [
        [_cell(c, f"{path}:{number}", f"column {i + 1}") for i, c in enumerate(row)]
        for number, row in rows
    ]
    array = _present(np.array(values, dtype=np.float32), str(path))
    return Series([array], [label], [str(path)])


def _read_directory(directory: Path) -> Series:
    """DIR/LABEL/*.csv: one sequence per file, labelled by its subdirectory."""
    files = sorted(p for p in directory.glob("*/*.csv") if p.is_file())
    if not files:
        raise UserError(f"directory {directory} has no LABEL/*.csv files (one per sequence)")
    out = Series()
    for path in files:
        out.extend(_read_sequence_file(path, path.parent.name, _csv_rows(path)))
    return out


def _is_text(cell: str) -> bool:
    if cell in MISSING:
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def _cell(cell: str, where: str, column: str) -> float:
    return math.nan if cell in MISSING else _number(cell, where, column)


def _number(cell: str, where: str, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise UserError(f"{where}: {column}: {cell[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {column}: {cell[:40]!r} is not a finite number")
    return value


def _present(values: np.ndarray, where: str) -> np.ndarray:
    """A sequence (T, C) needs at least one step and one value."""
    if values.size == 0 or np.isnan(values).all():
        raise UserError(f"{where}: a sequence without a single value")
    return values


# ---- NPZ ---------------------------------------------------------------------------------
def _read_npz(path: Path, labelled: bool) -> Series:
    """``x`` (N, T, C) or (N, T) floats (NaN: missing), ``y`` (N,) labels, ``lengths`` (N,)
    optional (default: up to each sequence's last step with a value). No pickles."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz archive ({e})") from None
    if "x" not in arrays:
        raise UserError(f"{path}: no array 'x' (it holds {', '.join(arrays) or 'nothing'})")
    x = arrays["x"]
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise UserError(f"{path}: x has shape {x.shape}; expected (N, T, C) or (N, T), N, T >= 1")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise UserError(f"{path}: x holds {x.dtype}, expected numbers")
    x = x.astype(np.float32)
    if np.isinf(x).any():
        raise UserError(
            f"{path}: x holds an infinite value (sequence {np.isinf(x).any((1, 2)).argmax() + 1})"
        )
    n = x.shape[0]
    labels = _npz_labels(path, arrays.get("y"), n, labelled)
    lengths = _npz_lengths(path, arrays.get("lengths"), x)
    out = Series()
    for i in range(n):
        where = f"{path}: sequence {i + 1}"
        out.values.append(_present(x[i, : lengths[i]], where))
        out.labels.append(labels[i])
        out.sources.append(where)
    return out


def _npz_labels(path: Path, y, n: int, labelled: bool) -> list[str]:
    if y is None:
        if labelled:
            raise UserError(f"{path}: no array 'y' of labels")
        return [""] * n
    if y.shape != (n,):
        raise UserError(f"{path}: y has shape {y.shape}; expected ({n},), a label per sequence")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise UserError(f"{path}: y holds {y.dtype} values that are not whole numbers")
        y = y.astype(np.int64)
    labels = [str(v).strip() for v in y.tolist()]
    if labelled and "" in labels:
        raise UserError(f"{path}: y[{labels.index('')}] is an empty label")
    return labels


def _npz_lengths(path: Path, lengths, x: np.ndarray) -> list[int]:
    n, t = x.shape[:2]
    if lengths is None:
        has = ~np.isnan(x).all(2)  # (N, T)
        return [int(t - np.argmax(row[::-1])) if row.any() else t for row in has]
    if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
        raise UserError(
            f"{path}: lengths must be ({n},) integers, got {lengths.dtype} {lengths.shape}"
        )
    bad = np.flatnonzero((lengths < 1) | (lengths > t))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"{path}: lengths[{i}] is {int(lengths[i])}; expected 1..{t} (x's T)")
    return [int(v) for v in lengths]
