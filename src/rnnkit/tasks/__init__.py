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

from rnnkit.errors import UserError, short
from rnnkit.tasks.base import StepOutput, Task
from rnnkit.tasks.options import task_options

_MODULES = {
    "lm": ("rnnkit.tasks.lm", "LanguageModelTask"),
    "classify": ("rnnkit.tasks.classify", "ClassifyTask"),
    "tag": ("rnnkit.tasks.tag", "TagTask"),
    "generate-from": ("rnnkit.tasks.generate_from", "GenerateFromTask"),
    "seq2seq": ("rnnkit.tasks.seq2seq", "Seq2SeqTask"),
    "forecast": ("rnnkit.tasks.forecast", "ForecastTask"),
    "frames": ("rnnkit.tasks.frames", "FramesTask"),
}


TASK_NAMES = tuple(_MODULES)  # the choices of --task


def get_task(name: str) -> type[Task]:
    """The Task class for ``--task name`` (imported on first use)."""
    if name not in _MODULES:
        raise UserError(f"--task must be one of {TASK_NAMES}, got {short(name)}")
    module, cls = _MODULES[name]
    return getattr(importlib.import_module(module), cls)


def multi_process_tasks() -> list[str]:
    """The tasks that train in several processes (``Task.multi_process``)."""
    return [name for name in _MODULES if get_task(name).multi_process]


__all__ = ["TASK_NAMES", "StepOutput", "Task", "get_task", "task_options"]
