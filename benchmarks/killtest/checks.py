"""What a killed ``rnnkit train`` left on disk, and a finished run against an uninterrupted one.

The checks of the kill test (``chaos.py`` launches and kills the processes): after each kill,
``inspect_kill`` loads every checkpoint ``load_checkpoint`` would read, asks where ``--resume``
would continue (``read_run_checkpoint``, as the trainer does), names the moment of the save the
kill landed in (``kill_phase``) and counts the logged steps that will be trained again; after a
resume, ``check_continued`` compares metrics.csv with what it held; at the end, ``compare_runs``
compares weights, training state (via ``flatten_state``) and metrics.csv, bit for bit.

Not here: processes, timing and killing (``chaos.py``); the checkpoint format
(``rnnkit.checkpoint.files``).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.checkpoint.state import flatten_state
from rnnkit.errors import UserError
from rnnkit.tasks.saved import read_run_checkpoint

COMPARED = ("step", "epoch", "kind", "loss", "lr", "grad_norm", "bpc", "chars", "note")


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


def listdir(path: Path) -> list[str]:
    """The names in ``path``; none if it is gone (a save renamed it away)."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def read_rows(run: Path) -> list[dict]:
    """metrics.csv without its timing columns."""
    try:
        with open(run / "metrics.csv", newline="") as f:
            return [{k: row.get(k) for k in COMPARED} for row in csv.DictReader(f)]
    except OSError:
        return []


@contextmanager
def _no_warnings() -> Iterator[None]:
    """Silence "loading the previous copy": expected after a kill between a save's renames."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---- after a kill --------------------------------------------------------------------------


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
            with _no_warnings():
                ckpt = load_checkpoint(run / name, training=True)
            if not isinstance(ckpt.training, dict) or "step" not in ckpt.training:
                problems.append(f"{ckpt.path}: no training step in the checkpoint")
            count += 1
        except UserError as error:
            problems.append(f"{run / name}: does not load: {error}")
    return count, problems


def resume_step(run: Path) -> tuple[int | None, str]:
    """The step ``rnnkit train --resume`` continues from (None: no checkpoint), and why not."""
    try:
        with _no_warnings():
            ckpt, _, _ = read_run_checkpoint(run / "last", training=True)
    except UserError as error:
        return None, str(error)
    if not isinstance(ckpt.training, dict) or "step" not in ckpt.training:
        return None, f"{ckpt.path}: no training step in the checkpoint"
    return ckpt.training["step"], ""


def kill_phase(run: Path, pid: int) -> tuple[str, bool]:
    """Where the kill of ``pid`` landed, from what its saves left: (phase, inside a write)."""
    names = listdir(run)
    for name in ("last", "best"):
        tmp = [n for n in names if n.startswith(f".{name}.tmp-{pid}-")]
        if tmp:
            return f"writing {name} ({len(listdir(run / tmp[0]))}/5 files)", True
        if any(n.startswith(f".{name}.old-{pid}-") for n in names):
            if name not in names:
                return f"between the renames of {name}", True
            return f"removing the old copy of {name}", True
    return ("before the first checkpoint" if "last" not in names else "outside a save"), False


def inspect_kill(
    run: Path, pid: int, plan: str, at_s: float, episode: int, eval_every: int
) -> tuple[KillRecord, list[str]]:
    """Check what the kill of ``pid`` left (see ``chaos.py``'s docstring): (record, problems)."""
    rows = read_rows(run)
    logged = max([int(r["step"]) for r in rows if r["kind"] == "train"], default=0)
    phase, in_write = kill_phase(run, pid)
    count, problems = verify_checkpoints(run)
    step, why = resume_step(run)
    record = KillRecord(episode, plan, at_s, logged, step, phase, in_write, count)
    if step is None and count:
        problems.append(f"{run}: {count} checkpoint(s) on disk but --resume cannot read: {why}")
    if step is not None:
        saves = [0] + [int(r["step"]) for r in rows if r["kind"] == "val"]
        if step not in saves[-2:]:  # the newest save, or the one before if the kill cut it
            problems.append(f"{run}: resumes from step {step}, newest saves {saves[-2:]}")
        if record.redone > eval_every:
            problems.append(f"{run}: {record.redone} logged steps lost (kill at {phase})")
    return record, problems


def check_continued(run: Path, kept: list[dict], start: int, stale: int | None) -> list[str]:
    """The process resumed at ``start`` kept the rows up to it and logged ``start + 1`` next.
    ``stale``: the inode of the metrics.csv it found (until it rewrites it, nothing to check)."""
    if inode(run / "metrics.csv") == stale:
        return []
    rows = read_rows(run)
    if rows[: len(kept)] != kept:
        return [f"{run}: metrics.csv rows up to step {start} changed on resume"]
    after = rows[len(kept) :]
    if after and (after[0]["kind"], int(after[0]["step"])) != ("train", start + 1):
        return [f"{run}: resumed at step {start} but logged step {after[0]['step']} next"]
    return []


# ---- the end of a run ----------------------------------------------------------------------


def _equal_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


#: fields of the training state that read the wall clock, which no two runs share
CLOCK_FIELDS = ("elapsed_s", "time_used")


def _equal_state(a: object, b: object) -> bool:
    """The same nesting and plain values, and bit-equal tensors (optimiser, RNG, hidden); the
    clock's fields aside."""
    a, b = (_without_clock(state) for state in (a, b))
    (tensors_a, skeleton_a), (tensors_b, skeleton_b) = flatten_state(a), flatten_state(b)
    return skeleton_a == skeleton_b and _equal_tensors(tensors_a, tensors_b)


def _without_clock(state: object) -> object:
    if not isinstance(state, dict):
        return state
    return {key: value for key, value in state.items() if key not in CLOCK_FIELDS}


def compare_runs(run: Path, reference: Path, steps: int) -> tuple[dict, list[str]]:
    """A finished run against the uninterrupted one: (figures, problems)."""
    last = load_checkpoint(run / "last", training=True)
    ref = load_checkpoint(reference / "last", training=True)
    rows = read_rows(run)
    keys = [(r["step"], r["kind"]) for r in rows]
    result = {
        "final_step_ok": last.training["step"] == steps,
        "weights_equal": _equal_tensors(last.model_state, ref.model_state),
        "state_equal": _equal_state(last.training, ref.training),
        "best_equal": _equal_tensors(
            load_checkpoint(run / "best", training=False).model_state,
            load_checkpoint(reference / "best", training=False).model_state,
        ),
        "metrics_equal": rows == read_rows(reference),
        "duplicated_rows": len(keys) - len(set(keys)),
        "stale": sorted(n for n in listdir(run) if ".tmp-" in n or ".old-" in n),
    }
    problems = [f"{run}: {key} is False" for key, value in result.items() if value is False]
    if not result["final_step_ok"]:
        problems[0] = f"{run}: last is at step {last.training['step']}, not {steps}"
    if result["duplicated_rows"]:
        problems.append(f"{run}: metrics.csv repeats {result['duplicated_rows']} (step, kind)")
    return result, problems
