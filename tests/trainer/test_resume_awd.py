"""A word model with every AWD-LSTM flag at once (--tokenizer word, --optimizer nt-asgd switching
during the run, --variable-bptt across an epoch boundary, --weight-drop, --word-dropout,
--locked-dropout, --ar, --tar, --hidden A,B, --softmax adaptive) interrupted twice -- before
the nt-asgd switch and after it -- and resumed equals the uninterrupted run bit for bit."""

from __future__ import annotations

import csv
import random

import pytest
import torch

from rnnkit.checkpoint.files import load_checkpoint
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.trainer.loop import train

SUBJECTS = ("the cat", "a dog", "my friend", "the old man")
VERBS = ("sat on", "looked at", "ran to", "slept near")
OBJECTS = ("the mat", "a tree", "the house", "our car")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training lines, and validation lines the training makes less likely ("near" never
    follows "near"), so nt-asgd's rule fires at its first chance (the third evaluation)."""
    work = tmp_path_factory.mktemp("resume_awd")
    rng = random.Random(0)
    lines = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ."
             for _ in range(60)]  # fmt: skip
    (work / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "val.txt").write_text("near near near near near near near\n" * 20, encoding="utf-8")
    return work


def run_config(work, out: str, max_steps: int) -> RunConfig:
    config = RunConfig()
    settings = {
        "data": {"paths": [str(work / "train.txt")], "val": str(work / "val.txt"),
                 "tokenizer": "word"},
        "model": {"embed": 12, "hidden": 12, "hidden_sizes": [16, 12], "layers": 2,
                  "softmax": "adaptive", "cutoffs": [8], "dropout": 0.1, "weight_drop": 0.3,
                  "word_dropout": 0.1, "locked_dropout": True, "ar": 1.0, "tar": 0.5},
        "train": {"out": str(work / out), "seq_len": 8, "batch_size": 4, "lr": 3.0,
                  "optimizer": "nt-asgd", "nonmono": 1, "variable_bptt": True,
                  "max_steps": max_steps, "eval_every": 4, "sample_every": 0, "log_every": 1,
                  "threads": 1, "seed": 3},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def rows(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return [{k: r[k] for k in ("step", "epoch", "kind", "loss", "lr", "note")}
                for r in csv.DictReader(f) if r["kind"] in ("train", "nt-asgd")]  # fmt: skip


def quiet(_line):
    pass


def test_interrupted_twice_and_resumed_equals_the_uninterrupted_run(data):
    straight = train(run_config(data, "straight", 20), log=quiet)
    first = train(run_config(data, "resumed", 5), log=quiet)
    assert first.step == 5
    for stop in (14, 20):
        leg = train(
            run_config(data, "resumed", stop),
            resume=True,
            overrides={"train": {"max_steps": stop}},
            log=quiet,
        )
        assert leg.step == stop
    a = load_checkpoint(straight.out / "last", training=True)
    b = load_checkpoint(data / "resumed" / "last", training=True)
    switched = a.training["averaged_from"]
    assert 5 < switched <= 14, switched  # one leg ends before the switch, the next after it
    assert b.training["averaged_from"] == switched
    assert b.training["epoch"] == a.training["epoch"] == 1  # an epoch boundary was crossed
    assert rows(straight.out) == rows(b.path.parent)
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    raw_a, raw_b = a.training["raw_weights"], b.training["raw_weights"]
    assert len(raw_a) == len(raw_b) and all(map(torch.equal, raw_a, raw_b))
    state_a, state_b = a.training["optimizer"]["state"], b.training["optimizer"]["state"]
    for i in state_a:
        assert torch.equal(state_a[i]["ax"], state_b[i]["ax"])
    # the model's file holds the averages, not the raw weights the training goes on with
    assert any(not torch.equal(state_a[i]["ax"], raw) for i, raw in enumerate(raw_a))
