"""A task saved in a checkpoint, and rebuilt from one.

What is here: saving a task's model, vocabulary and meta (with the trainer's state) into a
checkpoint, and rebuilding the task and its trained model from a checkpoint or run directory.
What is not: the file format (atomic writes, checksums, safetensors + JSON, in
``rnnkit.checkpoint.files``) and the run directory itself (``rnnkit.checkpoint.runs``).

A checkpoint is untrusted input: its config is validated like flags, and the model it describes
is first built on the ``meta`` device (no memory) and compared, name by name and shape by shape,
with the tensors of model.safetensors (whose sizes the file bounds). Only a config that fits
its weights is built for real, so ``hidden = 10**9`` costs an error message, not 16 GB.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.checkpoint.files import Checkpoint, load_checkpoint, save_checkpoint
from rnnkit.checkpoint.runs import find_checkpoint
from rnnkit.config import RunConfig, TaskConfig, validate
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError, short
from rnnkit.models import LanguageModel
from rnnkit.tasks import Task, get_task

MAX_MESSAGE = 400  # errors quoting a hostile config are cut to this many characters


def save_run_checkpoint(
    directory: Path, config: RunConfig, model: nn.Module, task: Task, training: Any
) -> None:
    """The model's weights, ``task.vocab_symbols()`` as vocab.json and, beside the config in
    config.json, ``task.checkpoint_fields()``: ``task_meta``, what the data defined
    (vocabularies, labels, scales), for most tasks."""
    save_checkpoint(
        directory,
        config={**config.to_dict(), **task.checkpoint_fields()},
        model_state=model.state_dict(),
        vocab=task.vocab_symbols(),
        training=training,
    )


def read_run_checkpoint(path: str | Path, *, training: bool = False):
    """Load a checkpoint and check its config against its weights: (checkpoint, RunConfig,
    task meta). Every problem is a one-line UserError naming config.json or the tensor."""
    ckpt: Checkpoint = load_checkpoint(find_checkpoint(path), training=training)
    source = f"{ckpt.path}/config.json"
    raw = dict(ckpt.config)
    fields = {key: raw.pop(key) for key in _named_task(raw).checkpoint_keys if key in raw}
    with _quoted(ckpt.path):
        config = RunConfig.from_dict(raw, source=source)
        validate(config)
    meta = get_task(config.task.name).meta_from_checkpoint(fields, ckpt.vocab, source)
    check_weights(ckpt, config, meta)
    return ckpt, config, meta


def _named_task(raw: dict) -> type[Task]:
    """The task a config.json names, before the config is checked: for the keys it keeps
    beside the config (a name that is not a task fails the config's own check next)."""
    section, name = raw.get("task"), TaskConfig().name  # the default task, when none is named
    if isinstance(section, dict):
        name = section.get("name", name)
    try:
        return get_task(name)
    except (UserError, KeyError, TypeError):
        return Task


def check_weights(ckpt: Checkpoint, config: RunConfig, meta: dict) -> None:
    """Refuse a config whose model does not have exactly the tensors of model.safetensors.

    The model is built on the ``meta`` device (shapes, no storage) after one cheap bound (each
    layer has at least one tensor, so ``layers = 10**6`` never builds a million modules);
    names, shapes and float-ness must match. Raises UserError naming the first difference.
    """
    source, state = f"{ckpt.path}/config.json", ckpt.model_state
    if config.model.layers > len(state):
        raise UserError(
            f"{source}: model.layers is {config.model.layers} but model.safetensors holds "
            f"{len(state)} tensors"
        )
    with _quoted(ckpt.path), torch.device("meta"):
        try:
            expected = get_task(config.task.name)(config, meta).build_model().state_dict()
        except (RuntimeError, ValueError, TypeError, OverflowError) as error:
            if isinstance(error, UserError):
                raise
            m = config.model
            raise UserError(
                f"{source}: cannot build the model it describes (model.embed {m.embed}, hidden "
                f"{m.hidden}, layers {m.layers}: {error})"
            ) from None
    for name, want in expected.items():
        got = state.get(name)
        if got is None:
            raise UserError(f"{ckpt.path}: model.safetensors lacks {name}, which {source} needs")
        if got.shape != want.shape:
            raise UserError(
                f"{ckpt.path}: model.safetensors {name} has shape {tuple(got.shape)} but "
                f"config.json describes {tuple(want.shape)}"
            )
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise UserError(
                f"{ckpt.path}: model.safetensors {name} is {got.dtype}, expected {want.dtype}"
            )
    extra = next((name for name in state if name not in expected), None)
    if extra is not None:
        raise UserError(
            f"{ckpt.path}: model.safetensors holds {short(extra)}, which the model in "
            "config.json does not have"
        )


@contextmanager
def _quoted(path: Path):
    """UserErrors inside name the file (once) and are cut to MAX_MESSAGE characters: config
    and task-meta messages quote the offending value, which a hostile file makes huge. They
    come from config.json (config, task_meta) unless they say ``vocab.json:``."""
    try:
        yield
    except UserError as error:
        text = " ".join(str(error).split())
        if str(path) not in text:
            text = f"{path}{'' if 'vocab.json:' in text else '/config.json'}: {text}"
        cut = text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
        raise UserError(cut) from None


def load_task(
    path: str | Path, device: torch.device | str | None = None
) -> tuple[Task, nn.Module, RunConfig]:
    """Rebuild a run's task (from its saved meta, without the training data) and its trained
    model (eval mode) from a checkpoint or run directory.

    The model is built and loaded on the CPU (the checkpoint is device-free, and the weights
    were checked against the config on the ``meta`` device first), then moved to ``device``:
    None is the CPU, the library's default; the commands pass their resolved ``--device``."""
    ckpt, config, meta = read_run_checkpoint(path)  # the weights fit the config: built for real
    config.data.cache_dir = None  # where we write is the user's to choose, never a checkpoint's
    with _quoted(ckpt.path):
        task = get_task(config.task.name)(config, meta)
        model = task.build_model()
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise UserError(f"{ckpt.path}: weights do not fit the model config: {first[-1]}") from None
    if device is not None:
        model = model.to(torch.device(device))
    return task, model.eval(), config


def load_model(
    path: str | Path, device: torch.device | str | None = None
) -> tuple[LanguageModel, Vocab, RunConfig]:
    """Rebuild a trained language model (eval mode, on ``device``; None: the CPU) and its
    vocabulary: a run of a task whose ``language_model`` is true."""
    task, model, config = load_task(path, device)
    if not task.language_model:
        raise UserError(f"{path} holds a --task {config.task.name} model, not a language model")
    return model, task.vocab, config
