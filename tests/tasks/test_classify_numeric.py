"""--task classify on numeric series: the classifier on vectors against torch.nn.GRU run by
hand, normalisation fitted on the training split only, a tiny training run, the meta round trip,
every error path, and train / eval / predict end to end in a subprocess."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fitting import fit

from rnnkit.config import RunConfig
from rnnkit.data.numeric import fit_scaler, read_series
from rnnkit.errors import UserError
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.tasks.classify import ClassifyTask
from subprocess_cli import rnnkit

HEADER = (
    "@problemName Toy\n@missing true\n@univariate false\n@dimensions 2\n"
    "@equalLength false\n@classLabel true fast slow\n@data\n"
)


def toy_ts(path, n: int, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    """Two channels: a sine whose frequency is the class, and the class's sign plus noise;
    lengths 6..11, a missing value now and then."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        label = ("fast", "slow")[i % 2]
        t = np.arange(int(rng.integers(6, 12)))
        wave = np.sin((2.5 if label == "fast" else 0.5) * t) + 0.1 * rng.normal(size=len(t))
        level = (1.0 if label == "fast" else -1.0) + 0.3 * rng.normal(size=len(t))
        cells = [f"{scale * v + offset:.5f}" for v in wave]
        if i % 5 == 0:
            cells[1] = "?"
        lines.append(",".join(cells) + ":" + ",".join(f"{v:.5f}" for v in level) + ":" + label)
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_config(paths, val=None, **sections) -> RunConfig:
    data = {
        "task": {"name": "classify"},
        "data": {"paths": [str(p) for p in paths], "val": str(val) if val else None},
        "model": {"cell": "gru", "embed": 6, "hidden": 10, "layers": 1},
        "train": {"batch_size": 8, "seed": 3},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return RunConfig.from_dict(data)


def prepared(config) -> ClassifyTask:
    task = ClassifyTask(config)
    task.prepare()
    return task


# ---- the model on vectors ----------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("project", [False, True])
def test_classifier_on_vectors_equals_torch_gru_run_by_hand(pooling, bidirectional, project):
    """Each sequence alone through torch.nn.GRU (the same weights, no padding), pooled and
    projected by hand in float64, equals the packed batch."""
    torch.manual_seed(0)
    config = make_config([]).model
    model = SequenceClassifier(config, 0, 3, bidirectional, pooling, channels=5, project=project)
    model = model.double().eval()
    reference = torch.nn.GRU(6 if project else 5, 10, batch_first=True, bidirectional=bidirectional)
    reference.load_state_dict(model.rnn.state_dict())
    reference.double()
    lengths = torch.tensor([7, 3, 5])
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    x[1, 3:] = 1e6  # padding: must never count
    x[2, 5:] = -1e6
    got = model(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        xi = x[i : i + 1, :n]
        if project:
            xi = xi @ model.project.weight.T + model.project.bias
        out, h = reference(xi)  # (1, n, D*H), (D, 1, H)
        summary = {
            "last": torch.cat(list(h[:, 0])),
            "mean": out[0].mean(0),
            "max": out[0].amax(0),
        }[pooling]
        want = summary @ model.head.weight.T + model.head.bias
        torch.testing.assert_close(got[i], want)


def test_a_series_classifier_has_no_embedding_and_refuses_bad_sizes():
    config = make_config([]).model
    model = SequenceClassifier(config, 0, 2, channels=4)
    assert not hasattr(model, "embedding") and model.project is None
    assert model.rnn.input_size == 4
    with pytest.raises(UserError, match="num_classes >= 2"):
        SequenceClassifier(config, 0, 1, channels=4)


# ---- the task: splits, normalisation, training ------------------------------------------


def test_normalisation_is_fitted_on_the_training_split_only(tmp_path):
    train = toy_ts(tmp_path / "a.ts", 40)
    task = prepared(make_config([train]))
    found = read_series([str(train)])
    want = fit_scaler([found.values[i] for i in task.splits["train"]])
    assert task.series.mean + task.series.std == pytest.approx(want[0] + want[1])
    everything = fit_scaler(found.values)
    assert task.series.mean != pytest.approx(everything[0])  # val and test not in it
    # a --val file far off in scale moves nothing; it is normalised with the training figures
    poisoned = toy_ts(tmp_path / "b.ts", 10, seed=1, scale=1000.0, offset=500.0)
    with_val = prepared(make_config([train], val=poisoned))
    assert len(with_val.splits["val"]) == 10 and len(with_val.splits["test"]) == 4
    plain = fit_scaler([found.values[i] for i in with_val.splits["train"]])
    assert with_val.series.mean + with_val.series.std == pytest.approx(plain[0] + plain[1])
    first_val = with_val.examples[with_val.splits["val"][0]][0]
    raw = read_series([str(poisoned)]).values[0]
    expected = (raw - np.array(plain[0])) / np.array(plain[1])
    assert np.allclose(first_val, np.nan_to_num(expected, nan=0.0), atol=1e-5)


def test_training_separates_a_tiny_numeric_set(tmp_path):
    torch.manual_seed(0)
    task = prepared(make_config([toy_ts(tmp_path / "a.ts", 64)], model={"hidden": 16}))
    model = task.build_model()
    losses = [out.loss.item() for out in fit(task, model, 80, 0.02, clip=5.0)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    figures = task.evaluate(model, "val")
    assert figures["accuracy"] >= 0.9
    assert task.evaluate(model, "test")["accuracy"] >= 0.9
    assert "2 channels" in task.describe(model)


def test_meta_round_trip_predict_and_eval_files(tmp_path):
    torch.manual_seed(0)
    train = toy_ts(tmp_path / "a.ts", 30)
    task = prepared(make_config([train]))
    model = task.build_model()
    meta = json.loads(json.dumps(task.meta()))
    assert meta["inputs"] == "series" and meta["channels"] == 2 and task.vocab_symbols() == []
    again = ClassifyTask(make_config([]), meta)
    copy = again.build_model()
    copy.load_state_dict(model.state_dict())
    test = toy_ts(tmp_path / "t.ts", 6, seed=5)
    lines = again.predict(copy, [str(test)], {"top": 2})
    assert lines == task.predict(model, [str(test)], {"top": 2})
    first = lines.splitlines()[0]
    assert first.startswith(f"{test}:8: ") and first.count(" 0.") == 2
    assert again.evaluate_paths(copy, [str(test)]) == task.evaluate_paths(model, [str(test)])


# ---- errors ------------------------------------------------------------------------------


def test_eval_and_predict_refuse_unknown_labels_and_other_channel_counts(tmp_path):
    task = prepared(make_config([toy_ts(tmp_path / "a.ts", 20)]))
    model = task.build_model()
    other = tmp_path / "o.ts"
    other.write_text("@classLabel true fast other\n@data\n1,2:3,4:other\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"o.ts: labels the model does not know: 'other'"):
        task.evaluate_paths(model, [str(other)])
    one = tmp_path / "one.ts"
    one.write_text("@classLabel true fast\n@data\n1,2:fast\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"one.ts:3: 1 channels per step, but the model reads 2"):
        task.predict(model, [str(one)], {})
    with pytest.raises(UserError, match=r"o.ts: labels the model does not know"):
        prepared(make_config([tmp_path / "a.ts"], val=other))


def test_inputs_text_reads_a_series_file_as_text_and_series_needs_numbers(tmp_path):
    train = toy_ts(tmp_path / "a.ts", 20)
    with pytest.raises(UserError, match=r"a.ts:1: expected label<TAB>text"):
        prepared(make_config([train], task={"inputs": "text"}))
    names = tmp_path / "names"
    names.mkdir()
    (names / "A.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"has no LABEL/\*.csv files"):
        prepared(make_config([names], task={"inputs": "series"}))
    with pytest.raises(UserError, match=r"--project applies to numeric series inputs"):
        prepared(make_config([names], task={"project": True}))
    with pytest.raises(UserError, match=r"--label-column must be a column name"):
        ClassifyTask(make_config([train], task={"label_column": " "}))


def good_meta(tmp_path):
    return prepared(make_config([toy_ts(tmp_path / "a.ts", 20)])).meta()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"channels": 0}, r"task_meta.channels must be an integer >= 1"),
        ({"channels": 10**9}, r"task_meta.channels must be at most 100,000"),
        ({"mean": [0.0]}, r"'mean' must be 2 finite numbers"),
        ({"std": [1.0, "x"]}, r"'std' must be 2 finite numbers"),
        ({"std": [1.0, 0.0]}, r"'std' must be positive"),
        ({"label_column": 3}, r"'label_column' must be a string"),
        ({"labels": ["fast"]}, r"'labels' must be a list of >= 2 distinct strings"),
    ],
)
def test_bad_series_meta_names_the_key(tmp_path, change, message):
    meta = good_meta(tmp_path) | change
    with pytest.raises(UserError, match=message):
        ClassifyTask(make_config([]), meta)


# ---- the command line --------------------------------------------------------------------


def test_cli_train_eval_predict_end_to_end(tmp_path):
    toy_ts(tmp_path / "X_TRAIN.ts", 40)
    toy_ts(tmp_path / "X_TEST.ts", 12, seed=7)
    common = ["--threads", "1"]
    train = rnnkit(
        "train", "--task", "classify", "X_TRAIN.ts", "--val", "X_TEST.ts", "--pooling", "mean",
        "--hidden", "12", "--batch-size", "8", "--max-steps", "20", "--eval-every", "10",
        "--out", "runs/toy", *common, cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "2 channels, train/val/test 36/12/4 examples" in train.stdout + train.stderr
    saved = json.loads((tmp_path / "runs/toy/best/config.json").read_text())
    meta = saved["config"]["task_meta"]
    assert meta["inputs"] == "series" and len(meta["mean"]) == 2
    ev = rnnkit("eval", "runs/toy", "X_TEST.ts", "--json", *common, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert set(json.loads(ev.stdout)) >= {"loss", "accuracy", "macro_f1"}
    pr = rnnkit("predict", "runs/toy", "X_TEST.ts", "--top", "1", *common, cwd=tmp_path)
    assert pr.returncode == 0, pr.stderr
    lines = pr.stdout.splitlines()
    assert len(lines) == 12 and lines[0].startswith("X_TEST.ts:8: ")
    assert lines[0].split()[-2] in ("fast", "slow")
    (tmp_path / "bad.ts").write_text(HEADER + "1,2:3:fast\n", encoding="utf-8")
    bad = rnnkit("predict", "runs/toy", "bad.ts", *common, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().endswith("bad.ts:8: dimensions of different lengths (2, 1)")


def test_npz_csv_and_directory_inputs_are_found_from_the_files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", x=rng.normal(size=(10, 5, 3)), y=np.array(["a", "b"] * 5))
    assert prepared(make_config([tmp_path / "s.npz"])).series.channels == 3
    rows = "\n".join(f"{'ab'[i % 2]},{i},{i + 1},{i + 2}" for i in range(10))
    (tmp_path / "s.csv").write_text("kind,t1,t2,t3\n" + rows + "\n", encoding="utf-8")
    task = prepared(make_config([tmp_path / "s.csv"], task={"label_column": "kind"}))
    assert task.series.channels == 1 and task.labels == ["a", "b"]
    for i in range(6):
        folder = tmp_path / "d" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.csv").write_text("x,y\n1,2\n3,4\n", encoding="utf-8")
    task = prepared(make_config([tmp_path / "d"]))
    assert task.series.channels == 2 and len(task.examples) == 6


def test_a_saved_run_reprepared_keeps_its_normalisation_and_mode(tmp_path):
    """``rnnkit eval RUN`` re-reads data.paths: the saved statistics, never refitted."""
    meta = prepared(make_config([toy_ts(tmp_path / "a.ts", 20)])).meta()
    other = toy_ts(tmp_path / "b.ts", 20, seed=4, scale=50.0)
    again = ClassifyTask(make_config([other], task={"inputs": "text"}), meta)
    again.prepare()  # the meta says series, whatever --inputs says now
    assert again.series.mean == meta["mean"] and again.series.std == meta["std"]
    raw = read_series([str(other)]).values[0]
    expected = np.nan_to_num((raw - np.array(meta["mean"])) / np.array(meta["std"]), nan=0.0)
    assert np.allclose(again.examples[0][0], expected, atol=1e-5)
