"""The trainer's resumable progress is one dataclass saved and restored as a unit, a step returns
a StepResult, and the tasks answer for themselves what the commands used to ask by name."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.errors import UserError
from rnnkit.tasks import TASK_NAMES, get_task, multi_process_tasks
from rnnkit.tasks.base import Task
from rnnkit.trainer import StepResult, Trainer, TrainProgress
from rnnkit.trainer.state import training_state
from rnnkit.training.distributed import World

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "release-0.1.0-lm"
TEXT = "the cat sat on a mat and saw the dog run to his red hat while birds sang\n" * 40


def tiny_config(tmp_path: Path, **train) -> RunConfig:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    config = RunConfig()
    apply_overrides(
        config,
        {
            "data": {"paths": [str(corpus)]},
            "model": {"embed": 8, "hidden": 16, "layers": 1},
            "train": {"out": str(tmp_path / "run"), "batch_size": 4, "seq_len": 16,
                      "eval_every": 5, "eval_batches": 2, "sample_every": 0, "threads": 1,
                      "max_steps": 6, **train},
        },
        "test",
    )  # fmt: skip
    return config


def test_progress_round_trips_through_training_json(tmp_path):
    trainer = Trainer(tiny_config(tmp_path), log=lambda *_: None)
    result = trainer.run()
    saved = load_checkpoint(tmp_path / "run" / "last", training=True).training
    progress = TrainProgress.from_saved(saved)
    assert progress.step == result.step == 6
    assert dataclasses.asdict(progress).keys() <= saved.keys()  # one unit, the same keys
    assert progress.elapsed_s > 0 and progress.last_eval_step == 6
    assert progress.best_val == pytest.approx(result.best_val)


def test_a_release_0_1_0_training_state_reads_as_progress():
    saved = load_checkpoint(FIXTURE / "last", training=True).training
    progress = TrainProgress.from_saved(saved)
    assert progress.step == 60 and progress.epoch >= 0 and math.isfinite(progress.best_val)


def test_progress_is_checked_before_it_is_used():
    with pytest.raises(UserError, match="batch_index must be an integer >= 0"):
        TrainProgress.from_saved({**dataclasses.asdict(TrainProgress()), "batch_index": -5})


def test_a_train_step_returns_a_result(tmp_path):
    trainer = Trainer(tiny_config(tmp_path), log=lambda *_: None)
    result = trainer._train_step()
    assert isinstance(result, StepResult)
    assert result.units == 4 * 16 and math.isfinite(result.loss) and result.grad_norm > 0
    assert set(result.info) == {"bpc"} and trainer.progress.step == 1
    state = training_state(trainer.progress, trainer.optimizer, trainer.scheduler, trainer.task)
    assert state["step"] == 1 and {"optimizer", "scheduler", "rng", "state"} <= state.keys()
    trainer.lock.release()


def test_the_world_is_given_at_construction(tmp_path):
    config = tiny_config(tmp_path)
    task = get_task("lm")(config, None, World(1, 2))
    assert task.world == World(1, 2)
    assert get_task("lm")(tiny_config(tmp_path)).world == World()
    assert "world" not in vars(Task)  # no class-level default for a trainer to overwrite


def test_only_the_language_model_trains_in_several_processes():
    assert multi_process_tasks() == ["lm"]
    get_task("lm").check_world(World(0, 2))
    with pytest.raises(UserError, match="multi-process training supports --task lm .* --task tag"):
        get_task("tag").check_world(World(0, 2))
    get_task("tag").check_world(World())  # alone, every task


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_task_answers_the_commands_questions(name):
    cls = get_task(name)
    assert cls.language_model == (name == "lm")
    assert cls.conditional_sampling == (name == "generate-from")
    assert cls.checkpoint_keys == (("vocab_kind",) if name == "lm" else ("task_meta",))


def test_no_command_asks_for_the_language_model_by_name():
    """The LM's special cases live in tasks/lm.py behind the Task interface, nowhere else."""
    pattern = re.compile(r"""[!=]= ["']lm["']""")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "src" / "rnnkit").rglob("*.py"))
        if path.name != "lm.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
