"""Crash safety by killing: ``rnnkit train`` killed with SIGKILL (mid-write included) and resumed
ends bit-for-bit where an uninterrupted run ends; every checkpoint left on disk loads."""

from __future__ import annotations

import random
from types import SimpleNamespace

import torch

from killtest.checks import kill_phase, resume_step, verify_checkpoints
from killtest.episodes import ChaosSettings, KillPlan, draw_plan, run_chaos, save_reached
from rnnkit.checkpoint.files import save_checkpoint
from rnnkit.config import RunConfig
from rnnkit.models import LanguageModel

SETTINGS = ChaosSettings(steps=10, eval_every=2)  # 8 steps an epoch: the run crosses one


def test_killed_three_times_training_ends_as_an_uninterrupted_run(tmp_path):
    plans = [
        KillPlan("write", step=0, target="last"),  # as the first checkpoint's write begins
        KillPlan("step", step=5, delay=0.005),
        KillPlan("write", step=10, target="best"),  # in the last evaluation's saves
    ]
    report = run_chaos(tmp_path, settings=SETTINGS, plans=plans, kills_per_run=3, text_chars=600)
    assert report.failures == []
    assert len(report.kills) == 3 and report.missed == 0
    assert sum(k.in_write for k in report.kills) >= 1  # a write takes ~3-5 ms; polls: 0.2 ms
    first, *later = report.kills
    assert first.resume_step in (None, 0) and report.blocked_starts == 0
    for kill in later:
        assert kill.resume_step is not None and kill.checkpoints >= 1, kill
        assert 0 <= kill.redone <= SETTINGS.eval_every, kill
    assert report.resumes + report.fresh_starts == 3
    [episode] = report.episodes
    assert episode["final_step_ok"] and episode["weights_equal"] and episode["state_equal"]
    assert episode["best_equal"] and episode["metrics_equal"]
    assert episode["duplicated_rows"] == 0


def _checkpoint(directory, step):
    """A small but real language-model checkpoint at ``step``, as the trainer writes it
    (``step`` None: without training state)."""
    config = RunConfig()
    config.model.vocab_size, config.model.hidden, config.model.embed = 2, 4, 3
    model = LanguageModel(config.model)
    state = {"step": step, "optimizer": {"exp_avg": torch.ones(3)}} if step is not None else None
    save_checkpoint(directory, config={**config.to_dict(), "vocab_kind": "char"},
                    model_state=model.state_dict(), vocab=["a", "b"], training=state)  # fmt: skip


def test_a_truncated_checkpoint_fails_verification(tmp_path):
    _checkpoint(tmp_path / "last", 4)
    _checkpoint(tmp_path / "best", 4)
    assert verify_checkpoints(tmp_path) == (2, [])
    path = tmp_path / "best" / "training.safetensors"
    path.write_bytes(path.read_bytes()[:-7])
    count, problems = verify_checkpoints(tmp_path)
    assert count == 1 and len(problems) == 1 and "best: does not load" in problems[0]


def test_a_kill_between_the_two_renames_of_a_save_is_resumable(tmp_path):
    """save_checkpoint renames last aside, then the new copy in: killed between the two,
    only ``.last.old-PID-*`` is left, which --resume must read (load_checkpoint does)."""
    _checkpoint(tmp_path / "last", 6)
    (tmp_path / "last").rename(tmp_path / ".last.old-123-0a1b2c3d")
    assert kill_phase(tmp_path, 123) == ("between the renames of last", True)
    assert verify_checkpoints(tmp_path) == (1, [])
    assert resume_step(tmp_path) == (6, "")


def test_a_half_removed_old_copy_beside_its_checkpoint_is_not_read(tmp_path):
    """A kill while save_checkpoint removes the replaced copy leaves part of it: harmless, as
    load_checkpoint reads ``.last.old-*`` only when ``last`` itself is missing."""
    _checkpoint(tmp_path / "last", 8)
    (tmp_path / ".last.old-77-00ff00ff").mkdir()
    (tmp_path / ".last.old-77-00ff00ff" / "vocab.json").write_text("[]")
    assert kill_phase(tmp_path, 77) == ("removing the old copy of last", True)
    assert verify_checkpoints(tmp_path) == (1, [])
    assert resume_step(tmp_path) == (8, "")


def test_a_write_kill_fires_on_the_files_of_the_save_not_a_clock(tmp_path):
    tmp = tmp_path / ".best.tmp-42-0a1b2c3d"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"")
    (tmp / "vocab.json").write_text("[]")
    write = KillPlan("write", step=2, target="best")
    assert save_reached(tmp_path, 42, write)
    assert save_reached(tmp_path, 42, KillPlan("write", target="best", files=2))
    assert not save_reached(tmp_path, 42, KillPlan("write", target="best", files=3))
    assert not save_reached(tmp_path, 43, write)  # another process's leftovers
    assert not save_reached(tmp_path, 42, KillPlan("write", target="last"))
    assert not save_reached(tmp_path, 42, KillPlan("write", target="best", files=5))
    (tmp_path / ".best.old-42-00ff00ff").mkdir()
    assert save_reached(tmp_path, 42, KillPlan("write", target="best", files=5))


def test_drawn_plans_stay_in_what_the_process_has_left_to_do():
    ref = SimpleNamespace(first_step_s=1.0, wall_s=5.0)
    rng = random.Random(0)
    for start in (None, 0, 6, 8, 9):
        for _ in range(200):
            plan = draw_plan(rng, start, SETTINGS, ref)
            if plan.mode != "time" and (start is not None or plan.step > 0):
                assert (start or 0) < plan.step <= SETTINGS.steps, (start, plan)
            assert 0 <= plan.files <= 5 and plan.delay >= 0
    assert draw_plan(rng, SETTINGS.steps, SETTINGS, ref) is None  # finished: let it finish


def test_a_last_without_training_state_is_reported_not_a_traceback(tmp_path):
    _checkpoint(tmp_path / "last", None)
    step, why = resume_step(tmp_path)
    assert step is None and "no training step" in why
