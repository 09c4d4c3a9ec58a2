"""Every registered cell through every task, by the real trainer: ``rnnkit train --task T
--cell C`` as the command line builds it (its parser, ``config_flags`` and the precedence of
``rnnkit.config``), run in this process for a few steps at tiny sizes. Each run must finish,
write its ``best`` and ``last`` checkpoints and a finite loss; where the registry or a task's
rule says the cell does not fit the task (``--task frames`` runs a ConvLSTM: ``--cell lstm``
only), ``rnnkit train`` must say so in one line naming the cell, exit 2 and leave no run behind.
Behaviour, not quality: the tasks' own tests and benchmarks/tasks.py measure what they learn.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from rnnkit.cli import build_parser, main
from rnnkit.commands.args import config_flags
from rnnkit.config import fresh_config
from rnnkit.nn import registry
from rnnkit.nn.base import RecurrentLayer
from rnnkit.tasks import TASK_NAMES
from rnnkit.tasks.saved import load_task
from rnnkit.trainer.loop import train

CELLS = registry.names()

#: tiny sizes for every run: a few steps, one evaluation at the end
TINY = [
    *("--hidden", "8", "--embed", "8", "--layers", "1", "--batch-size", "4"),
    *("--max-steps", "8", "--eval-every", "8", "--log-every", "1", "--sample-every", "0"),
    *("--max-time", "0", "--warmup", "0", "--lr", "0.01"),
]

#: what each task reads: a synthetic generator where the task has one, else a tiny file written
#: by the ``data`` fixture (``{data}``); the task's own preset (lm: ``tiny``) sets the rest
TASKS = {
    "lm": "{data}/text.txt --preset tiny --seq-len 8 --eval-batches 2",
    "classify": "{data}/names",
    "tag": "{data}/tags.conllu --char-hidden 4",
    "generate-from": "{data}/names --max-len 8",
    "seq2seq": "--synthetic reverse --synthetic-size 40 --max-len 12",
    "forecast": "--synthetic sine --synthetic-size 200 --window 8 --horizon 2",
    "frames": "--synthetic-size 12 --frame-size 6 --frames 3 --hidden 2",
}

#: (cell, task) pairs a rule refuses, and the one line that says why
REFUSED = {
    (cell, "frames"): f"--task frames runs a ConvLSTM: --cell must be lstm, got {cell}"
    for cell in CELLS
    if cell != "lstm"
}

NAMES = {
    "Italian": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano"],
    "Japanese": ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito"],
    "Russian": ["Ivanov", "Smirnov", "Kuznetsov", "Popov", "Sokolov", "Lebedev"],
}


def test_every_task_has_a_tiny_run():
    assert set(TASKS) == set(TASK_NAMES)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "text.txt").write_text("to be or not to be, that is the question.\n" * 20)
    (root / "names").mkdir()
    for label, words in NAMES.items():
        (root / "names" / f"{label}.txt").write_text("\n".join(words * 2) + "\n")
    sentences = [
        [("the", "DET"), ("cat", "NOUN"), ("sat", "VERB"), (".", "PUNCT")],
        [("a", "DET"), ("dog", "NOUN"), ("ran", "VERB"), ("home", "ADV"), (".", "PUNCT")],
    ] * 8
    blocks = [
        "\n".join(f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\t_\t_\t_" for i, (w, t) in enumerate(words, 1))
        for words in sentences
    ]
    (root / "tags.conllu").write_text("\n\n".join(blocks) + "\n\n")
    return root


def argv(task: str, cell: str, data: Path, out: Path) -> list[str]:
    extra = [word.format(data=data) for word in TASKS[task].split()]
    return ["train", "--task", task, "--cell", cell, *TINY, *extra, "--out", str(out)]


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_trains_through_every_task(cell, task, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = argv(task, cell, data, out)
    if (cell, task) in REFUSED:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err == f"rnnkit: error: {REFUSED[cell, task]}\n"
        assert not out.exists()
        return
    parsed = build_parser().parse_args(args)
    config = fresh_config(config_flags(parsed), parsed.preset, parsed.config)  # as `train` does
    assert (config.task.name, config.model.cell) == (task, cell)
    lines: list[str] = []
    result = train(config, log=lines.append)
    assert result.stopped == "max_steps" and result.step == 8, lines
    assert {"best", "last", "metrics.csv"} <= {p.name for p in out.iterdir()}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    losses = [float(r["loss"]) for r in rows if r["kind"] == "train"]
    assert len(losses) == 8 and all(map(math.isfinite, losses)), rows
    assert math.isfinite(result.best_val) and math.isfinite(result.last_val)
    if task == "lm":  # a repeated sentence: 8 steps at lr 0.01 lower the loss for every cell
        assert sum(losses[-3:]) < sum(losses[:3]), losses
    _, model, saved = load_task(out / "last")  # the checkpoint loads back into the same model
    assert (saved.task.name, saved.model.cell) == (task, cell)
    layers = [m for m in model.modules() if isinstance(m, RecurrentLayer)]
    assert task == "frames" or (layers and all(m.cell == cell for m in layers)), layers
