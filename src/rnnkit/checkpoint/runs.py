"""A run directory, as the trainer and the CLI see it on disk.

    runs/charlm/
      last/          newest checkpoint (config.json, model.safetensors, vocab.json, training.*)
      best/          checkpoint with the lowest validation loss so far
      metrics.csv    one row per logged step and per evaluation
      loss.png       train and validation loss against the step

What is here: finding the checkpoint a path names and refusing to clobber a run. What is not:
the file format (``files.py``) and rebuilding a task's model from a checkpoint
(``rnnkit.tasks.saved``).
"""

from __future__ import annotations

import re
from pathlib import Path

from rnnkit.checkpoint.files import names_checkpoint
from rnnkit.checkpoint.lock import refuse_root
from rnnkit.errors import UserError, short

RUN_MARKERS = ("last", "best", "metrics.csv")
_LEFTOVER = re.compile(r"\.lock|\.(last|best)\.tmp-.*")  # nothing of a run (lock.py, files.py)


def holds_run(out: Path) -> bool:
    return any((out / name).exists() for name in RUN_MARKERS)


def check_new_run_dir(out: Path) -> None:
    """A fresh run goes into a new or empty directory: never clobber a run, never write into
    someone's folder (its loss.png ...) or a file system root. Empty means nothing but our
    lock file and what a first save killed half-way left (``.last.tmp-*``)."""
    out = Path(out)
    refuse_root(out)
    if out.is_symlink() and not out.exists():
        raise UserError(f"--out {out} is a symbolic link to a path that does not exist")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if holds_run(out):
        raise UserError(
            f"--out {out} already holds a run; pass --resume to continue it or choose another --out"
        )
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if not _LEFTOVER.fullmatch(p.name))
        if other:
            raise UserError(
                f"--out {out} is not empty and holds no rnnkit run (it has {short(other[0])}"
                f"{f' and {len(other) - 1} more' if len(other) > 1 else ''}); choose a new or "
                "empty directory"
            )


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or a run directory's ``best`` (else ``last``)."""
    path = Path(path)
    if not path.exists() and any(path.parent.glob(f".{path.name}.old-*")):
        return path  # killed between the two renames of a save: load_checkpoint recovers it
    if not path.exists():
        raise UserError(f"no checkpoint or run directory at {path}")
    if names_checkpoint(path):  # load_checkpoint parses config.json, once
        return path
    for name in ("best", "last"):
        if (path / name).exists() or any(path.glob(f".{name}.old-*")):
            return path / name
    raise UserError(f"{path} holds no checkpoint (expected config.json, or best/ or last/ in it)")
