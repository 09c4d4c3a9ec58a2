"""The memory experiment: task generators against hand-computed properties and closed forms,
parameter budgets against real modules, training determinism and success, the grid, the table,
the figure and the benchmark script."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.analysis.memory import (
    CELLS,
    COPY_ALPHABET,
    COPY_SYMBOLS,
    MemoryModel,
    MemoryResult,
    Trial,
    adding_problem,
    copy_task,
    format_table,
    hidden_for_budget,
    memory_experiment,
    parameter_count,
    run_trial,
    task_loss,
    task_sizes,
)
from rnnkit.errors import UserError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- generators ------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [2, 7, 50])
def test_adding_problem_has_two_markers_one_per_half_and_sums_them(T):
    inputs, targets, _ = adding_problem(64, T, gen(T))
    assert inputs.shape == (64, T, 2) and inputs.dtype == torch.float32
    assert targets.shape == (64,)
    x = inputs.numpy().astype(np.float64)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = T // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    for row in range(64):
        first, second = np.flatnonzero(markers[row])
        assert targets[row].item() == pytest.approx(values[row, first] + values[row, second])


@pytest.mark.parametrize("T", [4, 9, 40])
def test_copy_task_shows_the_symbols_then_blanks_then_the_recall_flag(T):
    inputs, targets, _ = copy_task(32, T, gen(T))
    A, S = COPY_ALPHABET, COPY_SYMBOLS
    assert inputs.shape == (32, T, A + 1) and targets.shape == (32, S)
    assert targets.dtype == torch.int64 and targets.min() >= 0 and targets.max() < A
    shown = inputs[:, :S, :A]
    assert (shown.sum(-1) == 1).all() and torch.equal(shown.argmax(-1), targets)
    assert (inputs[:, :S, A] == 0).all()
    assert (inputs[:, S : T - 1] == 0).all()  # blanks
    last = torch.zeros(A + 1)
    last[A] = 1.0
    assert (inputs[:, -1] == last).all()


def test_generators_are_pure_functions_of_the_generator():
    a, b = adding_problem(8, 20, gen(3)), adding_problem(8, 20, gen(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, adding_problem(8, 20, gen(4)).inputs)
    c, d = copy_task(8, 20, gen(3)), copy_task(8, 20, gen(3))
    assert torch.equal(c.inputs, d.inputs) and torch.equal(c.targets, d.targets)


def test_adding_baseline_is_the_mse_of_predicting_one_and_about_a_sixth():
    batch = adding_problem(20000, 30, gen(1))
    predict_one = task_loss("adding", torch.ones(20000, 1), batch.targets)
    assert batch.baseline == pytest.approx(float(predict_one), rel=1e-5)
    # Var(U1 + U2) = 1/6; sd of (s - 1)^2 is sqrt(7/180) ~ 0.197, so the standard error is 0.0014
    assert abs(batch.baseline - 1 / 6) < 0.006


def test_copy_baseline_is_the_best_input_free_guess_and_about_ln_alphabet():
    batch = copy_task(20000, 12, gen(2))
    targets = batch.targets.numpy()
    entropy = 0.0  # hand-computed plug-in entropy per position
    for s in range(COPY_SYMBOLS):
        p = np.bincount(targets[:, s], minlength=COPY_ALPHABET) / len(targets)
        entropy += -(p[p > 0] * np.log(p[p > 0])).sum() / COPY_SYMBOLS
    assert batch.baseline == pytest.approx(entropy, rel=1e-9)
    frequencies = torch.stack(
        [torch.bincount(batch.targets[:, s], minlength=COPY_ALPHABET) for s in range(3)]
    ).double() / len(targets)  # (S, A): the logits of the best constant guess are log p
    logits = frequencies.log().float().reshape(1, -1).expand(len(targets), -1)
    assert float(task_loss("copy", logits, batch.targets)) == pytest.approx(entropy, rel=1e-4)
    assert abs(batch.baseline - math.log(COPY_ALPHABET)) < 0.01
    assert batch.baseline <= math.log(COPY_ALPHABET)


def test_generators_reject_impossible_lengths():
    with pytest.raises(UserError, match="T must be"):
        adding_problem(4, 1, gen())
    with pytest.raises(UserError, match="T must be"):
        copy_task(4, COPY_SYMBOLS, gen())


# ---- parameter budget ------------------------------------------------------------------------
def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("task", ["adding", "copy"])
@pytest.mark.parametrize("budget", [500, 4321, 5000])
def test_hidden_for_budget_is_the_largest_size_within_the_budget(cell, task, budget):
    inputs, outputs = task_sizes(task)
    hidden = hidden_for_budget(cell, inputs, outputs, budget)
    fits = MemoryModel(cell, inputs, outputs, hidden)
    too_big = MemoryModel(cell, inputs, outputs, hidden + 1)
    assert count(fits) == parameter_count(cell, inputs, outputs, hidden) <= budget
    assert count(too_big) == parameter_count(cell, inputs, outputs, hidden + 1) > budget


def test_hidden_for_budget_rejects_a_budget_below_one_unit_and_unknown_cells():
    with pytest.raises(UserError, match="budget"):
        hidden_for_budget("lstm", 2, 1, 10)
    with pytest.raises(UserError, match="cell"):
        hidden_for_budget("transformer", 2, 1, 1000)


# ---- trials ----------------------------------------------------------------------------------
def test_run_trial_is_deterministic_in_its_seed():
    tiny = {"steps": 15, "budget": 400, "batch": 8}
    a = run_trial("copy", "gru", 6, 0, **tiny)
    b = run_trial("copy", "gru", 6, 0, **tiny)
    c = run_trial("copy", "gru", 6, 1, **tiny)
    assert a._replace(seconds=0) == b._replace(seconds=0)
    assert a.loss != c.loss
    assert a.params == count(MemoryModel("gru", *task_sizes("copy"), a.hidden)) <= 400


def test_an_lstm_learns_the_adding_problem_at_T5_and_stops_once_solved():
    trial = run_trial("adding", "lstm", 5, 0, steps=1000)
    assert trial.success and trial.ratio < 0.1
    assert trial.steps_run < 1000 and trial.steps_run % 100 == 0  # stopped at a check
    assert trial.ratio == pytest.approx(trial.loss / trial.baseline)


def test_success_follows_the_margin_rule():
    kwargs = {"steps": 40, "budget": 600, "batch": 16, "stop_early": False}
    trial = run_trial("adding", "rnn", 8, 0, **kwargs)
    assert trial.ratio == pytest.approx(trial.loss / trial.baseline)
    above = run_trial("adding", "rnn", 8, 0, margin=trial.ratio * 1.01, **kwargs)
    below = run_trial("adding", "rnn", 8, 0, margin=trial.ratio * 0.99, **kwargs)
    assert above.loss == below.loss == trial.loss
    assert above.success and not below.success


# ---- the grid --------------------------------------------------------------------------------
TINY = {"steps": 10, "budget": 300, "batch": 8}


def test_memory_experiment_runs_every_trial_and_tabulates_them():
    seen = []
    result = memory_experiment(lengths=(6, 4), seeds=2, progress=seen.append, **TINY)
    assert len(result.trials) == len(seen) == 2 * 3 * 2 * 2
    keys = [(t.task, t.cell, t.T, t.seed) for t in result.trials]
    assert sorted(keys) == sorted(
        (task, cell, T, s)
        for task in ("adding", "copy")
        for cell in CELLS
        for T in (4, 6)
        for s in (0, 1)
    )
    for task, cell, T in [("adding", "rnn", 4), ("copy", "gru", 6)]:
        chosen = [t for t in result.trials if (t.task, t.cell, t.T) == (task, cell, T)]
        assert result.success_rate(task, cell, T) == sum(t.success for t in chosen) / 2
    table = format_table(result)
    for fragment in ("adding", "copy", *CELLS, "T=4", "T=6", "/2 "):
        assert fragment in table
    assert table.index("T=4") < table.index("T=6")
    encoded = json.loads(json.dumps(result.to_json()))
    assert len(encoded["trials"]) == 24 and encoded["settings"]["steps"] == 10


def test_worker_processes_give_the_same_trials_as_one_process():
    grid = {"tasks": ("adding",), "cells": ("lstm", "rnn"), "lengths": (5,), "seeds": 2}
    alone = memory_experiment(**grid, workers=1, **TINY)
    pooled = memory_experiment(**grid, workers=2, **TINY)
    assert [t._replace(seconds=0) for t in alone.trials] == [
        t._replace(seconds=0) for t in pooled.trials
    ]


@pytest.mark.parametrize(
    "bad", [{"tasks": ("nope",)}, {"cells": ("lstm", "tcn")}, {"lengths": (2,)}, {"seeds": 0}]
)
def test_memory_experiment_rejects_bad_grids(bad):
    with pytest.raises(UserError):
        memory_experiment(**{"lengths": (5,), "seeds": 1, **bad}, **TINY)


def test_plot_memory_writes_a_png(tmp_path):
    from rnnkit.analysis.experiment_plots import plot_memory

    result = memory_experiment(cells=("lstm",), lengths=(4, 8), seeds=1, **TINY)
    path = plot_memory(result, tmp_path / "memory.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


# ---- the benchmark script --------------------------------------------------------------------
def load_benchmark():
    path = Path(__file__).parents[2] / "benchmarks" / "memory_tasks.py"
    spec = importlib.util.spec_from_file_location("memory_tasks_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_prints_trials_and_the_table_or_one_json_object(capsys, tmp_path):
    main = load_benchmark().main
    tiny = [
        "--tasks",
        "copy",
        "--cells",
        "rnn",
        "lstm",
        "--lengths",
        "5",
        "--seeds",
        "1",
        "--steps",
        "5",
        "--budget",
        "300",
        "--workers",
        "1",
    ]
    main([*tiny, "--plot", str(tmp_path / "m.png")])
    out = capsys.readouterr().out
    assert "budget 300 params" in out and "T=5" in out and "copy   lstm T=5" in out
    assert (tmp_path / "m.png").stat().st_size > 0
    main([*tiny, "--json"])
    row = json.loads(capsys.readouterr().out)
    assert set(row["success_rate"]["copy"]) == {"rnn", "lstm"}
    assert row["settings"]["budget"] == 300 and len(row["trials"]) == 2


def test_plot_memory_keeps_equal_rates_of_many_cells_apart():
    """Four cells that all solve every T: four lines, none hidden under another, each within
    0.02 of the rate it draws."""
    from rnnkit.analysis.experiment_plots import plot_memory

    cells = ("lstm", "gru", "mlstm", "slstm")
    trials = [Trial("copy", c, T, 0, 8, 5000, 0.01, 2.0, 0.005, True, 100, 1.0)
              for c in cells for T in (10, 100)]  # fmt: skip
    fig = plot_memory(MemoryResult(trials, {}))
    lines = [line.get_ydata() for line in fig.axes[0].get_lines()]
    assert len(lines) == 4 and len({tuple(y) for y in lines}) == 4
    assert all(abs(y - 1.0).max() <= 0.02 + 1e-12 for y in lines)
