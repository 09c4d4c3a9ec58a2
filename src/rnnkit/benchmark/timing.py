"""Interleaved timing: every contender runs once per round, in an order that rotates from round
to round, and each gets the median of its rounds -- so a noisy neighbour slows all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    contenders: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of one call of each contender over ``rounds`` rotating rounds (after
    ``warmup`` untimed rounds)."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            contenders[name]()
            seconds = time.perf_counter() - start
            if r >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}
