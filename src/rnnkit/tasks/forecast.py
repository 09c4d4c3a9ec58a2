"""``--task forecast``: many-to-many on real values; forecast a series ``horizon`` steps ahead.

    rnnkit train --task forecast --synthetic lorenz --window 48 --horizon 12
    rnnkit train --task forecast weather.csv --columns temp,pressure --season 24
    rnnkit train --task forecast sales.csv --time-column date --id-column store \
        --columns sales --exogenous price --calendar --likelihood studentt
    rnnkit predict runs/forecast last_days.csv          # the 12 steps after the file, as CSV
    rnnkit eval runs/forecast sales.csv --backtest --horizon 12 --windows 4

Each series (CSV columns, one per ``--id-column`` value, or the synthetic ``sine`` /
``lorenz``) is cut contiguously in time into train | val | test; the target scaler is fitted on
the training part only (one mean/std per column, or with ``--id-column`` each series' mean
|y|, as DeepAR does), and every example is a stretch of ``window + horizon`` steps inside one
part of one series; one model learns from the windows of every series. Training is teacher
forced: the model reads the whole stretch and is scored on every next step: ``--loss`` (mse or
mae) for a point forecast, the negative log-likelihood for ``--likelihood gaussian|studentt``,
the pinball loss at ``--quantiles`` for ``quantile``. Inputs known in advance (``--exogenous``
columns, ``--calendar`` features) are read beside the value of each step; ``--center``
subtracts each window's last value from its stretch (a trending series leaves the training
levels; its shapes recur). Evaluation is the
real use: read the window, forecast the horizon autoregressively (feeding back the median, or
``--num-samples`` sampled paths), and score it in the ORIGINAL units (mae, rmse, and CRPS or
quantile loss with the interval's coverage) beside the seasonal-naive baseline (``--season``
s: y[t+h] = y[t+h-s*ceil(h/s)]; 0: the last value repeated); ``mae_vs_baseline`` below 1 means
the model beats it. Not here: the model (``rnnkit.models.forecaster``, its output
distributions ``rnnkit.models.likelihoods``), CSV reading (``rnnkit.data.series``,
``rnnkit.data.panel``), metrics, backtests and the figure (``rnnkit.tasks.forecast_eval``),
``predict`` (``rnnkit.tasks.forecast_predict``), the options and the meta's checks
(``rnnkit.tasks.forecast_options``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.config import RunConfig
from rnnkit.data.batching import EpochOrder
from rnnkit.data.corpus import resolve_paths
from rnnkit.data.panel import (
    Series,
    calendar_features,
    calendar_names,
    read_panel,
    series_step,
)
from rnnkit.data.series import Normaliser, lorenz, make_windows, noisy_sines, split_series
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError
from rnnkit.models.forecaster import Forecaster
from rnnkit.models.likelihoods import make_likelihood
from rnnkit.tasks.base import StepOutput, Task, World
from rnnkit.tasks.forecast_eval import (
    backtest,
    backtest_line,
    coverage,
    crps_from_samples,
    plot_forecasts,
    quantile_loss,
)
from rnnkit.tasks.forecast_options import ForecastOptions, check_meta
from rnnkit.tasks.forecast_predict import predict
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


@dataclass
class Block:
    """Series laid end to end, windows never crossing from one to the next: ``raw`` (T, C)
    original units, ``y`` (T, C) and ``z`` (T, K) float32 model units (targets scaled by each
    row's series, inputs normalised), ``mean``/``std`` (T, C) each row's target scaler."""

    raw: np.ndarray
    y: Tensor
    z: Tensor
    mean: np.ndarray
    std: np.ndarray


class ForecastTask(Task):
    name = "forecast"
    Options = ForecastOptions
    predict_inputs = "one or more CSV files (the forecast follows each file's last rows)"
    unit = "timestep"  # of the series, per window (not an optimiser step)
    loss_name = "normalised MSE"
    metric_names = (
        "mae",
        "rmse",
        "baseline_mae",
        "baseline_rmse",
        "mae_vs_baseline",
        "crps",
        "quantile_loss",
        "coverage",
    )
    selection = ("mae", "min")  # the autoregressive forecast's error it reports, not the loss

    def __init__(
        self, config: RunConfig, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        k = self.options
        self.likelihood = make_likelihood(k.likelihood, k.loss, tuple(k.quantiles))
        self.loss_name = self.likelihood.describe()  # teacher-forced, next step
        self.window, self.horizon, self.season = k.window, k.horizon, k.season
        self.columns: list[str] = []
        self.normaliser: Normaliser | None = None
        self.scales: dict[str, list[float]] = {}  # --id-column: series -> scale per column
        self.inputs = Normaliser(np.zeros(len(k.exogenous)), np.ones(len(k.exogenous)))
        self.calendar: list[str] = []
        if meta is not None:
            meta = check_meta(meta, len(k.exogenous))
            self.columns = list(meta["columns"])
            self.normaliser = Normaliser(np.array(meta["mean"]), np.array(meta["std"]))
            self.scales = dict(meta.get("scales", {}))
            if k.exogenous:
                self.inputs = Normaliser(np.array(meta["input_mean"]), np.array(meta["input_std"]))
            self.calendar = list(meta.get("calendar", []))
        self.blocks: dict[str, Block] = {}  # part -> its series end to end
        self.starts: dict[str, np.ndarray] = {}  # part -> window start rows in its block

    # ---- data ----------------------------------------------------------------------------
    def read(self, paths: list[str], future: bool = False) -> list[Series]:
        """The series of CSV ``paths`` as the run's options read them."""
        k = self.options
        return read_panel(
            paths,
            self.columns or k.columns,
            k.exogenous,
            k.time_column,
            k.id_column,
            future=future,
        )

    def _load(self) -> list[Series]:
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
            self._names = names
            return [Series("", values, np.zeros((len(values), 0)), columns=names)]
        series = self.read(d.paths)
        self._names = series[0].columns
        return series

    def _features(self, series: Series) -> np.ndarray:
        """(T, K) raw inputs of ``series``: its exogenous columns, then calendar sin/cos."""
        if not self.options.calendar:
            return series.inputs
        return np.concatenate([series.inputs, calendar_features(series.times, self.calendar)], 1)

    def _scaler(self, series: Series, history: int) -> Normaliser:
        """The target scaler of ``series``: the run's normaliser; with --id-column, y / s with
        s the saved mean |y| of its training part, or for a series the run never saw the mean
        |y| of its first ``history`` rows (what precedes anything it forecasts)."""
        assert self.normaliser is not None
        if not self.options.id_column:
            return self.normaliser
        scale = self.scales.get(series.name)
        if scale is None:
            scale = list(_mean_abs(series.targets[:history]))
        return Normaliser(np.zeros(len(scale)), np.array(scale))

    def block(self, pieces: list[tuple[Series, slice, Normaliser]]) -> Block:
        """The rows ``slice`` of each series, end to end, scaled."""
        raws, ys, zs, means, stds = [], [], [], [], []
        for series, rows, scaler in pieces:
            raw = series.targets[rows]
            raws.append(raw)
            ys.append(scaler.transform(raw))
            zs.append(self.inputs_transform(self._features(series)[rows]))
            means.append(np.broadcast_to(scaler.mean, raw.shape))
            stds.append(np.broadcast_to(scaler.std, raw.shape))
        return Block(
            np.concatenate(raws),
            torch.tensor(np.concatenate(ys), dtype=torch.float32),
            torch.tensor(np.concatenate(zs), dtype=torch.float32),
            np.concatenate(means),
            np.concatenate(stds),
        )

    def inputs_transform(self, features: np.ndarray) -> np.ndarray:
        """Exogenous columns normalised (statistics of the training part); calendar as is."""
        X = len(self.options.exogenous)
        return np.concatenate([self.inputs.transform(features[:, :X]), features[:, X:]], axis=1)

    def prepare(self) -> None:
        panel = self._load()
        names = self._names
        if self.columns and names != self.columns:
            raise UserError(f"the data has columns {names}, the checkpoint {self.columns}")
        self.columns = names
        d, k = self.config.data, self.options
        if k.calendar and not self.calendar:
            steps = {series_step(s) for s in panel}
            if len(steps) > 1:
                raise UserError(
                    f"--calendar: the series have different steps {sorted(map(str, steps))}"
                )
            self.calendar = calendar_names(steps.pop())
        bounds = []  # per series: (n_train, n_val, T)
        for s in panel:
            train, val, _ = split_series(s.targets, d.val_fraction, d.test_fraction)
            bounds.append((len(train), len(train) + len(val), len(s.targets)))
        train_rows = [s.targets[: b[0]] for s, b in zip(panel, bounds, strict=True)]
        if self.normaliser is None:
            self.normaliser = Normaliser.fit(np.concatenate(train_rows))
        if k.id_column and not self.scales:
            self.scales = {
                s.name: list(_mean_abs(r)) for s, r in zip(panel, train_rows, strict=True)
            }
        if k.exogenous and self.saved_meta is None:
            inputs = np.concatenate([s.inputs[: b[0]] for s, b in zip(panel, bounds, strict=True)])
            self.inputs = Normaliser.fit(inputs)
        span = self.window + self.horizon
        for p, part in enumerate(_PARTS):
            pieces, starts, offset = [], [], 0
            for s, b in zip(panel, bounds, strict=True):
                lo, hi = (0, *b)[p], b[p]
                if hi - lo >= span:
                    starts.append(offset + np.arange(hi - lo - span + 1))
                    pieces.append((s, slice(lo, hi), self._scaler(s, b[0])))
                    offset += hi - lo
            if part == "test" and all(b[2] == b[1] for b in bounds):
                continue  # --test-fraction 0
            if not pieces:
                label = "training" if part == "train" else part
                length = max(b[p] - (0, *b)[p] for b in bounds)
                make_windows(np.zeros((length, 1)), self.window, self.horizon, label)
            self.blocks[part] = self.block(pieces)
            self.starts[part] = np.concatenate(starts)
        t = self.config.train
        self.order = EpochOrder(len(self.starts["train"]), t.batch_size, t.seed)

    def meta(self) -> dict[str, Any]:
        assert self.normaliser is not None, "prepare() first"
        meta: dict[str, Any] = {
            "columns": list(self.columns),
            "mean": [float(v) for v in self.normaliser.mean],
            "std": [float(v) for v in self.normaliser.std],
        }
        if self.options.id_column:
            meta["scales"] = {name: [float(v) for v in s] for name, s in self.scales.items()}
        if self.options.exogenous:
            meta["input_mean"] = [float(v) for v in self.inputs.mean]
            meta["input_std"] = [float(v) for v in self.inputs.std]
        if self.options.calendar:
            meta["calendar"] = list(self.calendar)
        return meta

    def steps_per_epoch(self) -> int:
        return len(self.order)

    def train_batch(self, epoch: int, index: int) -> tuple[Tensor, Tensor]:
        """(B, window + horizon, C) targets and (B, window + horizon, K) inputs, model units."""
        starts = self.starts["train"][self.order.batch(epoch, index)]
        return self._stretches(self.blocks["train"], starts, self.horizon)

    def _stretches(self, block: Block, starts: np.ndarray, horizon: int) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(starts)[:, None] + torch.arange(self.window + horizon)
        return block.y[index], block.z[index]  # (B, W + H, C), (B, W + H, K)

    # ---- model ---------------------------------------------------------------------------
    def n_inputs(self) -> int:
        return len(self.options.exogenous) + 2 * len(self.calendar)

    def build_model(self) -> nn.Module:
        if not self.columns:
            raise RuntimeError("ForecastTask.build_model needs prepare() or a saved meta")
        return Forecaster(self.config.model, len(self.columns), self.n_inputs(), self.likelihood)

    def describe(self, model: nn.Module) -> str:
        sizes = "/".join(f"{len(self.starts.get(p, ())):,}" for p in _PARTS)
        inputs = f"; {plural(self.n_inputs(), 'input')}" if self.n_inputs() else ""
        return (
            f"forecast: {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"{plural(len(self.columns), 'channel')} {', '.join(self.columns)}{inputs}; "
            f"{self.likelihood.name} output; train/val/test windows "
            f"{sizes} of {self.window} + {self.horizon} steps"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def _reference(self, y: Tensor) -> Tensor:
        """(B, 1, C): what ``--center`` subtracts from a stretch ``y`` (B, W + H, C), the
        window's last value (known at the forecast origin); zeros without it."""
        last = y[:, self.window - 1 : self.window]
        return last if self.options.center else torch.zeros_like(last)

    def _loss(self, model: nn.Module, y: Tensor, z: Tensor) -> Tensor:
        """Per-stretch teacher-forced loss (B,) on every next step, model units: the step at
        t + 1 predicted from y[:, :t + 1] and its own inputs z[:, t + 1]."""
        y = y - self._reference(y)
        params = model.params(y[:, :-1], z[:, 1:])  # (B, W + H - 1, C, P)
        return self.likelihood.loss(params, y[:, 1:]).mean(dim=(1, 2))

    def train_loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], step: int) -> StepOutput:
        model.train()
        y, z = to_device(batch, model_device(model))
        loss = self._loss(model, y, z).mean()
        return StepOutput(loss, y.size(0) * (y.size(1) - 1))

    @torch.no_grad()
    def run_windows(
        self,
        model: nn.Module,
        block: Block,
        starts: np.ndarray,
        horizon: int,
        samples: int = 0,
        with_loss: bool = True,
    ) -> dict[str, Any]:
        """Forecasts (M, H, C) after each window start: ``forecast`` (the median), ``truth``,
        ``baseline``, ``history`` in original units, the per-window loss (M,); for a
        probabilistic model also the interval ``lower``/``upper`` (M, H, C) at ``levels`` and
        ``score`` (M, H, C), the CRPS of the sampled paths or, for ``quantile``, the mean
        quantile loss of the paths' quantiles at the head's levels. Only the
        window's rows and the inputs of the steps forecast are read by the forecast; sampling
        is seeded per batch (run's seed), so a window's paths do not depend on the others.
        ``with_loss`` False: no teacher-forced loss (predict: the truth is unknown)."""
        model.eval()
        device, W, lik = model_device(model), self.window, self.likelihood
        samples = samples or self.options.num_samples
        out: dict[str, list] = {k: [] for k in ("loss", "forecast", "lower", "upper", "score")}
        for i in range(0, len(starts), _EVAL_BATCH):
            chunk = starts[i : i + _EVAL_BATCH]
            y, z = to_device(self._stretches(block, chunk, horizon), device)
            if with_loss:  # teacher forced over the stretch: reads the truth, scores it
                out["loss"].append(self._loss(model, y, z).cpu().double().numpy())
            ref = self._reference(y)  # (B, 1, C) model units: --center's shift, or 0
            std = block.std[chunk + W - 1][:, None, :]  # (B, 1, C): the window's scaler
            mean = block.mean[chunk + W - 1][:, None, :] + std * ref.cpu().double().numpy()
            truth = block.raw[chunk[:, None] + W + np.arange(horizon)]
            x, zin = (y - ref)[:, :W], z[:, 1:]  # the window; the inputs of the steps forecast
            if lik.sampled:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(self.config.train.seed + i)
                    paths = model.sample_paths(x, horizon, samples, zin).cpu().double().numpy()
                paths = np.moveaxis(paths, 1, -1) * std[..., None] + mean[..., None]  # (B,H,C,S)
                if lik.quantile_levels:  # the head's levels, read off the paths
                    levels = np.array(lik.quantile_levels)
                    quantiles = np.moveaxis(np.quantile(paths, levels, axis=-1), 0, -1)
                    low, high = quantiles[..., 0], quantiles[..., -1]
                    med = quantiles[..., lik.quantile_levels.index(0.5)]
                    out["score"].append(quantile_loss(quantiles, truth, levels))
                else:
                    lo = (1 - self.options.interval) / 2
                    low, med, high = np.quantile(paths, [lo, 0.5, 1 - lo], axis=-1)
                    out["score"].append(crps_from_samples(paths, truth))
            else:  # a point forecast: its own output fed back
                params = model.forecast_params(x, horizon, zin).cpu().double().numpy()
                med = params[..., 0] * std + mean
            out["forecast"].append(med)
            if lik.sampled:
                out["lower"].append(low)
                out["upper"].append(high)
        index = starts[:, None] + np.arange(W + horizon)  # (M, W + H)
        history, truth = block.raw[index[:, :W]], block.raw[index[:, W:]]
        run = {key: np.concatenate(v) for key, v in out.items() if v}
        run.update(
            truth=truth, history=history, baseline=seasonal_naive(history, horizon, self.season)
        )
        if "lower" in run:
            lo = (1 - self.options.interval) / 2
            run["levels"] = (
                (lik.quantile_levels[0], lik.quantile_levels[-1])
                if lik.quantile_levels
                else (lo, 1 - lo)
            )
        return run

    def _metrics(self, runs: list[dict[str, Any]]) -> dict[str, float]:
        def cat(key: str) -> np.ndarray:
            return np.concatenate([r[key] for r in runs])

        truth, forecast, baseline = cat("truth"), cat("forecast"), cat("baseline")
        mae = float(np.abs(forecast - truth).mean())
        base_mae = float(np.abs(baseline - truth).mean())
        figures = {
            "loss": float(cat("loss").mean()),
            "mae": mae,
            "rmse": float(np.sqrt(np.square(forecast - truth).mean())),
            "baseline_mae": base_mae,
            "baseline_rmse": float(np.sqrt(np.square(baseline - truth).mean())),
            "mae_vs_baseline": mae / base_mae if base_mae > 0 else math.inf,
        }
        if "lower" in runs[0]:
            score = "quantile_loss" if self.likelihood.quantile_levels else "crps"
            figures[score] = float(cat("score").mean())
            figures["coverage"] = coverage(cat("lower"), cat("upper"), truth)
        return figures

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
        return self._metrics([self.run_windows(model, self.blocks[split], starts, self.horizon)])

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        """Metrics over every window of each series of each CSV file (windows never cross
        files or series)."""
        runs = []
        for path in resolve_paths(paths) if paths else []:
            for series in self.read([str(path)]):
                try:
                    starts = make_windows(series.targets, self.window, self.horizon)
                except UserError as error:
                    raise UserError(f"{path}: {error}") from None
                block = self.block([(series, slice(None), self._scaler(series, self.window))])
                runs.append(self.run_windows(model, block, starts, self.horizon))
        if not runs:
            raise UserError("rnnkit eval --task forecast needs CSV files to evaluate")
        return self._metrics(runs)

    def backtest(self, model: nn.Module, paths: list[str], horizon: int, windows: int) -> dict:
        """``rnnkit eval RUN FILE --backtest``: see ``rnnkit.tasks.forecast_eval.backtest``."""
        return backtest(self, model, paths, horizon, windows)

    @staticmethod
    def backtest_line(figures: dict) -> str:
        return backtest_line(figures)

    def write_figures(self, model: nn.Module, out: Path, split: str = "val") -> list[Path]:
        """``forecast.png``: history, truth, forecast (and its interval) and baseline for
        three windows."""
        starts = self._split_starts(split, 0)
        chosen = starts[np.unique(np.linspace(0, len(starts) - 1, 3).round().astype(int))]
        run = self.run_windows(model, self.blocks[split], chosen, self.horizon)
        path = Path(out) / "forecast.png"
        return [plot_forecasts(run, self.columns, path, split, self.season)]

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """See ``rnnkit.tasks.forecast_predict.predict``."""
        return predict(self, model, inputs, options)


def _mean_abs(values: np.ndarray) -> np.ndarray:
    """(C,) mean |y| per column, 1 where it is 0 (an all-zero series)."""
    scale = np.abs(values).mean(axis=0) if len(values) else np.zeros(values.shape[1])
    return np.where(scale > 0, scale, 1.0)
