"""The seq2seq task: pair reading and synthetic data, scheduled sampling, the model's two decoder
paths, greedy / sampling / beam decoding on constructed decoders, metrics, a tiny training run,
the saved meta and ``predict``."""

from __future__ import annotations

import datetime
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fitting import fit

from rnnkit.config import ModelConfig, RunConfig
from rnnkit.data.pairs import DATE_FORMATS, format_date, read_pairs, synthetic_pairs
from rnnkit.data.tokens import BOS, EOS, PAD
from rnnkit.errors import UserError
from rnnkit.models.decoding import beam_hypotheses, beam_search, greedy, sample
from rnnkit.models.seq2seq import Encoded, Seq2Seq
from rnnkit.tasks import get_task
from rnnkit.tasks.seq2seq import Seq2SeqTask, sequence_metrics, teacher_prob

# ---- reading pairs ---------------------------------------------------------------------------


def write(tmp_path, text: str | bytes, name: str = "pairs.tsv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_read_pairs_ignores_extra_columns_and_blank_lines(tmp_path):
    path = write(tmp_path, "Go.\tVa !\tCC-BY tatoeba #1\n\n  \nHi. \t Salut.\r\n")
    assert read_pairs([path]) == [("Go.", "Va !"), ("Hi.", "Salut.")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\tb\nno tab here\n", r"pairs\.tsv:2: expected source<TAB>target, found no TAB"),
        ("a\tb\n\n \tb\n", r"pairs\.tsv:3: empty source"),
        ("a\t \tnote\n", r"pairs\.tsv:1: empty target"),
    ],
)
def test_read_pairs_bad_lines_name_file_and_line(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        read_pairs([write(tmp_path, text)])


def test_read_pairs_bad_files(tmp_path):
    with pytest.raises(UserError, match=r"no such file or directory: .*missing\.tsv"):
        read_pairs([str(tmp_path / "missing.tsv")])
    with pytest.raises(UserError, match=r"empty\.tsv is empty"):
        read_pairs([write(tmp_path, "", "empty.tsv")])
    with pytest.raises(UserError, match=r"latin1\.tsv:2: invalid UTF-8 at byte offset 5"):
        read_pairs([write(tmp_path, "ok\tb\n\xe9\tb\n".encode("latin-1"), "latin1.tsv")])
    with pytest.raises(UserError, match=r"blank\.tsv is empty"):
        read_pairs([write(tmp_path, "\n\n", "blank.tsv")])
    with pytest.raises(UserError, match="no data"):
        read_pairs([])


# ---- synthetic pairs -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reverse", "add", "date"])
def test_synthetic_pairs_are_deterministic_and_unique(kind):
    pairs = synthetic_pairs(kind, 300, seed=7)
    assert pairs == synthetic_pairs(kind, 300, seed=7)
    assert pairs != synthetic_pairs(kind, 300, seed=8)
    assert len({s for s, _ in pairs}) == 300


def test_synthetic_reverse_and_add_are_right():
    for source, target in synthetic_pairs("reverse", 200, seed=1):
        assert re.fullmatch("[a-z]{3,12}", source) and target == source[::-1]
    digits = set()
    for source, target in synthetic_pairs("add", 500, seed=1):
        a, b = source.split("+")
        assert 0 <= int(a) <= 9999 and 0 <= int(b) <= 9999 and int(target) == int(a) + int(b)
        digits.add(len(a))
    assert digits == {1, 2, 3, 4}


def test_synthetic_dates_parse_and_match_the_source():
    pairs = synthetic_pairs("date", 600, seed=3)
    for source, target in pairs:
        date = datetime.date.fromisoformat(target)
        assert str(date.year) in source
        if re.fullmatch(r"\d\d/\d\d/\d{4}", source):  # day first: DD/MM/YYYY
            assert datetime.datetime.strptime(source, "%d/%m/%Y").date() == date
    assert len({re.sub(r"\w", "x", s) for s, _ in pairs}) > 10  # many formats
    assert format_date(datetime.date(2021, 3, 5), "{dd}/{mm}/{y}") == "05/03/2021"
    written = {format_date(datetime.date(2021, 3, 5), f) for f in DATE_FORMATS}
    assert {
        "March 5, 2021",
        "5 Mar 2021",
        "Friday, March 5, 2021",
        "the 5th of March, 2021",
    } <= written


def test_synthetic_bad_kind():
    with pytest.raises(UserError, match="--synthetic must be one of"):
        synthetic_pairs("sine", 10, 0)


# ---- teacher forcing schedules ---------------------------------------------------------------


def test_teacher_prob_schedules():
    assert teacher_prob(10**6, "always", 5.0) == 1.0
    assert teacher_prob(0, "linear", 100) == 1.0
    assert teacher_prob(25, "linear", 100) == pytest.approx(0.75)
    assert teacher_prob(500, "linear", 100) == 0.0
    assert teacher_prob(500, "linear", 100, minimum=0.2) == 0.2
    assert teacher_prob(3, "exponential", 0.5) == pytest.approx(0.125)
    assert teacher_prob(0, "inverse_sigmoid", 10) == pytest.approx(10 / 11)
    assert teacher_prob(10 * math.log(10), "inverse_sigmoid", 10) == pytest.approx(0.5)
    assert teacher_prob(10**9, "inverse_sigmoid", 10, minimum=0.1) == 0.1


# ---- the model's two paths -------------------------------------------------------------------


def model_config(cell="lstm", layers=1) -> ModelConfig:
    return ModelConfig(cell=cell, embed=7, hidden=11, layers=layers)


def random_batch(seed=0, n=4, src_vocab=9, tgt_vocab=8):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 2, 4, 1][:n])
    src = torch.randint(4, src_vocab, (n, 5), generator=g).masked_fill(
        torch.arange(5) >= lengths[:, None], PAD
    )
    tgt_in = torch.randint(4, tgt_vocab, (n, 6), generator=g)
    tgt_in[:, 0] = BOS
    return src, lengths, tgt_in


@pytest.mark.parametrize(
    ("cell", "layers", "bidirectional", "attention"),
    [("lstm", 2, True, True), ("gru", 1, False, True), ("rnn", 2, True, False)],
)
def test_fast_path_equals_step_path(cell, layers, bidirectional, attention):
    torch.manual_seed(0)
    model = Seq2Seq(model_config(cell, layers), 9, 8, bidirectional, attention=attention)
    src, lengths, tgt_in = random_batch()
    fast = model(src, lengths, tgt_in, teacher_prob=1.0)
    truth = torch.ones_like(tgt_in, dtype=torch.bool)
    step = model.decode_stepwise(tgt_in, model.encode(src, lengths), truth)
    assert fast.shape == (4, 6, 8)
    torch.testing.assert_close(fast, step)
    grads = [torch.autograd.grad(out.square().sum(), model.parameters()) for out in (fast, step)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bridge_maps_each_layers_final_states_of_both_directions(cell):
    torch.manual_seed(4)
    model = Seq2Seq(model_config(cell, layers=2), 9, 8, bidirectional=True)
    src, lengths, _ = random_batch()
    _, final = model.encoder(model.src_embedding(src), lengths=lengths)
    got = model.encode(src, lengths).state
    pairs = (
        [(final[0], got.h, model.bridge_h), (final[1], got.c, model.bridge_c)]  # torch: (h, c)
        if cell == "lstm"
        else [(final, got, model.bridge_h)]
    )
    for encoder_state, decoder_state, linear in pairs:  # rows: layer0 fwd, layer0 bwd, layer1 ...
        assert decoder_state.shape == (2, 4, 11)
        for layer in range(2):
            both = torch.cat([encoder_state[2 * layer], encoder_state[2 * layer + 1]], -1)
            torch.testing.assert_close(decoder_state[layer], torch.tanh(linear(both)))


def test_attention_weights_are_luongs_by_hand():
    """decode_attending: the logits of decode, and alpha = softmax_s(h_t^T W_a m_s) over the
    valid source positions (0 at padding, rows summing to 1), computed here from the parts."""
    torch.manual_seed(5)
    model = Seq2Seq(model_config("gru", 2), 9, 8, bidirectional=True).double().eval()
    src, lengths, tgt_in = random_batch()
    with torch.no_grad():
        enc = model.encode(src, lengths)
        logits, state, alpha = model.decode_attending(tgt_in, enc.state, enc)
        plain, plain_state = model.decode(tgt_in, enc.state, enc)
        h, _ = model.decoder(model.tgt_embedding(tgt_in), enc.state)  # (N, T, H)
        memory, _ = model.encoder(model.src_embedding(src), lengths=lengths)
    torch.testing.assert_close(logits, plain)
    torch.testing.assert_close(state, plain_state)
    assert alpha.shape == (4, 6, 5)
    for i, n in enumerate(lengths.tolist()):
        keys = memory[i, :n] @ model.attn_in.weight.T  # (n, H): W_a m_s
        torch.testing.assert_close(alpha[i, :, :n], (h[i] @ keys.T).softmax(-1))
        assert (alpha[i, :, n:] == 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4, 6, dtype=torch.float64))
    bare = Seq2Seq(model_config(), 9, 8, attention=False)
    enc = bare.encode(src, lengths)
    with pytest.raises(ValueError, match="no attention"):
        bare.decode_attending(tgt_in, enc.state, enc)


def constant_argmax(model: Seq2Seq, token: int) -> None:
    """Make the head predict ``token`` whatever the decoder says."""
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[token] = 1.0


def test_scheduled_sampling_with_p0_feeds_the_predictions():
    torch.manual_seed(1)
    model = Seq2Seq(model_config(), 9, 8, True)
    src, lengths, tgt_in = random_batch()
    constant_argmax(model, 5)
    fed_back = tgt_in.clone()
    fed_back[:, 1:] = 5  # what the decoder reads after BOS when it reads its own predictions
    with torch.no_grad():
        model.head.weight.normal_(0, 1e-3)  # logits depend on the input, argmax stays 5
    own = model(src, lengths, tgt_in, teacher_prob=0.0, generator=torch.Generator())
    torch.testing.assert_close(own, model(src, lengths, fed_back, teacher_prob=1.0))
    assert not torch.allclose(own, model(src, lengths, tgt_in, teacher_prob=1.0))
    g = [torch.Generator().manual_seed(3) for _ in range(2)]
    half = [model(src, lengths, tgt_in, 0.5, generator) for generator in g]
    torch.testing.assert_close(half[0], half[1])  # the coin flips come from the generator


def test_padding_never_changes_a_result():
    torch.manual_seed(2)
    model = Seq2Seq(model_config("lstm", 2), 9, 8, True).eval()
    src, lengths, tgt_in = random_batch()
    with torch.no_grad():
        batch = model(src, lengths, tgt_in)
        decoded = greedy(model, src, lengths, 7)
        for i in range(4):
            alone = src[i : i + 1, : lengths[i]]
            torch.testing.assert_close(
                batch[i : i + 1], model(alone, lengths[i : i + 1], tgt_in[i : i + 1])
            )
            assert decoded[i] == greedy(model, alone, lengths[i : i + 1], 7)[0]


# ---- decoding --------------------------------------------------------------------------------


def test_beam_width_1_is_greedy_and_sampling_is_seeded():
    torch.manual_seed(3)
    model = Seq2Seq(model_config("gru"), 9, 8, True).eval()
    src, lengths, _ = random_batch()
    with torch.no_grad():
        out = greedy(model, src, lengths, 9)
        assert beam_search(model, src, lengths, 1, 9, length_penalty=1.0) == out
        assert beam_search(model, src, lengths, 1, 9, length_penalty=0.0) == out
        assert all(len(row) <= 9 and EOS not in row and BOS not in row for row in out)
        draws = [
            sample(model, src, lengths, 9, 1.0, torch.Generator().manual_seed(5)) for _ in range(2)
        ]
        assert draws[0] == draws[1]
        assert sample(model, src, lengths, 9, 1e-4, torch.Generator()) == out  # cold = greedy


A, B = 4, 5
#: P(next | prefix) of the toy decoder; unlisted prefixes end with EOS.
TREE = {(): {A: 0.6, B: 0.4}, (A,): {A: 0.4, B: 0.3, EOS: 0.3}, (B,): {EOS: 0.9, A: 0.1}}


class ToyDecoder(torch.nn.Module):
    """A "model" whose state is the prefix read so far (encoded as an integer node id)."""

    V = 6

    def encode(self, src, lengths):
        n = src.size(0)
        return Encoded(
            torch.zeros(n, 1, 1),
            None,
            torch.ones(n, 1, dtype=torch.bool),
            torch.zeros(1, n, dtype=torch.long),
        )

    def decode(self, tokens, state, encoded):
        state = state * self.V + tokens[:, 0][None] + 1  # child node: prefix + token
        logits = torch.stack([self.log_probs(int(node)) for node in state[0]])
        return logits[:, None], state

    def log_probs(self, node: int) -> torch.Tensor:
        prefix = []
        while node:
            node, token = divmod(node - 1, self.V)
            prefix.insert(0, token)
        probs = TREE.get(tuple(prefix[1:]), {EOS: 1.0})  # prefix[0] is BOS
        return torch.tensor(
            [math.log(probs.get(t, 0.0)) if probs.get(t) else -math.inf for t in range(self.V)]
        )


def score(sequence, alpha):
    """sum log p / length**alpha, length counting the EOS."""
    prefix, total = (), 0.0
    for token in [*sequence, EOS]:
        total += math.log(TREE.get(prefix, {EOS: 1.0})[token])
        prefix = (*prefix, token)
    return total / (len(sequence) + 1) ** alpha


def test_beam_search_beats_greedy_on_a_constructed_decoder():
    model, src, lengths = ToyDecoder(), torch.zeros(2, 1, dtype=torch.long), torch.ones(2)
    assert greedy(model, src, lengths, 5) == [[A, A]] * 2  # 0.6 * 0.4 * 1.0 = 0.24
    found = beam_search(model, src, lengths, 2, 5, length_penalty=0.0)
    assert found == [[B]] * 2  # 0.4 * 0.9 = 0.36
    assert score([B], 0.0) > score([A, A], 0.0)


def test_length_penalty_prefers_longer_hypotheses():
    model, src, lengths = ToyDecoder(), torch.zeros(1, 1, dtype=torch.long), torch.ones(1)
    # log 0.36 / 2 = -0.51 < log 0.24 / 3 = -0.48: normalised by length, A A wins
    assert score([A, A], 1.0) > score([B], 1.0)
    assert beam_search(model, src, lengths, 2, 5, length_penalty=1.0) == [[A, A]]
    assert beam_search(model, src, lengths, 2, 1, length_penalty=0.0) == [[A]]  # max_len cut


def complete_sequences(prefix=()):
    """Every sequence the toy tree can end (brute force)."""
    found = []
    for token in TREE.get(prefix, {EOS: 1.0}):
        found += [list(prefix)] if token == EOS else complete_sequences((*prefix, token))
    return found


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_hypotheses_are_the_best_sequences_by_brute_force(alpha):
    """Width 4 on the toy tree: the four best of its five sequences, best first, each with
    its score; beam_search's output is the first."""
    model, src, lengths = ToyDecoder(), torch.zeros(2, 1, dtype=torch.long), torch.ones(2)
    found = beam_hypotheses(model, src, lengths, 4, 5, length_penalty=alpha)
    ranked = sorted(complete_sequences(), key=lambda seq: -score(seq, alpha))
    for hyps in found:
        scores = [s for s, _ in hyps]
        assert scores == sorted(scores, reverse=True) and len(hyps) == 4
        assert scores == pytest.approx([score(seq, alpha) for seq in ranked[:4]])
        for s, seq in hyps:
            assert s == pytest.approx(score(seq, alpha))
        assert sorted(map(tuple, (seq for _, seq in hyps))) == sorted(map(tuple, ranked[:4]))
    assert beam_search(model, src, lengths, 4, 5, length_penalty=alpha) == [
        hyps[0][1] for hyps in found]  # fmt: skip


# ---- metrics ---------------------------------------------------------------------------------


def test_sequence_metrics_by_hand():
    refs = [list("abc"), list("de"), list("fgh")]
    outs = [list("abc"), list("dx"), list("f")]
    m = sequence_metrics(outs, refs, "char")
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["token_accuracy"] == pytest.approx((3 + 1 + 1) / 8)
    sentences = [list("the cat sat on the mat"), list("2021-03-05")]  # BLEU needs 4-grams
    same = sequence_metrics(sentences, sentences, "char")
    assert same["chrf"] == pytest.approx(100) and same["bleu"] == pytest.approx(100)
    words = [["the", "cat", "sat", "on", "the", "mat"]]
    assert sequence_metrics(words, words, "word")["bleu"] == pytest.approx(100)
    assert 0 < sequence_metrics(outs, refs, "char")["chrf"] < 100


# ---- the task --------------------------------------------------------------------------------


def reverse_tsv(tmp_path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    lines = {"".join(rng.choice(list("abcde"), size=rng.integers(2, 5))) for _ in range(n)}
    return write(tmp_path, "".join(f"{s}\t{s[::-1]}\n" for s in sorted(lines)), "reverse.tsv")


def make_task(tmp_path, **task_options) -> Seq2SeqTask:
    config = RunConfig()
    config.task.name = "seq2seq"
    config.data.paths = [reverse_tsv(tmp_path)]
    config.model = ModelConfig(embed=16, hidden=48, layers=1)
    config.train.batch_size, config.train.seed = 32, 0
    config.task.options.update(bidirectional=True, max_len=8)
    for key, value in task_options.items():
        config.task.options[key] = value
    task = get_task("seq2seq")(config, None)
    task.prepare()
    return task


def test_tiny_training_run_learns_to_reverse(tmp_path):
    torch.manual_seed(0)
    task = make_task(tmp_path, teacher_forcing="always")
    model = task.build_model()
    before = task.evaluate(model, "val")
    fit(task, model, 100, 0.01, clip=5.0)
    after = task.evaluate(model, "val")
    assert set(after) == {"loss", *task.metric_names}
    assert after["loss"] < before["loss"] / 10
    assert before["exact_match"] == 0 and after["exact_match"] >= 0.8
    assert after["token_accuracy"] >= 0.9
    assert task.evaluate(model, "val", decode="beam", beam_width=3)["exact_match"] >= 0.7


def test_train_loss_is_the_mean_over_valid_target_tokens(tmp_path):
    task = make_task(tmp_path, teacher_forcing="always")
    model = task.build_model()
    src, lengths, tgt_in, tgt_out = batch = task.train_batch(0, 0)
    assert (tgt_in[:, 0] == BOS).all() and ((tgt_out == EOS).sum(1) == 1).all()
    out = task.train_loss(model, batch, step=0)
    logits = model(src, lengths, tgt_in)
    valid = tgt_out != PAD
    expected = F.cross_entropy(logits[valid], tgt_out[valid])
    torch.testing.assert_close(out.loss, expected)
    assert out.count == int(valid.sum()) and out.info == {"teacher_prob": 1.0}
    task.options.teacher_forcing, task.options.tf_k = "linear", 100.0
    sampled = [task.train_loss(model, batch, step=60) for _ in range(2)]
    assert sampled[0].info == {"teacher_prob": pytest.approx(0.4)}
    torch.testing.assert_close(sampled[0].loss, sampled[1].loss)  # coin flips: (seed, step)
    calls = []
    task.decode = lambda *args, **kwargs: calls.append(len(args[1])) or [[]] * len(args[1])
    task.config.train.batch_size = 5
    task.evaluate(model, "val", max_batches=2)
    assert calls == [5, 5]  # only the first 2 batches are decoded


def test_meta_round_trip_and_predict(tmp_path):
    task = make_task(tmp_path)
    model = task.build_model()
    meta = task.meta()
    assert set(meta) == {"source", "target", "tokenizer", "attention"}
    rebuilt_task = Seq2SeqTask(task.config, meta)  # no prepare(): needs no data
    rebuilt = rebuilt_task.build_model()
    rebuilt.load_state_dict(model.state_dict())
    inputs = ["abc", "ed", "zz"]  # z is unknown: encoded as <unk>
    for options in ({}, {"decode": "beam", "beam_width": "3"}, {"decode": "sample", "seed": 4}):
        printed = rebuilt_task.predict(rebuilt, inputs, options)
        assert printed == task.predict(model, inputs, options)
        assert [line.split(" -> ")[0] for line in printed.splitlines()] == inputs
    with pytest.raises(UserError, match="--beam-width must be an integer >= 1, got 0"):
        task.predict(model, inputs, {"decode": "beam", "beam_width": 0})
    with pytest.raises(UserError, match="--decode must be one of"):
        task.predict(model, inputs, {"decode": "topk"})
    assert rebuilt_task.evaluate_paths(rebuilt, [task.config.data.paths[0]])["loss"] > 0


def test_bad_meta_and_config_name_the_problem(tmp_path):
    config = RunConfig()
    good = {
        "source": ["<pad>", "<unk>", "<bos>", "<eos>"],
        "target": ["<pad>", "<unk>", "<bos>", "<eos>"],
        "tokenizer": "char",
    }
    with pytest.raises(UserError, match="'tokenizer' must be char or word"):
        Seq2SeqTask(config, good | {"tokenizer": 3})
    with pytest.raises(UserError, match="'source'"):
        Seq2SeqTask(config, good | {"source": "abc"})
    with pytest.raises(UserError, match="'attention' must be true or false"):
        Seq2SeqTask(config, good | {"attention": "yes"})
    config.data.tokenizer = "byte"
    with pytest.raises(UserError, match="--tokenizer must be char or word"):
        Seq2SeqTask(config)
    config.data.tokenizer = "char"
    with pytest.raises(UserError, match="needs TSV files"):
        Seq2SeqTask(config).prepare()
    config.data.synthetic, config.data.paths = "date", [str(tmp_path / "x.tsv")]
    with pytest.raises(UserError, match="no such file"):  # PATHs win over --synthetic
        Seq2SeqTask(config).prepare()


def test_synthetic_data_and_progress_sample():
    config = RunConfig()
    config.data.synthetic, config.data.synthetic_size = "add", 60
    config.model = ModelConfig(embed=8, hidden=16, layers=1)
    task = Seq2SeqTask(config)
    task.prepare()
    assert [len(task.splits[s].src) for s in ("train", "val", "test")] == [48, 6, 6]
    lines = task.progress_sample(task.build_model()).splitlines()[1:]  # after a line break
    assert len(lines) == 3 and all(
        re.fullmatch(r"\d+\+\d+ -> .* {3}\(reference: \d+\)", line) for line in lines
    )
