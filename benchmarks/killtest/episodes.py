"""Crash safety, proven by killing: SIGKILL ``rnnkit train`` at chosen moments, resume it, check.

    python benchmarks/chaos.py --trials 20 --seed 0

An *episode* is one training run (a subprocess, one thread, a checkpoint every ``eval_every``
steps) that is killed again and again and resumed with ``rnnkit train --resume`` after each kill,
then left to finish. A kill (``KillPlan``) comes at a random time since launch, a moment after a
given step is logged, or inside a checkpoint save of ``last`` or ``best``: the moment its
``.NAME.tmp-PID-*`` folder holds a chosen number of its 5 files, or the moment the replaced copy
is set aside (``.NAME.old-PID-*``). Watching the disk rather than a clock, these kills land in
the save (~3-5 ms) however fast the machine is. After each kill (``inspect_kill``):

* every checkpoint on disk (``last``, ``best`` and each ``.NAME.old-*`` copy ``load_checkpoint``
  falls back on) loads, training state included;
* ``--resume`` finds a checkpoint whenever one is on disk, and it is the newest one whose save
  finished: at most ``eval_every`` logged steps are trained again;
* the resumed process keeps metrics.csv up to that step and logs the next step next.

At the end of the episode (``compare_runs``), against the same command run once without a kill:
``last`` is at ``steps`` with equal weights and equal training state (optimiser, schedule, RNG,
carried hidden state), ``best`` has equal weights, and metrics.csv has equal rows (timings
aside), each step once. Everything is bit-exact: CPU, one thread, same seed.

This file runs, kills and resumes the processes; the checks are ``checks.py``. Not here:
torchrun runs, and power loss (a SIGKILL keeps what the process wrote; a dead machine keeps only
what was fsynced).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from killtest.checks import (
    KillRecord,
    check_continued,
    compare_runs,
    inode,
    inspect_kill,
    listdir,
    read_rows,
)
from rnnkit.checkpoint.runs import holds_run
from rnnkit.errors import UserError

WORDS = "the cat sat on a mat and saw the dog run to his red hat while birds sang".split()
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
POLL_S = 0.0002  # a save of the tiny model takes ~3-5 ms (5 fsynced files): many polls fit


def make_text(n_chars: int, seed: int = 0) -> str:
    """Words from a small vocabulary: a text a tiny model learns something from."""
    rng, words, size = random.Random(seed), [], 0
    while size < n_chars:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return " ".join(words)[:n_chars] + "\n"


@dataclass
class ChaosSettings:
    """The run every process trains: tiny, one thread, a checkpoint every ``eval_every``
    steps (and dropout, so the RNG state has to resume exactly too)."""

    steps: int = 40
    eval_every: int = 2
    hidden: int = 16
    embed: int = 8
    seq_len: int = 16
    batch_size: int = 4
    dropout: float = 0.1
    seed: int = 3

    def train_flags(self) -> list[str]:
        flags = {"hidden": self.hidden, "embed": self.embed, "seq-len": self.seq_len,
                 "batch-size": self.batch_size, "dropout": self.dropout, "seed": self.seed,
                 "max-steps": self.steps, "eval-every": self.eval_every, "eval-batches": 1,
                 "sample-every": 0, "log-every": 1, "threads": 1}  # fmt: skip
        return [part for key, value in flags.items() for part in (f"--{key}", str(value))]


@dataclass
class KillPlan:
    """When to SIGKILL: ``time``: ``delay`` s after launch; ``step``: ``delay`` s after train
    step ``step`` is logged; ``write``: once step ``step`` is logged (step 0: at once, for the
    first checkpoint, written before step 1), the moment the next save of ``target`` holds
    ``files`` of its 5 files (5: the moment it sets the replaced copy aside)."""

    mode: str
    step: int = 0
    target: str = "last"
    delay: float = 0.0
    files: int = 0

    def __str__(self) -> str:
        if self.mode == "time":
            return f"time {self.delay:.2f}s"
        if self.mode == "step":
            return f"step {self.step} +{self.delay * 1000:.0f}ms"
        return f"write {self.target}@{self.step} at {self.files}/5"


@dataclass
class ChaosReport:
    kills: list[KillRecord] = field(default_factory=list)
    episodes: list[dict] = field(default_factory=list)  # compare_runs of each finished run
    blocked_starts: int = 0  # fresh starts where the directory had to be deleted first
    missed: int = 0  # plans whose moment never came: the process finished first
    failures: list[str] = field(default_factory=list)
    reference_s: float = 0.0
    wall_s: float = 0.0

    @property
    def resumes(self) -> int:
        return sum(k.resume_step is not None for k in self.kills)

    @property
    def fresh_starts(self) -> int:
        """Kills before the first checkpoint (none on disk): the run starts again."""
        return sum(k.resume_step is None and not k.checkpoints for k in self.kills)


# ---- processes -------------------------------------------------------------------------------


def train_command(text: Path, out: Path, settings: ChaosSettings) -> list[str]:
    cache = ["--cache-dir", str(out.parent / "cache")]
    return [sys.executable, "-m", "rnnkit", "train", str(text), "--out", str(out), *cache,
            *settings.train_flags()]  # fmt: skip


def resume_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "rnnkit", "train", "--resume", str(out)]


def _launch(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, **ENV})  # fmt: skip


class Reference:
    """The uninterrupted run, launched at once: ``wait()`` for it to finish (and for
    ``wall_s``, ``first_step_s``: its time to the end and to its first logged step)."""

    def __init__(self, text: Path, out: Path, settings: ChaosSettings) -> None:
        self.out, self.launched = out, time.perf_counter()
        self.proc = _launch(train_command(text, out, settings), out.parent / f"{out.name}.log")
        self.wall_s = self.first_step_s = 0.0

    def wait(self) -> Reference:
        while self.proc.poll() is None:
            if not self.first_step_s and _logged_step(self.out) >= 1:
                self.first_step_s = time.perf_counter() - self.launched
            time.sleep(0.005)
        if not self.wall_s:
            self.wall_s = time.perf_counter() - self.launched
            self.first_step_s = self.first_step_s or self.wall_s / 2
        if self.proc.returncode != 0:
            raise RuntimeError(f"the reference run failed ({self.proc.returncode}): {self.out}")
        return self


def _logged_step(run: Path, stale_inode: int | None = None) -> int:
    """The newest step in ``run/metrics.csv`` (0: none; -1: no file, or still the previous
    process's file, not yet rewritten by this one's MetricsLog)."""
    path = run / "metrics.csv"
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_ino == stale_inode:
                return -1
            f.seek(max(0, os.fstat(f.fileno()).st_size - 512))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return -1
    try:
        return int(lines[-1].split(",")[0])
    except (IndexError, ValueError):  # only the header so far
        return 0


def watch_and_kill(
    proc: subprocess.Popen, run: Path, plan: KillPlan, launched: float, stale: int | None
) -> float | None:
    """SIGKILL ``proc`` at the moment ``plan`` names; seconds since launch, None if it ended
    first. ``stale``: inode of the metrics.csv the previous process left (not yet this one's)."""
    fire_at = launched + plan.delay if plan.mode == "time" else None
    armed, next_read = plan.mode == "write" and plan.step == 0, 0.0
    while proc.poll() is None:
        now = time.perf_counter()
        if fire_at is None and not armed and now >= next_read:
            armed, next_read = _logged_step(run, stale) >= plan.step, now + 0.002
            fire_at = now + plan.delay if armed and plan.mode == "step" else None
        if armed and plan.mode == "write" and save_reached(run, proc.pid, plan):
            fire_at = now
        if fire_at is not None and now >= fire_at:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return now - launched if proc.returncode == -signal.SIGKILL else None
        time.sleep(POLL_S)
    return None


def save_reached(run: Path, pid: int, plan: KillPlan) -> bool:
    """A save of ``plan.target`` by ``pid`` holds ``plan.files`` files (5: it has set the
    replaced copy aside)."""
    kind = "old" if plan.files >= 5 else "tmp"
    found = [n for n in listdir(run) if n.startswith(f".{plan.target}.{kind}-{pid}-")]
    return bool(found) and (kind == "old" or len(listdir(run / found[0])) >= plan.files)


def draw_plan(
    rng: random.Random, start: int | None, settings: ChaosSettings, ref: Reference
) -> KillPlan | None:
    """A random moment in a process that starts at step ``start`` (None: a fresh run); None
    for a finished run (it only starts, re-saves ``last`` and exits: let it)."""
    first, steps, every = start or 0, settings.steps, settings.eval_every
    if first >= steps:
        return None
    saves = sorted({*range(every, steps + 1, every), steps} - set(range(first + 1)))
    modes = ("time", "step", "write", "start-up", "first write")
    weights = (3, 3, 4, 1, 1) if start is None else (3, 3, 4, 0, 0)  # a fresh run: its start
    mode = rng.choices(modes, weights)[0]
    if mode == "start-up":  # imports, data, model, the first checkpoint
        return KillPlan("time", delay=rng.uniform(0.0, ref.first_step_s))
    if mode == "first write":  # written before step 1, before which nothing can be resumed
        return KillPlan("write", step=0, target="last", files=rng.randint(0, 4))  # no old copy
    if mode == "time":  # start-up, steps, evaluations, saves, exit
        left = ref.first_step_s + (ref.wall_s - ref.first_step_s) * (steps - first) / steps
        return KillPlan("time", delay=rng.uniform(0.0, left))
    if mode == "step":
        return KillPlan("step", step=rng.randint(first + 1, steps), delay=rng.uniform(0, 0.05))
    target = rng.choice(("last", "best"))
    return KillPlan("write", step=rng.choice(saves), target=target, files=rng.randint(0, 5))


# ---- episodes --------------------------------------------------------------------------------


def run_episode(
    index: int, text: Path, root: Path, settings: ChaosSettings, ref: Reference,
    next_plan: Callable[[int | None], KillPlan | None], kills: int, report: ChaosReport,
) -> None:  # fmt: skip
    """Train ``root/run{index}``, killing each of its first ``kills`` processes as
    ``next_plan(its first step)`` says (None: let it finish) and resuming after each kill;
    then compare with ``ref``."""
    run, log = root / f"run{index}", root / f"run{index}.log"
    start, kept = None, []  # the step a resume continues from; the rows it must keep
    for launch in itertools.count():
        plan = next_plan(start) if launch < kills else None
        stale = inode(run / "metrics.csv") if start is not None else None
        launched = time.perf_counter()
        command = train_command(text, run, settings) if start is None else resume_command(run)
        proc = _launch(command, log)
        at = watch_and_kill(proc, run, plan, launched, stale) if plan else None
        proc.wait()
        if start is not None:
            report.failures += check_continued(run, kept, start, stale)
        if at is None:  # it ran to its end
            report.missed += plan is not None
            if proc.returncode != 0:
                report.failures.append(f"{run}: exit status {proc.returncode}; see {log}")
                return
            break
        record, problems = inspect_kill(run, proc.pid, str(plan), at, index, settings.eval_every)
        report.kills.append(record)
        report.failures += problems
        start = record.resume_step
        if start is not None:
            kept = [r for r in read_rows(run) if int(r["step"]) <= start]
            continue
        if record.checkpoints:
            return  # a checkpoint --resume cannot read: reported by inspect_kill
        if holds_run(run):  # neither --resume nor a fresh start accepts it: delete it
            report.blocked_starts += 1
            report.failures.append(
                f"{run}: killed before its first checkpoint, it holds metrics.csv: "
                "--resume finds no checkpoint and a fresh start refuses the directory"
            )
            shutil.rmtree(run)
    try:
        result, problems = compare_runs(run, ref.wait().out, settings.steps)
    except UserError as error:
        report.failures.append(f"{run}: the finished run does not load: {error}")
        return
    report.episodes.append(result)
    report.failures += problems


def run_chaos(
    root: Path, *, trials: int = 20, seed: int = 0, kills_per_run: int = 5,
    settings: ChaosSettings | None = None, plans: list[KillPlan] | None = None,
    text_chars: int = 1200,
) -> ChaosReport:  # fmt: skip
    """Kill training ``trials`` times, ``kills_per_run`` per training run (moments drawn with
    ``seed``, or ``plans`` in order, then ``trials`` is ``len(plans)``), resuming after each
    kill; check everything (see the module docstring). ``root``: a fresh working directory."""
    settings = settings or ChaosSettings()
    began, report = time.perf_counter(), ChaosReport()
    root.mkdir(parents=True, exist_ok=True)
    text = root / "text.txt"
    text.write_text(make_text(text_chars, seed))
    ref = Reference(text, root / "reference", settings)  # fixed plans: alongside episode 0
    if plans is None:  # drawn plans need its timings first
        report.reference_s = ref.wait().wall_s
    rng, queue = random.Random(seed), list(plans or [])
    trials = len(queue) if plans is not None else trials

    def next_plan(start: int | None) -> KillPlan | None:
        if plans is not None:
            return queue.pop(0) if queue else None
        return draw_plan(rng, start, settings, ref)

    try:
        for index in range(2 * trials + 1):  # a run that ends before its kills ends early
            kills = min(kills_per_run, trials - len(report.kills))
            if kills <= 0 or (plans is not None and not queue):
                break
            failed = len(report.failures)
            run_episode(index, text, root, settings, ref, next_plan, kills, report)
            if len(report.failures) > failed and not report.episodes:
                break  # the first run failed outright: more runs would say the same
    finally:
        ref.proc.wait()
    report.reference_s = ref.wait().wall_s  # with fixed plans: it shared the machine
    report.wall_s = time.perf_counter() - began
    return report
