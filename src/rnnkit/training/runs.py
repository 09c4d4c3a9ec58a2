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

from rnnkit.config import RunConfig
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel
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
    directory: Path, config: RunConfig, model: LanguageModel, vocab: Vocab, training: Any
) -> None:
    save_checkpoint(
        directory,
        config={**config.to_dict(), "vocab_kind": vocab.kind},
        model_state=model.state_dict(),
        vocab=vocab.to_json(),
        training=training,
    )


def read_run_checkpoint(path: str | Path, *, training: bool = False):
    """Load a checkpoint and check its contents: (checkpoint, RunConfig, Vocab)."""
    ckpt: Checkpoint = load_checkpoint(find_checkpoint(path), training=training)
    source = f"{ckpt.path}/config.json"
    raw = dict(ckpt.config)
    kind = raw.pop("vocab_kind", None)
    config = RunConfig.from_dict(raw, source=source)
    if kind not in ("char", "byte"):
        raise UserError(f"{source}: vocab_kind must be 'char' or 'byte', got {kind!r}")
    vocab = Vocab.from_json(kind, ckpt.vocab, source=f"{ckpt.path}/vocab.json")
    if config.model.vocab_size != len(vocab):
        raise UserError(
            f"{source}: model.vocab_size is {config.model.vocab_size} but vocab.json has "
            f"{len(vocab)} symbols"
        )
    return ckpt, config, vocab


def load_model(path: str | Path) -> tuple[LanguageModel, Vocab, RunConfig]:
    """Rebuild the trained model from a checkpoint or run directory (eval mode, CPU)."""
    ckpt, config, vocab = read_run_checkpoint(path)
    model = LanguageModel(config.model)
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise UserError(f"{ckpt.path}: weights do not fit the model config: {first[-1]}") from None
    return model.eval(), vocab, config
