"""The BPE language model (``--task lm --tokenizer bpe``): byte-level BPE from Hugging Face
``tokenizers`` round-trips any text, learns from the training lines only, is stored as its
JSON (a hostile one is a one-line error), and a run trains, evaluates, samples and resumes
bit-exact (word runs too)."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from subprocess_cli import rnnkit

pytest.importorskip("tokenizers")

from rnnkit.checkpoint.files import load_checkpoint, save_checkpoint  # noqa: E402
from rnnkit.cli import main as rnnkit_main  # noqa: E402
from rnnkit.config import RunConfig, apply_overrides  # noqa: E402
from rnnkit.data import BpeVocab, read_lines  # noqa: E402
from rnnkit.data.bpe import byte_symbols  # noqa: E402
from rnnkit.errors import UserError  # noqa: E402
from rnnkit.tasks.saved import load_task  # noqa: E402
from rnnkit.trainer.loop import train  # noqa: E402

LINES = [
    f"{who} saw the {what} by {when}, naïve café — «{what}»"
    for who in ("anna", "bruno", "carla", "dario", "émile")
    for what in ("moon", "river", "tower", "garden", "road", "ζῷον")
    for when in ("night", "day", "dawn", "夜")
]  # 120 lines of Latin, Greek, CJK and punctuation


@pytest.fixture(scope="module")
def vocab() -> BpeVocab:
    return BpeVocab.build(LINES, 400)


_VOCAB: list[BpeVocab] = []


def shared_vocab() -> BpeVocab:
    """The module's tokenizer for hypothesis (which refuses function-scoped fixtures)."""
    if not _VOCAB:
        _VOCAB.append(BpeVocab.build(LINES, 400))
    return _VOCAB[0]


# ---- the tokenizer -------------------------------------------------------------------------


def test_byte_symbols_are_the_byte_level_alphabet():
    from tokenizers import pre_tokenizers

    symbols = byte_symbols()
    assert len(set(symbols)) == 256 and set(symbols) == set(pre_tokenizers.ByteLevel.alphabet())
    assert symbols[ord("a")] == "a" and symbols[ord(" ")] == "Ġ" and symbols[ord("\n")] == "Ċ"


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_round_trips_and_each_character_counts_once(text):
    vocab = shared_vocab()
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert vocab.tokenizer.decode(ids.tolist()) == text  # the library's decoder agrees
    decoder = vocab.decoder()
    assert "".join(decoder.decode(i) for i in ids) + decoder.flush() == text  # streamed
    tokens, chars = vocab.encode_lines(text.split("\n"))
    assert vocab.decode(tokens) == text + "\n"
    assert int(chars.sum()) == len(text) + 1  # every character, the line ends included


def test_vocabulary_size_bytes_first_and_merges_learnt(vocab):
    assert 300 < len(vocab) <= 400  # merges stop where no pair repeats: 120 short lines
    assert set(vocab.symbols[:256]) == set(byte_symbols())  # the 256 bytes, then merges
    assert "Ġgarden" in vocab.symbols  # a frequent word became one token
    assert len(vocab.encode("anna saw the garden")) < len("anna saw the garden") / 2


def test_training_is_deterministic_and_reads_only_the_lines_given():
    train, held_out = LINES[:100], ["zyzzyva zyzzyva zyzzyva"] * 50
    a, b = BpeVocab.build(train, 400), BpeVocab.build(list(train), 400)
    assert a.to_json() == b.to_json() and a == b
    assert not any("zy" in s for s in a.symbols)  # never seen: no merge of it
    both = BpeVocab.build(train + held_out, 400)
    assert any("zyzz" in s for s in both.symbols)


def test_json_round_trip(vocab):
    data = json.loads(json.dumps(vocab.to_json()))
    assert isinstance(data, list) and len(data) == 1 and isinstance(data[0], str)
    back = BpeVocab.from_json(data)
    assert back == vocab and back.symbols == vocab.symbols
    text = "carla saw the ζῷον by 夜\n"
    assert back.encode(text).tolist() == vocab.encode(text).tolist()


def _spec(vocab: BpeVocab) -> dict:
    return json.loads(vocab.to_json()[0])


def _with(vocab: BpeVocab, change) -> list[str]:
    spec = _spec(vocab)
    change(spec)
    return [json.dumps(spec)]


def _drop_byte(spec):
    del spec["model"]["vocab"]["Ġ"]


def _lowercase(spec):
    spec["normalizer"] = {"type": "Lowercase"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda v: {"a": 1}, "a list of one string"),
        (lambda v: ["{", "}"], "a list of one string"),
        (lambda v: ["{not json"], "the bpe tokenizer is not JSON"),
        (lambda v: ["[1, 2]"], "expected a JSON object"),
        (lambda v: _with(v, lambda s: s["model"].update(type="WordPiece")), "model.type"),
        (lambda v: _with(v, _drop_byte), "ids must be 0..n-1"),
        (lambda v: _with(v, _lowercase), "normalizer must be null"),
        (lambda v: _with(v, lambda s: s["model"].update(dropout=0.5)), "model.dropout"),
        (lambda v: _with(v, lambda s: s.update(decoder={"type": "WordPiece"})), "decoder must"),
        (lambda v: _with(v, lambda s: s["model"]["vocab"].update(zz=5)), "ids must be 0..n-1"),
        (lambda v: _with(v, lambda s: s["model"].update(merges=[["x", "y", "z"]])), "not a tok"),
        (lambda v: _with(v, lambda s: s["added_tokens"].append({"id": 0})), "added_tokens"),
    ],
)
def test_a_broken_tokenizer_json_is_one_line(vocab, make, message):
    with pytest.raises(UserError, match=message) as error:
        BpeVocab.from_json(make(vocab), source="run/vocab.json")
    assert str(error.value).startswith("run/vocab.json: ") and "\n" not in str(error.value)


def test_too_small_a_vocabulary_and_no_text_are_errors():
    with pytest.raises(UserError, match="--vocab-size must be 0 .default 4096. or at least 256"):
        BpeVocab.build(LINES, 100)
    with pytest.raises(UserError, match="no words to learn from"):
        BpeVocab.build(["", "  "], 300)


# ---- runs ----------------------------------------------------------------------------------


def corpus_text(count: int = 600, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(LINES) + "\n" for _ in range(count))


def run_config(tmp: Path, out: str, tokenizer: str, **train_options) -> RunConfig:
    config = RunConfig()
    settings = {
        "data": {"paths": [str(tmp / "corpus.txt")], "cache_dir": str(tmp / "cache"),
                 "tokenizer": tokenizer},
        "model": {"embed": 16, "hidden": 24, "layers": 1},
        "train": {"out": str(tmp / out), "seq_len": 12, "batch_size": 6, "lr": 0.01,
                  "max_steps": 16, "eval_every": 8, "eval_batches": 2, "sample_every": 0,
                  "log_every": 1, "threads": 1, "seed": 5, **train_options},
        "task": {"name": "lm", "vocab_size": 300 if tokenizer == "bpe" else 0},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    return config


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bpe_lm")
    (tmp / "corpus.txt").write_text(corpus_text(), encoding="utf-8")
    train(run_config(tmp, "run", "bpe"), log=quiet)
    return tmp


def test_a_bpe_run_saves_its_tokenizer_learnt_from_the_training_lines(bpe_run):
    symbols = json.loads((bpe_run / "run" / "best" / "vocab.json").read_text(encoding="utf-8"))
    saved = BpeVocab.from_json(symbols)
    lines = read_lines([str(bpe_run / "corpus.txt")])
    cut = len(lines) - round(len(lines) * 0.1)  # --val-fraction's default: the last 10%
    assert saved == BpeVocab.build(lines[:cut], 300)
    config = json.loads((bpe_run / "run" / "best" / "config.json").read_text())
    assert config["config"]["vocab_kind"] == "bpe"
    assert config["config"]["model"]["vocab_size"] == 300
    with open(bpe_run / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["ppl"]) == pytest.approx(math.exp(float(r["loss"])), rel=1e-4)
               for r in rows if r["kind"] in ("train", "val"))  # fmt: skip


def test_eval_json_and_sample_of_a_bpe_run(bpe_run):
    result = rnnkit("eval", "run", "--json", cwd=bpe_run)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {"loss", "ppl", "tokens", "bpc", "chars", "device"}
    assert figures["ppl"] == pytest.approx(math.exp(figures["loss"]))
    nats = figures["loss"] * figures["tokens"]
    assert figures["bpc"] == pytest.approx(nats / figures["chars"] / math.log(2))
    assert figures["chars"] > 2 * figures["tokens"]  # subwords: several characters a token


def test_sample_of_a_bpe_run_decodes_text(bpe_run, capsys):
    argv = ["sample", str(bpe_run / "run"), "--prime", "anna saw", "--length", "40"]
    assert rnnkit_main([*argv, "--seed", "1"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.startswith("anna saw") and len(out.out) > 60
    assert rnnkit_main([*argv, "--seed", "1"]) == 0
    assert capsys.readouterr().out == out.out  # seeded


def test_eval_line_of_a_bpe_run(bpe_run, capsys):
    assert rnnkit_main(["eval", str(bpe_run / "run"), str(bpe_run / "corpus.txt")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "nats/token | perplexity" in line and "bits/char" in line and "tokens," in line


@pytest.mark.parametrize("tokenizer", ["bpe", "word"])
def test_resume_equals_an_uninterrupted_run(tmp_path, tokenizer):
    (tmp_path / "corpus.txt").write_text(corpus_text(300), encoding="utf-8")
    straight = train(run_config(tmp_path, "straight", tokenizer, max_steps=10), log=quiet)
    train(run_config(tmp_path, "resumed", tokenizer, max_steps=4), log=quiet)
    resumed = train(run_config(tmp_path, "resumed", tokenizer), resume=True,
                    overrides={"train": {"max_steps": 10}}, log=quiet)  # fmt: skip
    assert resumed.step == straight.step == 10
    a = load_checkpoint(straight.out / "last")
    b = load_checkpoint(resumed.out / "last")
    assert a.vocab == b.vocab
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)


def test_a_checkpoint_with_a_broken_tokenizer_is_one_line(bpe_run, tmp_path, capsys):
    task, model, config = load_task(bpe_run / "run")
    spec = json.loads(task.vocab.to_json()[0])
    spec["normalizer"] = {"type": "Lowercase"}
    for name, vocab in (("lowercase", [json.dumps(spec)]), ("garbage", ["{nope"])):
        save_checkpoint(tmp_path / name, config={**config.to_dict(), "vocab_kind": "bpe"},
                        model_state=model.state_dict(), vocab=vocab)  # fmt: skip
        for command in ("sample", "eval"):
            assert rnnkit_main([command, str(tmp_path / name)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
            assert "vocab.json" in err and "tokenizer" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tokenizer", "bpe", "--min-count", "2"], "--min-count is for --tokenizer word;"),
        (["--tokenizer", "bpe", "--vocab-size", "100"], "or at least 256 with --tokenizer bpe"),
        (["--vocab-size", "300"], "--vocab-size is for --tokenizer word or bpe; a char"),
        (["--tokenizer", "byte", "--vocab-size", "300"], "a byte vocabulary keeps every"),
    ],
)
def test_bad_bpe_options_are_one_line_errors(tmp_path, capsys, flags, message):
    (tmp_path / "c.txt").write_text(corpus_text(50), encoding="utf-8")
    argv = ["train", str(tmp_path / "c.txt"), "--out", str(tmp_path / "run"), *flags]
    assert rnnkit_main([*argv, "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_encoded_lines_are_cached_by_tokenizer_and_text(vocab, tmp_path):
    lines = LINES[:40]
    tokens, chars = vocab.encode_lines(lines)

    def cached(lines=lines) -> list[int]:
        got, got_chars = vocab.encode_lines(lines, cache_dir=tmp_path, cache=True)
        assert got_chars.tolist() == vocab.lead_counts[got].tolist()
        return got.tolist()

    assert cached() == cached() == tokens.tolist()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith("-bpe.json") and files[1].endswith("-bpe.tokens")
    stem = tmp_path / files[0].removesuffix(".json")
    stem.with_suffix(".tokens").write_bytes(b"\x00\x00" * len(tokens))  # read, not encoded
    assert cached() == [0] * len(tokens)
    stem.with_suffix(".tokens").write_bytes(b"\x00")  # torn: does not match its .json
    assert cached() == tokens.tolist()
    assert len(cached(lines[:-1])) < len(tokens) and len(list(tmp_path.iterdir())) == 4
