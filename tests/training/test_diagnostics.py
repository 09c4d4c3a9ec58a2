"""``--diagnostics``: gradient- and update-to-data ratios per parameter, checked against what
the optimiser must have done, and kept exact across a resume."""

from __future__ import annotations

import math

import pytest
import torch
from test_loop import config_for, make_corpus

from rnnkit.trainer.loop import train
from rnnkit.training.diagnostics import ParameterRatios, plot_ratios, read_ratios


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus.txt", n_words=2000)


def by_step(rows):
    table: dict[int, dict[str, dict]] = {}
    for row in rows:
        table.setdefault(int(row["step"]), {})[row["parameter"]] = row
    return table


def test_sgd_update_is_lr_times_gradient(tmp_path, corpus):
    """Plain SGD moves w by lr * g, so update/data must equal lr * grad/data for every
    parameter (clipping off: the gradient the ratio sees is the one applied)."""
    lr = 0.05
    config = config_for(
        tmp_path, corpus, optimizer="sgd", momentum=0.0, lr=lr, clip_norm=0.0, max_steps=12,
        log_every=4, diagnostics=True,
    )  # fmt: skip
    train(config, log=lambda *_: None)
    run = tmp_path / "run"
    rows = read_ratios(run / "diagnostics.csv")
    table = by_step(rows)
    assert sorted(table) == [4, 8, 12]
    model_names = {"embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l1", "head.bias"}
    for step, params in table.items():
        assert model_names <= set(params), step
        for name, row in params.items():
            grad, update = float(row["grad_to_data"]), float(row["update_to_data"])
            if math.isnan(grad):  # an all-zero tensor has no ratio
                continue
            # float32 weights: w_after - w_before loses ~1e-7 * |w| to rounding
            assert update == pytest.approx(lr * grad, rel=5e-3), (step, name)
    assert (run / "diagnostics.png").stat().st_size > 5000


def test_ratios_match_a_hand_step(tmp_path):
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]]))  # norm 5
        model.bias.zero_()
    model.weight.grad = torch.full((2, 3), 0.5)  # norm sqrt(6 * 0.25)
    model.bias.grad = torch.ones(2)
    ratios = ParameterRatios(tmp_path / "d.csv")
    ratios.before_update(model)
    with torch.no_grad():
        model.weight.add_(torch.tensor([[0.0, 0.3, 0.4], [0.0, 0.0, 0.0]]))  # moved by 0.5
        model.bias.add_(1.0)
    rows = {r["parameter"]: r for r in ratios.after_update(model, 7)}
    assert rows["weight"]["grad_to_data"] == pytest.approx(math.sqrt(1.5) / 5)
    assert rows["weight"]["update_to_data"] == pytest.approx(0.5 / 5)
    assert math.isnan(rows["bias"]["grad_to_data"])  # zero weights: no ratio
    assert [r["parameter"] for r in read_ratios(tmp_path / "d.csv")] == ["weight", "bias"]


def test_resume_keeps_the_rows_of_an_uninterrupted_run(tmp_path, corpus):
    whole = config_for(tmp_path, corpus, out="whole", max_steps=8, log_every=2, diagnostics=True)
    train(whole, log=lambda *_: None)
    first = config_for(tmp_path, corpus, out="split", max_steps=4, log_every=2, diagnostics=True)
    train(first, log=lambda *_: None)
    # a row from the future (a crash after logging, before the checkpoint) must be dropped
    with open(tmp_path / "split" / "diagnostics.csv", "a") as f:
        f.write("6,head.bias,9,9\n")
    again = config_for(tmp_path, corpus, out="split")
    train(again, resume=True, overrides={"train": {"max_steps": 8}}, log=lambda *_: None)
    a = read_ratios(tmp_path / "whole" / "diagnostics.csv")
    b = read_ratios(tmp_path / "split" / "diagnostics.csv")
    assert [(r["step"], r["parameter"]) for r in a] == [(r["step"], r["parameter"]) for r in b]
    for x, y in zip(a, b, strict=True):
        assert float(x["update_to_data"]) == pytest.approx(float(y["update_to_data"]), rel=1e-5)


def test_plot_skips_missing_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "step,parameter,grad_to_data,update_to_data\n1,w,0.01,0.001\n1,b,nan,nan\n2,w,0.02,0.002\n"
    )
    plot_ratios(path, tmp_path / "d.png", "title")
    assert (tmp_path / "d.png").stat().st_size > 5000
