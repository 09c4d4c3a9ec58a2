"""Small trained runs for the analysis tests (a few seconds each)."""

from __future__ import annotations

from rnnkit.config import RunConfig, apply_overrides, load_preset
from rnnkit.trainer.loop import train
from subprocess_cli import rnnkit as run_rnnkit

#: Text with quotes, parentheses, capitals and line structure, so every text feature varies.
TEXT = (
    "".join(
        f'{who}: "the {what} is {how}" (said {who.lower()}), and so it shall be.\n'
        for who in ("ROMEO", "JULIET", "NURSE", "FRIAR")
        for what in ("night", "moon", "rose", "sword", "tomb")
        for how in ("sweet", "dark", "cold", "bright")
    )
    * 3
)


def make_run(root, cell: str, *, layers: int = 2, steps: int = 40, diagnostics: bool = True):
    corpus = root / "plays.txt"
    corpus.write_text(TEXT)
    config = RunConfig()
    apply_overrides(config, load_preset("tiny"), "preset tiny")
    settings = {
        "data": {"paths": [str(corpus)], "cache_dir": str(root / "cache")},
        "model": {"cell": cell, "layers": layers, "hidden": 24, "embed": 12},
        "train": {"out": str(root / f"run-{cell}"), "max_steps": steps, "threads": 1,
                  "eval_every": 20, "log_every": 5, "diagnostics": diagnostics},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    train(config, log=lambda *_: None)
    return root / f"run-{cell}"


def rnnkit(*args, cwd):
    """``python -m rnnkit ARGS`` in ``cwd`` on one thread: the CompletedProcess."""
    return run_rnnkit(*args, cwd=cwd, env_extra={"OMP_NUM_THREADS": "1"})
