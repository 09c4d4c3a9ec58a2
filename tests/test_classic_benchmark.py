"""benchmarks/classic.py reads every per-task benchmark's results.json into one table.

The results files are written by the benchmarks' OWN main() (their subprocess calls and the
data-bound parts replaced by fakes that answer in the formats rnnkit train/eval print), so a
change to a benchmark's layout breaks these tests instead of the table. Figures are never
asserted beyond "the table shows what the file holds"; a missing benchmark is a "not run" row
with the command that makes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import charlm_quality
import classic
import forecast_real
import tagger_ewt
import ucr
import warpeace
import word_lm
from rnnkit.analysis.memory import MemoryResult, Trial
from rnnkit.tasks.forecast_eval import backtest_origins

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "classic.py"


def done(stdout: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], 0, stdout=stdout, stderr="")


def fake_rnnkit(*args: str) -> subprocess.CompletedProcess:
    """What ``rnnkit train`` / ``rnnkit eval --json`` print, per the benchmark calling them."""
    if args[0] == "train":
        Path(args[args.index("--out") + 1]).mkdir(parents=True)  # as rnnkit train makes it
        if "tag" in args:
            return done("stopped (time limit) at step 1,200: best val token_accuracy 0.9412; x\n")
        return done("stopped (time limit) at step 1,020: best val 1.3348 nats/char; x\n")
    if "--tune-cache" in args:
        plain, cached = {"ppl": 219.42, "tokens": 80640}, {"ppl": 203.4, "tokens": 80640}
        figures = {"val_plain": {"ppl": 225.9}, "test_plain": plain, "val": {"ppl": 204.6},
                   "test": cached, "cache_size": 2000, "cache_theta": 1.0,
                   "cache_lambda": 0.1}  # fmt: skip
    elif "conllu" in " ".join(args):
        figures = {"token_accuracy": 0.9471, "macro_f1": 0.88}
    else:
        figures = {"loss": 1.3308, "bpc": 1.92, "chars": 316800}
    return done(json.dumps(figures) + "\n")


def write_all(runs: Path, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    """Every benchmark's results.json (forecast_real: co2 only; memory: adding only)."""
    mp.setattr(word_lm, "rnnkit", fake_rnnkit)
    mp.setattr(tagger_ewt, "rnnkit", fake_rnnkit)
    mp.setattr(charlm_quality, "rnnkit", fake_rnnkit)
    data = tmp / "data"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"ptb.{split}.txt").write_text("a b c\n")
    for split in ("train", "dev", "test"):
        (data / f"en_ewt-ud-{split}.conllu").write_text("1\ta\t_\tX\n\n")
    word_lm.main(["--data", str(data), "--out", str(runs / "word_lm")])
    (data / "wp.txt").write_text("War and Peace. " * 20)
    warpeace.main(["--text", str(data / "wp.txt"), "--out", str(runs / "warpeace")])
    mp.setattr(tagger_ewt, "train_words_per_s", lambda run: 4321.0)
    speed = {"tag_sentences_per_s": 250.0, "tag_words_per_s": 4000.0}
    mp.setattr(tagger_ewt, "tagging_speed", lambda run, test, threads: speed)
    tagger_ewt.main(["--data", str(data), "--out", str(runs / "tagger_ewt")])
    mp.setattr(
        sys, "argv", ["charlm_quality.py", "--json", str(runs / "charlm_quality/results.json")]
    )
    (runs / "charlm_quality").mkdir()
    charlm_quality.main()
    files = (data / "a_TRAIN.ts", data / "a_TEST.ts")
    mp.setattr(ucr, "set_files", lambda name, out, quick: files)
    accuracy = {"JapaneseVowels": 0.97, "ArrowHead": 0.81, "ItalyPowerDemand": 0.96}
    mp.setattr(ucr, "train_and_test", lambda name, tr, te, args: {
        "accuracy": accuracy[name], "macro_f1": 0.5, "seconds": 1.0})  # fmt: skip
    mp.setattr(ucr, "nn_dtw", lambda tr, te: {"accuracy": 0.9, "seconds": 1.0})
    ucr.main(["--out", str(runs / "ucr")])
    write_forecast(runs / "forecast_real", mp)
    memory = MemoryResult(
        [Trial("adding", cell, T, 0, 8, 5000, 0.01, 0.17, 0.06, ok, 100, 1.0)
         for cell, T, ok in [("rnn", 10, True), ("rnn", 50, False), ("lstm", 10, True),
                             ("lstm", 50, True), ("lstm", 100, False)]],
        {"budget": 5000, "steps": 1500},
    )  # fmt: skip
    (runs / "memory_tasks").mkdir()
    (runs / "memory_tasks/results.json").write_text(json.dumps(memory.to_json()))


def write_forecast(out: Path, mp: pytest.MonkeyPatch) -> None:
    """forecast_real.main on a synthetic co2 (no wheels, no training): its own scoring."""
    y = 300 + np.sin(np.arange(800) * 2 * np.pi / 52)
    times = [datetime(1958, 3, 29) + timedelta(weeks=i) for i in range(800)]
    mp.setattr(forecast_real, "read_co2", lambda: (times, y))

    co2 = forecast_real.SERIES["co2"]
    window = int(co2["flags"].split("--window ")[1].split()[0])
    origins = backtest_origins(len(y), co2["horizon"], co2["windows"], window, co2["season"])

    def forecasts(shift: float) -> dict:
        point = np.stack([y[o : o + co2["horizon"]] for o in origins]) + shift
        lo, hi = point - 1, point + 1
        return {"median": point, "quantiles": np.stack([lo, point, hi], -1), "lower": lo,
                "upper": hi}  # fmt: skip

    both = {"SeasonalNaive": forecasts(0.5), "AutoETS": forecasts(0.3)}
    mp.setattr(forecast_real, "run_baselines", lambda *args: both)
    ours = {**forecasts(0.1), "crps": 0.05, "train_seconds": 600.0}
    mp.setattr(forecast_real, "run_rnnkit", lambda *args: ours)
    forecast_real.main(["--series", "co2", "--out", str(out)])


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """classic.main over a runs dir holding every layout: its rows, Markdown and JSON."""
    tmp = tmp_path_factory.mktemp("classic")
    runs = tmp / "runs"
    runs.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        write_all(runs, tmp, mp)
    doc = tmp / "docs" / "benchmarks.md"
    rows = classic.main(["--runs", str(runs), "--doc", str(doc)])
    return {(r.bench, r.key): r for r in rows}, runs, doc


def test_every_layout_becomes_its_rows(table):
    rows, runs, _ = table
    names = ("word_lm", "warpeace", "tagger_ewt", "ucr", "forecast_real")
    results = {name: json.loads((runs / name / "results.json").read_text()) for name in names}
    assert rows["word_lm", "900"].figure == results["word_lm"][0]["test_ppl"] == 219.42
    assert rows["word_lm", "900+cache"].figure == 203.4
    assert rows["word_lm", "900+cache"].baselines == [
        ("AWD-LSTM (Merity et al. 2017), 500 epochs (GPU)", 52.5,
         "github.com/salesforce/awd-lstm-lm README")]  # fmt: skip
    assert rows["warpeace", "3600"].figure == 1.3308
    assert rows["warpeace", "900"].baselines[0][1] == warpeace.PUBLISHED[0][1]
    assert rows["tagger_ewt", "crf"].figure == pytest.approx(94.71)
    assert rows["tagger_ewt", "softmax"].budget.startswith("15 min")
    assert rows["charlm_quality", "default"].figure == 1.3308
    assert rows["ucr", "ArrowHead"].figure == 0.81
    here, *published = rows["ucr", "ArrowHead"].baselines
    assert here[1] == 0.9 and published[-1][1] == pytest.approx(1 - 0.2971)
    co2 = results["forecast_real"]["co2"]["models"]
    assert rows["forecast_real", "co2-mase"].figure == co2["rnnkit"]["mase"]
    assert [b[1] for b in rows["forecast_real", "co2-mase"].baselines] == [
        co2["SeasonalNaive"]["mase"], co2["AutoETS"]["mase"]]  # fmt: skip
    assert rows["forecast_real", "co2-coverage"].figure == 1.0
    assert rows["memory_tasks", "adding-lstm"].figure == 50  # solved 10 and 50, not 100
    assert rows["memory_tasks", "adding-lstm"].baselines[0][1] == 10  # the RNN of that run


def test_missing_results_are_not_run_rows_with_their_command(table):
    rows, runs, _ = table
    taylor = rows["forecast_real", "taylor"]
    assert taylor.figure is None
    assert taylor.command == (
        f"python benchmarks/forecast_real.py --series taylor --out {runs}/forecast_real-taylor"
    )
    copy = rows["memory_tasks", "copy"]
    assert copy.command.endswith(f"--tasks copy --json > {runs}/memory_tasks-copy/results.json")
    assert ("charlm_quality", "quality") in rows and rows[
        "charlm_quality", "quality"
    ].figure is None


def test_markdown_and_json_hold_the_rows(table):
    rows, _, doc = table
    text = doc.read_text()
    assert "| **219.42** | test perplexity |" in text
    assert "Karpathy, Johnson & Fei-Fei (2015)" in text
    assert "*not run*" in text and "forecast_real.py --series taylor" in text
    saved = json.loads(doc.with_name("classic.json").read_text())
    assert len(saved) == len(rows)
    assert {"task", "data", "figure", "unit", "budget", "baselines"} <= saved[0].keys()


def test_the_newer_file_wins_and_the_sidecar_gives_threads(tmp_path):
    old, new = tmp_path / "ucr", tmp_path / "ucr-ArrowHead"
    for folder, accuracy in ((old, 0.5), (new, 0.75)):
        folder.mkdir()
        results = {"settings": {"max_time": 180, "threads": 2, "quick": False}, "results": {
            "ArrowHead": {"rnnkit": {"accuracy": accuracy}, "dtw": {"accuracy": 0.7},
                          "published": []}}}  # fmt: skip
        (folder / "results.json").write_text(json.dumps(results))
    os.utime(old / "results.json", (1, 1))
    (new / classic.SIDECAR).write_text(json.dumps({"threads": "2 threads", "machine": "m1"}))
    ucr_bench = next(b for b in classic.BENCHES if b.name == "ucr")
    row = classic.collect(tmp_path, ucr_bench)["ArrowHead"]
    assert row.figure == 0.75 and row.budget == "3 min, 2 threads, m1"
    os.utime(new / "results.json", (0, 0))
    assert classic.collect(tmp_path, ucr_bench)["ArrowHead"].figure == 0.5


def ucr_results(folder: Path, accuracies: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    results = {"settings": {"max_time": 180, "threads": 2, "quick": False}, "results": {
        name: {"rnnkit": {"accuracy": a}, "dtw": {"accuracy": 0.7}, "published": []}
        for name, a in accuracies.items()}}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))


def test_rows_whose_files_are_gone_keep_the_earlier_tables_figure(tmp_path):
    """A fresh clone has no runs/: the rows of the last table (its classic.json) stay, listed
    apart; a results file still wins over them; --forget-earlier makes them 'not run'."""
    runs, doc = tmp_path / "runs", tmp_path / "docs" / "benchmarks.md"
    ucr_results(runs / "ucr", {"JapaneseVowels": 0.98, "ArrowHead": 0.5})
    classic.main(["--runs", str(runs), "--doc", str(doc), "--only", "ucr"])
    (runs / "ucr" / "results.json").unlink()
    ucr_results(runs / "ucr-ArrowHead", {"ArrowHead": 0.75})
    rows = {r.key: r for r in classic.main(["--runs", str(runs), "--doc", str(doc), "--only",
                                            "ucr"])}  # fmt: skip
    assert rows["JapaneseVowels"].figure == 0.98 and rows["JapaneseVowels"].kept
    assert rows["ArrowHead"].figure == 0.75 and not rows["ArrowHead"].kept
    assert rows["ItalyPowerDemand"].figure is None
    assert list(rows) == list(ucr.SETS)  # the declared order, wherever each row came from
    text = doc.read_text()
    kept = text.split("Rows kept from the earlier table")[1]
    assert f"`{runs}/ucr/results.json`" in kept and "ucr-ArrowHead" not in kept
    again = {r.key: r for r in classic.main(["--runs", str(runs), "--doc", str(doc), "--only",
                                             "ucr"])}  # fmt: skip
    assert again["JapaneseVowels"].figure == 0.98  # kept rows are kept again
    forgot = classic.main(["--runs", str(runs), "--doc", str(doc), "--only", "ucr",
                           "--forget-earlier"])  # fmt: skip
    assert [(r.key, r.figure) for r in forgot] == [
        ("JapaneseVowels", None),
        ("ArrowHead", 0.75),
        ("ItalyPowerDemand", None),
    ]
    assert "Rows kept" not in doc.read_text()


def test_a_broken_earlier_table_is_one_line_and_exit_2(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.with_name("classic.json").write_text('[{"bench": "ucr"}]')
    bad = cli("--runs", str(tmp_path), "--doc", str(doc), "--only", "ucr")
    assert bad.returncode == 2
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith(f"classic: {doc.with_name('classic.json')}: not a classic.json table")
    assert "--forget-earlier" in line
    fine = cli("--runs", str(tmp_path), "--doc", str(doc), "--only", "ucr", "--forget-earlier")
    assert fine.returncode == 0, fine.stderr


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd
    )


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "word_lm").mkdir()
    (tmp_path / "word_lm/results.json").write_text('{"not": "a list"}')
    bad = cli("--runs", str(tmp_path), "--doc", str(tmp_path / "b.md"), "--only", "word_lm")
    assert bad.returncode == 2
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith(f"classic: {tmp_path}/word_lm/results.json: not a word_lm results file")
    assert cli("--quick", "--fresh").returncode == 2
    doc = cli("--doc", str(tmp_path / "table.txt"))
    assert doc.returncode == 2 and "--doc" in doc.stderr


def test_quick_runs_a_benchmark_end_to_end(tmp_path):
    """--quick --only memory_tasks: the subprocess, its stdout JSON saved, the sidecar, the
    table (a few seconds; the other benchmarks' --quick runs take minutes in all), written to
    runs/classic-quick/, never over docs/benchmarks.md."""
    doc = tmp_path / "runs" / "classic-quick" / "benchmarks.md"
    done = cli("--quick", "--only", "memory_tasks", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = json.loads(doc.with_name("classic.json").read_text())
    assert [r["key"] for r in saved] == ["adding-rnn", "adding-lstm", "copy-rnn", "copy-lstm"]
    assert all("--quick, 1 thread per worker" in r["budget"] for r in saved)
    assert "--quick smoke runs" in doc.read_text()


def test_run_missing_runs_only_the_missing_invocation(tmp_path, monkeypatch, capsys):
    """--run-missing with the copy results present: only the adding run (its flags shrunk to a
    few steps) is made, into RUNS/memory_tasks-adding with its sidecar; a second call runs
    nothing."""
    memory = next(b for b in classic.BENCHES if b.name == "memory_tasks")
    small = ["--cells", "rnn", "lstm", "gru", "--lengths", "5", "--seeds", "1", "--steps", "3"]
    for run in memory.runs:
        monkeypatch.setattr(
            run, "flags", ["--tasks", run.label, *small, "--workers", "1", "--json"]
        )
    copy = MemoryResult([Trial("copy", cell, 5, 0, 8, 5000, 1.0, 2.0, 0.5, False, 3, 0.1)
                         for cell in ("rnn", "lstm", "gru")], {})  # fmt: skip
    (tmp_path / "memory_tasks").mkdir()
    (tmp_path / "memory_tasks/results.json").write_text(json.dumps(copy.to_json()))
    rows = classic.build(tmp_path, run_missing=True, fresh=False, quick=False,
                         only=["memory_tasks"])  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory_tasks", "memory_tasks-adding"]
    sidecar = json.loads((tmp_path / "memory_tasks-adding" / classic.SIDECAR).read_text())
    assert sidecar["command"][:3] == ["benchmarks/memory_tasks.py", "--tasks", "adding"]
    assert [r.key for r in rows] == [f"{t}-{c}" for t in ("adding", "copy")
                                     for c in ("rnn", "lstm", "gru")]  # fmt: skip
    assert all(r.figure is not None for r in rows) and rows[3].figure == "none"
    capsys.readouterr()
    classic.build(tmp_path, run_missing=True, fresh=False, quick=False, only=["memory_tasks"])
    assert "classic: running" not in capsys.readouterr().out


def test_threads_and_quick_shown_where_a_results_file_records_them(table):
    from classic_rows import forecast_rows, spent

    assert spent(900, {"threads": "2"}) == "15 min, 2 threads"
    assert spent(60, {"quick": True, "threads": 1}) == "--quick, 1 thread"
    assert spent(45, {}) == "45 s"
    _, runs, _ = table
    results = json.loads((runs / "forecast_real/results.json").read_text())
    rows = forecast_rows({"settings": {"threads": 2}, **results})  # a settings entry is skipped
    assert [r.key for r in rows] == ["co2-mase", "co2-coverage"]
    assert rows[0].budget == "10 min, 2 threads"


def test_a_failed_benchmark_run_is_a_not_run_row_with_its_error(tmp_path, monkeypatch):
    memory = next(b for b in classic.BENCHES if b.name == "memory_tasks")
    monkeypatch.setattr(memory, "quick", ["--cells", "nope", "--json"])
    doc = tmp_path / "benchmarks.md"
    with pytest.raises(SystemExit, match="1 benchmark run.s. failed: .*invalid choice: 'nope'"):
        classic.main(["--quick", "--only", "memory_tasks", "--doc", str(doc)])
    (row,) = json.loads(doc.with_name("classic.json").read_text())
    assert row["figure"] is None and "invalid choice: 'nope'" in row["note"]
    assert "memory_tasks.py --cells nope --json" in row["command"]
