"""``--task frames``: next-frame prediction with a ConvLSTM on built-in moving shapes.

    rnnkit train --task frames --synthetic shapes --preset frames
    rnnkit eval runs/frames              # loss, mse, baseline_mse, mse_vs_baseline; frames.png

Data: ``rnnkit.data.shapes.moving_shapes`` makes ``--synthetic-size`` sequences of ``--frames``
frames of ``--frame-size`` squared pixels; the train, val and test splits (``--val-fraction``,
``--test-fraction``) are drawn from separate seeds, so no sequence is in two splits. Training
predicts every next frame (L - 1 targets per sequence) with ``--loss`` mse or mae. Evaluation
adds the mean squared error of the *last* frame predicted from all the earlier ones, and of the
copy-last-frame baseline (predict frame L-1 = frame L-2): a model that learnt motion beats it.

What is not here: reading videos or image files (``evaluate_paths`` and data paths raise
UserError), colour, predicting several frames ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import RunConfig, TaskOptions, need, opt
from rnnkit.data.batching import EpochOrder
from rnnkit.data.shapes import moving_shapes
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError, short
from rnnkit.figures import figure, finish
from rnnkit.models.frames import FramePredictor, check_config
from rnnkit.tasks.base import StepOutput, Task, World
from rnnkit.tasks.metrics import Sums

NO_FILES = (
    "frames reads the built-in moving-shapes generator (--synthetic shapes); "
    "files are not supported yet"
)
SPLITS = ("train", "val", "test")
FIGURE_ROWS = 4  # sequences in frames.png
MAX_PREDICT_ROWS = 64  # predict's count: rows of one figure


def baseline_errors(frames: Tensor) -> Tensor:
    """Squared error of copy-last-frame on the last frame: (frames[:, -2] - frames[:, -1])**2,
    for ``frames`` (N, L, C, H, W) -> (N, C, H, W)."""
    return (frames[:, -2] - frames[:, -1]) ** 2


@dataclass
class FramesOptions(TaskOptions):
    """The next frame of a video (ConvLSTM)."""

    loss: str = opt("mse", "regression loss", choices=("mse", "mae"))
    frame_size: int = opt(16, "frame height and width in pixels")
    frames: int = opt(10, "frames per sequence: input + 1 predicted")
    kernel: int = opt(3, "ConvLSTM kernel size")

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        need(self.frame_size >= 1, "frame-size", "a positive integer", self.frame_size)
        need(self.frames >= 2, "frames", "an integer >= 2", self.frames)
        odd = self.kernel >= 1 and self.kernel % 2 == 1
        need(odd, "kernel", "an odd positive integer", self.kernel)


class FramesTask(Task):
    name = "frames"
    Options = FramesOptions
    predict_picture = "frames_predict.png"  # new sequences, drawn
    unit = "frame"
    metric_names = ("mse", "baseline_mse", "mse_vs_baseline")

    def __init__(
        self, config, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        check_config(config.model)  # the ConvLSTM's model rules, before any data is made
        self.loss_name = self.options.loss.upper()
        if meta is not None:  # bounded by Task.__init__ (rnnkit.tasks.meta)
            self.frame_size, self.frames = (
                self.meta_values["frame_size"],
                self.meta_values["frames"],
            )
        else:
            self.frame_size, self.frames = self.options.frame_size, self.options.frames
        self.data: dict[str, np.ndarray] = {}

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        d = self.config.data
        if d.paths:
            raise UserError(NO_FILES)
        if d.synthetic not in ("", "shapes"):
            raise UserError(
                f"--task frames needs --synthetic shapes, got --synthetic {d.synthetic}"
            )
        if self.frame_size < 4:
            raise UserError(f"--frame-size must be >= 4 for --task frames, got {self.frame_size}")
        n = d.synthetic_size
        n_test = round(n * d.test_fraction)
        n_val = max(1, round(n * d.val_fraction))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise UserError(
                f"--synthetic-size {n} leaves no training sequences after the "
                f"val and test fractions ({n_val} + {n_test})"
            )
        seed = self.config.train.seed
        for k, (split, size) in enumerate(zip(SPLITS, (n_train, n_val, n_test), strict=True)):
            self.data[split] = moving_shapes(size, self.frames, self.frame_size, seed=[seed, k])
        self.order = EpochOrder(n_train, self.config.train.batch_size, seed)

    def meta(self) -> dict[str, Any]:
        return {"frame_size": self.frame_size, "frames": self.frames, "channels": 1}

    def steps_per_epoch(self) -> int:
        return len(self.order)

    def train_batch(self, epoch: int, index: int) -> Tensor:
        return torch.from_numpy(self.data["train"][self.order.batch(epoch, index)])

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return FramePredictor(self.config.model, channels=1, kernel=self.options.kernel)

    def describe(self, model: nn.Module) -> str:
        m, sizes = self.config.model, {k: len(v) for k, v in self.data.items()}
        return (
            f"frames: ConvLSTM {m.layers}x{m.hidden} channels, kernel {self.options.kernel}, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters; sequences of "
            f"{self.frames} frames {self.frame_size}x{self.frame_size}, "
            f"train/val/test {'/'.join(f'{sizes.get(s, 0):,}' for s in ('train', 'val', 'test'))}"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean over pixels of the configured loss (mse or mae)."""
        fn = F.mse_loss if self.options.loss == "mse" else F.l1_loss
        return fn(pred, target)

    def train_loss(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        frames = to_device(batch, model_device(model))  # (N, L, 1, S, S)
        pred = model(frames)  # (N, L, 1, S, S): pred[:, t] guesses frames[:, t + 1]
        loss = self.loss(pred[:, :-1], frames[:, 1:])
        return StepOutput(loss, count=frames.size(0) * (frames.size(1) - 1))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int = 0) -> dict:
        data = self._split(split)
        if len(data) == 0:
            raise UserError(f"the {split} split is empty (raise --{split}-fraction)")
        was_training, device = model.training, model_device(model)
        model.eval()
        batch_size = self.config.train.batch_size
        total = Sums(device, "loss", "mse", "baseline_mse")  # on the device, read once
        sequences = 0
        for b, start in enumerate(range(0, len(data), batch_size)):
            if max_batches and b >= max_batches:
                break
            frames = to_device(torch.from_numpy(data[start : start + batch_size]), device)
            pred = model(frames)  # (N, L, 1, S, S)
            n = frames.size(0)
            total.add("loss", self.loss(pred[:, :-1], frames[:, 1:]), n)
            total.add("mse", F.mse_loss(pred[:, -2], frames[:, -1]), n)
            total.add("baseline_mse", baseline_errors(frames).mean(), n)
            sequences += n
        model.train(was_training)
        metrics = {k: v / sequences for k, v in total.read().items()}
        metrics["mse_vs_baseline"] = metrics["mse"] / max(metrics["baseline_mse"], 1e-12)
        return metrics

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        raise UserError(NO_FILES)

    def write_figures(self, model: nn.Module, out: Path, split: str = "val") -> list[Path]:
        frames = self._split(split)[:FIGURE_ROWS]
        return [plot_frames(model, frames, Path(out) / "frames.png", f"{split} split")]

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """``rnnkit predict DIR``: draw frames.png (``out``) for new sequences generated from
        ``seed`` (default: the run's seed + 1000, so unlike any split); prints its path."""
        if inputs:
            raise UserError(
                f"--task frames predicts on generated sequences and takes no "
                f"inputs (got {inputs[:3]}); {NO_FILES}"
            )
        seed = _option(options, "seed", self.config.train.seed + 1000, minimum=0)
        count = _option(options, "count", FIGURE_ROWS, minimum=1, maximum=MAX_PREDICT_ROWS)
        frames = moving_shapes(count, self.frames, self.frame_size, seed=[seed, 3])
        path = plot_frames(model, frames, Path(options.get("out") or "frames.png"), f"seed {seed}")
        return str(path)

    def _split(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not self.data:
            self.prepare()
        return self.data[split]


def _option(options: dict, key: str, default: int, minimum: int, maximum: int = 2**63 - 1) -> int:
    """An integer option of ``predict`` (int or digits, as a CLI may pass it)."""
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"predict option {key} must be an integer >= {minimum}, got {short(value)}")
    if value > maximum:
        raise UserError(f"predict option {key} must be at most {maximum}, got {short(value)}")
    return value


@torch.no_grad()
def plot_frames(model: nn.Module, frames: np.ndarray, path: Path, title: str = "") -> Path:
    """One row per sequence of ``frames`` (n, L, 1, S, S): the L - 1 input frames, the true
    last frame, the model's prediction of it and the copy-last baseline, each guess labelled
    with its MSE; a PNG, written atomically."""

    was_training, device = model.training, model_device(model)
    model.eval()
    inputs = to_device(torch.from_numpy(frames[:, :-1]), device)
    predicted = model.predict_next(inputs).cpu().numpy()  # (n, 1, S, S)
    model.train(was_training)
    n, length = frames.shape[:2]
    columns = [f"t={t}" for t in range(length - 1)] + ["true next", "predicted", "copy last"]
    fig, axes = figure(
        n, len(columns), figsize=(1.1 * len(columns), 1.2 * n + 0.4), squeeze=False, dpi=100
    )
    for row in range(n):
        images = [*frames[row, :-1, 0], frames[row, -1, 0], predicted[row, 0], frames[row, -2, 0]]
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= length:  # the two guesses: their squared error per pixel
                ax.set_xlabel(f"MSE {np.mean((image - frames[row, -1, 0]) ** 2):.4f}", fontsize=7)
            if row == 0:
                ax.set_title(columns[col], fontsize=8)
    fig.suptitle(f"next-frame prediction ({title})" if title else "next-frame prediction")
    fig.tight_layout()
    return finish(fig, path)
