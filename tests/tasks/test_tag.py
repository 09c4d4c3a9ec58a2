"""--task tag: reading CoNLL-U / TSV, the tagger's masking and spelling encoder, metrics,
a tiny training run, meta round trip and predict's output."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from fitting import fit

from rnnkit.config import RunConfig
from rnnkit.data.conllu import read_tagged
from rnnkit.data.tokens import UNK
from rnnkit.errors import UserError
from rnnkit.models.tagger import SequenceTagger
from rnnkit.tasks import get_task
from rnnkit.tasks.tag import TagTask, collate, split_words

CONLLU = """\
# sent_id = 1
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
3.1\tgo\tgo\tVERB\t_\t_\t_\t_\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---- reading ------------------------------------------------------------------------------
def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    sentences = read_tagged([write(tmp_path, "a.conllu", CONLLU)])
    assert sentences == [
        (["I", "ca", "n't", "go", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"]),
        (["Yes"], ["INTJ"]),
    ]


def test_tsv_sentences_break_on_blank_lines(tmp_path):
    text = "the\tDET\ncat\tNOUN\n\n\n\nruns\tVERB\r\n"
    assert read_tagged([write(tmp_path, "a.tsv", text)]) == [
        (["the", "cat"], ["DET", "NOUN"]),
        (["runs"], ["VERB"]),
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "a.conllu",
            "1\tI\tI\tPRON\n",
            "a.conllu:1: expected 10 tab-separated CoNLL-U columns, got 4",
        ),
        (
            "a.conllu",
            "# c\n1\t\tI\tPRON" + "\t_" * 6 + "\n",
            "a.conllu:2: FORM (column 2) is empty",
        ),
        ("a.conll", "1\tI\tI\t" + "\t_" * 6 + "\n", "a.conll:1: UPOS (column 4) is empty"),
        (
            "a.conllu",
            "x\tI\tI\tPRON" + "\t_" * 6 + "\n",
            "a.conllu:1: ID must be an integer, got 'x'",
        ),
        ("a.tsv", "the\tDET\n\ncat\n", "a.tsv:3: expected token<TAB>tag (2 columns), got 1"),
        ("a.tsv", "the\tDET\tx\n", "a.tsv:1: expected token<TAB>tag (2 columns), got 3"),
        ("a.tsv", "\n\n", "a.tsv is empty (remove it from the inputs or add sentences to it)"),
        ("a.conllu", "# only a comment\n", "a.conllu: no sentences found"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(UserError, match="^" + re.escape(f"{tmp_path}/{message}")):
        read_tagged([path])


def test_missing_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match="no such file or directory: .*nope.tsv"):
        read_tagged([str(tmp_path / "nope.tsv")])
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(UserError, match="empty.tsv is empty"):
        read_tagged([str(tmp_path / "empty.tsv")])
    (tmp_path / "bad.tsv").write_bytes(b"a\tX\nb\xff\tY\n")
    with pytest.raises(UserError, match=r"bad.tsv:2: invalid UTF-8 at byte offset 5"):
        read_tagged([str(tmp_path / "bad.tsv")])
    with pytest.raises(UserError, match="needs data files"):
        read_tagged([])


# ---- the model ----------------------------------------------------------------------------
def tiny_config(**task):
    config = RunConfig()
    config.model.embed, config.model.hidden, config.model.layers = 8, 11, 2
    config.task.name = "tag"
    config.task.options.update(bidirectional=True, char_hidden=5)
    for key, value in task.items():
        config.task.options[key] = value
    return config


def random_sentences(rng, n, vocab=20, chars=9):
    out = []
    for _ in range(n):
        length = int(rng.integers(1, 7))
        words = [int(w) for w in rng.integers(4, vocab, length)]
        spelled = [[int(c) for c in rng.integers(4, chars, rng.integers(1, 6))] for _ in words]
        out.append((words, spelled, [0] * length))
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_changes_a_valid_position(cell, bidirectional):
    torch.manual_seed(0)
    config = tiny_config()
    config.model.cell = cell
    model = SequenceTagger(config.model, 20, 9, 5, char_hidden=5, bidirectional=bidirectional)
    model.eval()
    examples = random_sentences(np.random.default_rng(1), 6)
    batch = collate(examples)
    together = model(batch.words, batch.lengths, batch.chars, batch.char_lengths)  # (N, L, T)
    assert together.shape == (6, int(batch.lengths.max()), 5)
    for n, example in enumerate(examples):
        alone = collate([example])
        single = model(alone.words, alone.lengths, alone.chars, alone.char_lengths)[0]
        torch.testing.assert_close(together[n, : len(example[0])], single, atol=1e-5, rtol=1e-5)


def test_char_encoder_tells_unseen_words_apart():
    torch.manual_seed(0)
    config = tiny_config()
    spelled = [[[5, 6, 7]], [[7, 6, 5, 8]]]  # two different spellings, both word id <unk>
    examples = [([UNK], chars, [0]) for chars in spelled]
    for char_hidden, differ in ((5, True), (0, False)):
        model = SequenceTagger(config.model, 20, 9, 5, char_hidden=char_hidden).eval()
        batch = collate(examples)
        logits = model(batch.words, batch.lengths, batch.chars, batch.char_lengths)
        assert (not torch.allclose(logits[0], logits[1])) == differ


# ---- the task -----------------------------------------------------------------------------


def suffix_corpus(tmp_path, n=120, seed=0):
    """Sentences of made-up words whose tag is a function of their suffix."""
    rng = np.random.default_rng(seed)
    stems = ["".join(rng.choice(list("bcdfgklmnprt"), 3)) for _ in range(40)]
    suffixes = {"ing": "ING", "ly": "LY", "s": "S", "": "X"}
    lines = []
    for _ in range(n):
        for _ in range(int(rng.integers(2, 8))):
            suffix = str(rng.choice(list(suffixes)))
            lines.append(f"{rng.choice(stems)}{suffix}\t{suffixes[suffix]}")
        lines.append("")
    return write(tmp_path, "suffix.tsv", "\n".join(lines))


def make_task(tmp_path, **task):
    config = tiny_config(**task)
    config.data.paths = [suffix_corpus(tmp_path)]
    config.data.val_fraction, config.data.test_fraction = 0.2, 0.2
    config.train.batch_size, config.train.seed = 16, 3
    task_obj = get_task("tag")(config)
    task_obj.prepare()
    return task_obj


def test_tiny_training_run_learns_suffix_rule_on_unseen_words(tmp_path):
    task = make_task(tmp_path)
    torch.manual_seed(0)
    model = task.build_model()
    before = task.evaluate(model, "val")
    fit(task, model, 120, 1e-2)
    after = task.evaluate(model, "val")
    assert after["loss"] < before["loss"] / 4
    assert after["token_accuracy"] > 0.95
    assert set(after) == {"loss", "token_accuracy", "macro_f1", "f1_ING", "f1_LY", "f1_S", "f1_X"}
    # new stems with known suffixes: only the spelling can tell
    unseen = task.tag_words(model, [["zzzing", "qqqly", "vvvs", "xxxing"]])
    assert unseen == [["ING", "LY", "S", "ING"]]
    assert "wrong)" in task.progress_sample(model)


def test_train_batches_are_a_pure_function_of_epoch_and_index(tmp_path):
    task = make_task(tmp_path)
    first, again = task.train_batch(2, 1), make_task(tmp_path).train_batch(2, 1)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(task.train_batch(3, 1).words, first.words)
    assert first.chars.shape[:2] == first.words.shape
    assert int((first.tags != -100).sum()) == int(first.lengths.sum())


def test_evaluate_metrics_match_hand_count(tmp_path):
    task = make_task(tmp_path)
    model = task.build_model()
    encoded = task.encoded["val"]
    with torch.no_grad():
        batch = collate(encoded)
        predicted = model.eval()(batch.words, batch.lengths, batch.chars, batch.char_lengths)
    valid = batch.tags != -100
    truth, guess = batch.tags[valid].numpy(), predicted.argmax(-1)[valid].numpy()
    result = task.evaluate(model, "val")
    assert result["token_accuracy"] == pytest.approx(float((truth == guess).mean()))
    for i, tag in enumerate(task.tags):
        tp = int(((truth == i) & (guess == i)).sum())
        p, t = int((guess == i).sum()), int((truth == i).sum())
        f1 = 2 * tp / (p + t) if p + t else 0.0
        assert result[f"f1_{tag}"] == pytest.approx(f1)
    logits = predicted[valid]
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(truth))
    assert result["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_meta_round_trip_and_predict(tmp_path):
    task = make_task(tmp_path)
    torch.manual_seed(0)
    model = task.build_model()
    meta = json.loads(json.dumps(task.meta()))
    assert set(meta) == {"words", "chars", "tags"}
    reloaded = TagTask(task.config, meta)  # no prepare(): no training data needed
    clone = reloaded.build_model()
    clone.load_state_dict(model.state_dict())
    text = ['"Bkting, tmkly." pls!', "dgr"]
    assert reloaded.predict(clone, text, {}) == task.predict(model, text, {})
    lines = reloaded.predict(clone, text, {}).split("\n")
    assert [[pair.rsplit("/", 1)[0] for pair in line.split()] for line in lines] == [
        ['"', "Bkting", ",", "tmkly", ".", '"', "pls", "!"],
        ["dgr"],
    ]
    assert all(pair.rsplit("/", 1)[1] in task.tags for line in lines for pair in line.split())
    with pytest.raises(UserError, match="input 2 has no words"):
        reloaded.predict(clone, ["ok", "   "], {})


def test_evaluate_paths_rejects_unknown_tags_and_scores_known(tmp_path):
    task = make_task(tmp_path)
    model = task.build_model()
    other = write(tmp_path, "other.tsv", "bkting\tING\nfoo\tNOUN\n\nx\tADJ\n")
    with pytest.raises(UserError, match="tags the model was not trained on: ADJ, NOUN"):
        task.evaluate_paths(model, [other])
    good = write(tmp_path, "good.tsv", "bkting\tING\nfoo\tX\n")
    assert set(task.evaluate_paths(model, [good])) >= {"loss", "token_accuracy", "macro_f1"}


def test_bad_meta_names_the_key(tmp_path):
    config = tiny_config()
    with pytest.raises(UserError, match="missing key 'tags'"):
        TagTask(config, {"words": ["<pad>", "<unk>", "<bos>", "<eos>"], "chars": []})
    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    with pytest.raises(UserError, match="'tags' must be a non-empty list of strings"):
        TagTask(config, {"words": specials, "chars": specials, "tags": [1]})
    with pytest.raises(UserError, match="'words'"):
        TagTask(config, {"words": "abc", "chars": specials, "tags": ["X"]})


def test_write_figures_makes_confusion_png(tmp_path):
    task = make_task(tmp_path)
    paths = task.write_figures(task.build_model(), tmp_path, "val")
    assert [p.name for p in paths] == ["confusion.png"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"


def test_split_words_splits_punctuation():
    assert split_words("The cat sat. ") == ["The", "cat", "sat", "."]
    assert split_words("(wait...) Yes!?") == ["(", "wait", "...", ")", "Yes", "!", "?"]
    assert split_words("-- ...") == ["--", "..."]


# ---- the CRF output layer (--crf) and --val ------------------------------------------------
def test_crf_training_lowers_the_loss_and_learns_the_rule(tmp_path):
    task = make_task(tmp_path, crf=True)
    torch.manual_seed(0)
    model = task.build_model()
    assert model.crf is not None and "CRF" in task.describe(model)
    before = task.evaluate(model, "val")
    losses = [out.loss.item() for out in fit(task, model, 120, 1e-2)]
    after = task.evaluate(model, "val")
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) / 4
    assert after["loss"] < before["loss"] / 4
    assert after["token_accuracy"] > 0.95
    assert task.tag_words(model, [["zzzing", "qqqly", "vvvs"]]) == [["ING", "LY", "S"]]


def test_crf_loss_is_the_nll_per_token_and_predictions_are_viterbi(tmp_path):
    """Transitions that forbid every tag but X after X: Viterbi's tags, not each position's
    argmax, are what tag_words, predict and evaluate report; the loss is the CRF's NLL summed
    over sentences over the token count."""
    task = make_task(tmp_path, crf=True)
    torch.manual_seed(0)
    model = task.build_model().eval()
    x = task.tags.index("X")
    with torch.no_grad():
        model.crf.transitions.fill_(-1e4)
        model.crf.transitions[:, x] = 0.0  # any tag -> X only
    sentences = [words for words, _ in task.splits["val"]]
    tagged = task.tag_words(model, sentences)
    assert all(tags[1:] == ["X"] * (len(tags) - 1) for tags in tagged)
    batch = collate(task.encoded["val"])
    with torch.no_grad():
        logits = model(batch.words, batch.lengths, batch.chars, batch.char_lengths)
        viterbi = model.crf.decode(logits, batch.lengths)[0]
        nll = model.crf(logits, batch.tags, batch.lengths).sum() / batch.lengths.sum()
    assert not torch.equal(viterbi, logits.argmax(-1))  # the test can tell them apart
    valid = batch.tags != -100
    result = task.evaluate(model, "val")
    want = float((viterbi[valid] == batch.tags[valid]).float().mean())
    assert result["token_accuracy"] == pytest.approx(want)
    assert result["loss"] == pytest.approx(float(nll), rel=1e-5)
    first = task.predict(model, [" ".join(sentences[0])], {})
    assert [pair.rsplit("/", 1)[1] for pair in first.split()] == tagged[0]


def test_val_file_is_the_validation_split(tmp_path):
    config = tiny_config()
    config.data.paths = [suffix_corpus(tmp_path, n=50)]
    config.data.val = write(tmp_path, "dev.tsv", "bkting\tING\nfoo\tX\n\ndgly\tLY\n")
    config.data.val_fraction, config.data.test_fraction = 0.5, 0.0
    task = get_task("tag")(config)
    task.prepare()
    assert task.splits["val"] == [(["bkting", "foo"], ["ING", "X"]), (["dgly"], ["LY"])]
    assert len(task.splits["train"]) == 50 and task.splits["test"] == []  # all of the file
    assert task.own_data("val").startswith("the validation file ")
    assert "dev.tsv (data.val" in task.own_data("val")
    empty = r"test split is empty \(--val: every sentence .*rnnkit eval RUN TEST.conllu$"
    with pytest.raises(UserError, match=empty):
        task.evaluate(task.build_model(), "test")
    config.data.test_fraction = 0.2  # the fractions are for data without a dev file
    task.prepare()
    assert (len(task.splits["train"]), len(task.splits["test"])) == (50, 0)
    config.data.val = write(tmp_path, "bad.tsv", "foo\tADJ\n")
    with pytest.raises(UserError, match="bad.tsv: tags the model was not trained on: ADJ"):
        TagTask(config, task.meta()).prepare()
    config.data.val = str(tmp_path / "nowhere.conllu")
    with pytest.raises(UserError, match="nowhere.conllu"):
        TagTask(config).prepare()


def test_crf_run_trains_saves_reloads_and_predicts_from_the_cli(tmp_path):
    """rnnkit train --task tag --crf TRAIN --val DEV, then predict: the trained CRF's tensors
    are in model.safetensors, come back with the run, and predict prints their Viterbi tags.
    (rnnkit eval RUN TEST of a CRF run: tests/test_tagger_ewt_benchmark.py.)"""
    from safetensors.torch import load_file

    from rnnkit.tasks.saved import load_task
    from subprocess_cli import rnnkit

    train = suffix_corpus(tmp_path, n=60, seed=1)
    dev = write(tmp_path, "dev.tsv", "bkting\tING\nfoo\tX\n\ndgly\tLY\n")
    flags = ["--task", "tag", "--crf", "--char-hidden", "4", "--hidden", "8", "--embed", "8"]
    steps = ["--max-steps", "6", "--eval-every", "3", "--batch-size", "8", "--threads", "1"]
    done = rnnkit("train", train, "--val", dev, *flags, *steps, "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "CRF; sentences: 60 train, 2 val, 0 test" in done.stdout
    saved = load_file(tmp_path / "run" / "best" / "model.safetensors")
    assert float(saved["crf.transitions"].abs().max()) > 0  # trained away from its zero init
    task, model, _ = load_task(tmp_path / "run")
    for name in ("transitions", "start", "end"):
        assert torch.equal(getattr(model.crf, name).detach(), saved[f"crf.{name}"])
    said = rnnkit("predict", "run", "grs mlking", "--threads", "1", cwd=tmp_path)
    assert said.returncode == 0, said.stderr
    assert said.stdout == task.predict(model, ["grs mlking"], {}) + "\n"
