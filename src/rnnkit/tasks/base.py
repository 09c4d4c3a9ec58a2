"""The contract between a task and the one training loop (``rnnkit.trainer.loop``).

A task is one way to use an RNN (see the README's "Every way to use an RNN"): it owns a data
format, a model and its metrics; the trainer owns everything else (optimiser, schedule,
clipping, NaN skipping, checkpoints, resume, Ctrl-C, metrics.csv, loss.png). The trainer calls,
in this order::

    task = get_task(config.task.name)(config, meta, world)  # meta: None (fresh) or saved
    task.prepare()                                  # read the data, build vocabularies/labels
    model = task.build_model()
    for step ...:
        batch = task.train_batch(epoch, index)      # pure function of (seed, epoch, index)
        out = task.train_loss(model, batch, step)   # StepOutput(loss, count, info, lr_scale)
        ... backward, clip, optimiser ...
        task.evaluate(model, "val", max_batches)    # {"loss": ..., metric: ...} every eval_every
    task.write_figures(model, run_dir)              # PNGs beside loss.png at the end

and saves ``task.checkpoint_fields()`` (``task.meta()``, JSON: vocabularies, labels,
normalisation statistics) in the checkpoint, so ``rnnkit eval`` / ``predict`` / ``sample``
rebuild the task with ``get_task(name)(config, meta)`` without re-reading the training data
(``rnnkit.tasks.saved``). What the commands ask of a run -- several processes, sampling, ONNX
export, the report's probes, how ``rnnkit eval`` words its figures -- they ask the task (class
attributes and methods below, which a task overrides), never its name. Metric names are the keys
``rnnkit eval --json`` prints. ``loss`` is always lower-is-better; ``best/`` is picked by
``selection`` (the loss, unless a task's loss does not track what it is for: seq2seq picks by
chrF, since its teacher-forced loss bottoms out long before its decoded output stops improving).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from rnnkit.config import RunConfig, TaskOptions
from rnnkit.errors import UserError, short
from rnnkit.tasks.meta import check_task_values
from rnnkit.tasks.options import task_options
from rnnkit.training.distributed import World
from rnnkit.training.progress import figure


@dataclass
class StepOutput:
    """What ``Task.train_loss`` returns for one batch."""

    loss: Tensor  # scalar, mean over the batch's targets (what backward runs on)
    count: int  # units processed (chars, tokens, examples, time steps): the speed column
    #: logged with the step (e.g. P(truth)); a value may be a 0-dim tensor on the model's device:
    #: the trainer reads them with the loss and the gradient norm, in its one read per step
    info: dict[str, float | Tensor] = field(default_factory=dict)
    #: the learning rate of this batch's step is lr * lr_scale, restored after the step (the
    #: schedule never sees it): a --variable-bptt batch's length / T
    lr_scale: float = 1.0


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
    #: the task's own options ([task] keys, one argument group of rnnkit train): self.options
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    #: progress on stderr while evaluating (set by ``rnnkit eval``; tasks whose scoring is slow)
    show_progress: bool = False
    # ---- what the task supports (the commands ask these, never the task's name) ----------
    #: the batch splits evenly over several training processes (torchrun / --nproc)
    multi_process: ClassVar[bool] = False
    #: ``--val FILE`` is its validation split (else it holds out ``--val-fraction``, and a
    #: ``--val`` is refused in one line rather than ignored)
    val_file: ClassVar[bool] = False
    #: the model is a LanguageModel over ``self.vocab``: ``rnnkit sample`` continues a prime,
    #: ``rnnkit serve`` serves it, ONNX export and the report's probes (gradient flow,
    #: activations, gates, samples) read it
    language_model: ClassVar[bool] = False
    #: ``rnnkit sample`` generates from a ``--condition`` (``predict`` does the rest)
    conditional_sampling: ClassVar[bool] = False
    #: the keys config.json holds beside the run's config (``checkpoint_fields``)
    checkpoint_keys: ClassVar[tuple[str, ...]] = ("task_meta",)
    #: what ``rnnkit predict DIR INPUT...`` reads ("": no inputs, the task makes its own)
    predict_inputs: ClassVar[str] = ""
    #: the picture ``rnnkit predict`` writes (default: into the run directory); "": it prints
    predict_picture: ClassVar[str] = ""

    def __init__(
        self, config: RunConfig, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        """``meta`` is what ``meta()`` returned when the run was saved (None: a fresh run).
        The values that set a size or a loop count are bounded here (``rnnkit.tasks.meta``);
        ``meta_values`` holds the meta's checked integers. ``world``: the training processes
        (one by default); each reads its own block of the batch (``multi_process`` tasks)."""
        self.config = config
        self.saved_meta = meta
        self.world = world if world is not None else World()
        self.options = task_options(config, self.name)
        config.task.options = asdict(self.options)  # what config.json saves: this task's keys
        self.meta_values = check_task_values(self.name, self.options, config, meta)
        if not self.language_model:
            _refuse_language_model_options(config, self.name)

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

    def epoch_steps(self, epoch: int) -> int:
        """Batches in epoch ``epoch`` (the loop's epoch boundary): ``steps_per_epoch()`` unless
        epochs differ in length (the language model's ``--variable-bptt``)."""
        return self.steps_per_epoch()

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
            + (" (use rnnkit sample)" if self.language_model else "")
        )

    # ---- what the run says ---------------------------------------------------------------
    def title(self) -> str:
        """The model in figure titles: ``classify: LSTM 2x128, embed 64``."""
        m = self.config.model
        return f"{self.name}: {m.cell.upper()} {m.stack()}, embed {m.embed}"

    def score_line(self, metric: str, value: float) -> str:
        """A selection score as the run's last line says it: ``0.4120 MSE``, ``chrf 0.5310``."""
        if metric == "loss":
            return f"{figure(value)} {self.loss_name}"
        return f"{metric} {figure(value)}"

    def eval_line(self, figures: dict[str, float]) -> str:
        """What ``rnnkit eval`` prints (without --json): ``loss 0.41 | accuracy 0.87``."""
        return summary(figures, self.metric_names)

    def own_data(self, split: str = "val") -> str:
        """What ``rnnkit eval DIR`` (no PATH) scores, as the run's config names it: the one use
        of a checkpoint's ``data.paths``, said out loud (they name files on this machine)."""
        d = self.config.data
        if d.synthetic and not d.paths:
            return f"the {split} split of the synthetic {d.synthetic!r} data (from the checkpoint)"
        if not d.paths:
            return f"the {split} split of the bundled Tiny Shakespeare"
        return f"the {split} split of {data_names(d.paths)} (data.paths from the checkpoint)"

    def train_units(self) -> int | None:
        """How many ``unit``s one epoch of training data holds, where known (the small-data
        hint compares it with the parameter count)."""
        return None

    # ---- the checkpoint ------------------------------------------------------------------
    def checkpoint_fields(self) -> dict[str, Any]:
        """What config.json holds beside the run's config (its keys: ``checkpoint_keys``):
        ``task_meta``, what ``meta()`` returns."""
        return {"task_meta": self.meta()}

    @classmethod
    def meta_from_checkpoint(
        cls, fields: dict[str, Any], symbols: list[str], source: str
    ) -> dict[str, Any]:
        """The ``meta`` to rebuild the task with, from ``checkpoint_fields`` as config.json
        held them (``source`` names it) and vocab.json's ``symbols``; checked by __init__."""
        meta = fields.get("task_meta")
        if not isinstance(meta, dict):
            raise UserError(f"{source}: task_meta must be a JSON object, got {type(meta).__name__}")
        return meta

    @classmethod
    def check_world(cls, world: World) -> None:
        """Several training processes only for a task whose batches split (``multi_process``)."""
        if world.enabled and not cls.multi_process:
            from rnnkit.tasks import multi_process_tasks  # every task's class: this error only

            supported = " or ".join(f"--task {name}" for name in multi_process_tasks())
            raise UserError(
                f"multi-process training supports {supported} (its streams split evenly); got "
                f"--task {cls.name}: run it in one process"
            )

    # ---- state carried between batches (truncated BPTT only) -----------------------------
    def carried_state(self) -> Any:
        """Tensors carried from one batch to the next, saved for an exact resume."""
        return None

    def restore_carried_state(self, state: Any) -> None:
        pass

    def reset_carried_state(self) -> None:
        pass


#: the model options only the language model reads (AWD-LSTM's regularisers, Merity et al. 2017)
LANGUAGE_MODEL_OPTIONS = (
    "weight_drop",
    "word_dropout",
    "locked_dropout",
    "ar",
    "tar",
    "hidden_sizes",
    "cutoffs",
)


def _refuse_language_model_options(config: RunConfig, task: str) -> None:
    """A task whose model is not the language model refuses its options, rather than
    training without them as if they applied."""
    given = [name for name in LANGUAGE_MODEL_OPTIONS if getattr(config.model, name, 0)]
    given = ["hidden A,B,..." if name == "hidden_sizes" else name for name in given]
    given += ["softmax adaptive"] if config.model.softmax != "full" else []
    given += ["variable_bptt"] if config.train.variable_bptt else []
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise UserError(f"{flags} applies to the language model (--task lm), not --task {task}")


def summary(metrics: dict[str, float], names: tuple[str, ...]) -> str:
    """``loss 0.41 | accuracy 0.87 | macro_f1 0.80`` in the task's order."""
    keys = ["loss", *[n for n in names if n in metrics]]
    return " | ".join(f"{k} {_number(metrics[k])}" for k in keys)


def _number(value: float) -> str:
    """4 decimals, or 4 significant digits for tiny values (a normalised MSE of 5e-6)."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.4g}"


def data_names(paths: list[str]) -> str:
    """Up to three data paths as a message shows them (a hostile name cut short)."""
    shown = [p if p.isprintable() and len(p) <= 200 else short(p) for p in paths[:3]]
    return ", ".join(shown) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
