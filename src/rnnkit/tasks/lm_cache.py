"""The neural cache (:mod:`rnnkit.training.cache`) on a language model task's text: the
settings' checks, a text's figures with the cache, and the tuning of theta and lambda on the
validation split with the test text's figures at the chosen values.

    figures = cache_figures(task, model, task.text_streams(paths), CacheSettings(2000, 0.3, 0.1))
    result = tune_on_validation(task, model, task.text_streams(paths), size=2000)

The figures are ``LanguageModelTask.figures_for``'s (``loss``, ``ppl``, ``bpc``, ``tokens``,
``chars``, ``unk``), with ``p = (1 - lambda) p_model + lambda p_cache`` in place of
``p_model``, plus ``cache_size``, ``cache_theta``, ``cache_lambda``. What is not here: the
algorithm (``rnnkit.training.cache``), the flags and the printing (``rnnkit.commands.eval``).
"""

from __future__ import annotations

from typing import NamedTuple

from rnnkit.data import ScoredText
from rnnkit.errors import UserError
from rnnkit.training.cache import (
    LAMBDAS,
    THETAS,
    cache_probabilities,
    mixture_losses,
    tune_cache,
)

#: The largest window: Grave et al. (2017) went up to 10,000 (WikiText-103); the scores of one
#: chunk are (B, T, size + T) numbers, 224 MB at 80 x 70 x 10,000 in float32.
MAX_SIZE = 10_000

#: The grid of --tune-cache, as its output states it.
GRID = (
    f"theta {THETAS[0]:g}..{THETAS[-1]:g} step 0.05 x lambda {LAMBDAS[0]:g}..{LAMBDAS[-1]:g} "
    "step 0.05"
)


class CacheSettings(NamedTuple):
    """Grave et al.'s window (``size`` earlier positions), ``theta`` and ``lam`` (lambda)."""

    size: int
    theta: float
    lam: float

    def check(self) -> None:
        """One-line errors naming the flag and the value."""
        if not 1 <= self.size <= MAX_SIZE:
            raise UserError(
                f"--cache-size must be an integer from 1 to {MAX_SIZE:,} (earlier positions "
                f"the cache keeps), got {self.size}"
            )
        if not self.theta >= 0:  # nan too
            raise UserError(f"--cache-theta must be a number >= 0, got {self.theta}")
        if not 0 <= self.lam <= 1:
            raise UserError(f"--cache-lambda must be a number in [0, 1], got {self.lam}")

    def fields(self) -> dict:
        """What ``rnnkit eval --json`` adds: ``cache_size``, ``cache_theta``, ``cache_lambda``."""
        return {"cache_size": self.size, "cache_theta": self.theta, "cache_lambda": self.lam}

    def line(self) -> str:
        return f"cache size {self.size:,}, theta {self.theta:g}, lambda {self.lam:g}"


def check_task(task) -> None:
    """The cache is the language model's: any other task is refused in one line."""
    if not task.language_model:
        raise UserError(
            f"--cache-size, --cache-theta, --cache-lambda and --tune-cache are for --task lm "
            f"(a language model), this run is --task {task.name}"
        )


def cache_figures(task, model, text: ScoredText, settings: CacheSettings) -> dict:
    """``text``'s figures with the cache at ``settings``, and the settings."""
    return _figures(task, model, text, settings)[0]


def tune_on_validation(task, model, test: ScoredText, size: int) -> dict:
    """Grid-search theta and lambda (:data:`GRID`) on the task's validation split (after
    ``task.prepare()``), then score ``test`` at the chosen values. Returns ``cache_size``,
    ``cache_theta``, ``cache_lambda``, the figures ``val`` and ``val_plain`` (without the
    cache) and ``test`` and ``test_plain``: each text read once (:func:`cache_probabilities`
    gives the model's own probabilities beside the cache's)."""
    show = task.show_progress
    tuned = tune_cache(model, task.val_text.streams, size, THETAS, LAMBDAS, show=show)
    settings = CacheSettings(size, tuned.theta, tuned.lam)
    test_figures, test_plain = _figures(task, model, test, settings)
    return {
        **settings.fields(),
        "val": task.figures_for(tuned.loss, tuned.count, task.val_text),
        "val_plain": task.figures_for(tuned.plain, tuned.count, task.val_text),
        "test": test_figures,
        "test_plain": test_plain,
    }


def _figures(task, model, text: ScoredText, settings: CacheSettings) -> tuple[dict, dict]:
    """``text``'s figures with the cache (and its settings) and without it, from one pass."""
    size, theta, lam = settings
    probs = cache_probabilities(model, text.streams, size, (theta,), show=task.show_progress)
    count = probs.log_model.numel()
    with_cache = mixture_losses(probs, (lam,)).item()
    plain = -probs.log_model.mean().item()
    figures = {**task.figures_for(with_cache, count, text), **settings.fields()}
    return figures, task.figures_for(plain, count, text)
