"""Crash safety, proven by killing: SIGKILL ``rnnkit train`` at chosen moments, resume it, check.

    python benchmarks/chaos.py --trials 20 --seed 0

An *episode* is one training run (a subprocess, one thread, a checkpoint every ``eval_every``
steps) that is killed again and again and resumed with ``rnnkit train --resume`` after each kill,
then left to finish. A kill (``KillPlan``) comes at a random time since launch, a moment after a
given step is logged, or a moment after a checkpoint write of ``last`` or ``best`` begins (its
``.NAME.tmp-PID-*`` folder appears). After each kill (``inspect_kill``):

* every checkpoint on disk (``last``, ``best`` and each ``.NAME.old-*`` copy ``load_checkpoint``
  falls back on) loads, training state included;
* ``--resume`` finds a checkpoint whenever one is on disk, and it is the newest one whose save
  finished: at most ``eval_every`` logged steps are trained again;
* the resumed process keeps metrics.csv up to that step and logs the next step next.

At the end of the episode (``compare_runs``), against the same command run once without a kill:
``last`` is at ``steps`` with equal weights and equal training state (optimiser, schedule, RNG,
carried hidden state), ``best`` has equal weights, and metrics.csv has equal rows (timings
aside), each step once. Everything is bit-exact: CPU, one thread, same seed.

Not here: torchrun runs, and power loss (a SIGKILL keeps what the process wrote; a dead machine
keeps only what was fsynced).
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.errors import UserError
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.runs import holds_run, read_run_checkpoint
from rnnkit.training.state import flatten_state

WORDS = "the cat sat on a mat and saw the dog run to his red hat while birds sang".split()
COMPARED = ("step", "epoch", "kind", "loss", "lr", "grad_norm", "bpc", "chars", "note")
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
POLL_S = 0.0002  # a checkpoint write of the tiny model takes ~10 ms: many polls fit in it


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
    step ``step`` is logged; ``write``: ``delay`` s after a save of ``target`` starts, once
    step ``step`` is logged (step 0: the first checkpoint, written before step 1)."""

    mode: str
    step: int = 0
    target: str = "last"
    delay: float = 0.0

    def __str__(self) -> str:
        if self.mode == "time":
            return f"time {self.delay:.2f}s"
        where = f"step {self.step}" if self.mode == "step" else f"write {self.target}@{self.step}"
        return f"{where} +{self.delay * 1000:.0f}ms"


@dataclass
class KillRecord:
    episode: int
    plan: str
    at_s: float  # seconds from launch to the kill
    logged_step: int  # newest train step in metrics.csv when killed (0: none)
    resume_step: int | None  # step of the checkpoint --resume reads (None: no checkpoint yet)
    phase: str  # where the kill landed, read from what it left on disk
    in_write: bool  # inside a checkpoint save: a half-written or an old copy was left
    checkpoints: int  # checkpoint directories that loaded after this kill

    @property
    def redone(self) -> int:
        """Logged steps the resumed run trains again."""
        return self.logged_step - (self.resume_step or 0)


@dataclass
class ChaosReport:
    kills: list[KillRecord] = field(default_factory=list)
    episodes: list[dict] = field(default_factory=list)  # compare_runs of each finished run
    resumes: int = 0
    fresh_starts: int = 0  # kills before the first checkpoint: the run starts again
    blocked_starts: int = 0  # ... where the directory had to be deleted first (see inspect_kill)
    missed: int = 0  # plans whose moment never came: the process finished first
    failures: list[str] = field(default_factory=list)
    reference_s: float = 0.0
    wall_s: float = 0.0


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


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def watch_and_kill(
    proc: subprocess.Popen, run: Path, plan: KillPlan, launched: float, stale: int | None
) -> float | None:
    """SIGKILL ``proc`` at the moment ``plan`` names; seconds since launch, None if it ended
    first. ``stale``: inode of the metrics.csv the previous process left (not yet this one's)."""
    prefix = f".{plan.target}.tmp-{proc.pid}-"
    armed = plan.mode == "time" or (plan.mode == "write" and plan.step == 0)
    fire_at = launched + plan.delay if plan.mode == "time" else None
    next_read = 0.0
    while proc.poll() is None:
        now = time.perf_counter()
        if fire_at is None and not armed and now >= next_read:
            armed, next_read = _logged_step(run, stale) >= plan.step, now + 0.002
        if fire_at is None and armed:
            if plan.mode == "step" or any(n.startswith(prefix) for n in _names(run)):
                fire_at = now + plan.delay
        if fire_at is not None and now >= fire_at:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return now - launched if proc.returncode == -signal.SIGKILL else None
        time.sleep(POLL_S)
    return None


def _names(run: Path) -> list[str]:
    try:
        return os.listdir(run)
    except OSError:
        return []


def draw_plan(
    rng: random.Random, start: int | None, settings: ChaosSettings, ref: Reference
) -> KillPlan:
    """A random moment in a process that starts at step ``start`` (None: a fresh run)."""
    first, steps, every = start or 0, settings.steps, settings.eval_every
    saves = sorted({*range(every, steps + 1, every), steps} - set(range(first + 1)))
    modes = ("time", "step", "write", "start-up", "first write")
    weights = (3, 3, 4, 1, 1) if start is None else (3, 3, 4, 0, 0)  # a fresh run: its start
    mode = rng.choices(modes, weights)[0] if saves else "time"
    if mode == "start-up":  # imports, data, model, the first checkpoint
        return KillPlan("time", delay=rng.uniform(0.0, ref.first_step_s))
    if mode == "first write":  # written before step 1, before which nothing can be resumed
        return KillPlan("write", step=0, target="last", delay=rng.uniform(0.0, 0.01))
    if mode == "time":  # start-up, steps, evaluations, saves, exit
        left = ref.first_step_s + (ref.wall_s - ref.first_step_s) * (steps - first) / steps
        return KillPlan("time", delay=rng.uniform(0.0, left))
    if mode == "step":
        return KillPlan("step", step=rng.randint(first + 1, steps), delay=rng.uniform(0, 0.05))
    target = rng.choice(("last", "best"))
    return KillPlan("write", step=rng.choice(saves), target=target, delay=rng.uniform(0, 0.01))


# ---- what a kill left ------------------------------------------------------------------------


def verify_checkpoints(run: Path) -> tuple[int, list[str]]:
    """Load, training state included, every checkpoint ``load_checkpoint`` would read in
    ``run``: ``last`` and ``best``, or where one is missing, the ``.NAME.old-*`` copy it falls
    back on. (Old copies beside their checkpoint are never read; a kill during the clean-up
    that removes them can leave them half-deleted.) Returns (how many loaded, problems)."""
    count, problems = 0, []
    for name in ("last", "best"):
        if not (run / name).exists() and not any(run.glob(f".{name}.old-*")):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "loading the previous copy": expected here
                ckpt = load_checkpoint(run / name, training=True)
            if not isinstance(ckpt.training, dict) or "step" not in ckpt.training:
                problems.append(f"{ckpt.path}: no training step in the checkpoint")
            count += 1
        except UserError as error:
            problems.append(f"{run / name}: does not load: {error}")
    return count, problems


def resume_step(run: Path) -> tuple[int | None, str]:
    """The step ``rnnkit train --resume`` continues from (None: no checkpoint), and why not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "loading the previous copy": expected after a crash
        try:
            ckpt, _, _ = read_run_checkpoint(run / "last", training=True)
        except UserError as error:
            return None, str(error)
    return ckpt.training["step"], ""


def kill_phase(run: Path, pid: int) -> tuple[str, bool]:
    """Where the kill of ``pid`` landed, from what its saves left: (phase, inside a write)."""
    names = _names(run)
    for name in ("last", "best"):
        tmp = [n for n in names if n.startswith(f".{name}.tmp-{pid}-")]
        if tmp:
            files = sorted(os.listdir(run / tmp[0]))
            return f"writing {name} ({len(files)}/5 files)", True
        if any(n.startswith(f".{name}.old-{pid}-") for n in names):
            if name not in names:
                return f"between the renames of {name}", True
            return f"removing the old copy of {name}", True
    return ("before the first checkpoint" if "last" not in names else "outside a save"), False


def read_rows(run: Path) -> list[dict]:
    """metrics.csv without its timing columns."""
    try:
        with open(run / "metrics.csv", newline="") as f:
            return [{k: row.get(k) for k in COMPARED} for row in csv.DictReader(f)]
    except OSError:
        return []


def inspect_kill(
    run: Path, pid: int, plan: KillPlan, at_s: float, episode: int, settings: ChaosSettings
) -> tuple[KillRecord, list[str]]:
    """Check what the kill left (see the module docstring): (its record, problems)."""
    rows = read_rows(run)
    logged = max([int(r["step"]) for r in rows if r["kind"] == "train"], default=0)
    phase, in_write = kill_phase(run, pid)
    count, problems = verify_checkpoints(run)
    step, why = resume_step(run)
    record = KillRecord(episode, str(plan), at_s, logged, step, phase, in_write, count)
    if step is None and count:
        problems.append(f"{run}: {count} checkpoint(s) on disk but --resume cannot read: {why}")
    if step is not None:
        saves = [0] + [int(r["step"]) for r in rows if r["kind"] == "val"]
        if step not in saves[-2:]:  # the newest save, or the one before if the kill cut it
            problems.append(f"{run}: resumes from step {step}, newest saves {saves[-2:]}")
        if record.redone > settings.eval_every:
            problems.append(f"{run}: {record.redone} logged steps lost (kill at {phase})")
    return record, problems


def check_continued(run: Path, kept: list[dict], start: int, stale: int | None) -> list[str]:
    """The process resumed at ``start`` kept the rows up to it and logged ``start + 1`` next."""
    if _inode(run / "metrics.csv") == stale:
        return []  # killed before it rewrote metrics.csv: nothing to check yet
    rows = read_rows(run)
    if rows[: len(kept)] != kept:
        return [f"{run}: metrics.csv rows up to step {start} changed on resume"]
    after = rows[len(kept) :]
    if after and (after[0]["kind"], int(after[0]["step"])) != ("train", start + 1):
        return [f"{run}: resumed at step {start} but logged step {after[0]['step']} next"]
    return []


# ---- the end of a run ------------------------------------------------------------------------


def _equal_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def compare_runs(run: Path, reference: Path, steps: int) -> tuple[dict, list[str]]:
    """A finished run against the uninterrupted one: (figures, problems)."""
    last = load_checkpoint(run / "last", training=True)
    ref = load_checkpoint(reference / "last", training=True)
    mine, theirs = flatten_state(last.training), flatten_state(ref.training)
    rows, ref_rows = read_rows(run), read_rows(reference)
    keys = [(r["step"], r["kind"]) for r in rows]
    result = {
        "final_step_ok": last.training["step"] == steps,
        "weights_equal": _equal_tensors(last.model_state, ref.model_state),
        "state_equal": mine[1] == theirs[1] and _equal_tensors(mine[0], theirs[0]),
        "best_equal": _equal_tensors(
            load_checkpoint(run / "best", training=False).model_state,
            load_checkpoint(reference / "best", training=False).model_state,
        ),
        "metrics_equal": rows == ref_rows,
        "duplicated_rows": len(keys) - len(set(keys)),
        "stale": sorted(n for n in _names(run) if ".tmp-" in n or ".old-" in n),
    }
    problems = [f"{run}: {key} is False" for key, value in result.items() if value is False]
    if not result["final_step_ok"]:
        problems[0] = f"{run}: last is at step {last.training['step']}, not {steps}"
    if result["duplicated_rows"]:
        problems.append(f"{run}: metrics.csv repeats {result['duplicated_rows']} (step, kind)")
    return result, problems


# ---- episodes --------------------------------------------------------------------------------


def run_episode(
    index: int, text: Path, root: Path, settings: ChaosSettings, ref: Reference,
    next_plan: Callable[[int | None], KillPlan | None], report: ChaosReport,
) -> None:  # fmt: skip
    """Train ``root/run{index}``, killing each process as ``next_plan(its first step)`` says
    (None: let it finish) and resuming after each kill; then compare with ``ref``."""
    run, log = root / f"run{index}", root / f"run{index}.log"
    start, kept = None, []  # the step a resume continues from; the rows it must keep
    while True:
        plan = next_plan(start)
        stale = _inode(run / "metrics.csv") if start is not None else None
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
        record, problems = inspect_kill(run, proc.pid, plan, at, index, settings)
        report.kills.append(record)
        report.failures += problems
        start = record.resume_step
        kept = [r for r in read_rows(run) if start is not None and int(r["step"]) <= start]
        if start is not None:
            report.resumes += 1
            continue
        if record.checkpoints:
            return  # a checkpoint --resume cannot read: reported by inspect_kill
        report.fresh_starts += 1
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
    try:
        for index in range(2 * trials + 1):  # a run that ends before its kills ends early
            budget = [min(kills_per_run, trials - len(report.kills))]
            if budget[0] <= 0:
                break

            def next_plan(start: int | None, budget=budget) -> KillPlan | None:
                budget[0] -= 1
                if budget[0] < 0 or (plans is not None and not queue):
                    return None
                return queue.pop(0) if plans is not None else draw_plan(rng, start, settings, ref)

            failed = len(report.failures)
            run_episode(index, text, root, settings, ref, next_plan, report)
            if len(report.failures) > failed and not report.episodes:
                break  # the first run failed outright: more runs would say the same
    finally:
        ref.proc.wait()
    report.reference_s = ref.wait().wall_s  # with fixed plans: it shared the machine
    report.wall_s = time.perf_counter() - began
    return report
