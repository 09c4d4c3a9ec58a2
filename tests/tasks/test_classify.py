"""--task classify: labelled-file parsing and its errors, the classifier's padding invariance,
metrics on a hand case, a tiny training run, the meta round trip and predict's output."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from fitting import fit
from torch import nn

from rnnkit.config import RunConfig
from rnnkit.data.batching import pad
from rnnkit.data.labelled import check_classes, read_labelled
from rnnkit.errors import UserError
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.tasks import get_task
from rnnkit.tasks.classify import ClassifyTask

# ------------------------------------------------------------------------ fixtures


def write_names(root, classes: dict[str, list[str]]):
    root.mkdir(parents=True, exist_ok=True)
    for label, lines in classes.items():
        (root / f"{label}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_config(paths, **sections) -> RunConfig:
    data = {
        "task": {"name": "classify"},
        "data": {"paths": [str(p) for p in paths]},
        "model": {"cell": "gru", "embed": 8, "hidden": 12, "layers": 1},
        "train": {"batch_size": 8, "seed": 3},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return RunConfig.from_dict(data)


def first_letter_data(root, n: int = 60, seed: int = 0):
    """Trivially separable: the class is the first letter (a -> Alpha, b -> Beta, c -> Gamma)."""
    rng = np.random.default_rng(seed)
    letters = list("defghijklmnop")
    classes = {"Alpha": [], "Beta": [], "Gamma": []}
    for label, first in zip(classes, "abc", strict=True):
        for _ in range(n):
            rest = "".join(rng.choice(letters, size=int(rng.integers(2, 7))))
            classes[label].append(first + rest)
    return write_names(root, classes)


# ------------------------------------------------------------------------ reading


def test_directory_format_labels_are_stems_lines_stripped_blanks_skipped(tmp_path):
    d = tmp_path / "names"
    d.mkdir()
    (d / "Italian.txt").write_text("Rossi\n\n  Bianchi  \n", encoding="utf-8")
    (d / "English.txt").write_text("Smith\r\nJones", encoding="utf-8")
    (d / "notes.md").write_text("ignored", encoding="utf-8")
    pairs = read_labelled([str(d)])
    assert pairs == [
        ("English", "Smith"),
        ("English", "Jones"),
        ("Italian", "Rossi"),
        ("Italian", "Bianchi"),
    ]


def test_tsv_and_csv_formats(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("pos\tgood film\n\nneg\tbad\tfilm\n", encoding="utf-8")
    assert read_labelled([str(tsv)]) == [("pos", "good film"), ("neg", "bad\tfilm")]
    csv = tmp_path / "b.csv"
    csv.write_text('label,text\npos,"fine, really"\nneg,awful\n', encoding="utf-8")
    assert read_labelled([str(csv)]) == [("pos", "fine, really"), ("neg", "awful")]
    headless = tmp_path / "c.csv"
    headless.write_text("x,one\ny,two\n", encoding="utf-8")
    assert read_labelled([str(tsv), str(headless)])[-2:] == [("x", "one"), ("y", "two")]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.tsv", b"", r"a\.tsv is empty"),
        ("a.tsv", b"\n  \n", r"a\.tsv is empty"),
        ("a.tsv", b"pos\tok\nno tab here\n", r"a\.tsv:2: expected label<TAB>text, found no TAB"),
        ("a.tsv", b"pos\tok\n\t text\n", r"a\.tsv:2: empty label"),
        ("a.tsv", b"pos\t   \n", r"a\.tsv:1: empty text"),
        (
            "a.tsv",
            b"pos\tok\nneg\tbad \xff\n",
            r"a\.tsv:2: invalid UTF-8 at byte offset 15 \(0xff\)",
        ),
        (
            "a.csv",
            b"label,text\na,b\nc,d,e\n",
            r"a\.csv:3: ragged row: 3 columns, the first row has 2",
        ),
        ("a.csv", b"a,b\nc\n", r"a\.csv:2: ragged row: 1 columns, the first row has 2"),
        ("a.csv", b"a,b\n,d\n", r"a\.csv:2: empty label"),
        ("a.csv", b"a,b\nc,\n", r"a\.csv:2: empty text"),
        ("a.csv", b"onlyone\n", r"a\.csv:1: expected 2 columns"),
        ("a.csv", b"label,text\n\n", r"a\.csv has a header but no examples"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_labelled([str(path)])


def test_missing_path_empty_directory_and_empty_class_file(tmp_path):
    with pytest.raises(UserError, match=r"no such file or directory: .*nowhere"):
        read_labelled([str(tmp_path / "nowhere")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"empty has no \*\.txt files"):
        read_labelled([str(empty)])
    (empty / "A.txt").write_text("x\n", encoding="utf-8")
    (empty / "B.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"B\.txt is empty"):
        read_labelled([str(empty)])
    (empty / "B.txt").write_bytes(b"ok\n\xc3(")
    with pytest.raises(UserError, match=r"B\.txt:2: invalid UTF-8 at byte offset 3"):
        read_labelled([str(empty)])


def test_check_classes_needs_two():
    check_classes(["a", "b", "a"])
    with pytest.raises(UserError, match=r"needs at least 2 classes, found 1: 'x'"):
        check_classes(["x", "x"])


def test_prepare_rejects_one_class_and_byte_tokenizer(tmp_path):
    d = write_names(tmp_path / "one", {"Only": ["a", "b", "c"]})
    with pytest.raises(UserError, match=r"found 1: 'Only'"):
        ClassifyTask(make_config([d])).prepare()
    with pytest.raises(UserError, match=r"--tokenizer char or word, got 'byte'"):
        ClassifyTask(make_config([d], data={"tokenizer": "byte"}))


def test_val_file_is_the_validation_split_of_labelled_text(tmp_path):
    """``--val DIR``: its examples are the validation split (none held out of the training
    files); the vocabulary is the training split's; a label the training files lack is named."""
    train = first_letter_data(tmp_path / "train", n=20)
    val = first_letter_data(tmp_path / "val", n=5, seed=1)
    task = ClassifyTask(make_config([train], data={"val": str(val), "test_fraction": 0.1}))
    task.prepare()
    assert len(task.splits["val"]) == 15 and len(task.splits["train"]) + len(
        task.splits["test"]) == 60  # fmt: skip
    assert min(task.splits["val"]) == 60  # the --val examples come after the training files'
    bad = write_names(tmp_path / "bad", {"Alpha": ["ab"], "Delta": ["db"]})
    with pytest.raises(UserError, match=r"labels the model does not know: 'Delta'"):
        ClassifyTask(make_config([train], data={"val": str(bad)})).prepare()


@pytest.mark.parametrize("task", ["forecast", "seq2seq", "frames", "generate-from"])
def test_val_is_refused_by_a_task_that_holds_out_a_fraction(task, tmp_path, capsys):
    from rnnkit.cli import main

    argv = ["train", "--task", task, "--val", "v.txt", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"rnnkit: error: --val applies to --task lm or classify or tag; --task {task} holds "
        "out --val-fraction of its data\n"
    )


def test_val_fraction_beside_val_is_refused_in_one_line(tmp_path, capsys):
    from rnnkit.cli import main

    (tmp_path / "t.txt").write_text("to be or not to be\n" * 20)
    argv = ["train", str(tmp_path / "t.txt"), "--val", str(tmp_path / "t.txt")]
    assert main([*argv, "--val-fraction", "0.2", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        "rnnkit: error: --val-fraction has no effect with --val FILE (the file is the "
        "validation split); drop one of them\n"
    )
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------ model


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_never_changes_the_logits(cell, bidirectional, pooling):
    torch.manual_seed(0)
    config = make_config([], model={"cell": cell, "embed": 5, "hidden": 7, "layers": 2})
    model = SequenceClassifier(config.model, 11, 3, bidirectional, pooling).eval()
    sequences = [[4, 5, 6, 7, 8, 9], [5], [10, 4, 7], [6, 6]]
    tokens, lengths = pad(sequences)
    with torch.no_grad():
        batched = model(tokens, lengths)  # (4, 3)
        alone = torch.cat([model(torch.tensor([s]), torch.tensor([len(s)])) for s in sequences])
        garbage = tokens.clone()
        garbage[garbage == 0] = 9  # different ids in the padding: still no effect
        assert torch.allclose(model(garbage, lengths), batched, atol=1e-6)
    assert batched.shape == (4, 3)
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)


def test_registry_finds_the_task():
    assert get_task("classify") is ClassifyTask
    assert ClassifyTask.metric_names == ("accuracy", "macro_f1")


# ------------------------------------------------------------------------ metrics


class FirstTokenModel(nn.Module):
    """Predicts a fixed class per first token id with logits (0, ..., log 3, ...)."""

    def __init__(self, table: dict[int, int], classes: int) -> None:
        super().__init__()
        self.table, self.classes = table, classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, tokens, lengths):
        logits = torch.zeros(len(tokens), self.classes)
        for row, first in enumerate(tokens[:, 0].tolist()):
            logits[row, self.table[first]] = float(np.log(3.0))
        return logits + self.dummy


def test_evaluate_paths_metrics_on_a_hand_case(tmp_path):
    train = write_names(tmp_path / "train", {"A": ["abc"], "B": ["bca"], "C": ["cab"]})
    task = ClassifyTask(make_config([train], data={"val_fraction": 0.3, "test_fraction": 0.3}))
    task.prepare()
    ids = {c: task.vocab.index[c] for c in "abc"}
    # a -> A, b -> A (wrong), c -> C; 3 classes, so P(predicted) = 3 / (3 + 2) = 0.6
    model = FirstTokenModel({ids["a"]: 0, ids["b"]: 0, ids["c"]: 2}, 3)
    heldout = write_names(tmp_path / "held", {"A": ["a", "a"], "B": ["b"], "C": ["c"]})
    result = task.evaluate_paths(model, [str(heldout)])
    # confusion rows (true) A: [2,0,0], B: [1,0,0], C: [0,0,1]
    # F1: A = 2*(2/3*1)/(2/3+1) = 0.8, B = 0, C = 1 -> macro 0.6; accuracy 3/4
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["macro_f1"] == pytest.approx(0.6)
    p_right, p_wrong = 0.6, 0.2
    expected = -(3 * np.log(p_right) + np.log(p_wrong)) / 4
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert all(isinstance(v, float) for v in result.values())


def test_evaluate_paths_rejects_unknown_labels(tmp_path):
    d = write_names(tmp_path / "d", {"A": ["ab", "ac"], "B": ["ba", "bc"]})
    task = ClassifyTask(make_config([d]))
    task.prepare()
    other = write_names(tmp_path / "o", {"A": ["aa"], "Zulu": ["zz"], "Xhosa": ["xx"]})
    with pytest.raises(UserError, match=r"labels the model does not know: 'Xhosa', 'Zulu'"):
        task.evaluate_paths(task.build_model(), [str(other)])


# ------------------------------------------------------------------------ training


def train(task: ClassifyTask, model: nn.Module, steps: int, lr: float = 0.02) -> list[float]:
    return [out.loss.item() for out in fit(task, model, steps, lr, clip=5.0)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    root = first_letter_data(tmp_path_factory.mktemp("data") / "names")
    config = make_config([root], task={"bidirectional": True, "pooling": "mean"})
    task = ClassifyTask(config)
    task.prepare()
    model = task.build_model()
    losses = train(task, model, 120)
    return task, model, losses


def test_tiny_training_run_separates_first_letters(trained, tmp_path):
    task, model, losses = trained
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    for split in ("val", "test"):
        result = task.evaluate(model, split)
        assert set(result) == {"loss", "accuracy", "macro_f1"}
        assert result["accuracy"] >= 0.9, (split, result)
    assert task.evaluate(model, "val", max_batches=1) == task.evaluate(model, "val")
    paths = task.write_figures(model, tmp_path, "test")
    assert paths == [tmp_path / "confusion.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batches_are_pure_and_cover_the_training_split(trained):
    task, _, _ = trained
    n = len(task.splits["train"])
    seen = []
    for index in range(task.steps_per_epoch()):
        tokens, lengths, targets = task.train_batch(1, index)
        again = task.train_batch(1, index)
        assert torch.equal(tokens, again[0]) and torch.equal(targets, again[2])
        assert tokens.shape == (len(targets), int(lengths.max()))
        seen.extend(targets.tolist())
    assert len(seen) == n


def test_meta_round_trip_rebuilds_an_identical_model(trained):
    task, model, _ = trained
    meta = json.loads(json.dumps(task.meta()))
    assert meta["labels"] == ["Alpha", "Beta", "Gamma"] and meta["tokenizer"] == "char"
    assert meta["vocab"][:2] == ["<pad>", "<unk>"] and task.vocab_symbols() == meta["vocab"]
    again = ClassifyTask(task.config, meta)  # no prepare(): no training data needed
    rebuilt = again.build_model()
    rebuilt.load_state_dict(model.state_dict())
    texts = ["adef", "bgh", "cponm"]
    assert again.predict(rebuilt, texts, {}) == task.predict(model, texts, {})


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"vocab": [], "tokenizer": "char"}, r"missing key 'labels'"),
        ({"labels": ["a", "b"], "vocab": ["<pad>"], "tokenizer": "char"}, r"'vocab'"),
        ({"labels": ["a"], "vocab": [], "tokenizer": "char"}, r"'labels' must be"),
        ({"labels": ["a", 3], "vocab": [], "tokenizer": "char"}, r"'labels' must be"),
        ({"labels": ["a", "b"], "vocab": [], "tokenizer": "byte"}, r"'tokenizer' must be"),
        ([1, 2], r"must be a JSON object"),
    ],
)
def test_bad_meta_names_the_key(trained, meta, message):
    with pytest.raises(UserError, match=message):
        ClassifyTask(trained[0].config, meta)


def test_predict_format_top_unknown_symbols_and_empty_input(trained):
    task, model, _ = trained
    line = task.predict(model, ["bxyz"], {})
    assert re.fullmatch(
        r"bxyz: Beta \d\.\d\d, (Alpha|Gamma) \d\.\d\d, (Alpha|Gamma) \d\.\d\d", line
    )
    probs = [float(p) for p in re.findall(r"\d\.\d\d", line)]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=0.02)
    two = task.predict(model, ["adef", "  cde "], {"top": 1}).splitlines()
    assert two[0].startswith("adef: Alpha ") and two[1].startswith("cde: Gamma ")
    assert two[0].count(",") == 0
    assert task.predict(model, ["ZZZ"], {"top": 5}).count(",") == 2  # only 3 classes
    with pytest.raises(UserError, match=r"input 2 is empty"):
        task.predict(model, ["abc", "  "], {})
    with pytest.raises(UserError, match=r"--top must be a positive integer"):
        task.predict(model, ["abc"], {"top": 0})


def test_word_tokens_and_min_count(tmp_path):
    tsv = tmp_path / "r.tsv"
    lines = ["pos\tGood good film", "pos\tgood fun", "neg\tbad film", "neg\tBad, rare!"] * 3
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = make_config([tsv], data={"tokenizer": "word"}, task={"min_count": 2})
    task = ClassifyTask(config)
    task.prepare()
    vocab = task.meta()["vocab"]
    assert "good" in vocab and "Good" not in vocab and "film" in vocab
    assert task.meta()["tokenizer"] == "word" and task.meta()["labels"] == ["neg", "pos"]
    out = task.predict(task.build_model(), ["utterly unseen words"], {"top": 2})
    assert out.startswith("utterly unseen words: ")
    no_test = ClassifyTask(make_config([tsv], data={"test_fraction": 0.0}))
    no_test.prepare()
    with pytest.raises(UserError, match=r"the test split is empty"):
        no_test.evaluate(no_test.build_model(), "test")
    assert no_test.write_figures(no_test.build_model(), tmp_path, "test") == []
