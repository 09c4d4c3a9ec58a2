"""Property tests for what turns files and text into rnnkit objects: tokenizers and vocabularies
round-trip any text, and the loaders (vocab JSON, RunConfig.from_dict, checkpoints) either
accept an input or refuse it with a one-line UserError, whatever the input is.

Hypothesis draws the inputs; example counts are small so the file runs in a few seconds. The
long run of the same idea is the atheris fuzzer, ``benchmarks/fuzz.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rnnkit.config import SECTIONS, RunConfig, validate
from rnnkit.data.tokens import SPECIALS, TokenVocab, detokenize, tokenize
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel
from rnnkit.tasks.lm import LanguageModelTask
from rnnkit.tasks.saved import load_task, read_run_checkpoint, save_run_checkpoint

FAST = settings(max_examples=60, deadline=None)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
TEXT = st.text(max_size=200)
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)  # no surrogates


def one_line(error: UserError) -> None:
    message = str(error)
    assert message and "\n" not in message and len(message) < 1000, message[:2000]


# --- tokenizers and vocabularies: round trips ----------------------------------------------


@FAST
@given(TEXT)
def test_char_vocab_round_trips_any_text(text):
    assume(text)
    vocab = Vocab.from_text_chars(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    stream = vocab.decoder()
    assert "".join(stream.decode(i) for i in ids) + stream.flush() == text


@FAST
@given(UNICODE)
def test_byte_vocab_round_trips_any_unicode_text(text):
    vocab = Vocab.byte()
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text and len(ids) == len(text.encode())
    stream = vocab.decoder()
    assert "".join(stream.decode(i) for i in ids) + stream.flush() == text


@FAST
@given(UNICODE, st.text(st.characters(whitelist_categories=("Cs",)), min_size=1, max_size=3))
def test_byte_vocab_refuses_lone_surrogates_with_one_line(text, surrogates):
    with pytest.raises(UserError) as err:
        Vocab.byte().encode(text + surrogates)
    one_line(err.value)


@FAST
@given(st.lists(st.integers(0, 255), max_size=64))
def test_byte_decoding_of_any_ids_matches_the_stream_decoder(ids):
    vocab = Vocab.byte()
    stream = vocab.decoder()
    assert "".join(stream.decode(i) for i in ids) + stream.flush() == vocab.decode(ids)


@FAST
@given(TEXT, TEXT)
def test_char_vocab_encodes_unknown_text_only_with_skip(known, other):
    assume(known)
    vocab = Vocab.from_text_chars(known)
    kept = "".join(c for c in other if c in set(known))
    assert vocab.decode(vocab.encode(other, unknown="skip")) == kept
    if kept != other:
        with pytest.raises(UserError) as err:
            vocab.encode(other)
        one_line(err.value)


@FAST
@given(TEXT)
def test_char_and_word_tokenizers_round_trip_through_a_token_vocab(text):
    assert detokenize(tokenize(text, "char"), "char") == text
    for kind in ("char", "word"):
        tokens = tokenize(text, kind)
        vocab = TokenVocab.build([tokens])
        assert vocab.decode(vocab.encode(tokens), strip=False) == tokens
        again = TokenVocab.from_json(json.loads(json.dumps(vocab.to_json())))
        assert again.symbols == vocab.symbols


@FAST
@given(TEXT)
def test_vocab_json_round_trip(text):
    assume(text)
    for vocab in (Vocab.from_text_chars(text), Vocab.byte()):
        assume(not any("\ud800" <= s <= "\udfff" for s in vocab.symbols))
        data = json.loads(json.dumps(vocab.to_json(), ensure_ascii=False))
        assert Vocab.from_json(vocab.kind, data) == vocab


@FAST
@given(st.sampled_from(["char", "byte", "word", 3, None]), JSON | st.lists(st.text(max_size=3)))
def test_vocab_from_any_json_is_a_vocab_or_a_one_line_error(kind, data):
    try:
        vocab = Vocab.from_json(kind, data)
    except UserError as err:
        one_line(err)
        return
    text = "".join(vocab.symbols) if vocab.kind == "char" else "any text"
    assert vocab.decode(vocab.encode(text)) == text


@FAST
@given(JSON | st.lists(st.sampled_from([*SPECIALS, "a", "b", 1])))
def test_token_vocab_from_any_json_is_a_vocab_or_a_one_line_error(data):
    try:
        vocab = TokenVocab.from_json(data)
    except UserError as err:
        one_line(err)
        return
    assert vocab.symbols[: len(SPECIALS)] == list(SPECIALS)


# --- RunConfig.from_dict ------------------------------------------------------------------

FIELDS = {
    name: [f.name for f in cls.__dataclass_fields__.values()] for name, cls in SECTIONS.items()
}
EXTREMES = st.sampled_from([10**400, -(10**400), 2**64, 10**9, 0, -1, "lstm", "gru", "char"])
VALUES = JSON | st.integers(-(2**70), 2**70) | st.floats() | EXTREMES
SECTION = st.sampled_from(list(FIELDS)).flatmap(
    lambda section: st.tuples(
        st.just(section),
        st.dictionaries(st.sampled_from(FIELDS[section]) | st.text(max_size=5), VALUES, max_size=4),
    )
)
CONFIGS = (
    st.lists(SECTION, max_size=4).map(dict)
    | st.dictionaries(st.text(max_size=6), JSON, max_size=3)
    | JSON
)


@settings(max_examples=150, deadline=None)
@given(CONFIGS)
@example({"\n": None})  # found by hypothesis: the newline broke the one-line message
@example({"model": {"x\ny": 1}})
def test_run_config_from_any_dict_is_valid_or_a_one_line_error(data):
    try:
        config = RunConfig.from_dict(data, source="config.json")
        validate(config)
    except UserError as err:
        one_line(err)
        return
    assert RunConfig.from_dict(config.to_dict()) == config


# --- checkpoints --------------------------------------------------------------------------

VOCAB = list("\n abcdefgh")
NAMES = ["config.json", "model.safetensors", "vocab.json", "training.json", "training.safetensors"]


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    config = RunConfig.from_dict(
        {"model": {"vocab_size": len(VOCAB), "embed": 4, "hidden": 4, "layers": 1, "cell": "gru"}}
    )
    torch.manual_seed(0)
    model = LanguageModel(config.model)
    task = LanguageModelTask(config, {"vocab_kind": "char", "symbols": VOCAB})
    path = tmp_path_factory.mktemp("props") / "ckpt"
    save_run_checkpoint(path, config, model, task, {"step": 3, "w": torch.ones(2), "t": (1, 2.5)})
    return path


def forge(path: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``name`` and, unless it is config.json, forge its listed digest."""
    (path / name).write_bytes(data)
    if name == "config.json":
        return
    try:
        meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
        meta["files"][name] = hashlib.sha256(data).hexdigest()
    except (ValueError, KeyError, TypeError):
        return
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def load_everything(path: Path) -> None:
    """Every loader on ``path``: success or a one-line UserError, nothing else."""
    for load in (lambda: read_run_checkpoint(path, training=True), lambda: load_task(path)):
        try:
            load()
        except UserError as err:
            one_line(err)


MUTATION = st.tuples(st.integers(0, 10**6), st.integers(0, 255))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(NAMES),
    mutations=st.lists(MUTATION, min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 10**6),
)
def test_mutated_checkpoint_files_load_or_refuse_with_one_line(
    valid, tmp_path, name, mutations, cut
):
    path = tmp_path / "ckpt"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(valid, path)
    data = bytearray((path / name).read_bytes())
    for where, byte in mutations:
        data[where % len(data)] = byte
    forge(path, name, bytes(data[:cut] if cut is not None else data))
    load_everything(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(NAMES),
    data=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()),
)
def test_arbitrary_bytes_as_a_checkpoint_file_load_or_refuse_with_one_line(
    valid, tmp_path, name, data
):
    path = tmp_path / "ckpt"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(valid, path)
    forge(path, name, data)
    load_everything(path)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(section=st.sampled_from(list(FIELDS)), data=st.data())
def test_any_config_value_in_a_checkpoint_loads_or_refuses_with_one_line(
    valid, tmp_path, section, data
):
    path = tmp_path / "ckpt"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(valid, path)
    meta = json.loads((path / "config.json").read_text(encoding="utf-8"))
    key = data.draw(st.sampled_from(FIELDS[section]))
    meta["config"][section][key] = data.draw(VALUES)
    (path / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    load_everything(path)


def test_the_fuzzer_runs_a_few_hundred_inputs_per_target_without_a_crash():
    """A smoke run of benchmarks/fuzz.py (the long run is 100,000 inputs per target)."""
    script = Path(__file__).parents[1] / "benchmarks" / "fuzz.py"
    result = subprocess.run(
        [sys.executable, str(script), "--runs", "300"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for target in ("checkpoint", "vocab", "config"):
        assert f"{target:<12}{300:>9,}" in result.stdout, result.stdout


def test_inputs_that_once_crashed_the_fuzzer_are_refused_or_accepted():
    """``tests/fuzz_regressions/TARGET-crash-*``: inputs atheris once found (the config one: a
    key holding a newline broke the one-line message), replayed through their target."""
    script = Path(__file__).parents[1] / "benchmarks" / "fuzz.py"
    kept = sorted((Path(__file__).parent / "fuzz_regressions").glob("*-crash-*"))
    assert kept
    for target in sorted({path.name.split("-crash-")[0] for path in kept}):
        files = [str(path) for path in kept if path.name.startswith(f"{target}-crash-")]
        result = subprocess.run(
            [sys.executable, str(script), "--target", target, "--replay", *files],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert f"{target:<12}{len(files):>9,}" in result.stdout, result.stdout
