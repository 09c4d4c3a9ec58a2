"""--task forecast on CSV panels: time, id and exogenous columns, calendar features, every bad
input as one line with exit 2, backtest windows where they belong and blind to the future,
and the CLI end to end (train, predict with intervals, eval --backtest)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.config import RunConfig
from rnnkit.data.panel import (
    Step,
    calendar_features,
    calendar_names,
    future_times,
    read_panel,
    series_step,
)
from rnnkit.errors import UserError
from rnnkit.tasks.forecast import ForecastTask
from rnnkit.tasks.forecast_eval import backtest_origins
from subprocess_cli import rnnkit

START = datetime(2024, 1, 1)  # a Monday


def panel_csv(tmp_path, steps=120, name="p.csv", shuffle=True, future=0):
    """Two stores, hourly, sales driven by the hour and a price input; rows shuffled."""
    rng = np.random.default_rng(0)
    rows = []
    for store, level in (("north", 10.0), ("south", 200.0)):
        for i in range(steps + future):
            t = START + timedelta(hours=i)
            price = 1 + 0.5 * math.sin(i / 5)
            y = level * (1 + 0.3 * math.sin(2 * math.pi * t.hour / 24)) - level * 0.2 * price
            y += rng.normal(0, 0.02 * level)
            sales = "" if i >= steps else f"{y:.6f}"
            rows.append(f"{t.isoformat(sep=' ')},{store},{sales},{price:.6f}")
    if shuffle:
        rng.shuffle(rows)
    path = tmp_path / name
    path.write_text("time,store,sales,price\n" + "\n".join(rows) + "\n")
    return str(path)


def make_config(paths, **task):
    config = RunConfig()
    config.task.name = "forecast"
    config.data.paths = list(paths)
    config.data.val_fraction = config.data.test_fraction = 0.2
    config.model.embed, config.model.hidden, config.model.layers = 8, 12, 1
    config.train.batch_size, config.train.seed = 16, 3
    options = dict(
        window=12,
        horizon=4,
        columns=["sales"],
        time_column="time",
        id_column="store",
        exogenous=["price"],
        calendar=True,
        likelihood="gaussian",
        num_samples=16,
    )
    config.task.options.update({**options, **task})
    return config


# ---- reading -------------------------------------------------------------------------------


def test_panel_is_grouped_by_id_sorted_by_time_with_inputs(tmp_path):
    panel = read_panel([panel_csv(tmp_path)], ["sales"], ["price"], "time", "store")
    assert [s.name for s in panel] == sorted(s.name for s in panel) or len(panel) == 2
    for s in panel:
        assert s.targets.shape == (120, 1) and s.inputs.shape == (120, 1)
        assert s.times == [START + timedelta(hours=i) for i in range(120)]
        np.testing.assert_allclose(s.inputs[:, 0], 1 + 0.5 * np.sin(np.arange(120) / 5), atol=1e-6)
        assert series_step(s) == Step("seconds", 3600)
    levels = {s.name: s.targets.mean() for s in panel}
    assert levels["south"] > 10 * levels["north"]
    default = read_panel([panel_csv(tmp_path)], (), ["price"], "time", "store")
    assert default[0].columns == ["sales"]  # not time, id or the input


def test_calendar_features_by_hand():
    t = [datetime(2024, 1, 1, 6), datetime(2024, 3, 16, 18)]  # Monday 06:00; Saturday 18:00
    got = calendar_features(t, ["hour", "weekday", "month"])
    phases = [
        [0.25, 0.25 / 7, 0.25 / 31 / 12],
        [0.75, (5 + 0.75) / 7, (2 + (15 + 0.75) / 31) / 12],
    ]
    for row, phase in zip(got, phases, strict=True):
        expected = np.ravel([[math.sin(2 * math.pi * p), math.cos(2 * math.pi * p)] for p in phase])
        np.testing.assert_allclose(row, expected, atol=1e-12)
    assert calendar_names(Step("seconds", 1800)) == ["hour", "weekday", "month"]
    assert calendar_names(Step("seconds", 86400)) == ["weekday", "month"]
    assert calendar_names(Step("seconds", 7 * 86400)) == ["month"]
    assert calendar_names(Step("months", 1)) == ["month"]


def test_monthly_steps_and_future_times(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("month,y\n2023-12-31,1\n2023-10-31,2\n2023-11-30,3\n")
    with pytest.raises(UserError, match="a gap"):  # day 31, 30, 31: not one fixed spacing
        read_panel([str(path)], time_column="month")
    path.write_text("month,y\n2023-12-01,1\n2023-10-01,2\n2023-11-01,3\n")
    (series,) = read_panel([str(path)], time_column="month")
    np.testing.assert_array_equal(series.targets[:, 0], [2, 3, 1])  # sorted by time
    assert series_step(series) == Step("months", 1)
    assert future_times(datetime(2024, 1, 31), Step("months", 1), 2) == [
        datetime(2024, 2, 29),
        datetime(2024, 3, 31),
    ]
    assert future_times(datetime(2024, 1, 1, 23, 30), Step("seconds", 1800), 1) == [
        datetime(2024, 1, 2)
    ]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("t,y\n2024-01-01,1\n2024-01-02,2\n2024-01-04,3\n", {}, "w.csv:4: a gap: 2024-01-02"),
        ("t,y\n2024-01-01,1\n2024-01-02,2\n2024-01-02,3\n", {}, "w.csv:4: duplicate time"),
        ("t,y\n2024-01-01,1\nyesterday,2\n", {}, "w.csv:3: column 't': 'yesterday' is not an ISO"),
        ("t,y\n2024-01-01,1\n", {}, "a series of one row has no time step"),
        ("t,y,x\n2024-01-01,1,2\n2024-01-02,2,\n", {"exogenous": ["x"]}, "w.csv:3: column 'x'"),
        ("t,y\n2024-01-01,1\n", {"exogenous": ["z"]}, "w.csv: no column 'z'"),
        ("t,id,y\n2024-01-01,,1\n", {"id_column": "id"}, "w.csv:2: column 'id': an empty"),
        ("t,y\n2024-01-01,1\n", {"targets": ["y"], "exogenous": ["y"]}, "both a target"),
        ("t,y\n2024-01-01,1\n", {"targets": ["t"]}, "--time-column 't' cannot also be"),
    ],
)
def test_panel_errors_are_one_line(tmp_path, text, kwargs, message):
    (tmp_path / "w.csv").write_text(text)
    kwargs = {"time_column": "t", **kwargs}
    with pytest.raises(UserError) as caught:
        read_panel([str(tmp_path / "w.csv")], **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_gap_in_one_series_names_the_series(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("t,id,y\n2024-01-01,a,1\n2024-01-02,a,2\n2024-01-01,b,1\n2024-01-02,b,2\n"
                    "2024-01-04,b,3\n")  # fmt: skip
    with pytest.raises(UserError, match=r"g.csv:6: a gap: .* one step of 1 day .* \(series 'b'\)"):
        read_panel([str(path)], time_column="t", id_column="id")


# ---- the task on a panel -------------------------------------------------------------------


def test_global_model_windows_from_every_series_each_scaled_by_its_own(tmp_path):
    task = ForecastTask(make_config([panel_csv(tmp_path)]))
    task.prepare()
    assert task.calendar == ["hour", "weekday", "month"] and task.n_inputs() == 7
    meta = task.meta()
    panel = read_panel([panel_csv(tmp_path)], ["sales"], ["price"], "time", "store")
    for s in panel:  # each series: its training part (the first 72 of 120 rows)
        np.testing.assert_allclose(meta["scales"][s.name], np.abs(s.targets[:72]).mean(0))
    block = task.blocks["train"]
    assert len(block.raw) == 2 * 72 and len(task.starts["train"]) == 2 * (72 - 16 + 1)
    assert abs(float(block.y.abs().mean()) - 1) < 1e-5  # y / mean|y| has mean |.| 1 per series
    assert block.z.shape == (2 * 72, 7)
    loaded = ForecastTask(make_config([panel_csv(tmp_path)]), meta)
    assert loaded.scales == task.scales and loaded.calendar == task.calendar


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"scales": {"a": [0.0]}}, "'scales'"),
        ({"input_mean": [0.0, 1.0]}, "'input_mean'"),
        ({"input_std": [-1.0]}, "'input_std'"),
        ({"calendar": ["minute"]}, "'calendar'"),
    ],
)
def test_bad_panel_meta_names_the_key(tmp_path, meta, key):
    base = {"columns": ["sales"], "mean": [0.0], "std": [1.0], "scales": {"a": [1.0]}}
    base.update(input_mean=[0.0], input_std=[1.0], calendar=["hour"])
    with pytest.raises(UserError, match=key):
        ForecastTask(make_config([]), {**base, **meta})


def test_backtest_origins_are_exactly_the_last_windows():
    np.testing.assert_array_equal(backtest_origins(100, 5, 3, 10, 0), [85, 90, 95])
    np.testing.assert_array_equal(backtest_origins(20, 4, 1, 16, 0), [16])
    with pytest.raises(UserError, match="leave 15 of the 100-step series .* needs 24"):
        backtest_origins(100, 5, 17, 10, 23)


def test_backtest_never_reads_after_the_origin(tmp_path):
    """Poison every value from the first origin on: the forecast of the first window (and the
    scaler of a series the run never saw) must not move; poisoning only the last window's
    future moves none of the forecasts."""
    task = ForecastTask(make_config([panel_csv(tmp_path)]))
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model()
    seen = []
    original = task.run_windows

    def spy(*args, **kwargs):
        run = original(*args, **kwargs)
        seen.append(run)
        return run

    task.run_windows = spy
    clean = panel_csv(tmp_path, name="clean.csv", shuffle=False)
    text = (tmp_path / "clean.csv").read_text().splitlines()
    task.scales.pop("south")  # an unseen series: scaled by its history before the first origin

    def poisoned(first_row, name):
        rows = [text[0]]
        for i, line in enumerate(text[1:]):
            t, store, sales, price = line.split(",")
            if i % 120 >= first_row:
                sales = str(float(sales) * 1000 + 7)
            rows.append(",".join((t, store, sales, price)))
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        return str(tmp_path / name)

    task.backtest(model, [clean], 4, 3)  # origins 108, 112, 116 of 120
    task.backtest(model, [poisoned(108, "a.csv")], 4, 3)
    task.backtest(model, [poisoned(116, "b.csv")], 4, 3)
    base, early, late = seen[0:2], seen[2:4], seen[4:6]
    for series in range(2):
        np.testing.assert_array_equal(early[series]["forecast"][0], base[series]["forecast"][0])
        np.testing.assert_array_equal(early[series]["lower"][0], base[series]["lower"][0])
        np.testing.assert_array_equal(late[series]["forecast"], base[series]["forecast"])
        assert not np.allclose(late[series]["truth"][2], base[series]["truth"][2])
        assert not np.allclose(early[series]["forecast"][1], base[series]["forecast"][1])


# ---- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calendar"], "--calendar needs --time-column"),
        (["--likelihood", "quantile", "--quantiles", "0.1,0.9"], "--quantiles must be"),
        (["--time-column", "when"], "no column 'when'"),
        (["--num-samples", "0"], "--num-samples must be"),
        (["--interval", "1.5"], "--interval must be"),
    ],
)
def test_bad_flags_exit_2_in_one_line(tmp_path, capsys, argv, message):
    path = panel_csv(tmp_path)
    out = tmp_path / "run"
    code = main(
        ["train", "--task", "forecast", path, "--out", str(out), "--columns", "sales", *argv]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    assert message in err and not out.exists()


def test_cli_train_predict_backtest_end_to_end(tmp_path):
    data = panel_csv(tmp_path)
    flags = "--time-column time --id-column store --columns sales --exogenous price --calendar"
    train = rnnkit(
        "train", "--task", "forecast", data, *flags.split(), "--likelihood", "studentt",
        "--window", "12", "--horizon", "4", "--season", "12", "--num-samples", "20",
        "--embed", "8", "--hidden", "12", "--max-steps", "30", "--eval-every", "30",
        "--val-fraction", "0.2", "--test-fraction", "0.2", "--threads", "1", "--out", "run",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "run" / "forecast.png").read_bytes().startswith(b"\x89PNG")
    future = panel_csv(tmp_path, steps=40, name="future.csv", future=3)
    predict = rnnkit("predict", "run", future, "--threads", "1", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    lines = predict.stdout.strip().splitlines()
    assert lines[0] == "store,time,sales,sales_p10,sales_p90" and len(lines) == 1 + 2 * 3
    for line in lines[1:]:
        store, when, median, low, high = line.split(",")
        assert float(low) <= float(median) <= float(high)
    assert lines[1].split(",")[1] == str(START + timedelta(hours=40))
    back = rnnkit(
        "eval", "run", data, "--backtest", "--horizon", "4", "--windows", "3", "--json",
        "--threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    figures = json.loads(back.stdout)
    assert figures["series"] == 2 and figures["windows"] == 3 and figures["horizon"] == 4
    assert {"mase", "smape", "mae", "crps", "coverage", "baseline_mase"} <= set(figures)
    bad = rnnkit("eval", "run", data, "--windows", "3", cwd=tmp_path)
    assert bad.returncode == 2 and "--windows is a --backtest flag" in bad.stderr
    too_many = rnnkit("eval", "run", data, "--backtest", "--windows", "40", cwd=tmp_path)
    assert too_many.returncode == 2 and too_many.stderr.count("\n") == 1
    assert "before the first origin" in too_many.stderr
    no_future = rnnkit("predict", "run", panel_csv(tmp_path, name="n.csv"), cwd=tmp_path)
    assert no_future.returncode == 2 and "end the file with one row per step" in no_future.stderr


def test_backtest_is_refused_for_other_tasks_and_without_its_flag():
    from types import SimpleNamespace

    from rnnkit.commands.eval import _check_backtest, _run_backtest

    args = SimpleNamespace(backtest=True, horizon=None, windows=None, json=False, paths=["x"])
    with pytest.raises(UserError, match="--backtest is for --task forecast runs, not --task tag"):
        _run_backtest(args, SimpleNamespace(name="tag"), None, "cpu")
    flags = dict(figures=None, tune_cache=False, cache_size=None, cache_theta=None)
    bad = SimpleNamespace(backtest=True, horizon=0, windows=None, paths=["x"], **flags)
    with pytest.raises(UserError, match=r"--horizon must be an integer in \[1, 10,000\], got 0"):
        _check_backtest(bad)
    nopath = SimpleNamespace(backtest=True, horizon=None, windows=2, paths=[], **flags)
    with pytest.raises(UserError, match="--backtest needs the CSV files"):
        _check_backtest(nopath)


def test_predict_reads_the_future_rows_and_refuses_holes(tmp_path):
    task = ForecastTask(make_config([panel_csv(tmp_path)], likelihood="quantile"))
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model()
    text = task.predict(model, [panel_csv(tmp_path, steps=30, name="f.csv", future=2)], {})
    lines = text.splitlines()
    assert lines[0] == "store,time,sales,sales_p10,sales_p90" and len(lines) == 1 + 2 * 2
    assert [line.split(",")[1] for line in lines[1:3]] == [
        str(START + timedelta(hours=30)),
        str(START + timedelta(hours=31)),
    ]
    hole = tmp_path / "hole.csv"
    rows = (tmp_path / "f.csv").read_text().splitlines()
    body = sorted(r for r in rows[1:] if ",north," in r)
    t, store, sales, price = body[5].split(",")
    body[5] = ",".join((t, store, "", price))  # an empty target cell amid the history
    hole.write_text("\n".join([rows[0], *body]) + "\n")
    with pytest.raises(UserError, match=r"hole.csv:7: empty target cells before the last row"):
        task.predict(model, [str(hole)], {})
    short = panel_csv(tmp_path, steps=5, name="short.csv", future=2)
    with pytest.raises(UserError, match=r"short.csv \(series 'north'\): 5 rows, fewer than"):
        task.predict(model, [short], {})
