"""What a training run says while it runs: the progress bar or lines, and the notes around them.

On a terminal, a tqdm bar on stderr whose time left is the smaller of "steps left at this
speed" and "--max-time left" (a 2-minute run never shows 27 minutes). Elsewhere (a pipe, nohup,
CI, a log file) one line every ``10 x --log-every`` steps and at least every ``seconds``
(10 s), so a slow run is never silent. Notes: a run the time limit stopped far short of its
planned steps says so, and a training set so small that the run will memorise it gets a hint.
What is not here: metrics.csv (``metrics.py``) and the loop that calls this
(``rnnkit.trainer.loop``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

PROGRESS_SECONDS = 10.0  # the longest silence when the output is not a terminal
_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{left}, {rate_fmt}{postfix}]"


def figure(value: float) -> str:
    """A loss as the log prints it: 4 decimals, or 4 significant digits below 0.001 (a
    normalised MSE of 1e-5 is ``1e-05``, never ``0.0000``)."""
    if value == 0 or not math.isfinite(value) or abs(value) >= 1e-3:
        return f"{value:.4f}"
    return f"{value:.4g}"


def time_left(
    step: int, total: int | None, first: int, elapsed: float, max_time: float
) -> float | None:
    """Seconds until the run stops: the smaller of the steps left at the speed since ``first``
    (the step this session began at) and what ``max_time`` leaves; None if neither is known."""
    left = []
    if total and step > first and elapsed > 0:
        left.append(max(0, total - step) * elapsed / (step - first))
    if max_time:
        left.append(max(0.0, max_time - elapsed))
    return min(left) if left else None


def clock_text(seconds: float | None) -> str:
    return "?" if seconds is None else tqdm.format_interval(seconds)


class _Bar(tqdm):
    """tqdm with ``{left}``: the time left as ``time_left`` counts it."""

    left: Callable[[], float | None] = staticmethod(lambda: None)

    @property
    def format_dict(self):
        return {**super().format_dict, "left": clock_text(self.left())}


class Progress:
    """The bar (terminal) or the progress lines (anything else) of one training session."""

    def __init__(
        self,
        *,
        total: int | None,
        first: int,
        max_time: float,
        unit: str,
        log_every: int,
        interactive: bool,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.perf_counter,
        seconds: float = PROGRESS_SECONDS,
        file=None,
    ) -> None:
        self.total, self.first, self.max_time, self.unit = total, first, max_time, unit
        self.log_every, self.interactive, self.clock, self.seconds = (
            log_every,
            interactive,
            clock,
            seconds,
        )
        self.start = self.last_line = clock()
        self.units, self.last_step = 0, first
        self.bar = _Bar(
            total=total,
            initial=first,
            unit="step",
            dynamic_ncols=True,
            disable=not interactive,
            file=file or sys.stderr,
            bar_format=_BAR,
        )
        self.bar.left = self.left
        self.log = self.bar.write if interactive else log

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float | None:
        step = self.bar.n if self.interactive else self.last_step
        return time_left(step, self.total, self.first, self.elapsed(), self.max_time)

    def update(self, step: int, epoch: int, loss: float | None, lr: float, units: int) -> None:
        """After each step: move the bar, or print a line when one is due."""
        self.units += units
        self.last_step = step
        if self.interactive:
            self.bar.update(1)
            if loss is not None and step % self.log_every == 0:
                self.bar.set_postfix(loss=f"{loss:.3g}", refresh=False)
            return
        now = self.clock()
        late = self.seconds > 0 and now - self.last_line >= self.seconds
        due = step % (10 * self.log_every) == 0 or late
        if not due or loss is None:
            return
        speed = self.units / max(1e-9, now - self.last_line)
        self.last_line, self.units = now, 0
        of = f"/{self.total:,}" if self.total else ""
        self.log(
            f"step {step:,}{of} | epoch {epoch} | loss {figure(loss)} | lr {lr:.3g} | "
            f"{speed:,.0f} {self.unit}s/s | {self.elapsed():.0f}s, {clock_text(self.left())} left"
        )

    def close(self) -> None:
        self.bar.close()


def counted(items, what: str, *, show: bool, clock=time.perf_counter, seconds=None, file=None):
    """``items`` one by one, with progress on stderr when ``show`` (a long ``rnnkit eval``):
    a tqdm bar on a terminal, else a line at least every ``seconds`` (10 s)."""
    file = file or sys.stderr
    seconds = PROGRESS_SECONDS if seconds is None else seconds
    if not show:
        yield from items
        return
    if file.isatty():
        yield from tqdm(items, desc=what, unit="batch", file=file, leave=False)
        return
    start = last = clock()
    for index, item in enumerate(items):
        now = clock()
        if now - last >= seconds:
            print(f"{what}: batch {index:,} of {len(items):,}, {now - start:.0f}s", file=file)
            file.flush()
            last = now
        yield item


def time_limit_note(
    step: int, planned: int | None, first: int, elapsed: float, *, followed: bool = False
) -> str:
    """What a run stopped by --max-time says: the steps it made of those planned, and, far
    below them, why and what to do (``followed``: the schedule followed the time limit)."""
    if not planned:
        return f"stopped at step {step:,} (time limit)"
    note = f"stopped at step {step:,} of {planned:,} planned (time limit)"
    if step >= planned / 2 or step <= first or elapsed <= 0:
        return note
    needed = (planned - first) * elapsed / (step - first)
    schedule = (
        "The learning-rate schedule followed the time limit, so this is a complete but shorter "
        "run. "
        if followed
        else ""
    )
    return (
        f"{note}: the machine is slower or busier than the settings assume. {schedule}For all "
        f"{planned:,} steps give it about --max-time {math.ceil(needed / 10) * 10:.0f} "
        "(or close other work; see --threads)"
    )


def small_data_hint(
    *,
    parameters: int,
    steps_per_epoch: int,
    planned: int | None,
    eval_every: int,
    train_units: int | None = None,
    unit: str = "example",
) -> str | None:
    """A hint when the training data is tiny for the run: more than 50 planned passes over it,
    or (language models, where ``train_units`` is known) more than 10 parameters per character.
    None when the run looks proportionate."""
    epochs = planned / steps_per_epoch if planned and steps_per_epoch else 0.0
    per_unit = parameters / train_units if train_units else 0.0
    if epochs <= 50 and per_unit <= 10:
        return None
    size = f"{train_units:,} training {unit}s" if train_units else "the training data"
    facts = [f"{parameters:,} parameters for {size} ({steps_per_epoch:,} steps per epoch)"]
    if epochs:
        facts.append(f"{planned:,} planned steps are {epochs:,.0f} epochs")
    if eval_every > steps_per_epoch:
        facts.append(f"the first evaluation comes after {eval_every / steps_per_epoch:,.0f} epochs")
    return (
        f"hint: the training data is small for this run: {'; '.join(facts)}. The model will "
        "memorise it: try a smaller model (--hidden 128 --layers 1), fewer passes "
        f"(--max-epochs 20) and an earlier look at validation (--eval-every {steps_per_epoch})"
    )
