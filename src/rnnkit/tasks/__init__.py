"""Every way to use an RNN, each a :class:`~rnnkit.tasks.base.Task` the one trainer runs.

=================  ===================================  ==============================
``--task``         shape                                 module
=================  ===================================  ==============================
``lm``             many-to-many, next character          ``rnnkit.tasks.lm``
``classify``       many-to-one                           ``rnnkit.tasks.classify``
``tag``            many-to-many, aligned                 ``rnnkit.tasks.tag``
``generate-from``  one-to-many                           ``rnnkit.tasks.generate_from``
``seq2seq``        many-to-many, encoder-decoder         ``rnnkit.tasks.seq2seq``
``forecast``       many-to-many, real values             ``rnnkit.tasks.forecast``
``frames``         many-to-one, images (ConvLSTM)        ``rnnkit.tasks.frames``
=================  ===================================  ==============================
"""

from __future__ import annotations

import importlib

from rnnkit.tasks.base import StepOutput, Task

_MODULES = {
    "lm": ("rnnkit.tasks.lm", "LanguageModelTask"),
    "classify": ("rnnkit.tasks.classify", "ClassifyTask"),
    "tag": ("rnnkit.tasks.tag", "TagTask"),
    "generate-from": ("rnnkit.tasks.generate_from", "GenerateFromTask"),
    "seq2seq": ("rnnkit.tasks.seq2seq", "Seq2SeqTask"),
    "forecast": ("rnnkit.tasks.forecast", "ForecastTask"),
    "frames": ("rnnkit.tasks.frames", "FramesTask"),
}


def get_task(name: str) -> type[Task]:
    """The Task class for ``--task name`` (imported on first use)."""
    module, cls = _MODULES[name]
    return getattr(importlib.import_module(module), cls)


__all__ = ["StepOutput", "Task", "get_task"]
