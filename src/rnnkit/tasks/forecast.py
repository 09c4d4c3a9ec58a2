"""``--task forecast``: many-to-many on real values; forecast a series ``horizon`` steps ahead.

    rnnkit train --task forecast --synthetic lorenz --window 48 --horizon 12
    rnnkit train --task forecast weather.csv --columns temp,pressure --season 24
    rnnkit predict runs/forecast last_days.csv          # the 12 steps after the file, as CSV

The series (CSV columns, or the synthetic ``sine`` / ``lorenz``) is cut contiguously in time
into train | val | test; the per-column normaliser is fitted on the training part only, and
every example is a stretch of ``window + horizon`` steps inside one part. Training is teacher
forced: the model reads the whole stretch and is scored (``--loss`` mse or mae, normalised
units) on its prediction of every next step. Evaluation is the real use: read the window,
forecast the horizon autoregressively, and score it in the ORIGINAL units (mae, rmse) beside
the seasonal-naive baseline (``--season`` s: y[t+h] = y[t+h-s*ceil(h/s)]; 0: the last value
repeated); ``mae_vs_baseline`` below 1 means the model beats it. Not here: the model
(``rnnkit.models.forecaster``) and CSV reading (``rnnkit.data.series``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.config import RunConfig, TaskOptions, need, opt
from rnnkit.data.batching import EpochOrder
from rnnkit.data.corpus import resolve_paths
from rnnkit.data.series import (
    Normaliser,
    lorenz,
    make_windows,
    noisy_sines,
    read_series,
    split_series,
)
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError, short
from rnnkit.models.forecaster import Forecaster
from rnnkit.tasks.base import StepOutput, Task, World
from rnnkit.tasks.meta import CONFIG, check_int
from rnnkit.wording import plural

_EVAL_BATCH = 256  # windows forecast at once during evaluation
_PARTS = ("train", "val", "test")


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The seasonal-naive forecast (N, horizon, C) after ``history`` (N, W, C): step h of
    the future repeats the value one (or more) whole seasons before it,
    y[t+h] = y[t+h - s*ceil(h/s)]; ``season`` 0 repeats the last value. Needs s <= W."""
    W = history.shape[1]
    if season > W:
        raise UserError(f"--season {season} needs --window >= {season}, got --window {W}")
    h = np.arange(1, horizon + 1)
    back = h - season * np.ceil(h / season).astype(int) if season else np.zeros_like(h)
    return history[:, W - 1 + back]  # index t + h - s*ceil(h/s), with t = W - 1


def _finite(value: int | float) -> bool:
    """A number a float64 holds finitely (``10**400`` is an int ``math.isfinite`` overflows on)."""
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def _check_meta(meta: Any) -> dict[str, Any]:
    """A saved meta, validated: wrong types raise UserError naming the key."""
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
    return meta


@dataclass
class ForecastOptions(TaskOptions):
    """The next steps of a series of real values."""

    window: int = opt(48, "input steps per forecast window")
    horizon: int = opt(12, "steps forecast, fed back autoregressively")
    columns: list[str] = opt([], "CSV columns to use (default: all numeric columns)")
    season: int = opt(0, "season length of the seasonal-naive baseline, 0: last value")
    loss: str = opt("mse", "regression loss", choices=("mse", "mae"))

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        for name in ("window", "horizon"):
            need(getattr(self, name) >= 1, name, "a positive integer", getattr(self, name))
        need(self.season >= 0, "season", "an integer >= 0", self.season)
        for name in ("window", "horizon"):
            check_int(getattr(self, name), CONFIG["forecast"][name], f"--{name}")
        if self.season > self.window:
            raise UserError(f"--season {self.season} needs --window >= {self.season}")


class ForecastTask(Task):
    name = "forecast"
    Options = ForecastOptions
    predict_inputs = "one or more CSV files (the forecast follows each file's last rows)"
    unit = "timestep"  # of the series, per window (not an optimiser step)
    loss_name = "normalised MSE"
    metric_names = ("mae", "rmse", "baseline_mae", "baseline_rmse", "mae_vs_baseline")
    selection = ("mae", "min")  # the autoregressive forecast's error it reports, not the loss

    def __init__(
        self, config: RunConfig, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        k = self.options
        self.loss_name = f"normalised {k.loss.upper()}"  # teacher-forced, next step
        self.window, self.horizon, self.season = k.window, k.horizon, k.season
        self.columns: list[str] = []
        self.normaliser: Normaliser | None = None
        if meta is not None:
            meta = _check_meta(meta)
            self.columns = list(meta["columns"])
            self.normaliser = Normaliser(np.array(meta["mean"]), np.array(meta["std"]))
        self.raw: dict[str, np.ndarray] = {}  # part -> (T_part, C) original units
        self.starts: dict[str, np.ndarray] = {}  # part -> window start indices

    # ---- data ----------------------------------------------------------------------------
    def _load(self) -> tuple[list[str], np.ndarray]:
        d, wanted = self.config.data, self.columns or list(self.options.columns)
        if d.synthetic and not d.paths:  # data PATHs replace a preset's synthetic series
            size, seed = d.synthetic_size, self.config.train.seed
            if d.synthetic == "sine":
                names, values = noisy_sines(size, seed)
            elif d.synthetic == "lorenz":
                names, values = lorenz(size, seed)
            else:
                raise UserError(f"--synthetic {d.synthetic} is not a series; use sine or lorenz")
            if wanted:
                unknown = [c for c in wanted if c not in names]
                if unknown:
                    raise UserError(f"no column {unknown[0]!r} (available: {', '.join(names)})")
                values = values[:, [names.index(c) for c in wanted]]
                names = wanted
            return names, values
        return read_series(d.paths, wanted)

    def prepare(self) -> None:
        names, values = self._load()
        if self.columns and names != self.columns:
            raise UserError(f"the data has columns {names}, the checkpoint {self.columns}")
        self.columns = names
        d = self.config.data
        split = split_series(values, d.val_fraction, d.test_fraction)
        parts = dict(zip(_PARTS, split, strict=True))
        if self.normaliser is None:
            self.normaliser = Normaliser.fit(parts["train"])
        for part, raw in parts.items():
            if part == "test" and len(raw) == 0:
                continue  # --test-fraction 0
            self.raw[part] = raw
            label = "training" if part == "train" else part
            self.starts[part] = make_windows(raw, self.window, self.horizon, label)
        self.norm = {  # part -> (T_part, C) normalised, float32
            part: torch.tensor(self.normaliser.transform(raw), dtype=torch.float32)
            for part, raw in self.raw.items()
        }
        t = self.config.train
        self.order = EpochOrder(len(self.starts["train"]), t.batch_size, t.seed)

    def meta(self) -> dict[str, Any]:
        assert self.normaliser is not None, "prepare() first"
        return {
            "columns": list(self.columns),
            "mean": [float(v) for v in self.normaliser.mean],
            "std": [float(v) for v in self.normaliser.std],
        }

    def steps_per_epoch(self) -> int:
        return len(self.order)

    def train_batch(self, epoch: int, index: int) -> Tensor:
        """(B, window + horizon, C) normalised stretches of the training part."""
        starts = self.starts["train"][self.order.batch(epoch, index)]
        return self._stretches(self.norm["train"], starts)

    def _stretches(self, values: Tensor, starts: np.ndarray) -> Tensor:
        index = torch.as_tensor(starts)[:, None] + torch.arange(self.window + self.horizon)
        return values[index]  # (B, W + H, C)

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        if not self.columns:
            raise RuntimeError("ForecastTask.build_model needs prepare() or a saved meta")
        return Forecaster(self.config.model, len(self.columns))

    def describe(self, model: nn.Module) -> str:
        sizes = "/".join(f"{len(self.starts.get(p, ())):,}" for p in _PARTS)
        return (
            f"forecast: {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"{plural(len(self.columns), 'channel')} {', '.join(self.columns)}; "
            "train/val/test windows "
            f"{sizes} of {self.window} + {self.horizon} steps"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def _loss(self, model: nn.Module, batch: Tensor) -> Tensor:
        """Per-stretch teacher-forced loss (B,) on every next step, normalised units."""
        pred = model(batch[:, :-1])  # (B, W + H - 1, C)
        error = pred - batch[:, 1:]
        error = error.abs() if self.options.loss == "mae" else error.square()
        return error.mean(dim=(1, 2))

    def train_loss(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        model.train()
        batch = to_device(batch, model_device(model))
        loss = self._loss(model, batch).mean()
        return StepOutput(loss, batch.size(0) * (batch.size(1) - 1))

    @torch.no_grad()
    def _run(self, model: nn.Module, raw: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
        """Forecasts, truth and baseline (M, H, C) in original units, per-window loss (M,).
        Batches are cut on the host and moved; losses and forecasts stay on the model's device
        until the end, read back in one copy each."""
        assert self.normaliser is not None
        model.eval()
        device, W = model_device(model), self.window
        values = torch.tensor(self.normaliser.transform(raw), dtype=torch.float32)
        losses, preds = [], []
        for i in range(0, len(starts), _EVAL_BATCH):
            batch = to_device(self._stretches(values, starts[i : i + _EVAL_BATCH]), device)
            losses.append(self._loss(model, batch))
            preds.append(model.forecast(batch[:, :W], self.horizon))
        index = starts[:, None] + np.arange(W + self.horizon)  # (M, W + H)
        history, truth = raw[index[:, :W]], raw[index[:, W:]]
        return {
            "loss": torch.cat(losses).cpu().double().numpy(),
            "forecast": self.normaliser.inverse(torch.cat(preds).cpu().double().numpy()),
            "truth": truth,
            "baseline": seasonal_naive(history, self.horizon, self.season),
            "history": history,
        }

    @staticmethod
    def _metrics(runs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        def cat(key: str) -> np.ndarray:
            return np.concatenate([r[key] for r in runs])

        truth, forecast, baseline = cat("truth"), cat("forecast"), cat("baseline")
        mae = float(np.abs(forecast - truth).mean())
        base_mae = float(np.abs(baseline - truth).mean())
        return {
            "loss": float(cat("loss").mean()),
            "mae": mae,
            "rmse": float(np.sqrt(np.square(forecast - truth).mean())),
            "baseline_mae": base_mae,
            "baseline_rmse": float(np.sqrt(np.square(baseline - truth).mean())),
            "mae_vs_baseline": mae / base_mae if base_mae > 0 else math.inf,
        }

    def _split_starts(self, split: str, max_batches: int) -> np.ndarray:
        if split not in self.starts:
            why = "--test-fraction 0" if split == "test" else "prepare() was not called"
            raise UserError(f"no {split} part to evaluate ({why})")
        starts = self.starts[split]
        limit = max_batches * self.config.train.batch_size
        if 0 < limit < len(starts):  # evenly spaced over the part, not just its beginning
            starts = starts[np.unique(np.linspace(0, len(starts) - 1, limit).round().astype(int))]
        return starts

    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int = 0) -> dict:
        starts = self._split_starts(split, max_batches)
        return self._metrics([self._run(model, self.raw[split], starts)])

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        """Metrics over every window of each CSV file (windows never cross files)."""
        runs = []
        for path in resolve_paths(paths) if paths else []:
            _, raw = read_series([str(path)], self.columns)
            try:
                starts = make_windows(raw, self.window, self.horizon)
            except UserError as error:
                raise UserError(f"{path}: {error}") from None
            runs.append(self._run(model, raw, starts))
        if not runs:
            raise UserError("rnnkit eval --task forecast needs CSV files to evaluate")
        return self._metrics(runs)

    def write_figures(self, model: nn.Module, out: Path, split: str = "val") -> list[Path]:
        """``forecast.png``: history, truth, forecast and baseline for three windows."""
        starts = self._split_starts(split, 0)
        chosen = starts[np.unique(np.linspace(0, len(starts) - 1, 3).round().astype(int))]
        run = self._run(model, self.raw[split], chosen)
        return [_plot_forecasts(run, self.columns, Path(out) / "forecast.png", split, self.season)]

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """The ``horizon`` steps after the last ``window`` rows of each CSV file, as CSV with
        the column names as header (several files: a first column ``input`` names the file)."""
        assert self.normaliser is not None
        bound = CONFIG["forecast"]["horizon"]
        horizon = check_int(options.get("horizon") or self.horizon, bound, "--horizon")
        model.eval()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        several = len(inputs) > 1
        writer.writerow((["input"] if several else []) + self.columns)
        for path in inputs:
            _, raw = read_series([path], self.columns)
            if len(raw) < self.window:
                raise UserError(f"{path}: {len(raw)} rows, fewer than --window {self.window}")
            x = torch.tensor(self.normaliser.transform(raw[-self.window :]), dtype=torch.float32)
            with torch.no_grad():
                pred = model.forecast(to_device(x[None], model_device(model)), horizon)[0].cpu()
            for row in self.normaliser.inverse(pred.double().numpy()):
                writer.writerow(([path] if several else []) + [f"{v:.6g}" for v in row])
        return buffer.getvalue().rstrip("\n")


def _plot_forecasts(run: dict, columns: list[str], path: Path, split: str, season: int) -> Path:
    """One row per window, one column per channel (at most four), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(run["truth"]), min(4, len(columns))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), dpi=100, squeeze=False)
    W, H = run["history"].shape[1], run["truth"].shape[1]
    past, future = np.arange(-W + 1, 1), np.arange(1, H + 1)
    baseline = f"seasonal naive (s={season})" if season else "last value"
    for i in range(rows):
        for c in range(cols):
            ax = axes[i, c]
            ax.plot(past, run["history"][i, :, c], color="0.4", lw=1, label="history")
            ax.plot(future, run["truth"][i, :, c], color="k", lw=1.5, label="truth")
            ax.plot(future, run["forecast"][i, :, c], color="C3", lw=1.5, label="forecast")
            ax.plot(future, run["baseline"][i, :, c], color="C0", ls="--", lw=1, label=baseline)
            ax.axvline(0.5, color="0.8", lw=0.8)
            if i == 0:
                ax.set_title(columns[c])
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{split}: {H}-step forecasts after {plural(W, 'step')}")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
