"""benchmarks/tagger_ewt.py: --quick runs end to end in a subprocess on tiny CoNLL-U files made
here (never ../shared), both variants (softmax, --crf), results.json, the table, the error
paths. Figures are never asserted: those are the benchmark's to print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import tagger_ewt  # noqa: E402

WORDS = {"DET": ["the", "a"], "NOUN": ["cat", "dog", "mat"], "VERB": ["sat", "ran"]}


def treebank(folder: Path, sentences: int = 30, seed: int = 0) -> Path:
    """en_ewt-ud-{train,dev,test}.conllu of DET NOUN VERB sentences, with a comment, a
    multiword-token line and an empty node now and then, as the real files have."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in tagger_ewt.SPLITS:
        blocks = []
        for s in range(sentences):
            lines = [f"# sent_id = {split}-{s}"]
            for i, tag in enumerate(["DET", "NOUN", "VERB"], start=1):
                word = str(rng.choice(WORDS[tag]))
                lines.append(f"{i}\t{word}\t{word}\t{tag}\t_\t_\t0\troot\t_\t_")
            if s % 7 == 0:
                lines.insert(1, "1-2\tthecat\t_\t_\t_\t_\t_\t_\t_\t_")
                lines.append("3.1\tsat\tsit\tVERB\t_\t_\t_\t_\t_\t_")
            blocks.append("\n".join(lines))
        (folder / f"en_ewt-ud-{split}.conllu").write_text("\n\n".join(blocks) + "\n\n")
    return folder


def run_benchmark(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RNNKIT_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "tagger_ewt.py"), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )  # fmt: skip


def test_quick_run_trains_scores_and_writes_results(tmp_path):
    """The CRF variant only (the softmax one is the same commands without --crf: a test of
    both would double the time)."""
    data = treebank(tmp_path / "data")
    out = tmp_path / "out"
    flags = ["--quick", "--variant", "crf", "--threads", "1"]
    done = run_benchmark(*flags, "--data", data, "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / "results.json").read_text())
    rows = saved["results"]
    assert [r["variant"] for r in rows] == ["crf"]
    for r in rows:
        assert 0.0 <= r["test_upos"] <= 1.0 and 0.0 <= r["dev_upos"] <= 1.0
        assert r["tag_sentences_per_s"] > 0 and r["train_words_per_s"] > 0
        assert 1 <= r["steps"] <= 6
        assert (Path(r["run"]) / "best" / "model.safetensors").is_file()
    crf_config = json.loads((out / "run-crf" / "best" / "config.json").read_text())
    assert "crf" in json.dumps(crf_config)
    assert len((out / "data-quick" / "en_ewt-ud-train.conllu").read_text().split("\n\n")) > 10
    assert "UDPipe 1.2" in done.stdout and "issue 19 target" in done.stdout
    assert "bilstm-aux README" in done.stdout
    assert "rnnkit tag preset, crf, --quick, 1 thread " in done.stdout
    again = run_benchmark("--quick", "--data", data, "--out", out, cwd=tmp_path)
    assert again.returncode != 0 and "already holds results.json" in again.stderr


def test_missing_data_and_bad_flags_are_one_line_errors(tmp_path):
    done = run_benchmark("--quick", "--data", tmp_path / "nowhere", "--out", tmp_path, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("tagger_ewt: --data")
    assert "en_ewt-ud-train.conllu" in done.stderr and "Traceback" not in done.stderr
    bad = run_benchmark("--max-time", "0", "--out", tmp_path, cwd=tmp_path)
    assert bad.returncode != 0 and "--max-time must be > 0" in bad.stderr
    bad = run_benchmark("--variant", "hmm", "--out", tmp_path, cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'hmm'" in bad.stderr


def test_table_lists_ours_then_the_published_figures():
    row = {
        "variant": "crf", "max_time_s": 900, "dev_upos": 0.95, "test_upos": 0.94,
        "train_words_per_s": 3000.0, "tag_sentences_per_s": 400.0,
    }  # fmt: skip
    text = tagger_ewt.table([row], 2).splitlines()
    assert text[2].startswith("rnnkit tag preset, crf, 15 min, 2 threads")
    assert "95.00" in text[2] and "94.00" in text[2] and "3,000" in text[2]
    assert [line.split()[0] for line in text[3:]] == ["bilty", "bilty", "UDPipe", "UDPipe", "issue"]
    assert text[-1].endswith("95.00")


@pytest.mark.parametrize("quick", [True, False])
def test_data_files_keeps_the_first_sentences_when_quick(tmp_path, quick):
    data = treebank(tmp_path / "data", sentences=40)
    paths = tagger_ewt.data_files(data, tmp_path / "out", quick)
    text = paths["test"].read_text()
    assert text.count("# sent_id") == (tagger_ewt.QUICK_SENTENCES["test"] if quick else 40)
    assert text.startswith("# sent_id = test-0\n")
