"""What the analysis tools read from a run: its language model and a stretch of its own text.

``language_model_run(path)`` loads a trained char-level model (refusing other tasks with a
one-line message); ``validation_text(path, chars)`` gives the first ``chars`` characters of the
run's validation split, starting at a line, so probes see text the model was not trained on;
``read_text_file`` reads a user's ``--text FILE`` with the usual one-line errors.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError
from rnnkit.tasks.saved import load_model, load_task


def language_model_run(path: str | Path, device: torch.device | str | None = None):
    """(model, vocab, config) of a character-level language model run (eval mode), loaded on
    the CPU and moved to ``device`` (None: the CPU)."""
    model, vocab, config = load_model(path, device)
    if vocab.kind != "char":
        raise UserError(
            f"{path}: the analysis tools read a character vocabulary; this run uses --tokenizer "
            f"{vocab.kind}"
        )
    return model, vocab, config


def validation_text(path: str | Path, chars: int) -> str:
    """The first ``chars`` characters of the run's validation split, from a line start."""
    if chars < 2:
        raise UserError(f"--chars must be >= 2, got {chars}")
    task, _, config = load_task(path)  # data.cache_dir: the user's cache, never the run's
    if not task.language_model:
        raise UserError(f"{path} holds a --task {config.task.name} model, not a language model")
    try:
        task.prepare()
    except UserError as error:
        raise UserError(f"{error} (the run's data is needed; or pass --text FILE)") from None
    tokens = task.val_tokens[: chars + 200]
    text = task.vocab.decode(tokens)
    start = text.find("\n") + 1 if "\n" in text[:200] else 0  # begin at a line
    return text[start : start + chars]


def read_text_file(path: str | Path, chars: int) -> str:
    """The first ``chars`` characters of a user's text file."""
    if chars < 2:
        raise UserError(f"--chars must be >= 2, got {chars}")
    text = read_text(Path(path), empty_hint="--text needs some text to analyse")
    if "\x00" in text:
        raise UserError(f"{path} looks binary (it holds NUL bytes); --text needs a text file")
    return text[:chars]
