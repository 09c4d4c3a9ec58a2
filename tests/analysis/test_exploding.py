"""The exploding-gradient experiment: shared start across modes, the clipping bounds, an
independent recomputation of the logged norms, the spikes of the unclipped run, the figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.analysis.exploding import (
    ExplodingRun,
    exploding_experiment,
    exploding_model,
    spikiness,
)
from rnnkit.analysis.memory import adding_problem
from rnnkit.errors import UserError

FAST = {"steps": 120}  # the default setting, 120 steps (~0.5 s for the three modes)


@pytest.fixture(scope="module")
def runs() -> dict[str, ExplodingRun]:
    return exploding_experiment(**FAST)


def test_every_mode_logs_every_step(runs):
    assert list(runs) == ["off", "norm", "value"]
    for mode, run in runs.items():
        assert run.mode == mode
        for series in (run.norms, run.post_norms, run.post_max, run.losses):
            assert series.shape == (FAST["steps"],)
    assert runs["off"].threshold is None
    assert runs["norm"].threshold == 1.0 and runs["value"].threshold == 0.1


def test_first_step_is_identical_across_modes(runs):
    first = {mode: (run.norms[0], run.losses[0]) for mode, run in runs.items()}
    assert first["off"] == first["norm"] == first["value"]
    assert runs["norm"].norms[1] != runs["off"].norms[1]  # clipping changed the first update


def test_the_logged_first_norm_is_the_gradient_norm_computed_by_hand():
    model = exploding_model(hidden=32, gain=2.0, seed=0)
    model.double()
    inputs, targets, _ = adding_problem(32, 10, torch.Generator().manual_seed(0))
    out = model(inputs.double()).squeeze(-1)
    loss = ((out - targets.double()) ** 2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    by_hand = torch.sqrt(sum((g**2).sum() for g in grads)).item()
    run = exploding_experiment(steps=1, modes=("off",))["off"]
    assert run.norms[0] == pytest.approx(by_hand, rel=1e-4)
    assert run.losses[0] == pytest.approx(loss.item(), rel=1e-5)


def test_the_recurrent_matrix_starts_with_spectral_radius_gain():
    weight = exploding_model(hidden=16, gain=2.5, seed=3).rnn.weight_hh_l0.detach().double()
    radius = torch.linalg.eigvals(weight).abs().max().item()
    assert radius == pytest.approx(2.5, rel=1e-6)  # orthogonal x gain: every |eigenvalue| = gain


def test_clipped_updates_respect_their_bounds(runs):
    norm, value = runs["norm"], runs["value"]
    assert np.isfinite(norm.losses).all() and np.isfinite(value.losses).all()
    assert (norm.post_norms <= 1.0 + 1e-5).all()
    assert (norm.norms > 1.0).any()  # the bound was active somewhere
    clipped = norm.norms > 1.0
    assert np.allclose(norm.post_norms[clipped], 1.0, rtol=1e-5)
    assert np.allclose(norm.post_norms[~clipped], norm.norms[~clipped], rtol=1e-5)
    assert (value.post_max <= 0.1 + 1e-7).all()
    assert np.isclose(value.post_max, 0.1).mean() > 0.5  # mostly active
    off = runs["off"]
    steps = np.isfinite(off.norms)
    assert np.allclose(off.post_norms[steps], off.norms[steps])  # off: nothing changed


def test_without_clipping_the_norm_spikes_and_the_run_diverges(runs):
    off, norm = runs["off"], runs["norm"]
    assert spikiness(off) > 1e3
    assert np.nanmax(off.norms) > 1e3 * np.median(norm.norms)
    assert off.diverged_at is not None and np.isnan(off.losses[off.diverged_at :]).all()
    assert norm.diverged_at is None and runs["value"].diverged_at is None


def test_clipped_runs_learn_below_the_trivial_baseline():
    finished = []
    runs = exploding_experiment(steps=400, modes=("norm", "value"), progress=finished.append)
    assert [run.mode for run in finished] == ["norm", "value"]
    for run in runs.values():
        assert run.losses[-100:].mean() < 1 / 6 - 0.01  # predicting 1.0 scores 1/6


@pytest.mark.parametrize(
    "bad",
    [{"modes": ("off", "clip")}, {"modes": ()}, {"steps": 0}, {"T": 0}, {"hidden": 2.5},
     {"gain": float("nan")}, {"lr": -0.1}, {"max_value": 0.0}, {"batch": True}],
)  # fmt: skip
def test_bad_arguments_are_user_errors(bad):
    with pytest.raises(UserError):
        exploding_experiment(**bad)


def test_plot_exploding_writes_a_png(runs, tmp_path):
    from rnnkit.analysis.experiment_plots import plot_exploding

    path = plot_exploding(runs, tmp_path / "exploding.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_spikiness_of_a_flat_trace_is_one():
    flat = np.ones(5)
    run = ExplodingRun("off", None, flat, flat, flat, flat)
    assert spikiness(run) == 1.0


def test_summarize_reports_what_the_runs_hold():
    from rnnkit.analysis.exploding import summarize

    norms = np.array([1.0, 2.0, 100.0, np.inf])
    losses = np.array([0.5, 0.4, 0.3, np.nan])
    run = ExplodingRun("off", None, norms, norms, norms, losses)
    s = summarize({"off": run})["off"]
    assert s["norm_median"] == 2.0 and s["norm_max"] == 100.0 and s["spikiness"] == 50.0
    assert s["diverged_at"] == 3 and s["final_loss"] == 0.3 and s["steps"] == 4
