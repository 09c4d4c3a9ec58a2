"""The trainer: the one explicit loop on top of a Task (``loop.py``), what it carries from step
to step (``state.py``) and the files of figures it writes (``logs.py``). Above the tasks and
below the commands: it imports tasks, checkpoint and the training toolbox; nothing below
imports it.

    from rnnkit.trainer import train
    result = train(config)            # a RunConfig: see rnnkit.config
"""

from rnnkit.trainer.loop import Trainer, TrainResult, train
from rnnkit.trainer.state import StepResult, TrainProgress

__all__ = ["StepResult", "TrainProgress", "TrainResult", "Trainer", "train"]
