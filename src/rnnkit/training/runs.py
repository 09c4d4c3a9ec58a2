"""A run directory and the checkpoints in it, as the trainer and the CLI see them.

    runs/charlm/
      last/          newest checkpoint (config.json, model.safetensors, vocab.json, training.*)
      best/          checkpoint with the lowest validation loss so far
      metrics.csv    one row per logged step and per evaluation
      loss.png       train and validation loss against the step

What is here: finding the checkpoint a path names, refusing to clobber a run, saving the
trainer's state and rebuilding a model from a checkpoint. The file format itself (atomic
writes, checksums, safetensors + JSON) is ``checkpoint.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from rnnkit.config import RunConfig
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel
from rnnkit.tasks import Task, get_task
from rnnkit.training.checkpoint import Checkpoint, is_checkpoint, load_checkpoint, save_checkpoint

RUN_MARKERS = ("last", "best", "metrics.csv")


def holds_run(out: Path) -> bool:
    return any((out / name).exists() for name in RUN_MARKERS)


def check_new_run_dir(out: Path) -> None:
    """Refuse to start a fresh run where one already is (never clobber)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if holds_run(out):
        raise UserError(
            f"--out {out} already holds a run; pass --resume to continue it or choose another --out"
        )


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or a run directory's ``best`` (else ``last``)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint or run directory at {path}")
    if is_checkpoint(path):
        return path
    for name in ("best", "last"):
        if (path / name).exists() or any(path.glob(f".{name}.old-*")):
            return path / name
    raise UserError(f"{path} holds no checkpoint (expected config.json, or best/ or last/ in it)")


def save_run_checkpoint(
    directory: Path, config: RunConfig, model: nn.Module, task: Task, training: Any
) -> None:
    """The model's weights, ``task.vocab_symbols()`` as vocab.json and ``task.meta()`` (what
    the data defined: vocabularies, labels, scales) under ``task_meta`` in config.json."""
    if config.task.name == "lm":  # the language model's format since version 1
        extra: dict[str, Any] = {"vocab_kind": task.vocab.kind}
    else:
        extra = {"task_meta": task.meta()}
    save_checkpoint(
        directory,
        config={**config.to_dict(), **extra},
        model_state=model.state_dict(),
        vocab=task.vocab_symbols(),
        training=training,
    )


def read_run_checkpoint(path: str | Path, *, training: bool = False):
    """Load a checkpoint and check its config: (checkpoint, RunConfig, task meta)."""
    ckpt: Checkpoint = load_checkpoint(find_checkpoint(path), training=training)
    source = f"{ckpt.path}/config.json"
    raw = dict(ckpt.config)
    meta = raw.pop("task_meta", None)
    kind = raw.pop("vocab_kind", None)
    config = RunConfig.from_dict(raw, source=source)
    if config.task.name == "lm":
        meta = {"vocab_kind": kind, "symbols": ckpt.vocab}
    elif not isinstance(meta, dict):
        raise UserError(f"{source}: task_meta must be a JSON object, got {type(meta).__name__}")
    return ckpt, config, meta


def load_task(path: str | Path) -> tuple[Task, nn.Module, RunConfig]:
    """Rebuild a run's task (from its saved meta, without the training data) and its trained
    model (eval mode, CPU) from a checkpoint or run directory."""
    ckpt, config, meta = read_run_checkpoint(path)
    try:
        task = get_task(config.task.name)(config, meta)
        model = task.build_model()
    except UserError as error:
        raise UserError(f"{ckpt.path}: {error}") from None
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise UserError(f"{ckpt.path}: weights do not fit the model config: {first[-1]}") from None
    return task, model.eval(), config


def load_model(path: str | Path) -> tuple[LanguageModel, Vocab, RunConfig]:
    """Rebuild a trained character-level language model (eval mode, CPU) and its vocabulary."""
    task, model, config = load_task(path)
    if config.task.name != "lm":
        raise UserError(f"{path} holds a --task {config.task.name} model, not a language model")
    return model, task.vocab, config
