"""What a newcomer meets in the first hour: plain ``rnnkit``, a prime outside the vocabulary,
figures that do not land on each other, pictures that say what they show, and wording."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.config import RunConfig, apply_overrides, load_preset
from rnnkit.trainer.loop import train

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """A language model of a few steps (seconds): what ``rnnkit sample`` needs."""
    root = tmp_path_factory.mktemp("lm")
    (root / "t.txt").write_text("the cat sat on the mat.\n" * 200)
    config = RunConfig()
    apply_overrides(config, load_preset("tiny"), "preset tiny")
    settings = {
        "data": {"paths": [str(root / "t.txt")], "cache_dir": str(root / "cache")},
        "train": {"out": str(root / "run"), "max_steps": 4, "eval_every": 2, "threads": 1},
    }
    apply_overrides(config, settings, "test")
    train(config, log=lambda *_: None)
    return root / "run"


# ---- item 8: nothing glued to an error, a command list for plain `rnnkit` -----------------------
def test_prime_outside_the_vocabulary_is_refused_before_anything_is_printed(lm_run):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(  # stderr into stdout, as on a terminal
        [sys.executable, "-m", "rnnkit", "sample", str(lm_run), "--prime", "catë"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout.startswith("rnnkit: error: characters not in the vocabulary: 'ë'")
    assert len(result.stdout.splitlines()) == 1  # not "catrnnkit: error: ..."


def test_sample_prints_the_prime_once_then_its_continuation(lm_run, capsys):
    assert main(["sample", str(lm_run), "--prime", "the ", "--length", "30", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the ") and not out.startswith("the the ") and len(out) == 4 + 30 + 1
    assert main(["sample", str(lm_run), "--prime", "cat", "--length", "0"]) == 0
    assert capsys.readouterr().out == "cat\n"


def test_num_samples_use_the_one_banner(lm_run, capsys):
    args = ["sample", str(lm_run), "--prime", "the", "--length", "9", "--num-samples", "2"]
    assert main([*args, "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "---- sample 1 ----" and lines[1].startswith("the")
    assert lines.count("----") == 2 and "---- sample 2 ----" in lines


def test_plain_rnnkit_lists_the_commands_and_exits_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rnnkit") and "train" in err and "sample" in err
    assert err.splitlines()[-1].startswith("rnnkit: error: no command given")
    assert main(["fly"]) == 2
    assert "rnnkit: error: rnnkit:" not in capsys.readouterr().err


# ---- item 9: outputs where the user can find them, never replaced silently ---------------------
class _Task:
    """What ``rnnkit predict`` needs of a task, recording the options it got."""

    def __init__(self, writes: bool = False) -> None:
        self.options, self.writes = None, writes

    def predict(self, model, inputs, options):
        self.options = options
        if self.writes:
            Path(options["out"]).write_bytes(b"png")
        return "x,y,z"  # a forecast's CSV header


def _fake_run(monkeypatch, name: str, task: _Task) -> None:
    import rnnkit.tasks.saved
    from rnnkit.tasks import get_task

    config = RunConfig()
    config.task.name = task.name = name
    real = get_task(name)  # what predict reads and whether it draws: the task's declarations
    task.predict_inputs, task.predict_picture = real.predict_inputs, real.predict_picture
    monkeypatch.setattr(
        rnnkit.tasks.saved, "load_task", lambda path, device=None: (task, None, config)
    )


def test_predict_without_inputs_is_one_line_exit_2(monkeypatch, capsys):
    _fake_run(monkeypatch, "forecast", _Task())
    assert main(["predict", "runs/lorenz"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not a bare "x,y,z"
    assert captured.err.startswith("rnnkit: error: rnnkit predict runs/lorenz: give one or more")
    assert "CSV files" in captured.err


def test_predict_frames_writes_into_the_run_directory_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "frames" / "best").mkdir(parents=True)
    task = _Task(writes=True)
    _fake_run(monkeypatch, "frames", task)
    assert main(["predict", "runs/frames/best"]) == 0
    picture = Path("runs/frames/frames_predict.png")
    assert task.options["out"] == str(picture) and picture.is_file()
    assert not Path("frames.png").exists()
    assert capsys.readouterr().out == f"wrote {picture}\n"
    assert main(["predict", "runs/frames", "-o", "mine.png"]) == 0
    assert Path("mine.png").is_file() and capsys.readouterr().out == "wrote mine.png\n"
    assert main(["predict", "runs/frames"]) == 0
    assert "replaced the previous one" in capsys.readouterr().out


def test_fresh_gradients_leave_the_runs_figure_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("gradient_flow.png").write_bytes(b"the trained model's figure")
    fresh = ["analyze", "gradients", "--fresh", "rnn", "lstm", "--forget-bias", "1"]
    fresh += ["--hidden", "6", "--length", "4", "--batch", "2"]
    assert main(fresh) == 0
    captured = capsys.readouterr()
    assert Path("gradient_flow.png").read_bytes() == b"the trained model's figure"
    assert Path("gradient_flow_fresh.png").is_file()
    assert "wrote gradient_flow_fresh.png" in captured.out and "replaced" not in captured.err
    assert "forget_bias 1\n" in captured.out  # which bias, said
    assert main(fresh) == 0
    assert "replaced the previous gradient_flow_fresh.png" in capsys.readouterr().err


def test_gitignore_covers_what_the_readme_writes_but_not_the_docs_figures():
    root = Path(__file__).resolve().parents[1]
    paths = ["results/memory.json", "figures/loss.png", "report.html", "x.onnx", "flow.png"]
    ignored = subprocess.run(
        ["git", "check-ignore", *paths, "docs/loss_default.png", "src/rnnkit/analysis/report.html"],
        cwd=root, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if not ignored and not (root / ".git").exists():
        pytest.skip("not a git checkout")
    assert ignored == paths


# ---- item 10: pictures that say what they show -------------------------------------------------
def drawn(fig):
    """``fig`` (a plot function's, given no path) saved as its PNG is (which lays it out),
    then drawn on its canvas: the renderer, to measure what landed where."""
    import io

    fig.savefig(io.BytesIO(), format="png", dpi=110, bbox_inches="tight")
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _flow(cell: str):
    from rnnkit.analysis.gradient_flow import fresh_gradient_flow

    return fresh_gradient_flow(cell, hidden=6, length=12, batch=2, forget_bias=1.0)


def test_jacobian_legend_does_not_cover_the_bands():
    from rnnkit.analysis.gradient_plots import plot_jacobian_spectrum

    flows = {"LSTM (forget-gate bias 1)": {"fresh": _flow("lstm")}}
    fig = plot_jacobian_spectrum(flows)
    renderer = drawn(fig)
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))
    assert ax.get_title().startswith("LSTM H=6") and "forget-gate bias 1" in ax.get_title()


def test_gate_saturation_keeps_its_axis_labels_inside():
    from rnnkit.analysis.activation_plots import plot_gate_saturation
    from rnnkit.analysis.gates import Saturation

    rng = np.random.default_rng(0)
    layer = {g: Saturation(rng.random(8), rng.random(8)) for g in ("input", "forget", "output")}
    fig = plot_gate_saturation([layer], None, cell="lstm")
    renderer = drawn(fig)
    for ax in fig.axes:
        label = ax.xaxis.label.get_window_extent(renderer)
        assert label.y0 >= 0 and label.x0 >= 0 and label.x1 <= fig.bbox.x1, label


def test_report_names_the_tasks_loss_and_captions_its_pictures(tmp_path, monkeypatch):
    from rnnkit.analysis import report

    drawn = []
    monkeypatch.setattr(report, "_draw", lambda function, *a, **k: drawn.append(k) or b"png")
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        csv.writer(f).writerows([["step", "kind", "loss"], [1, "train", 0.5]])
    (tmp_path / "confusion.png").write_bytes(b"png")
    config = RunConfig()
    config.task.name = "classify"
    report._training_figures(tmp_path, config)
    assert drawn[0]["ylabel"] == "loss (nats/example)"  # not nats/char
    (figure,) = report._task_figures(tmp_path)
    assert figure.title == "Confusion matrix" and "written by the task" not in figure.caption
    assert "true class" in figure.caption


# ---- item 11: wording ----------------------------------------------------------------------
def test_plural_and_banner():
    from rnnkit.wording import plural, sample_banner

    assert [plural(1, "seed"), plural(2, "thread"), plural(5111, "step")] == [
        "1 seed",
        "2 threads",
        "5,111 steps",
    ]
    assert sample_banner("sample at step 3", "\nab\n", "t 0.8") == (
        "---- sample at step 3 (t 0.8) ----\nab\n----"
    )


def test_bench_header_says_1_thread():
    from rnnkit.benchmark.suite import table

    line = table({"cpu": "x", "threads": 1, "torch": "2"}).splitlines()[0]
    assert "1 thread," in line and "1 threads" not in line


def test_training_log_groups_thousands_and_banners_samples_alike(tmp_path):
    (tmp_path / "t.txt").write_text("abcdefgh\n" * 2000)
    config = RunConfig()
    apply_overrides(config, load_preset("tiny"), "preset tiny")
    settings = {
        "data": {"paths": [str(tmp_path / "t.txt")], "cache_dir": str(tmp_path / "cache")},
        "train": {"out": str(tmp_path / "run"), "max_steps": 2, "eval_every": 2, "threads": 1,
                  "sample_every": 2, "sample_length": 12, "seq_len": 2, "batch_size": 1},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    lines = []
    train(config, log=lines.append)
    assert re.search(r" \d,\d{3} steps/epoch", lines[0]), lines[0]
    banners = [line for line in "\n".join(lines).splitlines() if line.startswith("---- sample")]
    assert banners == [f"---- sample at step {s} (temperature 0.8) ----" for s in (0, 2)]


def test_elapsed_time_carries_over_a_resume(tmp_path):
    from rnnkit.training.metrics import read_metrics

    (tmp_path / "t.txt").write_text("abcdefgh\n" * 300)
    config = RunConfig()
    apply_overrides(config, load_preset("tiny"), "preset tiny")
    settings = {
        "data": {"paths": [str(tmp_path / "t.txt")], "cache_dir": str(tmp_path / "cache")},
        "train": {"out": str(tmp_path / "run"), "max_steps": 4, "eval_every": 4, "threads": 1,
                  "log_every": 2, "sample_every": 0},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    train(config, log=lambda *_: None)
    skeleton = tmp_path / "run" / "last" / "training.json"
    first = json.loads(skeleton.read_text())["$dict"]["elapsed_s"]
    assert first > 0
    train(config, resume=True, overrides={"train": {"max_steps": 8}}, log=lambda *_: None)
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.csv") if r["kind"] == "train"]
    times = [float(r["elapsed_s"]) for r in rows]
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert times == sorted(times) and times[2] >= first  # the resumed clock goes on


def _forge_training_json(last: Path, change) -> None:
    """Apply ``change(fields)`` to last/training.json and re-sign it in config.json."""
    skeleton = json.loads((last / "training.json").read_text())
    change(skeleton["$dict"])
    (last / "training.json").write_text(json.dumps(skeleton))
    meta = json.loads((last / "config.json").read_text())
    digest = hashlib.sha256((last / "training.json").read_bytes()).hexdigest()
    meta["files"]["training.json"] = digest
    (last / "config.json").write_text(json.dumps(meta))


def test_older_checkpoints_resume_and_a_bad_elapsed_s_is_one_line(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("abcdefgh\n" * 300)
    args = ["train", str(tmp_path / "t.txt"), "--preset", "tiny", "--threads", "1"]
    args += ["--max-steps", "2", "--eval-every", "2", "--log-every", "1", "--sample-every", "0"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "old")]) == 0
    shutil.copytree(tmp_path / "old", tmp_path / "bad")
    _forge_training_json(tmp_path / "old" / "last", lambda s: s.pop("elapsed_s"))
    assert main(["train", "--resume", str(tmp_path / "old"), "--max-steps", "3"]) == 0
    _forge_training_json(tmp_path / "bad" / "last", lambda s: s.update(elapsed_s="x"))
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "bad"), "--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training.json" in err
    assert "elapsed_s must be a number of seconds >= 0, got 'x'" in err
