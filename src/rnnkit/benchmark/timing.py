"""Interleaved timing: every contender runs once per round, in an order that rotates from round
to round, and each gets the median of its rounds -- so a noisy neighbour slows all of them alike.

On an accelerator the work is queued and the call returns before it is done: with ``device``
the device is synchronised (``rnnkit.devices.synchronize``) before the clock starts and before
it stops, so each time is the work's own, not its launch's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from rnnkit.devices import synchronize


def interleaved(
    contenders: dict[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Median seconds of one call of each contender over ``rounds`` rotating rounds (after
    ``warmup`` untimed rounds); ``device``: synchronised around each timed call."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if device is not None:
                synchronize(device)
            start = time.perf_counter()
            contenders[name]()
            if device is not None:
                synchronize(device)
            seconds = time.perf_counter() - start
            if r >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}
