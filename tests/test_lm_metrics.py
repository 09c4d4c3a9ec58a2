"""One scale for every language model (issue 18 item 2): ``rnnkit eval --json`` reports loss,
ppl, tokens, bpc per CHARACTER of the original text and chars, for char, byte, word and BPE
models of one text. The figures are checked against hand computations: a model whose output
layer is zero predicts the uniform distribution, so its loss is ``ln V`` per token exactly and
its bits per character is ``log2(V) * tokens / chars``, with ``chars`` counted here from the
text itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.cli import main as rnnkit_main
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.data import ScoredText, char_counts, scored_chars
from rnnkit.tasks import get_task
from rnnkit.tasks.saved import save_run_checkpoint

LINES = [
    f"{who} vit la {what} à {when}, naïve — «ça»"
    for who in ("anne", "brunö", "carla", "déjà")
    for what in ("lune", "rivière", "tour", "ζῷον")
    for when in ("nuit", "l'aube", "夜")
]  # 48 lines: one, two and three UTF-8 bytes a character
TEXT = "".join(line + "\n" for line in LINES * 2)
KEYS = {"loss", "ppl", "tokens", "bpc", "chars"}


def make_task(tmp_path, tokenizer: str):
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    config = RunConfig()
    settings = {
        "data": {"paths": [str(tmp_path / "text.txt")], "cache_dir": str(tmp_path / "cache"),
                 "tokenizer": tokenizer},
        "model": {"embed": 8, "hidden": 8, "layers": 1},
        "train": {"out": str(tmp_path / "run"), "seq_len": 24, "batch_size": 8, "threads": 1},
        "task": {"name": "lm", "vocab_size": 300 if tokenizer == "bpe" else 0},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    task = get_task("lm")(config)
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model().double().eval()  # float64: sums agree to 1e-12
    return task, model


def uniform(model):
    """Zero the output layer: every token gets the same logit, loss ln V."""
    with torch.no_grad():
        model.head.weight.zero_()
        if model.head.bias is not None:
            model.head.bias.zero_()
    return model


def scored_positions(text: ScoredText) -> np.ndarray:
    """The token positions whose prediction evaluation scores, written out: stream b covers
    tokens b*S .. and predicts positions b*S + 1 .. b*S + steps*T."""
    s = text.streams
    size = len(s.tokens) // s.batch_size
    per_stream = np.arange(1, len(s) * s.seq_len + 1)
    return np.concatenate([b * size + per_stream for b in range(s.batch_size)])


def nats(model, text: ScoredText) -> float:
    """Total nats over the scored targets, the state carried from chunk to chunk."""
    total, state = 0.0, None
    with torch.no_grad():
        for x, y in text.streams:
            out = model(x, None, state)
            state = out.state
            total += F.cross_entropy(out.logits.flatten(0, 1), y.flatten(), reduction="sum")
    return float(total)


def characters_of(text: str, tokenizer: str, task) -> np.ndarray:
    """Per token, the characters it stands for, counted here from the text: one per char;
    a byte that is not 10xxxxxx; a BPE token's bytes likewise; a word its letters and the
    space or line end after it."""
    if tokenizer == "char":
        return np.ones(len(text), dtype=np.int64)
    data = text.encode("utf-8")
    if tokenizer == "byte":
        return np.array([(b & 0xC0) != 0x80 for b in data], dtype=np.int64)
    if tokenizer == "bpe":
        ids = np.concatenate([task.vocab.encode(line + "\n") for line in text.splitlines()])
        pieces = [task.vocab.token_bytes(i) for i in ids]
        assert b"".join(pieces) == data  # the tokens' bytes are the text's
        return np.array([sum((b & 0xC0) != 0x80 for b in p) for p in pieces], dtype=np.int64)
    out = []
    for line in text.splitlines():
        words = line.split()
        out += [len(w) + 1 for w in words] + [0 if words else 1]
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("tokenizer", ["char", "byte", "word", "bpe"])
def test_figures_of_a_uniform_model_equal_the_hand_computation(tmp_path, tokenizer):
    task, model = make_task(tmp_path, tokenizer)
    uniform(model)
    vocab_size = len(task.vocab)
    text = task.text_streams([str(tmp_path / "text.txt")])
    chars = characters_of(TEXT, tokenizer, task)
    assert len(chars) == len(text.streams.tokens)
    assert int(chars.sum()) == len(TEXT) or tokenizer == "word"  # word: runs of spaces are one
    positions = scored_positions(text)
    tokens = len(positions)
    by_hand = int(chars[positions].sum())
    assert scored_chars(text) == by_hand

    figures = task.evaluate_paths(model, [str(tmp_path / "text.txt")])
    assert set(figures) == KEYS | ({"unk"} if tokenizer == "word" else set())
    assert figures["tokens"] == tokens and figures["chars"] == by_hand
    assert figures["loss"] == pytest.approx(math.log(vocab_size), rel=1e-6)
    assert figures["loss"] * tokens == pytest.approx(nats(model, text), rel=1e-9)
    assert figures["ppl"] == pytest.approx(vocab_size, rel=1e-5)
    bits = math.log2(vocab_size) * tokens / by_hand
    assert figures["bpc"] == pytest.approx(bits, rel=1e-6)
    if tokenizer == "char":
        assert by_hand == tokens and figures["bpc"] == figures["loss"] / math.log(2)
    if tokenizer == "byte":  # non-ASCII text: fewer characters than bytes
        assert by_hand < tokens and figures["bpc"] > 8.0


def test_a_trained_model_figures_follow_loss_tokens_and_chars(tmp_path):
    task, model = make_task(tmp_path, "byte")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    figures = task.evaluate(model)  # the validation split: the last 10% of the bytes
    text = task.val_text
    positions = scored_positions(text)
    chars = characters_of(TEXT, "byte", task)[-len(text.streams.tokens) :]
    assert figures["tokens"] == len(positions) and figures["chars"] == int(chars[positions].sum())
    assert figures["loss"] * figures["tokens"] == pytest.approx(nats(model, text), rel=1e-9)
    expected = figures["loss"] * figures["tokens"] / figures["chars"] / math.log(2)
    assert figures["bpc"] == pytest.approx(expected, rel=1e-12)
    one = task.evaluate(model, max_batches=1)  # the first batch only: its own characters
    first = positions.reshape(text.streams.batch_size, -1)[:, : text.streams.seq_len]
    assert one["tokens"] == first.size and one["chars"] == int(chars[first].sum())


def test_char_counts_of_bytes_and_characters():
    data = np.frombuffer("aé夜🙂".encode(), dtype=np.uint8)
    assert char_counts(data, "byte").tolist() == [1, 1, 0, 1, 0, 0, 1, 0, 0, 0]
    ones = char_counts(np.zeros(5, dtype=np.uint16), "char")
    assert ones.tolist() == [1] * 5 and ones.strides == (0,)  # no memory per token
    with pytest.raises(ValueError, match="char or byte"):
        char_counts(data, "word")


@pytest.mark.parametrize("tokenizer", ["char", "byte", "word", "bpe"])
def test_eval_json_has_one_key_set_for_every_tokenizer(tmp_path, capsys, tokenizer):
    task, model = make_task(tmp_path, tokenizer)
    save_run_checkpoint(tmp_path / "ckpt", task.config, model, task, training=None)
    argv = ["eval", str(tmp_path / "ckpt"), str(tmp_path / "text.txt"), "--threads", "1"]
    assert rnnkit_main([*argv, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    unk = {"unk"} if tokenizer == "word" else set()
    assert set(figures) == KEYS | unk | {"device"}
    assert figures["ppl"] == pytest.approx(math.exp(figures["loss"]))
    nats_total = figures["loss"] * figures["tokens"]
    assert figures["bpc"] == pytest.approx(nats_total / figures["chars"] / math.log(2))
    assert rnnkit_main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    unit = {"char": "char", "byte": "byte", "word": "word", "bpe": "token"}[tokenizer]
    assert line.startswith(f"loss {figures['loss']:.4f} nats/{unit} | ")
    assert f"{figures['bpc']:.4f} bits/char" in line and f"{figures['chars']:,} chars" in line
    if tokenizer != "char":
        assert f"{figures['tokens']:,} {unit}s, {figures['chars']:,} chars" in line
