"""The contract between a task and the one training loop (``rnnkit.training.loop``).

A task is one way to use an RNN (see the README's "Every way to use an RNN"): it owns a data
format, a model and its metrics; the trainer owns everything else (optimiser, schedule,
clipping, NaN skipping, checkpoints, resume, Ctrl-C, metrics.csv, loss.png). The trainer calls,
in this order::

    task = TASKS[config.task.name](config, meta)   # meta: None for a fresh run, else saved
    task.prepare()                                  # read the data, build vocabularies/labels
    model = task.build_model()
    for step ...:
        batch = task.train_batch(epoch, index)      # pure function of (seed, epoch, index)
        out = task.train_loss(model, batch, step)   # StepOutput(loss, count, info)
        ... backward, clip, optimiser ...
        task.evaluate(model, "val", max_batches)    # {"loss": ..., metric: ...} every eval_every
    task.write_figures(model, run_dir)              # PNGs beside loss.png at the end

and saves ``task.meta()`` (JSON: vocabularies, labels, normalisation statistics) in the
checkpoint, so ``rnnkit eval`` / ``predict`` / ``sample`` rebuild the task with
``TASKS[name](config, meta)`` without re-reading the training data. Metric names are the keys
``rnnkit eval --json`` prints. ``loss`` is always lower-is-better; ``best/`` is picked by
``selection`` (the loss, unless a task's loss does not track what it is for: seq2seq picks by
chrF, since its teacher-forced loss bottoms out long before its decoded output stops improving).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from rnnkit.config import RunConfig
from rnnkit.errors import UserError, short
from rnnkit.tasks.meta import check_task_values
from rnnkit.training.distributed import World


@dataclass
class StepOutput:
    """What ``Task.train_loss`` returns for one batch."""

    loss: Tensor  # scalar, mean over the batch's targets (what backward runs on)
    count: int  # units processed (chars, tokens, examples, time steps): the speed column
    info: dict[str, float] = field(default_factory=dict)  # logged with the step (e.g. P(truth))


class Task:
    """Base class: subclasses fill in every method that raises NotImplementedError."""

    name: ClassVar[str] = ""
    unit: ClassVar[str] = "example"  # what ``count`` counts, for the log ("char", "token"...)
    loss_name: ClassVar[str] = "loss"  # how the log names the loss ("nats/char", "MSE"...)
    sample_note: ClassVar[str] = ""  # said in the banner of progress_sample's text
    metric_names: ClassVar[tuple[str, ...]] = ()  # evaluate() keys besides "loss", in order
    info_names: ClassVar[tuple[str, ...]] = ()  # StepOutput.info keys
    #: the evaluate() key that picks ``best/`` and drives early stopping, and its direction
    selection: ClassVar[tuple[str, str]] = ("loss", "min")
    #: progress on stderr while evaluating (set by ``rnnkit eval``; tasks whose scoring is slow)
    show_progress: bool = False
    #: the training processes (set by the trainer before ``prepare``; one process by default)
    world: World = World()

    def __init__(self, config: RunConfig, meta: dict[str, Any] | None = None) -> None:
        """``meta`` is what ``meta()`` returned when the run was saved (None: a fresh run).
        The values that set a size or a loop count are bounded here (``rnnkit.tasks.meta``);
        ``meta_values`` holds the meta's checked integers."""
        self.config = config
        self.saved_meta = meta
        self.meta_values = check_task_values(self.name, config, meta)

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read and split the training data (config.data); build vocabularies unless
        ``saved_meta`` has them. Raises UserError naming the file/line for bad input."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """JSON-able description of what the data defined (vocabularies, labels, scales)."""
        raise NotImplementedError

    def vocab_symbols(self) -> list[str]:
        """The input vocabulary written to the checkpoint's vocab.json (may be empty)."""
        return []

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def train_batch(self, epoch: int, index: int) -> Any:
        """Batch ``index`` of epoch ``epoch``: a pure function of (seed, epoch, index)."""
        raise NotImplementedError

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def describe(self, model: nn.Module) -> str:
        """One line for the start of training: model shape and data sizes."""
        return f"{sum(p.numel() for p in model.parameters()):,} parameters"

    # ---- training and evaluation ---------------------------------------------------------
    def train_loss(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        """Forward one batch in train mode; ``step`` drives schedules (scheduled sampling)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int = 0) -> dict:
        """Metrics on the prepared ``split`` ("val" or "test"), model in eval mode, no grad;
        always has "loss". ``max_batches`` > 0 limits the work (periodic evaluations)."""
        raise NotImplementedError

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        """Metrics on other data files in the training format (``rnnkit eval DIR PATH``)."""
        raise NotImplementedError

    def write_figures(self, model: nn.Module, out: Path, split: str = "val") -> list[Path]:
        """Task pictures (confusion matrix, forecast, frames) into ``out``; returns the paths."""
        return []

    def progress_sample(self, model: nn.Module) -> str | None:
        """Something to print now and then during training (a sample, a translation)."""
        return None

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """What ``rnnkit predict DIR INPUT...`` prints."""
        raise UserError(
            f"rnnkit predict does not apply to --task {self.name}"
            + (" (use rnnkit sample)" if self.name == "lm" else "")
        )

    # ---- state carried between batches (truncated BPTT only) -----------------------------
    def carried_state(self) -> Any:
        """Tensors carried from one batch to the next, saved for an exact resume."""
        return None

    def restore_carried_state(self, state: Any) -> None:
        pass

    def reset_carried_state(self) -> None:
        pass


def summary(metrics: dict[str, float], names: tuple[str, ...]) -> str:
    """``loss 0.41 | accuracy 0.87 | macro_f1 0.80`` in the task's order."""
    keys = ["loss", *[n for n in names if n in metrics]]
    return " | ".join(f"{k} {_number(metrics[k])}" for k in keys)


def _number(value: float) -> str:
    """4 decimals, or 4 significant digits for tiny values (a normalised MSE of 5e-6)."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.4g}"


def own_data(config: RunConfig, split: str = "val") -> str:
    """What ``rnnkit eval DIR`` (no PATH) scores, as its checkpoint names it: the one use of a
    checkpoint's ``data.paths`` / ``data.val``, said out loud (they name files on this machine)."""
    d = config.data

    def names(paths: list[str]) -> str:
        shown = [p if p.isprintable() and len(p) <= 200 else short(p) for p in paths[:3]]
        return ", ".join(shown) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

    if d.synthetic and not d.paths:
        return f"the {split} split of the synthetic {d.synthetic!r} data (from the checkpoint)"
    if config.task.name == "lm" and d.val:
        return f"the validation text {names([d.val])} (data.val from the checkpoint)"
    if not d.paths:
        return f"the {split} split of the bundled Tiny Shakespeare"
    return f"the {split} split of {names(d.paths)} (data.paths from the checkpoint)"
