"""``rnnkit analyze`` and ``rnnkit experiment`` end to end in subprocesses, and their bad inputs:
exit status 2 with one line naming the problem, no traceback, nothing written."""

from __future__ import annotations

import json

import pytest
from analysis_runs import rnnkit


def test_analyze_gradients_of_a_run(lstm_run, tmp_path):
    (tmp_path / "text.txt").write_text((lstm_run.parent / "plays.txt").read_text())
    result = rnnkit(
        "analyze", "gradients", lstm_run, "--text", "text.txt", "--length", 30, "--batch", 4,
        "-o", "flow.png", "--jacobian", "jac.png", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    name = lstm_run.name
    assert set(summary[name]) == {"before", "after"}
    for when in ("before", "after"):
        numbers = summary[name][when]
        assert numbers["cell"] == "lstm" and numbers["length"] == 30 and numbers["layer"] == 1
        assert 0 < numbers["h_ratio"] and numbers["c_ratio"] is not None
    assert summary[name]["before"]["loss_value"] > summary[name]["after"]["loss_value"]
    for png in ("flow.png", "jac.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_analyze_gradients_of_fresh_models_shows_the_vanishing_rnn(tmp_path):
    result = rnnkit(
        "analyze", "gradients", "--fresh", "rnn", "lstm", "--hidden", 32, "--length", 40,
        "--batch", 4, "--forget-bias", 1, "-o", "fresh.png", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rnn, lstm = summary["RNN"]["fresh"], summary["LSTM"]["fresh"]
    assert rnn["h_ratio"] < 1e-3 * lstm["c_ratio"]  # the LSTM's cell path keeps its gradient
    assert (tmp_path / "fresh.png").stat().st_size > 10_000
    text = rnnkit("analyze", "gradients", "--fresh", "gru", "--length", 20, cwd=tmp_path)
    assert text.returncode == 0 and "GRU (fresh): cell gru" in text.stdout, text.stderr


def test_experiment_memory_tiny_grid(tmp_path):
    result = rnnkit(
        "experiment", "memory", "--tasks", "adding", "copy", "--cells", "rnn", "lstm",
        "--lengths", 5, 8, "--seeds", 1, "--steps", 30, "--workers", 1, "--out", "out",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(" seed " in line for line in lines) == 8  # one line per trial as it finishes
    assert "adding" in result.stdout and "copy" in result.stdout and "lstm" in result.stdout
    saved = json.loads((tmp_path / "out" / "memory.json").read_text())
    assert len(saved["trials"]) == 8 and saved["settings"]["steps"] == 30
    assert set(saved["success_rate"]) == {"adding", "copy"}
    assert (tmp_path / "out" / "memory.png").stat().st_size > 10_000
    quiet = rnnkit("experiment", "memory", "--tasks", "adding", "--cells", "rnn", "--lengths", 5,
                   "--seeds", 1, "--steps", 5, "--workers", 1, "--json", cwd=tmp_path)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["settings"]["steps"] == 5  # stdout: the JSON alone ...
    assert quiet.stderr.count(" seed 0: loss/baseline ") == 1  # ... progress on stderr


def test_experiment_exploding(tmp_path):
    result = rnnkit(
        "experiment", "exploding", "--steps", 120, "--out", "out", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {"off", "norm", "value"}
    assert summary["off"]["diverged_at"] is not None  # the default setting explodes (seed 0)
    assert summary["norm"]["diverged_at"] is None and summary["value"]["diverged_at"] is None
    assert summary["norm"]["final_loss"] < 1 / 6
    assert (tmp_path / "out" / "exploding.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "exploding.json").read_text()) == summary
    tame = rnnkit("experiment", "exploding", "--steps", 60, "--gain", 0.5, "--modes", "off",
                  "--length", 6, "--hidden", 8, "--lr", 0.02, "--json", cwd=tmp_path)  # fmt: skip
    assert tame.returncode == 0, tame.stderr
    tame = json.loads(tame.stdout)
    assert set(tame) == {"off"} and tame["off"]["diverged_at"] is None  # spectral radius 0.5
    assert tame["off"]["norm_max"] < summary["off"]["norm_max"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "gradients"], "run directories, or --fresh"),
        (["analyze", "gradients", "{run}", "--fresh", "rnn"], "not both"),
        (["analyze", "gradients", "--fresh", "rnn", "--text", "t.txt"], "--text is for runs"),
        (["analyze", "gradients", "nowhere"], "nowhere"),
        (["analyze", "gradients", "{run}", "-o", "no/such/dir/g.png"], "does not exist"),
        (["analyze", "gradients", "{run}", "--length", "0"], "--length"),
        (["analyze", "gradients", "{run}", "--loss", "mean"], "--loss"),
        (["analyze", "gradients", "{run}", "--text", "short.txt"], "--length"),
        (["analyze", "gradients", "{run}", "--text", "binary.bin"], "binary"),
        (["analyze", "gradients", "--fresh", "lstm", "--hidden", "-3"], "--hidden"),
        (["experiment", "memory", "--lengths", "0"], "--lengths"),
        (["experiment", "memory", "--tasks", "sorting"], "--tasks"),
        (["experiment", "memory", "--lr", "nan"], "--lr"),
        (["experiment", "memory", "--margin", "1.5"], "--margin"),
        (["experiment", "exploding", "--steps", "0"], "--steps"),
        (["experiment", "exploding", "--gain", "0"], "--gain must be a positive number"),
        (["experiment", "exploding", "--lr", "inf"], "--lr must be a positive number"),
        (["experiment", "exploding", "--max-norm", "-1"], "--max-norm"),
        (["experiment", "exploding", "--modes", "sometimes"], "--modes"),
        (["experiment", "exploding", "--length", "0"], "--length"),
        (["experiment", "exploding", "--out", "afile/sub"], "cannot create the directory"),
        (["experiment", "memory", "--out", "afile/sub"], "cannot create the directory"),
    ],
)
def test_bad_input(lstm_run, tmp_path, args, message):
    (tmp_path / "t.txt").write_text("some text " * 100)
    (tmp_path / "short.txt").write_text("the cat")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02 abc" * 40)
    (tmp_path / "afile").write_text("a file where a directory is asked for")
    result = rnnkit(*[a.format(run=lstm_run) for a in args], cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not list(tmp_path.glob("*.png"))
