"""The word-level language model (``--task lm --tokenizer word``): the vocabulary rules, the
per-character bpc, the checkpoint round trip, and train / sample / eval / resume through the CLI
in subprocesses."""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import ScoredText, TokenStreams, WordVocab, encode_lines, scored_chars, split_lines
from rnnkit.errors import UserError
from rnnkit.tasks.lm import _figures
from subprocess_cli import rnnkit

SUBJECTS = ("the cat", "a dog", "the old man", "my sister")
VERBS = ("sat on", "looked at", "ran to", "slept near")
OBJECTS = ("the mat", "a tree", "the house", "our car")


def corpus_lines(count: int = 400, seed: int = 0) -> list[str]:
    """Subject-verb-object lines: a text whose next word is often predictable."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ." for _ in range(count)
    ]


# ---- the vocabulary -----------------------------------------------------------------------


def test_vocabulary_most_frequent_first_ties_by_first_appearance():
    vocab = WordVocab.build(["b a c a", "c d"])
    assert vocab.symbols == ["<unk>", "<eos>", "a", "c", "b", "d"]  # a 2, c 2, then b, d
    assert WordVocab.build(["b a c a", "c d"]) == vocab  # deterministic


def test_vocab_size_counts_the_specials_and_min_count_drops_rare_words():
    lines = ["x x x y y z", "y x w"]
    assert WordVocab.build(lines, vocab_size=4).symbols == ["<unk>", "<eos>", "x", "y"]
    assert WordVocab.build(lines, min_count=2).symbols == ["<unk>", "<eos>", "x", "y"]
    assert WordVocab.build(lines, min_count=3).symbols == ["<unk>", "<eos>", "x", "y"]
    assert WordVocab.build(lines, min_count=4).symbols == ["<unk>", "<eos>", "x"]


def test_literal_unk_in_the_text_is_the_special():
    vocab = WordVocab.build(["the <unk> cat <unk>"])
    assert vocab.symbols == ["<unk>", "<eos>", "the", "cat"]
    assert vocab.encode("the <unk> dog\n").tolist() == [2, 0, 0, 1]


def test_empty_vocabulary_and_bad_sizes_are_one_line_errors():
    with pytest.raises(UserError, match=r"--min-count 5 leaves no words.*seen 2 times"):
        WordVocab.build(["a a b"], min_count=5)
    with pytest.raises(UserError, match="--vocab-size must be 0"):
        WordVocab.build(["a"], vocab_size=2)
    with pytest.raises(UserError, match="--min-count 1 leaves no words"):
        WordVocab.build(["", "  "])


def test_encode_and_decode_words_with_eos_and_unk():
    vocab = WordVocab.build(["the cat sat"])
    ids = vocab.encode("the dog sat\n\ncat")
    assert ids.tolist() == [2, 0, 4, 1, 1, 3]
    assert vocab.decode(ids) == "the <unk> sat\n\ncat"
    assert vocab.encode("\n", unknown="skip").tolist() == [1]  # generation's start token
    assert vocab.unknown_words("the dog dog owl") == ["dog", "owl"]
    decoder = vocab.decoder()
    assert [decoder.decode(i) for i in [2, 3, 1, 4]] == ["the", " cat", "\n", "sat"]
    with pytest.raises(UserError, match="outside the vocabulary"):
        decoder.decode(5)


def test_json_round_trip_and_bad_vocab_json():
    vocab = WordVocab.build(["b a c a", "c d"])
    assert WordVocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab
    for bad, message in (
        ({"a": 1}, "JSON list of strings"),
        (["a", "<eos>", "b"], "starts with <unk>, <eos>"),
        (["<unk>", "<eos>", "a b"], "without spaces"),
        (["<unk>", "<eos>", "a", "a"], "duplicate symbols 'a'"),
    ):
        with pytest.raises(UserError, match=message):
            WordVocab.from_json(bad, source="run/vocab.json")


def test_encode_lines_counts_characters_and_unknown_words():
    vocab = WordVocab.build(["the cat"])
    lines = ["the  dog", "", "cat"]
    text = encode_lines(lines, vocab)
    assert text.tokens.tolist() == [2, 0, 1, 1, 3, 1]
    # "the dog\n" 8, "\n" 1, "cat\n" 4: single spaces, each line end once
    assert text.chars.tolist() == [4, 4, 0, 1, 4, 0]
    assert int(text.chars.sum()) == len("the dog\n\ncat\n")
    assert text.oov == 1


def test_validation_is_the_last_lines():
    lines = [str(i) for i in range(10)]
    assert split_lines(lines, 0.2) == (lines[:8], lines[8:])
    with pytest.raises(UserError, match="--val-fraction"):
        split_lines(lines, 1.0)


# ---- the figures --------------------------------------------------------------------------


def test_scored_chars_follow_the_streams_layout():
    chars = np.arange(1, 22, dtype=np.int32)  # 21 tokens: 2 streams of 10, chunks of 4
    streams = TokenStreams(np.zeros(21, dtype=np.int64), 2, 4)
    assert len(streams) == 2
    # the targets scored: stream 0 tokens 1..8, stream 1 tokens 11..18 (0-based positions)
    expected = int(chars[1:9].sum() + chars[11:19].sum())
    text = ScoredText(streams, chars, None)
    assert scored_chars(text, 0) == expected
    assert scored_chars(text, 1) == int(chars[1:5].sum() + chars[11:15].sum())


def test_word_figures_give_perplexity_and_bits_per_character():
    figures = _figures(2.0, 100, 450)
    assert figures["ppl"] == pytest.approx(math.exp(2.0))
    assert figures["bpc"] == pytest.approx(2.0 * 100 / 450 / math.log(2))
    assert (figures["tokens"], figures["chars"]) == (100, 450)
    same = {"loss": 2.0, "ppl": math.exp(2.0), "tokens": 100, "bpc": 2.0 / math.log(2)}
    assert _figures(2.0, 100, 100) == {**same, "chars": 100}  # a char model: bpc as before


# ---- end to end ---------------------------------------------------------------------------

TRAIN = ("--hidden", 48, "--embed", 24, "--layers", 1, "--batch-size", 8, "--seq-len", 12)
TRAIN += ("--lr", 0.01, "--eval-every", 50, "--sample-every", 0, "--seed", 3)


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    """A tiny word model trained through the CLI; the last 10% of the lines add a word
    ("zyzzyva") the training lines never have."""
    work = tmp_path_factory.mktemp("word_lm")
    lines = corpus_lines(400)
    lines[-5] = "the cat sat on zyzzyva ."
    (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = rnnkit(
        "train", "corpus.txt", "--tokenizer", "word", "--out", "run", "--max-steps", 150,
        *TRAIN, cwd=work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return work, result


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_reads_words_and_the_loss_falls(word_run):
    work, result = word_run
    assert "vocab 24 (word)" in result.stdout + result.stderr
    rows = _rows(work / "run" / "metrics.csv")
    train = [float(r["loss"]) for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    assert train[-1] < train[0] - 0.5, train
    assert val and all(float(r["ppl"]) == pytest.approx(math.exp(float(r["loss"])), rel=1e-4)
                       for r in val)  # fmt: skip
    symbols = json.loads((work / "run" / "best" / "vocab.json").read_text())
    assert symbols[:2] == ["<unk>", "<eos>"]
    assert "zyzzyva" not in symbols  # a validation-only word: the vocabulary is the training's
    assert set(symbols[2:]) == {w for part in SUBJECTS + VERBS + OBJECTS for w in part.split()} | {
        "."
    }


def test_sample_prints_words_of_the_vocabulary(word_run):
    work, _ = word_run
    symbols = set(json.loads((work / "run" / "best" / "vocab.json").read_text()))
    result = rnnkit("sample", "run", "--prime", "the", "--length", 30, "--seed", 1, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the ")
    words = result.stdout.split()
    assert len(words) > 10 and set(words) <= symbols
    assert result.stderr == ""


def test_sample_notes_unknown_prime_words_on_one_line(word_run):
    work, _ = word_run
    result = rnnkit("sample", "run", "--prime", "the wombat", "--length", 5, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the wombat ")
    notes = [line for line in result.stderr.splitlines() if "wombat" in line]
    assert notes == ["rnnkit: note: prime words not in the vocabulary read as <unk>: 'wombat'"]


def test_eval_json_has_perplexity_and_bits_per_character(word_run):
    work, _ = word_run
    result = rnnkit("eval", "run", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["ppl"] == pytest.approx(math.exp(figures["loss"]))
    nats = figures["loss"] * figures["tokens"]
    assert figures["bpc"] == pytest.approx(nats / figures["chars"] / math.log(2))
    # the validation lines are 40 lines of 4-7 words: every scored word stands for >= 2 chars
    assert 2 * figures["tokens"] * 0.8 < figures["chars"] < 8 * figures["tokens"]


def test_eval_on_another_file_counts_words_that_became_unk(word_run):
    work, _ = word_run
    other = corpus_lines(60, seed=9)
    other = [line.replace("mat", "rug") for line in other]
    unk = sum(line.split().count("rug") for line in other)
    (work / "other.txt").write_text("\n".join(other) + "\n", encoding="utf-8")
    result = rnnkit("eval", "run", "other.txt", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert unk > 0 and figures["unk"] == unk
    text = rnnkit("eval", "run", "other.txt", cwd=work)
    assert f"{unk:,} words became <unk>" in text.stdout
    assert "perplexity" in text.stdout


def test_resume_continues_the_word_run(word_run, tmp_path):
    work, _ = word_run
    shutil.copytree(work / "run", tmp_path / "run")  # the fixture's run stays as it was
    (tmp_path / "corpus.txt").write_bytes((work / "corpus.txt").read_bytes())
    before = json.loads((tmp_path / "run" / "last" / "vocab.json").read_text())
    result = rnnkit("train", "--resume", "run", "--max-steps", 170, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "vocab 24 (word)" in result.stdout
    rows = _rows(tmp_path / "run" / "metrics.csv")
    steps = [int(r["step"]) for r in rows if r["kind"] == "train"]
    assert steps[-1] == 170 and 160 in steps and 150 in steps
    assert json.loads((tmp_path / "run" / "last" / "vocab.json").read_text()) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("--vocab-size", 10), "rnnkit: error: --vocab-size is for --tokenizer word or bpe"),
        (("--min-count", 2), "rnnkit: error: --min-count is for --tokenizer word"),
        (("--tokenizer", "word", "--min-count", 10000), "rnnkit: error: --min-count 10000 leaves"),
        (("--tokenizer", "word", "--vocab-size", 1), "rnnkit: error: --vocab-size must be 0"),
    ],
)
def test_bad_word_options_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "c.txt").write_text("\n".join(corpus_lines(50)) + "\n", encoding="utf-8")
    result = rnnkit("train", "c.txt", "--out", "run", "--max-steps", 1, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
