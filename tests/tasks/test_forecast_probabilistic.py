"""--task forecast, probabilistic: the likelihood heads against torch.distributions and hand
formulas, CRPS from samples against the Gaussian closed form, MASE/sMAPE/coverage by hand,
sampled paths whose intervals cover what they claim, and training that lowers each loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fitting import fit

from rnnkit.config import RunConfig
from rnnkit.models.forecaster import Forecaster
from rnnkit.models.likelihoods import MIN_SCALE, make_likelihood, pinball
from rnnkit.tasks.forecast import ForecastTask
from rnnkit.tasks.forecast_eval import (
    coverage,
    crps_from_samples,
    mase,
    mase_scale,
    quantile_loss,
    smape,
)


def write_csv(tmp_path, values, name="s.csv"):
    rows = ["y"] + [f"{v:.17g}" for v in values]
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def make_config(paths, **task):
    config = RunConfig()
    config.task.name = "forecast"
    config.data.paths = list(paths)
    config.data.val_fraction = config.data.test_fraction = 0.2
    config.model.embed, config.model.hidden, config.model.layers = 8, 16, 1
    config.train.batch_size, config.train.seed = 16, 3
    config.task.options.update(window=8, horizon=4, **task)
    return config


# ---- the heads -----------------------------------------------------------------------------


def test_gaussian_nll_is_the_hand_formula():
    lik = make_likelihood("gaussian")
    raw = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    last = torch.randn(3, 5, 2, dtype=torch.float64)
    y = torch.randn(3, 5, 2, dtype=torch.float64)
    params = lik.constrain(raw, last)
    mu, sigma = last + raw[..., 0], torch.log1p(torch.exp(raw[..., 1])) + MIN_SCALE
    torch.testing.assert_close(params[..., 0], mu)
    torch.testing.assert_close(params[..., 1], sigma)
    hand = 0.5 * ((y - mu) / sigma) ** 2 + torch.log(sigma) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(lik.loss(params, y), hand)
    torch.testing.assert_close(lik.point(params), mu)


def test_studentt_nll_is_the_hand_formula_and_df_above_two():
    lik = make_likelihood("studentt")
    raw = torch.randn(4, 3, 1, 3, dtype=torch.float64) * 3
    raw[0, 0, 0, 2] = -50.0  # softplus -> 0: df stays above 2
    last, y = torch.randn(4, 3, 1, dtype=torch.float64), torch.randn(4, 3, 1, dtype=torch.float64)
    params = lik.constrain(raw, last)
    mu, s, nu = params.unbind(-1)
    assert (nu > 2).all() and (s > 0).all()
    z = (y - mu) / s
    log_pdf = (
        torch.lgamma((nu + 1) / 2)
        - torch.lgamma(nu / 2)
        - 0.5 * torch.log(nu * math.pi)
        - torch.log(s)
        - (nu + 1) / 2 * torch.log1p(z**2 / nu)
    )
    torch.testing.assert_close(lik.loss(params, y), -log_pdf)


def test_quantile_loss_is_the_pinball_loss_by_hand():
    lik = make_likelihood("quantile", quantiles=(0.1, 0.5, 0.9))
    q = torch.tensor([[[[1.0, 2.0, 3.0]]]], dtype=torch.float64)  # (1, 1, 1, 3)
    y = torch.tensor([[[2.5]]], dtype=torch.float64)
    # y - q = 1.5, 0.5, -0.5 -> 0.1*1.5, 0.5*0.5, (0.9-1)*(-0.5) = 0.15, 0.25, 0.05
    torch.testing.assert_close(lik.loss(q, y), torch.tensor([[[0.15]]], dtype=torch.float64))
    assert lik.point(q).item() == 2.0
    tau = torch.tensor([0.25])
    assert pinball(torch.tensor([[0.0]]), torch.tensor([-4.0]), tau).item() == 3.0
    np.testing.assert_allclose(
        quantile_loss(np.array([1.0, 2.0, 3.0]), np.array(2.5), np.array([0.1, 0.5, 0.9])), 0.15
    )


# ---- metrics -------------------------------------------------------------------------------


def gaussian_crps(mu, sigma, y):
    """The closed form (Gneiting and Raftery 2007):
    sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mu) / sigma."""
    z = (y - mu) / sigma
    phi = math.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return sigma * (z * (2 * Phi - 1) + 2 * phi - 1 / math.sqrt(math.pi))


@pytest.mark.parametrize(("mu", "sigma", "y"), [(0.0, 1.0, 0.3), (2.0, 0.5, -1.0), (1, 3, 1)])
def test_crps_from_samples_matches_the_gaussian_closed_form(mu, sigma, y):
    rng = np.random.default_rng(0)
    draws = rng.normal(mu, sigma, size=(50, 2000))  # 50 independent estimates
    estimates = crps_from_samples(draws, np.full(50, y))
    error = estimates.std() / math.sqrt(50)
    assert abs(estimates.mean() - gaussian_crps(mu, sigma, y)) < 4 * error + 1e-3 * sigma


def test_crps_pair_term_equals_brute_force():
    x = np.random.default_rng(1).normal(size=(3, 7))
    y = np.array([0.1, -2.0, 5.0])
    brute = np.abs(x - y[:, None]).mean(1) - 0.5 * np.abs(x[:, :, None] - x[:, None, :]).mean(
        (1, 2)
    )
    np.testing.assert_allclose(crps_from_samples(x, y), brute, rtol=1e-12)
    assert crps_from_samples(np.full((1, 4), 2.0), np.array([5.0]))[0] == 3.0  # a point: |f - y|


def test_mase_smape_coverage_by_hand():
    history = np.array([[1.0], [3.0], [2.0], [6.0]])  # season 1: |2| |1| |4| -> 7/3
    np.testing.assert_allclose(mase_scale(history, 0), [7 / 3])
    np.testing.assert_allclose(mase_scale(history, 2), [(1 + 3) / 2])  # |2-1|, |6-3|
    f, y = np.array([[[1.0], [4.0]]]), np.array([[[2.0], [2.0]]])  # errors 1, 2
    np.testing.assert_allclose(mase(f, y, np.array([[2.0]])), [0.75])
    # 200 * 1 / 3 and 200 * 2 / 6, averaged; a 0/0 term counts 0
    np.testing.assert_allclose(smape(f, y), [(200 / 3 + 200 / 3) / 2])
    np.testing.assert_allclose(smape(np.zeros((1, 2, 1)), np.array([[[0.0], [1.0]]])), [100.0])
    lower, upper = np.array([0.0, 0, 0, 0]), np.array([1.0, 1, 1, 1])
    assert coverage(lower, upper, np.array([0.0, 1.0, 1.5, -0.1])) == 0.5


# ---- sampled paths -------------------------------------------------------------------------


def random_walk_widths(tmp_path, likelihood: str, samples: int, head_bias):
    """A random walk y_t = y_{t-1} + N(0, 1) in ``all.csv``, a task on it and the model whose
    head is ``head_bias(s)`` alone (s: the noise in normalised units; location = the last
    value): its 6-step interval widths in original units, averaged over 100 origins."""
    series = np.cumsum(np.random.default_rng(5).normal(0, 1.0, size=1200))
    config = make_config([write_csv(tmp_path, series)], likelihood=likelihood,
                         num_samples=samples)  # fmt: skip
    config.data.val_fraction, config.data.test_fraction = 0.1, 0.0
    task = ForecastTask(config)
    task.prepare()
    model = task.build_model()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias[:] = torch.tensor(head_bias(1.0 / task.normaliser.std[0]))
    path = write_csv(tmp_path, series, "all.csv")
    blocks = task.block([(task.read([path])[0], slice(None), task.normaliser)])
    run = task.run_windows(model, blocks, np.arange(0, 1000, 10), 6)
    return task, model, (run["upper"] - run["lower"])[:, :, 0].mean(axis=0)


def test_sampled_paths_of_the_true_random_walk_model_cover_their_interval(tmp_path):
    """A random walk y_t = y_{t-1} + N(0, s^2) and the model that IS its law (head weights 0,
    location = the last value, scale = s): multi-step paths must spread like sqrt(h) s, so the
    80% interval covers about 80% at every step; feeding back the median would not."""
    task, model, width = random_walk_widths(
        tmp_path, "gaussian", 200, lambda s: [0.0, math.log(math.expm1(s - MIN_SCALE))]
    )
    figures = task.backtest(model, [str(tmp_path / "all.csv")], 6, 150)
    assert 0.76 < figures["coverage"] < 0.84, figures
    assert figures["interval"] == 0.8
    expected = 2 * 1.2816 * np.sqrt(np.arange(1, 7))  # the 80% interval of N(0, h)
    np.testing.assert_allclose(width, expected, rtol=0.1)


def piecewise_linear_law(q: np.ndarray, tau: np.ndarray, u: np.ndarray) -> np.ndarray:
    """An independent inverse CDF: np.interp through (tau_j, q_j), the end segments' lines
    carried to u = 0 and 1."""
    ends = [q[0] - tau[0] * (q[1] - q[0]) / (tau[1] - tau[0]),
            q[-1] + (1 - tau[-1]) * (q[-1] - q[-2]) / (tau[-1] - tau[-2])]  # fmt: skip
    return np.interp(u, [0.0, *tau, 1.0], [ends[0], *q, ends[1]])


def test_quantile_draws_follow_the_piecewise_linear_quantile_function():
    lik = make_likelihood("quantile", quantiles=(0.1, 0.5, 0.9))
    q = np.array([-1.0, 0.0, 2.0])
    params = torch.tensor(q).expand(400_000, 1, 1, 3)
    torch.manual_seed(0)
    draws = lik.sample(params).flatten().numpy()
    crossed = lik.sample(params.flip(-1)).flatten().numpy()  # crossing quantiles: sorted first
    u = np.array([0.02, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
    tau = np.array([0.1, 0.5, 0.9])
    expected = piecewise_linear_law(q, tau, u)
    np.testing.assert_allclose(np.quantile(draws, u), expected, atol=0.01)
    np.testing.assert_allclose(np.quantile(crossed, u), expected, atol=0.01)
    assert draws.min() >= -1.25 - 1e-12 and draws.max() <= 2.5 + 1e-12  # bounded tails
    alone = make_likelihood("quantile", quantiles=(0.5,))
    assert (alone.sample(torch.full((5, 1, 1, 1), 3.0)) == 3.0).all()


def test_quantile_paths_widen_with_the_horizon(tmp_path):
    """The random-walk check for --likelihood quantile: a head that predicts the step's 10/50/90%
    quantiles exactly samples paths whose interval grows with the horizon as the sum of its
    piecewise-linear draws does (NumPy, independently), not the one-step width at every step."""
    task, model, width = random_walk_widths(
        tmp_path, "quantile", 400, lambda s: [-1.2816 * s, 0.0, 1.2816 * s]
    )
    tau, q = np.array([0.1, 0.5, 0.9]), np.array([-1.2816, 0.0, 1.2816])
    u = np.random.default_rng(0).random((100_000, 6))
    steps = piecewise_linear_law(q, tau, u).cumsum(axis=1)
    expected = np.diff(np.quantile(steps, [0.1, 0.9], axis=0), axis=0)[0]
    np.testing.assert_allclose(width, expected, rtol=0.08)
    assert width[-1] > 2 * width[0]  # the median fed back would give width[-1] == width[0]
    figures = task.backtest(model, [str(tmp_path / "all.csv")], 6, 150)
    assert 0.72 < figures["coverage"] < 0.84, figures
    assert figures["quantile_loss"] > 0


def test_paths_are_seeded_and_follow_forward():
    config = make_config([])
    config.model.embed, config.model.hidden = 4, 6
    torch.manual_seed(0)
    model = Forecaster(config.model, 2, inputs=1, likelihood=make_likelihood("studentt")).eval()
    x, z = torch.randn(3, 5, 2), torch.randn(3, 5 + 4 - 1, 1)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.sample_paths(x, 4, 7, z)
        torch.manual_seed(1)
        b = model.sample_paths(x, 4, 7, z)
        median = model.forecast(x, 4, z)
        assert model.forecast_params(x, 4, z).shape == (3, 4, 2, 3)
        fed = torch.cat([x, median[:, :-1]], dim=1)
        again = model(fed, z)[:, 4:]
    assert a.shape == (3, 7, 4, 2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(median, again, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="z must be"):
        model(x)


@pytest.mark.parametrize("likelihood", ["gaussian", "studentt", "quantile"])
def test_training_lowers_each_loss(tmp_path, likelihood):
    t = np.arange(300)
    noise = np.random.default_rng(0).normal(0, 0.2, size=300)
    path = write_csv(tmp_path, np.sin(2 * np.pi * t / 20) + noise)
    torch.manual_seed(0)
    task = ForecastTask(make_config([path], likelihood=likelihood, num_samples=20))
    task.prepare()
    model = task.build_model()
    before = task.evaluate(model, "val")
    outputs = fit(task, model, 60, 0.01, clip=5.0)
    after = task.evaluate(model, "val")
    assert outputs[-1].loss.item() < outputs[0].loss.item()
    assert after["loss"] < before["loss"], (before, after)
    key = "quantile_loss" if likelihood == "quantile" else "crps"
    assert after[key] < before[key] and 0 <= after["coverage"] <= 1


def test_center_makes_forecasts_follow_the_level(tmp_path):
    """--center: the model reads each window minus its last value, so a series moved up by a
    constant gets the same forecasts moved up by it (paths, median, interval); training on a
    stretch uses only the window's value, never the horizon's."""
    from rnnkit.data.panel import Series

    t = np.arange(200)
    values = np.sin(2 * np.pi * t / 12) + 0.01 * t
    config = make_config([write_csv(tmp_path, values)], likelihood="gaussian", center=True)
    task = ForecastTask(config)
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model()
    runs = []
    for shift in (0.0, 25.0):
        series = Series("", (values + shift)[:, None], np.zeros((200, 0)))
        block = task.block([(series, slice(None), task.normaliser)])
        runs.append(task.run_windows(model, block, np.array([0, 50, 150]), 6, 64))
    for key in ("forecast", "lower", "upper"):
        np.testing.assert_allclose(runs[1][key], runs[0][key] + 25.0, atol=1e-4)
    np.testing.assert_allclose(runs[1]["loss"], runs[0]["loss"], rtol=1e-4, atol=1e-5)
    y, z = task.train_batch(0, 0)
    poisoned = y.clone()
    poisoned[:, task.window :] += 100.0  # the horizon: the loss changes, the reference not
    torch.testing.assert_close(task._reference(poisoned), task._reference(y))
