"""Every ``--task`` end to end through the command line: train, resume, eval --json, predict or
sample, the task's picture, and the bad inputs the issue names (one line, exit 2, nothing
overwritten). Small fixtures, a few dozen steps: behaviour, not quality (benchmarks/tasks.py)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from subprocess_cli import rnnkit as run_rnnkit

SMALL = [
    *("--threads", "1", "--max-steps", "24", "--eval-every", "12", "--log-every", "4"),
    *("--hidden", "16", "--embed", "8", "--layers", "1", "--batch-size", "8"),
    *("--sample-every", "0"),
]


def rnnkit(*args, cwd, timeout=300):
    return run_rnnkit(*args, cwd=cwd, env_extra={"OMP_NUM_THREADS": "1"}, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def refused(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2 with exactly one line on stderr that names what was wrong; no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


NAMES = {
    "Italian": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci"],
    "Japanese": ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Nakamura", "Kato"],
    "Russian": ["Ivanov", "Smirnov", "Kuznetsov", "Popov", "Sokolov", "Lebedev", "Kozlov", "Orlov"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    names = root / "names"
    names.mkdir()
    for label, words in NAMES.items():
        (names / f"{label}.txt").write_text("\n".join(words * 4) + "\n")
    sentences = [
        [("the", "DET"), ("cat", "NOUN"), ("sat", "VERB"), (".", "PUNCT")],
        [("a", "DET"), ("dog", "NOUN"), ("ran", "VERB"), ("home", "ADV"), (".", "PUNCT")],
        [("the", "DET"), ("big", "ADJ"), ("bird", "NOUN"), ("sang", "VERB"), (".", "PUNCT")],
    ] * 12
    blocks = []
    for n, sentence in enumerate(sentences):
        rows = [f"# sent_id = {n}"]
        rows += [f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\t_\t_\t_" for i, (w, t) in enumerate(sentence, 1)]
        blocks.append("\n".join(rows))
    (root / "tags.conllu").write_text("\n\n".join(blocks) + "\n\n")
    pairs = [f"{w}\t{w[::-1]}" for words in NAMES.values() for w in words] * 3
    (root / "pairs.tsv").write_text("\n".join(pairs) + "\n")
    rows = [f"{t},{math.sin(t / 5):.5f},{math.cos(t / 7):.5f}" for t in range(400)]
    (root / "series.csv").write_text("t,a,b\n" + "\n".join(rows) + "\n")
    return root


RUNS = {
    "classify": ["names"],
    "tag": ["tags.conllu"],
    "seq2seq": ["pairs.tsv", "--max-len", "12"],
    "forecast": ["series.csv", "--window", "16", "--horizon", "4"],
    "frames": ["--synthetic-size", "48", "--frame-size", "8", "--frames", "4"],
    "generate-from": ["names"],
}
FIGURES = {
    "classify": "confusion.png",
    "tag": "confusion.png",
    "forecast": "forecast.png",
    "frames": "frames.png",
}
METRICS = {
    "classify": {"accuracy", "macro_f1"},
    "tag": {"token_accuracy"},
    "seq2seq": {"exact_match", "chrf", "bleu", "token_accuracy"},
    "forecast": {"mae", "rmse", "baseline_mae"},
    "frames": {"mse", "baseline_mse"},
    "generate-from": {"accuracy", "loss_shuffled_condition"},
}


@pytest.fixture(scope="module")
def runs(data):
    for task, extra in RUNS.items():
        out = ok(rnnkit("train", "--task", task, *extra, *SMALL, "--out", task, cwd=data))
        assert f"--task {task}" in out
    return data


@pytest.mark.parametrize("task", list(RUNS))
def test_train_writes_a_run_that_eval_scores(runs, task):
    run = runs / task
    assert {"best", "last", "metrics.csv", "loss.png"} <= {p.name for p in run.iterdir()}
    if task in FIGURES:
        assert (run / FIGURES[task]).read_bytes()[:4] == b"\x89PNG"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss", "lr", "grad_norm"} <= set(header)
    figures = json.loads(ok(rnnkit("eval", task, "--split", "test", "--json", cwd=runs)))
    assert {"loss", *METRICS[task]} <= set(figures)
    device = figures.pop("device")  # where it ran: the default (auto) picks it
    assert device == "cpu" or device.startswith(("cuda:", "mps"))
    assert all(isinstance(v, int | float) for v in figures.values())
    text = ok(rnnkit("eval", task, cwd=runs))
    assert "loss" in text
    if task in FIGURES:
        ok(rnnkit("eval", task, "--split", "test", "--figures", f"figures-{task}", cwd=runs))
        assert (runs / f"figures-{task}" / FIGURES[task]).read_bytes()[:4] == b"\x89PNG"


def test_resume_continues_a_task_run(runs):
    ok(rnnkit("train", "--resume", "classify", "--max-steps", "30", cwd=runs))
    rows = (runs / "classify" / "metrics.csv").read_text().splitlines()
    assert rows[-1].startswith("30,")


def test_resume_refuses_to_change_the_task(runs):
    refused(
        rnnkit("train", "--resume", "classify", "--task", "tag", "--pooling", "max", cwd=runs),
        "--pooling, --task cannot change when resuming",
    )


def test_scheduled_sampling_is_logged_per_step(runs):
    header, *rows = (runs / "seq2seq" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("teacher_prob")
    probs = [float(r.split(",")[column]) for r in rows if ",train," in r]
    assert probs and all(0 <= p <= 1 for p in probs) and probs == sorted(probs, reverse=True)


def test_eval_on_files_in_the_training_format(runs):
    for task, path in (("classify", "names"), ("tag", "tags.conllu"), ("seq2seq", "pairs.tsv")):
        figures = json.loads(ok(rnnkit("eval", task, path, "--json", cwd=runs)))
        assert {"loss", *METRICS[task]} <= set(figures)
    beam = json.loads(ok(rnnkit("eval", "seq2seq", "--decode", "beam", "--json", cwd=runs)))
    assert "bleu" in beam


def test_predict_and_sample(runs):
    out = ok(rnnkit("predict", "classify", "Rossi", "Tanaka", "--top", "2", cwd=runs))
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Rossi") and lines[0].count(",") == 1
    out = ok(rnnkit("predict", "tag", "the cat sat .", cwd=runs))
    assert "/" in out and out.split()[0].startswith("the/")
    out = ok(rnnkit("predict", "seq2seq", "Rossi", "--decode", "beam", cwd=runs))
    assert out.startswith("Rossi")
    listed = ok(rnnkit("predict", "seq2seq", "Rossi", "Tanaka", "--decode", "beam", "--n-best",
                       "3", cwd=runs)).splitlines()  # fmt: skip
    assert [line.split(" -> ")[0] for line in listed] == ["Rossi"] * 3 + ["Tanaka"] * 3
    assert listed[0].split("   (rank 1, score ")[0] == out.strip()  # the best is beam's output
    scores = [float(line.rsplit("score ", 1)[1].rstrip(")")) for line in listed[:3]]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    out = ok(rnnkit("predict", "forecast", "series.csv", cwd=runs))
    assert out.splitlines()[0].replace(" ", "") == "t,a,b" and len(out.splitlines()) == 5
    out = ok(rnnkit("sample", "generate-from", "--condition", "Italian", "--seed", "1", cwd=runs))
    assert out.strip()
    again = rnnkit("sample", "generate-from", "--condition", "Italian", "--seed", "1", cwd=runs)
    assert ok(again) == out


def test_sample_and_predict_refuse_what_does_not_apply(runs):
    refused(
        rnnkit("sample", "generate-from", "--condition", "Klingon", cwd=runs),
        "Klingon",
        "Italian",
    )
    refused(rnnkit("sample", "generate-from", cwd=runs), "--condition")
    refused(rnnkit("sample", "classify", cwd=runs), "rnnkit predict")
    refused(rnnkit("predict", "classify", "", cwd=runs))
    refused(rnnkit("predict", "seq2seq", "Rossi", "--n-best", "2", "--decode", "greedy",
                   cwd=runs), "--n-best 2 needs --decode beam")  # fmt: skip
    wide = ("--n-best", "4", "--decode", "beam", "--beam-width", "2")
    refused(rnnkit("predict", "seq2seq", "Rossi", *wide, cwd=runs),
            "--n-best 4: at most --beam-width (2)")  # fmt: skip


def test_predict_on_a_language_model_points_to_sample(tmp_path):
    (tmp_path / "t.txt").write_text("abcabcabc " * 300)
    ok(
        rnnkit(
            "train", "t.txt", "--preset", "tiny", "--max-steps", "2", "--out", "lm", cwd=tmp_path
        )
    )
    refused(rnnkit("predict", "lm", "hello", cwd=tmp_path), "--task lm", "rnnkit sample")


def write(root: Path, name: str, text: str) -> str:
    (root / name).write_text(text)
    return name


@pytest.mark.parametrize(
    ("task", "files", "args", "fragments"),
    [
        ("classify", {"one/Only.txt": "a\nb\n"}, ["one"], ["2 classes"]),
        ("classify", {"x.csv": "label,text\na,b\nc\n"}, ["x.csv"], ["x.csv:3"]),
        ("forecast", {"s.csv": "a,b\n1,2\n3\n"}, ["s.csv"], ["s.csv:3"]),
        ("forecast", {"s.csv": "a\n1\n2\nabc\n"}, ["s.csv"], ["s.csv:4", "abc"]),
        (
            "forecast",
            {"s.csv": "a\n" + "".join(f"{i}\n" for i in range(30))},
            ["s.csv", "--window", "48"],
            ["--window"],
        ),
        ("tag", {"t.conllu": "1\tthe\tthe\tDET\n"}, ["t.conllu"], ["t.conllu:1"]),
        ("seq2seq", {"p.tsv": "a\tb\nno tab here\n"}, ["p.tsv"], ["p.tsv:2"]),
    ],
)
def test_bad_task_input_is_one_line_and_exit_2(tmp_path, task, files, args, fragments):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    refused(
        rnnkit("train", "--task", task, *args, *SMALL, "--out", "run", cwd=tmp_path), *fragments
    )
    assert not (tmp_path / "run" / "last").exists()


def test_a_failed_run_never_overwrites_an_existing_one(runs):
    before = (runs / "classify" / "metrics.csv").read_text()
    refused(
        rnnkit("train", "--task", "classify", "names", "--out", "classify", cwd=runs), "--resume"
    )
    assert (runs / "classify" / "metrics.csv").read_text() == before
