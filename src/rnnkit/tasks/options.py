"""A task's options read from the ``[task]`` section: ``task_options(config)``.

Each task declares its options as a dataclass (``Task.Options``, a
:class:`~rnnkit.config.TaskOptions` subclass in the task's module); ``rnnkit train`` builds
one argument group per task from them. The ``[task]`` table stays flat (``name`` and option
keys), as release 0.1.0 wrote it, and its config.json files hold the keys of every task. So:

* the named task's ``Options`` reads its own keys and checks them (``validate``);
* a key of another task is checked by that task's rules, then left out (an old config.json
  loads, and a hostile value is refused whichever task it belongs to) -- unless it came from
  the command line, where it is a mistake: ``--crf`` with ``--task classify`` is one line
  naming the flag and its tasks, not a silently ignored option;
* any other key is an error naming it.

What is not here: the generic rules of every field (``rnnkit.config``) and the table of tasks
(``rnnkit.tasks``).
"""

from __future__ import annotations

from dataclasses import fields

from rnnkit.config import COMMAND_LINE, RunConfig, TaskOptions, flag_name, key_name
from rnnkit.errors import UserError


def option_classes() -> dict[str, type[TaskOptions]]:
    """``--task`` name -> its options dataclass, in the order of the task table."""
    from rnnkit.tasks import TASK_NAMES, get_task

    return {name: get_task(name).Options for name in TASK_NAMES}


def _not_an_option_of(name: str, key: str, classes: dict[str, type[TaskOptions]]) -> str:
    """The one line for a command-line flag of other tasks than ``--task name``."""
    owners = {task: f for task, cls in classes.items() for f in fields(cls) if f.name == key}
    flag = flag_name(next(iter(owners.values())))
    tasks = " or ".join(f"--task {task}" for task in owners)
    return f"--{flag} is an option of {tasks}, not of --task {name}"


def task_options(config: RunConfig, name: str | None = None) -> TaskOptions:
    """The options of task ``name`` (default: ``config.task.name``) from ``config.task``,
    typed and checked. Raises UserError naming the flag (or the key and the file it was read
    from) for an unknown task, an unknown key or an impossible value."""
    classes = option_classes()
    name = name or config.task.name
    if name not in classes:
        raise UserError(f"--task must be one of {tuple(classes)}, got {name!r}")
    values, sources = config.task.options, config.task.sources
    owners = {f.name for cls in classes.values() for f in fields(cls)}
    own = {f.name for f in fields(classes[name])}
    for key in values:
        if key not in owners:
            raise UserError(f"{sources.get(key, 'config')}: unknown key task.{key_name(key)}")
        if key not in own and sources.get(key) == COMMAND_LINE:
            raise UserError(_not_an_option_of(name, key, classes))
    for other, cls in classes.items():
        own = {f.name for f in fields(cls)}
        options = cls.from_values({k: v for k, v in values.items() if k in own}, sources)
        if other == name or own & set(values):
            options.validate(config)
        if other == name:
            chosen = options
    return chosen
