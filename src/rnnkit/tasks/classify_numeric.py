"""``--task classify`` on numeric series: what differs from text (``rnnkit.tasks.classify``).

    rnnkit train --task classify JapaneseVowels_TRAIN.ts --val JapaneseVowels_TEST.ts
    rnnkit eval runs/classify ArrowHead_TEST.ts
    rnnkit predict runs/classify ItalyPowerDemand_TEST.ts --top 2

What is here: ``SeriesInputs``, the numeric side of the task: which files hold series
(``wants_series``), the per-channel normalisation fitted on the training split only and saved in
the checkpoint's meta, reading files into normalised ``(T, K)`` arrays that every later file is
checked against (the channel count), and padding them into batches. The readers are
``rnnkit.data.numeric``; the splits, loss, metrics and model are the task's, shared with text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.numeric import Series, fit_scaler, is_series, normalise, read_series
from rnnkit.errors import UserError
from rnnkit.tasks.meta import Bound, check_int

CHANNELS = Bound(1, 100_000, "values per time step; JapaneseVowels has 12")


def wants_series(paths: list[str], inputs: str, label_column: str) -> bool:
    """``--inputs series``, or ``auto`` and the files look numeric (``is_series``)."""
    if inputs == "auto":
        return is_series(paths, label_column)
    return inputs == "series"


class SeriesInputs:
    """Channels K and their training mean mu and deviation sigma: x' = (x - mu) / sigma,
    missing values -> 0 (the training mean)."""

    def __init__(self, label_column: str, channels: int = 0, mean=None, std=None) -> None:
        self.label_column = label_column
        self.channels = channels
        self.mean: list[float] = list(mean or [])
        self.std: list[float] = list(std or [])

    def fit(self, values: list[np.ndarray]) -> None:
        """The statistics of the training split's sequences (never val's or test's)."""
        self.channels = values[0].shape[1]
        self.mean, self.std = fit_scaler(values)

    def read(self, paths: list[str], labelled: bool = True) -> Series:
        """The sequences of ``paths``, raw; a file whose channel count differs from the
        model's is refused, naming it."""
        series = read_series(paths, self.label_column, labelled)
        if self.channels and series.channels != self.channels:
            raise UserError(
                f"{series.sources[0]}: {series.channels} channels per step, but the model "
                f"reads {self.channels}"
            )
        return series

    def scale(self, values: np.ndarray) -> np.ndarray:
        return normalise(values, self.mean, self.std)

    def examples(self, series: Series, labels: list[str] | None = None) -> list:
        """``(x', class index)`` per sequence, the index into ``labels`` (None: unlabelled
        sequences, class 0, for ``predict``)."""
        index = {label: i for i, label in enumerate(labels or [])}
        targets = [index[y] for y in series.labels] if labels else [0] * len(series.values)
        return [(self.scale(v), y) for v, y in zip(series.values, targets, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": "series",
            "label_column": self.label_column,
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> SeriesInputs:
        """From a checkpoint's classify meta (untrusted: each value checked)."""
        channels = check_int(meta.get("channels"), CHANNELS, "task_meta.channels")
        column = meta.get("label_column")
        if not isinstance(column, str):
            raise UserError(f"classify meta: 'label_column' must be a string, got {column!r}")
        stats = {}
        for key in ("mean", "std"):
            values = meta.get(key)
            if (
                not isinstance(values, list)
                or len(values) != channels
                or not all(_finite(v) for v in values)
            ):
                raise UserError(
                    f"classify meta: {key!r} must be {channels} finite numbers (one per "
                    f"channel), got {str(values)[:80]}"
                )
            stats[key] = [float(v) for v in values]
        if any(v <= 0 for v in stats["std"]):
            raise UserError("classify meta: 'std' must be positive")
        return cls(column, channels, stats["mean"], stats["std"])


def pad_series(values: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """``(N, L_max, K)`` float32 zero-padded on the right, and lengths ``(N,)`` int64."""
    lengths = torch.tensor([len(v) for v in values], dtype=torch.long)
    out = torch.zeros(len(values), int(lengths.max()), values[0].shape[1])
    for row, v in enumerate(values):
        out[row, : len(v)] = torch.from_numpy(v)
    return out, lengths


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
