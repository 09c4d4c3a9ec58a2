"""Bounds on the task values that set a size, a length or a loop count: one schema per task,
checked in one place (``Task.__init__``) for a fresh run (flags, TOML) and a checkpoint alike.

A checkpoint is untrusted input, and what the weights fix is checked against model.safetensors
(``rnnkit.tasks.saved.check_weights``); these are the values the weights do not fix: how big
a frame is (a ConvLSTM is convolutional, any size fits its kernels), how many frames, how far
a forecast runs. Each limit is one a real run never meets, so ``frame_size`` 450 or
``horizon`` 10**9 cost an error message, not a minute and gigabytes or a loop that never ends.

    check_task_values("frames", options, config, meta)   # UserError naming the flag or meta key

What is not here: the generic bounds of every config field (``rnnkit.config.validate``) and
the structure of a task's vocabularies and labels (each task's own ``_load_meta``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rnnkit.errors import UserError, short


class Bound(NamedTuple):
    """An integer in [low, high]; ``why`` says what the high end protects."""

    low: int
    high: int
    why: str


MAX_PIXELS = 1 << 28  # frames: sequences x frames x size**2 float32 generated at once (1 GiB)

#: task option fields per task: (the flag's name without dashes) -> its bound
CONFIG: dict[str, dict[str, Bound]] = {
    "forecast": {
        "window": Bound(1, 100_000, "input steps per forecast window; the presets read 48-50"),
        "horizon": Bound(1, 10_000, "steps forecast one at a time; the presets forecast 12-100"),
        "num_samples": Bound(1, 10_000, "sample paths per forecast; the default draws 100"),
    },
    "frames": {
        "frame_size": Bound(4, 128, "pixels per side; the preset draws 16"),
        "frames": Bound(2, 100, "frames per sequence; the preset has 10"),
    },
}

#: the integer keys of a checkpoint's task_meta per task
META: dict[str, dict[str, Bound]] = {
    "frames": {
        "frame_size": CONFIG["frames"]["frame_size"],
        "frames": CONFIG["frames"]["frames"],
        "channels": Bound(1, 1, "grey frames only"),
    },
}


def check_task_values(
    task: str, options: Any, config: Any, meta: dict[str, Any] | None
) -> dict[str, int]:
    """Check the sized fields of ``task``'s ``options`` and, for a saved run, the integer keys
    of its ``meta``; return the meta's checked values (empty for a fresh run).

    Raises:
        UserError: ``--flag must be an integer in [low, high], got ...`` or ``task_meta.key
            must be ...``, one line.
    """
    for key, bound in CONFIG.get(task, {}).items():
        check_int(getattr(options, key), bound, f"--{key.replace('_', '-')}")
    values: dict[str, int] = {}
    if meta is not None and META.get(task):
        if not isinstance(meta, dict):
            raise UserError(f"task_meta must be a JSON object, got {short(meta)}")
        for key, bound in META[task].items():
            values[key] = check_int(meta.get(key), bound, f"task_meta.{key}")
    if task == "frames":
        size = values.get("frame_size", options.frame_size)
        frames = values.get("frames", options.frames)
        pixels = config.data.synthetic_size * frames * size * size
        if pixels > MAX_PIXELS:
            raise UserError(
                f"--synthetic-size {config.data.synthetic_size} sequences of {frames} frames "
                f"{size}x{size} are {pixels:,} pixels; the limit is {MAX_PIXELS:,} (1 GiB)"
            )
    return values


def check_int(value: object, bound: Bound, name: str) -> int:
    number = isinstance(value, int) and not isinstance(value, bool)
    if number and bound.low <= value <= bound.high:
        return value
    if bound.low == bound.high:
        expected = str(bound.low)
    elif number and value > bound.high:
        expected = f"at most {bound.high:,} ({bound.why})"
    else:
        expected = f"an integer >= {bound.low}"
    raise UserError(f"{name} must be {expected}, got {short(value)}")
