"""--task forecast: CSV series, contiguous splits, windows, the autoregressive forecaster, the
seasonal-naive baseline, a tiny training, meta round trip and predict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fitting import fit

from rnnkit.config import RunConfig
from rnnkit.data.series import (
    Normaliser,
    lorenz,
    make_windows,
    noisy_sines,
    read_series,
    split_series,
)
from rnnkit.errors import UserError
from rnnkit.models.forecaster import Forecaster
from rnnkit.tasks import get_task
from rnnkit.tasks.forecast import ForecastTask, seasonal_naive
from rnnkit.tasks.forecast_options import check_meta


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def series_csv(tmp_path, values, name="series.csv", names=("a", "b")):
    rows = ["date," + ",".join(names)]
    rows += [
        f"2024-01-{i + 1:02d}," + ",".join(f"{v:.17g}" for v in row) for i, row in enumerate(values)
    ]  # noqa: E501
    return write(tmp_path, name, "\n".join(rows) + "\n")


def make_config(paths=(), **task):
    config = RunConfig()
    config.task.name = "forecast"
    config.data.paths = list(paths)
    config.data.val_fraction = config.data.test_fraction = 0.2
    config.model.embed, config.model.hidden, config.model.layers = 8, 16, 1
    config.train.batch_size, config.train.seed = 16, 3
    config.task.options.update(window=8, horizon=4)
    for key, value in task.items():
        config.task.options[key] = value
    return config


# ---- CSV -----------------------------------------------------------------------------------


def test_read_series_skips_the_date_and_text_columns(tmp_path):
    path = write(tmp_path, "w.csv", "date,temp,city,rain\n2024-01-01,1.5,Oslo,0\n\n"
                 "2024-01-02, -2e1 ,Rome,3\n")  # fmt: skip
    names, values = read_series([path])
    assert names == ["temp", "rain"]
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [[1.5, 0.0], [-20.0, 3.0]])


def test_read_series_columns_in_order_and_files_concatenated(tmp_path):
    one = write(tmp_path, "1.csv", "t,x,y\n0,1,2\n1,3,4\n")
    two = write(tmp_path, "2.csv", "t,x,y\n2,5,6\n")
    names, values = read_series([one, two], ["y", "t"])
    assert names == ["y", "t"]
    np.testing.assert_array_equal(values, [[2, 0], [4, 1], [6, 2]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("a,b\n", "no data rows"),
        ("a,b\n1,2\n3\n", "w.csv:3: 1 cells, but the header has 2 columns"),
        ("a,b\n1,2\n3,4,5\n", "w.csv:3: 3 cells, but the header has 2 columns"),
        ("a,temp\n" + "1,2\n" * 15 + "1,abc\n", "w.csv:17: column 'temp': 'abc' is not a number"),
        ("a,temp\n1,2\n1,3\n1,\n", "w.csv:4: column 'temp': an empty cell is not a number"),
        ("a,b\n1,2\nnan,3\n", "w.csv:3: column 'a': 'nan' is not a finite number"),
        ("a,b\n1,2\n4,-inf\n", "w.csv:3: column 'b': '-inf' is not a finite number"),
        ("day,name\nmon,x\ntue,y\n", "w.csv: no numeric column (columns: day, name)"),
        ("a,a\n1,2\n", "w.csv:1: header repeats column name(s) ['a']"),
    ],
)
def test_read_series_errors_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "w.csv", text)
    with pytest.raises(UserError, match="w.csv") as error:
        read_series([path])
    assert message in str(error.value)


def test_read_series_file_errors(tmp_path):
    with pytest.raises(UserError, match="no such file or directory: .*missing.csv"):
        read_series([str(tmp_path / "missing.csv")])
    bad = write(tmp_path, "latin.csv", "a,b\n1,2\ncaf\xe9,3\n", encoding="latin-1")
    with pytest.raises(UserError, match=r"latin.csv:3: invalid UTF-8 at byte offset 11 \(0xe9\)"):
        read_series([bad])
    good = write(tmp_path, "g.csv", "date,temp,rain\nx,1,2\n")
    with pytest.raises(UserError, match=r"g.csv: no column 'wind' \(available: date, temp, rain\)"):
        read_series([good], ["temp", "wind"])
    with pytest.raises(UserError, match="needs CSV files"):
        read_series([])
    with pytest.raises(UserError, match="columns .* differ"):
        read_series([good, write(tmp_path, "h.csv", "date,temp\nx,1\n")])


# ---- synthetic series ----------------------------------------------------------------------


def test_lorenz_is_deterministic_bounded_and_chaotic():
    names, a = lorenz(3000, seed=1)
    assert names == ["x", "y", "z"] and a.shape == (3000, 3)
    np.testing.assert_array_equal(a, lorenz(3000, seed=1)[1])
    assert not np.allclose(a, lorenz(3000, seed=2)[1])
    # bounded on the attractor, never settling: x keeps switching wings
    assert np.abs(a[:, :2]).max() < 35 and 0 < a[:, 2].min() and a[:, 2].max() < 60
    assert (np.diff(np.sign(a[:, 0])) != 0).sum() >= 5
    # sensitive dependence: a 1e-9 change in the step grows to the attractor's size
    b = lorenz(3000, seed=1, dt=0.01 * (1 + 1e-9))[1]
    assert np.abs(a[:100] - b[:100]).max() < 1e-5
    assert np.abs(a[-500:] - b[-500:]).max() > 5


def test_noisy_sines_shape_and_determinism():
    names, values = noisy_sines(500, seed=4, channels=2)
    assert names == ["sine1", "sine2"] and values.shape == (500, 2)
    np.testing.assert_array_equal(values, noisy_sines(500, seed=4, channels=2)[1])
    assert 0.3 < values.std(axis=0).min() and np.abs(values).max() < 4


# ---- splits, normaliser, windows -----------------------------------------------------------


def test_split_is_contiguous_and_windows_stay_inside_each_part():
    values = np.arange(100.0)[:, None]
    train, val, test = split_series(values, 0.2, 0.1)
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    np.testing.assert_array_equal(np.concatenate([train, val, test]), values)
    starts = make_windows(val, window=6, horizon=3)
    np.testing.assert_array_equal(starts, np.arange(20 - 9 + 1))
    assert (starts + 9 <= len(val)).all()
    with pytest.raises(UserError) as error:
        make_windows(test, window=48, horizon=12, part="test")
    assert str(error.value).startswith(
        "--window 48 + --horizon 12 = 60 steps, longer than the 10-step test part of the series"
    )


def test_task_windows_never_straddle_parts(tmp_path):
    values = np.random.default_rng(0).normal(size=(100, 2))
    task = ForecastTask(make_config([series_csv(tmp_path, values)]))
    task.prepare()
    seen = []
    for part, block in task.blocks.items():
        raw = block.raw
        assert (task.starts[part] + 12 <= len(raw)).all()
        seen.append(raw)
    np.testing.assert_allclose(np.concatenate(seen), values)
    with pytest.raises(UserError, match="longer than the 20-step val part"):
        ForecastTask(make_config([series_csv(tmp_path, values)], window=15, horizon=6)).prepare()


def test_normaliser_is_fitted_on_the_training_part_only(tmp_path):
    values = np.random.default_rng(0).normal(size=(100, 2))
    changed = values.copy()
    changed[80:] = 1000 + 50 * changed[80:]  # the test part (last 20 steps)
    metas = []
    for name, v in (("one.csv", values), ("two.csv", changed)):
        task = ForecastTask(make_config([series_csv(tmp_path, v, name)]))
        task.prepare()
        metas.append(task.meta())
    assert metas[0] == metas[1]
    np.testing.assert_allclose(metas[0]["mean"], values[:60].mean(axis=0))
    norm = Normaliser.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(norm.std, [1.0, 1.0])  # constant column: std 1, not 0
    np.testing.assert_allclose(norm.inverse(norm.transform(values)), values)


# ---- baseline ------------------------------------------------------------------------------


def test_seasonal_naive_by_hand():
    history = np.arange(1.0, 7.0)[None, :, None]  # 1..6, t = 5 holds 6
    np.testing.assert_array_equal(seasonal_naive(history, 5, 0)[0, :, 0], [6, 6, 6, 6, 6])
    np.testing.assert_array_equal(seasonal_naive(history, 5, 1)[0, :, 0], [6, 6, 6, 6, 6])
    # season 3: y[t+h] = y[t+h-3*ceil(h/3)] -> 4 5 6 4 5
    np.testing.assert_array_equal(seasonal_naive(history, 5, 3)[0, :, 0], [4, 5, 6, 4, 5])
    with pytest.raises(UserError, match="--season 7 needs --window >= 7"):
        seasonal_naive(history, 5, 7)


def test_perfectly_periodic_series_has_zero_seasonal_baseline(tmp_path):
    t = np.arange(120)
    values = np.stack([np.sin(2 * np.pi * t / 6), (t % 6 == 0) * 1.0], axis=1)
    path = series_csv(tmp_path, values)
    torch.manual_seed(0)
    right = ForecastTask(make_config([path], season=6))
    right.prepare()
    model = right.build_model()
    assert right.evaluate(model, "test")["baseline_mae"] < 1e-12
    last = ForecastTask(make_config([path], season=0))
    last.prepare()
    metrics = last.evaluate(model, "test")
    assert metrics["baseline_mae"] > 0.3
    assert metrics["mae_vs_baseline"] == pytest.approx(metrics["mae"] / metrics["baseline_mae"])


# ---- model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forecast_equals_forward_on_its_own_predictions(cell):
    config = make_config().model
    config.cell, config.layers = cell, 2
    torch.manual_seed(0)
    model = Forecaster(config, channels=3).eval()
    x = torch.randn(4, 7, 3)
    with torch.no_grad():
        future = model.forecast(x, horizon=5)  # (4, 5, 3)
        fed = torch.cat([x, future[:, :-1]], dim=1)  # the window, then its own predictions
        again = model(fed)[:, 6:]  # the prediction after each of those steps
    assert future.shape == (4, 5, 3)
    torch.testing.assert_close(future, again, rtol=1e-5, atol=1e-6)


def test_forecast_carries_state_instead_of_rereading_the_window():
    torch.manual_seed(0)
    model = Forecaster(make_config().model, channels=2).eval()
    lengths = []
    original = model.step
    model.step = lambda x, z=None, state=None: (lengths.append(x.size(1)), original(x, z, state))[1]
    model.forecast(torch.randn(2, 9, 2), horizon=4)
    assert lengths == [9, 1, 1, 1]


# ---- training, meta, predict ---------------------------------------------------------------


def test_tiny_training_on_a_clean_sine_beats_the_last_value(tmp_path):
    t = np.arange(400)
    path = series_csv(tmp_path, np.sin(2 * np.pi * t / 20)[:, None], names=("y",))
    config = make_config([path], window=16, horizon=6, loss="mse")
    config.model.embed = config.model.hidden = 16
    torch.manual_seed(0)
    task = get_task("forecast")(config)
    task.prepare()
    model = task.build_model()
    before = task.evaluate(model, "val")
    out = fit(task, model, 120, 0.01, clip=5.0)[-1]
    after = task.evaluate(model, "val")
    assert out.count == 16 * 21
    assert after["loss"] < before["loss"] / 5
    assert after["mae_vs_baseline"] < 0.5, after


def test_meta_round_trip_and_predict(tmp_path):
    values = np.random.default_rng(1).normal(size=(80, 2)) * [1, 100] + [0, 50]
    config = make_config([series_csv(tmp_path, values)])
    task = ForecastTask(config)
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model()
    meta = task.meta()
    assert set(meta) == {"columns", "mean", "std"} and meta["columns"] == ["a", "b"]
    loaded = ForecastTask(config, meta)  # no prepare(): no training data needed
    clone = loaded.build_model()
    clone.load_state_dict(model.state_dict())
    recent = series_csv(tmp_path, values[-10:], "recent.csv")
    text = loaded.predict(clone, [recent], {})
    assert text == task.predict(model, [recent], {})
    lines = text.splitlines()
    assert lines[0] == "a,b" and len(lines) == 1 + task.options.horizon
    x = torch.tensor((values[-8:] - meta["mean"]) / meta["std"], dtype=torch.float32)
    with torch.no_grad():
        future = model.eval().forecast(x[None], 4)[0].double().numpy()
    expected = future * meta["std"] + meta["mean"]
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    several = loaded.predict(clone, [recent, recent], {"horizon": 2}).splitlines()
    assert several[0] == "input,a,b" and len(several) == 5 and several[1].startswith(recent)
    short = series_csv(tmp_path, values[:5], "short.csv")
    with pytest.raises(UserError, match="short.csv: 5 rows, fewer than --window 8"):
        loaded.predict(clone, [short], {})
    whole = series_csv(tmp_path, values, "all.csv")
    copy = series_csv(tmp_path, values, "copy.csv")
    metrics = loaded.evaluate_paths(clone, [whole, copy])
    assert set(metrics) == {"loss", *ForecastTask.metric_names[:5]}  # a point forecast
    single = loaded.evaluate_paths(clone, [whole])  # the same windows twice: the same means
    assert metrics == pytest.approx(single, rel=1e-9)
    with pytest.raises(UserError, match="recent.csv: --window 8 .* longer than the 10-step"):
        loaded.evaluate_paths(clone, [whole, recent])


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"columns": [], "mean": [], "std": []}, "'columns'"),
        ({"columns": ["a"], "mean": ["0"], "std": [1.0]}, "'mean'"),
        ({"columns": ["a"], "mean": [0.0], "std": [0.0]}, "'std'"),
        ({"columns": ["a", "b"], "mean": [0.0, 1.0], "std": [1.0]}, "'std'"),
    ],
)
def test_bad_meta_names_the_key(meta, key):
    with pytest.raises(UserError, match=key):
        ForecastTask(make_config(), meta)


def test_synthetic_sources_and_figure(tmp_path):
    config = make_config()
    config.data.synthetic, config.data.synthetic_size = "lorenz", 300
    task = ForecastTask(config)
    task.prepare()
    assert task.columns == ["x", "y", "z"]
    torch.manual_seed(0)
    model = task.build_model()
    (png,) = task.write_figures(model, tmp_path, "val")
    assert png.name == "forecast.png" and png.read_bytes().startswith(b"\x89PNG")
    subset = task.evaluate(model, "val", max_batches=1)
    assert math.isfinite(subset["mae"]) and subset["baseline_mae"] > 0
    config.data.synthetic, config.task.options["columns"] = "sine", ["nope"]
    with pytest.raises(UserError, match=r"no column 'nope' \(available: sine\)"):
        ForecastTask(config).prepare()
    with pytest.raises(UserError, match="--task forecast needs CSV files"):
        ForecastTask(make_config()).prepare()


@pytest.mark.parametrize(
    "meta",
    [
        {"columns": ["a"], "mean": [10**400], "std": [1.0]},  # an int no float holds
        {"columns": ["a"], "mean": [0.0], "std": [10**400]},
        {"columns": ["a"], "mean": [0.0], "std": [0.0]},
        {"columns": ["x" * 100_000], "mean": "m" * 100_000, "std": [1.0]},
        "x" * 1_000_000,
    ],
)
def test_a_hostile_saved_meta_is_one_short_line(meta):
    with pytest.raises(UserError) as caught:
        check_meta(meta)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message[:500]
