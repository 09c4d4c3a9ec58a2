"""--task generate-from: vector reader, condition detection, the conditional model (initial
state, per-step input, step == forward, padding), training on data where the condition
determines the text, sampling, meta round trip and predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fitting import fit

from rnnkit.config import RunConfig
from rnnkit.data.conditions import detect_condition_kind, read_vector_pairs
from rnnkit.data.tokens import BOS, EOS
from rnnkit.errors import UserError
from rnnkit.models.conditional import ConditionalGenerator
from rnnkit.tasks import get_task
from rnnkit.tasks.generate_from import GenerateFromTask


def write(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_config(paths, condition_input=False, cell="lstm") -> RunConfig:
    config = RunConfig()
    config.task.name = "generate-from"
    config.task.options["condition_input"] = condition_input
    config.data.paths = [str(p) for p in paths]
    config.data.val_fraction, config.data.test_fraction = 0.2, 0.1
    config.model.cell, config.model.embed, config.model.hidden, config.model.layers = cell, 8, 16, 1
    config.train.batch_size, config.train.seed = 8, 3
    return config


def train(task: GenerateFromTask, steps: int, lr: float = 0.03):
    torch.manual_seed(0)
    model = task.build_model()
    return model, [out.loss.item() for out in fit(task, model, steps, lr)]


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """A task trained on classes whose text is fixed: a -> aaaa, b -> bbb, c -> abc."""
    root = tmp_path_factory.mktemp("names")
    for label, text in {"a": "aaaa", "b": "bbb", "c": "abc"}.items():
        write(root / f"{label}.txt", f"{text}\n" * 12)
    task = GenerateFromTask(make_config([root], condition_input=False))
    task.prepare()
    model, losses = train(task, 120)
    return task, model, losses


# ---- data ------------------------------------------------------------------------------------
def test_read_vector_pairs(tmp_path):
    path = write(tmp_path / "v.tsv", "1,2.5,-3\tabc\n\n0,0,1e-2\t de \n")
    vectors, texts = read_vector_pairs([str(path)])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 3)
    np.testing.assert_allclose(vectors, [[1, 2.5, -3], [0, 0, 0.01]])
    assert texts == ["abc", "de"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("1,2\tab\n1,2 ab\n", "v.tsv:2: expected 'v1,v2,...,vD<TAB>text', found no TAB"),
        ("1,2\tab\n1,x\tab\n", "v.tsv:2: vector element 2 must be a number, got 'x'"),
        ("1,2\tab\n\n1,2,3\tab\n", "v.tsv:3: expected 2 numbers (as on"),
        ("1,nan\tab\n", "v.tsv:1: vector element 2 must be finite"),
        ("inf,1\tab\n", "v.tsv:1: vector element 1 must be finite"),
        ("1,2\t  \n", "v.tsv:1: no text after the TAB"),
        ("", "is empty"),
        (b"1,2\tab\xff\n", "invalid UTF-8 at byte offset 6"),
    ],
)
def test_read_vector_pairs_errors(tmp_path, content, message):
    path = write(tmp_path / "v.tsv", content)
    with pytest.raises(UserError) as error:
        read_vector_pairs([str(path)])
    assert message in str(error.value)
    assert "v.tsv" in str(error.value)


def test_read_vector_pairs_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file or directory: .*nope.tsv"):
        read_vector_pairs([str(tmp_path / "nope.tsv")])


def test_detect_condition_kind(tmp_path):
    names = tmp_path / "names"
    write(names / "Italian.txt", "Rossi\n")
    write(names / "Russian.txt", "Ivanov\n")
    assert detect_condition_kind([str(names)]) == "class"
    assert (
        detect_condition_kind([str(write(tmp_path / "l.tsv", "\n  \nItalian\tRossi\n"))]) == "class"
    )  # noqa: E501
    assert detect_condition_kind([str(write(tmp_path / "v.tsv", "\n0.5,-1\tRossi\n"))]) == "vector"
    assert detect_condition_kind([str(write(tmp_path / "w.tsv", "3\tRossi\n"))]) == "vector"
    with pytest.raises(UserError, match="needs data"):
        detect_condition_kind([])


# ---- model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_condition_sets_the_initial_state(cell):
    config = make_config([], cell=cell).model
    torch.manual_seed(0)
    model = ConditionalGenerator(config, 11, "class", 3).eval()
    cond = torch.tensor([0, 2])
    state = model.initial_state(cond)
    h = state[0] if cell == "lstm" else state  # (layers, N, H)
    expected = torch.tanh(model.init_h(model.cond_embed.weight[cond]))  # h_0 = tanh(W e_c + b)
    torch.testing.assert_close(h[0], expected)
    if cell == "lstm":
        torch.testing.assert_close(
            state[1][0], torch.tanh(model.init_c(model.cond_embed.weight[cond]))
        )  # noqa: E501
    logits = model(cond, torch.full((2, 1), BOS))  # (2, 1, V)
    assert not torch.allclose(logits[0, 0], logits[1, 0], atol=1e-4)


@pytest.mark.parametrize("condition_input", [False, True])
def test_condition_input_carries_the_condition(condition_input):
    """With the initial-state path cut (zero W_h, b_h, W_c, b_c), only the per-step input can
    make two conditions differ."""
    torch.manual_seed(0)
    model = ConditionalGenerator(make_config([]).model, 11, "vector", 4, condition_input).eval()
    with torch.no_grad():
        for layer in (model.init_h, model.init_c):
            layer.weight.zero_()
            layer.bias.zero_()
    cond = torch.randn(2, 4)
    logits = model(cond, torch.tensor([[BOS, 5, 6], [BOS, 5, 6]]))  # (2, 3, V)
    assert torch.allclose(logits[0], logits[1]) is not condition_input


@pytest.mark.parametrize("cell, condition_input", [("lstm", True), ("gru", False), ("rnn", True)])
def test_step_equals_forward(cell, condition_input):
    torch.manual_seed(1)
    config = make_config([], cell=cell).model
    config.layers = 2
    model = ConditionalGenerator(config, 9, "class", 3, condition_input).eval()
    cond = torch.tensor([1, 2])
    tokens = torch.tensor([[BOS, 4, 5, 6, 7], [BOS, 8, 4, 4, 5]])
    full = model(cond, tokens)  # (2, 5, V)
    state = model.initial_state(cond)
    for t in range(tokens.size(1)):
        logits, state = model.step(tokens[:, t], state, cond)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


def test_padding_changes_nothing():
    torch.manual_seed(2)
    model = ConditionalGenerator(make_config([]).model, 9, "class", 3, True).eval()
    seqs = [[BOS, 4, 5, 6, 7, 8], [BOS, 5], [BOS, 6, 7]]
    cond = torch.tensor([0, 1, 2])
    tokens = torch.zeros(3, 6, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    batch = model(cond, tokens, torch.tensor([len(s) for s in seqs]))
    for i, s in enumerate(seqs):
        alone = model(cond[i : i + 1], torch.tensor([s]))
        torch.testing.assert_close(batch[i, : len(s)], alone[0], atol=1e-5, rtol=1e-5)


def test_generated_sequence_matches_forward(class_run):
    """Greedy generation (step by step, state carried) picks the argmax of forward's logits
    over the generated sequence at every position."""
    task, model, _ = class_run
    text = task.sample(model, "c", temperature=0)[0]
    ids = [BOS, *task.vocab.encode(list(text))]
    cond = task.encode_condition("c")
    logits = model.eval()(cond, torch.tensor([ids]))[0]  # (L, V)
    assert logits.argmax(-1).tolist() == [*ids[1:], EOS]


# ---- task ------------------------------------------------------------------------------------
def test_training_learns_the_text_of_each_class(class_run):
    task, model, losses = class_run
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    assert [task.sample(model, c, temperature=0)[0] for c in "abc"] == ["aaaa", "bbb", "abc"]
    metrics = task.evaluate(model, "val")
    assert metrics["accuracy"] > 0.95
    assert metrics["loss_shuffled_condition"] > metrics["loss"] + 0.5
    assert task.meta()["kind"] == "class" and task.meta()["labels"] == ["a", "b", "c"]


def test_vector_conditions(tmp_path):
    lines = ["1,0\taaaa", "0,1\tbbb", "0.9,0.1\taaaa", "0.1,0.9\tbbb"] * 6
    task = GenerateFromTask(make_config([write(tmp_path / "v.tsv", "\n".join(lines))], True))
    task.prepare()
    assert task.meta()["kind"] == "vector" and task.meta()["dim"] == 2
    model, _ = train(task, 100)
    assert task.sample(model, "1,0", temperature=0) == ["aaaa"]
    assert task.sample(model, str(write(tmp_path / "c.txt", "\n0,1\n")), temperature=0) == ["bbb"]
    with pytest.raises(UserError, match=r"--condition: expected a vector of 2 numbers, got 3"):
        task.sample(model, "1,0,0")
    with pytest.raises(UserError, match=r"c3.txt:1: expected a vector of 2 numbers, got 1"):
        task.sample(model, str(write(tmp_path / "c3.txt", "1\n")))
    with pytest.raises(UserError, match="must be a number, got 'Italian'.*2 comma-separated"):
        task.sample(model, "Italian")


def test_unknown_condition_lists_the_classes(class_run, tmp_path):
    task, model, _ = class_run
    with pytest.raises(UserError, match=r"unknown condition 'd'; known classes: a, b, c$"):
        task.sample(model, "d")
    many = GenerateFromTask(
        make_config([]),
        {"kind": "class", "vocab": task.meta()["vocab"], "labels": [f"L{i}" for i in range(50)]},
    )
    with pytest.raises(UserError) as error:
        many.sample(many.build_model(), "x")
    assert "L19, ... (30 more)" in str(error.value) and "\n" not in str(error.value)


def test_meta_round_trip(class_run):
    task, model, _ = class_run
    meta = task.meta()
    again = get_task("generate-from")(make_config([]), meta)  # no data needed
    rebuilt = again.build_model()
    rebuilt.load_state_dict(model.state_dict())
    options = {"num_samples": 3, "temperature": 1.0, "seed": 5}
    assert again.predict(rebuilt, ["a", "b"], options) == task.predict(model, ["a", "b"], options)
    assert again.meta() == meta


@pytest.mark.parametrize(
    "meta, key",
    [
        ({"kind": "image", "vocab": ["<pad>", "<unk>", "<bos>", "<eos>"]}, "'kind'"),
        (
            {"kind": "class", "vocab": ["<pad>", "<unk>", "<bos>", "<eos>"], "labels": "ab"},
            "'labels'",
        ),  # noqa: E501
        ({"kind": "vector", "vocab": ["<pad>", "<unk>", "<bos>", "<eos>"], "dim": 0}, "'dim'"),
        ({"kind": "vector", "vocab": "abc", "dim": 2}, "'vocab'"),
    ],
)
def test_bad_meta_names_the_key(meta, key):
    with pytest.raises(UserError, match=key):
        GenerateFromTask(make_config([]), meta)


def test_seeded_sampling_is_reproducible(class_run):
    task, model, _ = class_run
    first = task.sample(model, "a", num_samples=6, temperature=3.0, seed=11)
    assert task.sample(model, "a", num_samples=6, temperature=3.0, seed=11) == first
    assert task.sample(model, "a", num_samples=6, temperature=3.0, seed=12) != first
    state = torch.random.get_rng_state()
    task.sample(model, "a", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched


def test_sample_options(class_run):
    task, model, _ = class_run
    assert task.sample(model, "a", temperature=0, max_len=2) == ["aa"]
    assert task.sample(model, "c", temperature=0, prime="ab") == ["abc"]
    assert all(not set(t) - set("abc") for t in task.sample(model, "b", 20, 5.0, seed=0))
    with pytest.raises(UserError, match="--temperature must be a number >= 0"):
        task.sample(model, "a", temperature=-1)
    with pytest.raises(UserError, match="--prime has characters the model never saw: 'z'"):
        task.sample(model, "a", prime="az")


def test_predict_and_evaluate_paths(class_run, tmp_path):
    task, model, _ = class_run
    out = task.predict(model, ["a", "b"], {"num_samples": 2, "temperature": 0})
    assert out == "a: aaaa\na: aaaa\nb: bbb\nb: bbb"
    path = write(tmp_path / "eval.tsv", "a\taaaa\nb\tbbb\n")
    metrics = task.evaluate_paths(model, [str(path)])
    assert metrics["examples"] == 2 and metrics["accuracy"] == 1.0
    with pytest.raises(UserError, match="classes the model does not know: zz"):
        task.evaluate_paths(model, [str(write(tmp_path / "bad.tsv", "zz\taaaa\n"))])
    with pytest.raises(UserError, match="vector conditions, but the model has class"):
        task.evaluate_paths(model, [str(write(tmp_path / "v.tsv", "1,2\taaaa\n"))])


def test_progress_sample_and_loss_counts_real_targets(class_run):
    task, model, _ = class_run
    assert task.progress_sample(model).startswith("a: ")
    batch = task.train_batch(0, 0)
    out = task.train_loss(model, batch, 0)
    _, _, targets, lengths = batch
    assert out.count == int(lengths.sum()) == int((targets != 0).sum())
