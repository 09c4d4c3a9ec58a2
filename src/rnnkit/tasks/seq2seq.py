"""``--task seq2seq``: translate one token sequence into another with an encoder-decoder RNN.

    rnnkit train --preset seq2seq                   # synthetic dates -> ISO, ~75 s on 1 core
    rnnkit predict runs/seq2seq "March 5, 2021" "5 mar 1999" --decode beam
    rnnkit eval runs/seq2seq --split test --decode beam   # compare decoders on one model

Data: TSV files of ``source<TAB>target`` (``rnnkit.data.pairs.read_pairs``) or, when no PATH
is given, a synthetic set (``--synthetic reverse|add|date``), split into train / val / test by
``split_indices``; char or word tokens with separate source and target vocabularies built on
the training split.

Training: mean cross-entropy over the valid target tokens (the decoder reads BOS + target and
predicts target + EOS) with scheduled sampling: :func:`teacher_prob` gives P(feed the truth)
at each step, logged as ``teacher_prob``. Evaluation: the teacher-forced loss, and by decoding
(``--decode greedy|sample|beam``): ``exact_match`` (output == reference), ``token_accuracy``
(position-wise matches over the reference's length), corpus ``chrf`` and ``bleu`` from
sacrebleu (0-100) on the detokenised text (lower-cased, space-separated tokens for word tokens).

Not here: the network (``rnnkit.models.seq2seq``) and the decoders (``rnnkit.models.decoding``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import MAX_OUTPUT_LEN, RunConfig, TaskOptions, need, opt
from rnnkit.data.batching import EpochOrder, pad, split_indices
from rnnkit.data.pairs import read_pairs, synthetic_pairs
from rnnkit.data.tokens import BOS, EOS, PAD, TokenVocab, detokenize, tokenize
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError
from rnnkit.models.decoding import beam_hypotheses, beam_search, greedy, sample
from rnnkit.models.seq2seq import Seq2Seq
from rnnkit.tasks.base import StepOutput, Task, World
from rnnkit.tasks.metrics import Sums

DECODERS = ("greedy", "sample", "beam")
SCHEDULES = ("always", "linear", "exponential", "inverse_sigmoid")
#: Luong attention over the encoder outputs (``rnnkit.models.seq2seq``): on, because it clearly
#: helps -- dates, 1,500 steps of the preset's model: test exact match 1.000 with, 0.708
#: without. There is no flag; the meta records it, so a checkpoint rebuilds as it was trained.
ATTENTION = True
MAX_BEAM = 1024  # --beam-width: beam search keeps this many hypotheses per input


@dataclass
class Seq2SeqOptions(TaskOptions):
    """A sequence in, another out (encoder-decoder)."""

    bidirectional: bool = opt(False, "read the input both ways (the encoder)")
    min_count: int = opt(1, "words seen fewer times map to <unk> (word tokens)")
    teacher_forcing: str = opt(
        "inverse_sigmoid",
        "scheduled sampling: how P(feed the truth) decays",
        choices=SCHEDULES,
    )
    tf_k: float = opt(
        1000.0,
        "schedule rate: linear steps to reach tf_min, exponential k**step (k<1), "
        "inverse sigmoid k/(k+exp(step/k))",
    )
    tf_min: float = opt(0.0, "lowest P(feed the truth)")
    decode: str = opt("greedy", "decoding", choices=DECODERS)
    beam_width: int = opt(5, "beam width (--decode beam)")
    length_penalty: float = opt(1.0, "beam score = log p / length**alpha")
    max_len: int = opt(100, "longest output generated")

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        for name in ("beam_width", "max_len"):
            need(
                getattr(self, name) >= 1,
                name.replace("_", "-"),
                "a positive integer",
                getattr(self, name),
            )
        # a beam of 10**9 or outputs of 10**12 steps would allocate before any check downstream
        need(self.beam_width <= MAX_BEAM, "beam-width", f"at most {MAX_BEAM}", self.beam_width)
        need(self.max_len <= MAX_OUTPUT_LEN, "max-len", "at most 1,000,000", self.max_len)
        need(self.min_count >= 0, "min-count", "an integer >= 0", self.min_count)
        need(math.isfinite(self.tf_k) and self.tf_k > 0, "tf-k", "a positive number", self.tf_k)
        if self.teacher_forcing == "exponential":
            expected = "in (0, 1) for --teacher-forcing exponential"
            need(self.tf_k < 1, "tf-k", expected, self.tf_k)
        need(0 <= self.tf_min <= 1, "tf-min", "in [0, 1]", self.tf_min)
        penalty = self.length_penalty
        need(math.isfinite(penalty) and penalty >= 0, "length-penalty", "a number >= 0", penalty)


def teacher_prob(step: int, schedule: str, k: float, minimum: float = 0.0) -> float:
    """P(the decoder reads the true previous token) at optimiser step ``step`` (Bengio et al.
    2015): ``always`` 1; ``linear`` max(min, 1 - step/k); ``exponential`` max(min, k**step)
    with k < 1; ``inverse_sigmoid`` max(min, k / (k + exp(step/k)))."""
    if schedule == "always":
        return 1.0
    if schedule == "linear":
        p = 1.0 - step / k
    elif schedule == "exponential":
        p = k**step
    elif schedule == "inverse_sigmoid":
        p = k / (k + math.exp(step / k)) if step / k < 700 else 0.0
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return max(minimum, min(1.0, p))


def sequence_metrics(
    outputs: list[list[str]], references: list[list[str]], tokenizer: str
) -> dict[str, float]:
    """exact_match, token_accuracy, chrf and bleu (sacrebleu corpus scores, 0-100; word tokens
    are scored as the space-separated tokens, which sacrebleu is told is deliberate)."""
    from sacrebleu.metrics import BLEU, CHRF

    if not references:
        return dict.fromkeys(("exact_match", "token_accuracy", "chrf", "bleu"), math.nan)
    pairs = list(zip(outputs, references, strict=True))
    correct = sum(a == b for o, r in pairs for a, b in zip(o, r, strict=False))
    hypotheses = [detokenize(o, tokenizer) for o in outputs]
    refs = [[detokenize(r, tokenizer) for r in references]]
    return {
        "exact_match": sum(o == r for o, r in pairs) / len(pairs),
        "token_accuracy": correct / max(1, sum(len(r) for r in references)),
        "chrf": CHRF().corpus_score(hypotheses, refs).score,
        "bleu": BLEU(force=tokenizer == "word").corpus_score(hypotheses, refs).score,
    }


@dataclass
class Pairs:
    """One split, encoded: source ids, target ids (no BOS/EOS), and the text they came from."""

    src: list[list[int]]
    tgt: list[list[int]]
    sources: list[str]
    references: list[list[str]]  # target tokens as read (not through the vocabulary)


class Seq2SeqTask(Task):
    name = "seq2seq"
    Options = Seq2SeqOptions
    predict_inputs = "one or more source texts"
    unit = "token"
    loss_name = "nats/token"
    metric_names = ("exact_match", "token_accuracy", "chrf", "bleu")
    info_names = ("teacher_prob",)
    selection = ("chrf", "max")  # decoded quality, not the teacher-forced loss

    def __init__(
        self, config, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        self.tokenizer = config.data.tokenizer
        if self.tokenizer not in ("char", "word"):
            raise UserError(
                f"--tokenizer must be char or word for --task seq2seq, got {self.tokenizer!r}"
            )
        self.attention = ATTENTION
        self.source_vocab: TokenVocab | None = None
        self.target_vocab: TokenVocab | None = None
        self.splits: dict[str, Pairs] = {}
        if meta is not None:
            self._load_meta(meta)

    # ---- data ----------------------------------------------------------------------------
    def _load_meta(self, meta: Any) -> None:
        """Vocabularies, tokenizer and attention from a checkpoint, checked key by key."""
        where = "saved task meta"
        if not isinstance(meta, dict):
            raise UserError(f"{where} must be a JSON object, got {type(meta).__name__}")
        tokenizer, attention = meta.get("tokenizer"), meta.get("attention", ATTENTION)
        if tokenizer not in ("char", "word"):
            raise UserError(f"{where}: 'tokenizer' must be char or word, got {tokenizer!r}")
        if not isinstance(attention, bool):
            raise UserError(f"{where}: 'attention' must be true or false, got {attention!r}")
        self.tokenizer, self.attention = tokenizer, attention
        self.source_vocab = TokenVocab.from_json(meta.get("source"), "saved task meta 'source'")
        self.target_vocab = TokenVocab.from_json(meta.get("target"), "saved task meta 'target'")

    def _read(self) -> list[tuple[str, str]]:
        """The PATHs' pairs; without PATHs, the --synthetic set (the preset's dates)."""
        data = self.config.data
        if data.paths:
            return read_pairs(data.paths)
        if data.synthetic:
            return synthetic_pairs(data.synthetic, data.synthetic_size, self.config.train.seed)
        raise UserError(
            "--task seq2seq needs TSV files (source<TAB>target) or --synthetic reverse|add|date"
        )

    def prepare(self) -> None:
        pairs, data, seed = self._read(), self.config.data, self.config.train.seed
        parts = split_indices(len(pairs), data.val_fraction, data.test_fraction, seed)
        if len(parts[0]) == 0:
            raise UserError(f"seq2seq needs at least 3 pairs to split, got {len(pairs)}")
        if self.source_vocab is None or self.target_vocab is None:
            train, k = [pairs[i] for i in parts[0]], self.options.min_count
            self.source_vocab = TokenVocab.build([tokenize(s, self.tokenizer) for s, _ in train], k)
            self.target_vocab = TokenVocab.build([tokenize(t, self.tokenizer) for _, t in train], k)
        for name, index in zip(("train", "val", "test"), parts, strict=True):
            self.splits[name] = self.encode_pairs([pairs[i] for i in index])
        lengths = [len(s) for s in self.splits["train"].src]
        self.order = EpochOrder(len(lengths), self.config.train.batch_size, seed, lengths=lengths)

    def encode_pairs(self, pairs: list[tuple[str, str]]) -> Pairs:
        """Token ids of ``pairs`` through the vocabularies (unknown symbols -> ``<unk>``)."""
        out = Pairs([], [], [], [])
        for source, target in pairs:
            reference = tokenize(target, self.tokenizer)
            out.src.append(self._encode_source(source))
            out.tgt.append(self.target_vocab.encode(reference))
            out.sources.append(source)
            out.references.append(reference)
        return out

    def _encode_source(self, source: str) -> list[int]:
        ids = self.source_vocab.encode(tokenize(source, self.tokenizer))
        if not ids:
            raise UserError(f"seq2seq: source {source!r} has no {self.tokenizer} tokens")
        return ids

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source_vocab.to_json(),
            "target": self.target_vocab.to_json(),
            "tokenizer": self.tokenizer,
            "attention": self.attention,
        }

    def vocab_symbols(self) -> list[str]:
        return self.source_vocab.to_json()

    def steps_per_epoch(self) -> int:
        return len(self.order)

    def train_batch(self, epoch: int, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self._batch(self.splits["train"], self.order.batch(epoch, index))

    @staticmethod
    def _batch(data: Pairs, ids) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(src (N, S), src_lengths (N,), tgt_in (N, T) = BOS + target, tgt_out = target + EOS)"""
        src, lengths = pad([data.src[i] for i in ids], PAD)
        tgt_in, _ = pad([[BOS, *data.tgt[i]] for i in ids], PAD)
        tgt_out, _ = pad([[*data.tgt[i], EOS] for i in ids], PAD)
        return src, lengths, tgt_in, tgt_out

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        if self.source_vocab is None:
            raise RuntimeError("Seq2SeqTask.build_model needs prepare() or a saved meta first")
        sizes = len(self.source_vocab), len(self.target_vocab)
        return Seq2Seq(self.config.model, *sizes, self.options.bidirectional, self.attention)

    def describe(self, model: nn.Module) -> str:
        sizes = ", ".join(f"{len(v.src):,} {k}" for k, v in self.splits.items())
        return (
            f"seq2seq: {sum(p.numel() for p in model.parameters()):,} parameters, "
            f"{len(self.source_vocab)} -> {len(self.target_vocab)} {self.tokenizer} symbols, "
            f"attention {'on' if self.attention else 'off'}; pairs: {sizes}"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def teacher_prob(self, step: int) -> float:
        o = self.options
        return teacher_prob(step, o.teacher_forcing, o.tf_k, o.tf_min)

    def train_loss(self, model: nn.Module, batch, step: int) -> StepOutput:
        device = model_device(model)
        src, lengths, tgt_in, tgt_out = batch
        count = int((tgt_out != PAD).sum())  # on the host, before the copy: no device sync
        p = self.teacher_prob(step)
        generator = None
        if p < 1.0:  # the coin flips of scheduled sampling: a pure function of (seed, step)
            seed = np.random.SeedSequence([self.config.train.seed, step]).generate_state(1)[0]
            generator = torch.Generator(device=device).manual_seed(int(seed))
        src, tgt_in, tgt_out = to_device((src, tgt_in, tgt_out), device)  # lengths: host
        logits = model(src, lengths, tgt_in, p, generator)  # (N, T, V)
        return StepOutput(_token_nll(logits, tgt_out).sum() / count, count, {"teacher_prob": p})

    def decode(
        self,
        model: nn.Module,
        src: Tensor,
        lengths: Tensor,
        how: str | None = None,
        beam_width: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[list[str]]:
        """Target tokens for a padded source batch, by ``how`` (default: ``--decode``)."""
        task = self.options
        how = how or task.decode
        if how == "greedy":
            ids = greedy(model, src, lengths, task.max_len)
        elif how == "sample":
            ids = sample(model, src, lengths, task.max_len, temperature, generator)
        elif how == "beam":
            width = beam_width or task.beam_width
            ids = beam_search(model, src, lengths, width, task.max_len, task.length_penalty)
        else:
            raise UserError(f"--decode must be one of {DECODERS}, got {how!r}")
        return [self.target_vocab.decode(row) for row in ids]

    def evaluate(
        self,
        model: nn.Module,
        split: str = "val",
        max_batches: int = 0,
        *,
        decode: str | None = None,
        beam_width: int | None = None,
    ) -> dict:
        """Loss and metrics on a prepared split; ``decode`` / ``beam_width`` override the
        config's decoder (to compare decoders on one trained model)."""
        if split not in self.splits:
            raise UserError(f"no {split!r} split (have: {', '.join(self.splits) or 'none'})")
        return self.evaluate_pairs(model, self.splits[split], max_batches, decode, beam_width)

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        return self.evaluate_pairs(model, self.encode_pairs(read_pairs(paths)))

    def evaluate_pairs(
        self,
        model: nn.Module,
        data: Pairs,
        max_batches: int = 0,
        decode: str | None = None,
        beam_width: int | None = None,
    ) -> dict:
        """Teacher-forced loss and decoding metrics over ``data`` (its first ``max_batches``)."""
        if not data.src:
            return {"loss": math.nan} | sequence_metrics([], [], self.tokenizer)
        device = model_device(model)
        order = EpochOrder(len(data.src), self.config.train.batch_size, 0, shuffle=False)
        generator = torch.Generator(device=device).manual_seed(self.config.train.seed)
        nll, tokens, outputs, references = Sums(device, "nll"), 0, [], []
        with eval_mode(model):
            for index, ids in enumerate(order.batches()):
                if max_batches and index >= max_batches:
                    break
                src, lengths, tgt_in, tgt_out = self._batch(data, ids)
                tokens += int((tgt_out != PAD).sum())  # on the host, before the copy
                src, tgt_in, tgt_out = to_device((src, tgt_in, tgt_out), device)
                logits = model(src, lengths, tgt_in)  # (N, T, V), teacher-forced
                nll.add("nll", _token_nll(logits, tgt_out).sum())
                outputs += self.decode(model, src, lengths, decode, beam_width, generator=generator)
                references += [data.references[i] for i in ids]
        loss = nll.read()["nll"] / tokens
        return {"loss": loss} | sequence_metrics(outputs, references, self.tokenizer)

    def progress_sample(self, model: nn.Module) -> str | None:
        """Three validation sources with the greedy output and the reference."""
        data = self.splits.get("val")
        if data is None or not data.src:
            return None
        ids = list(range(min(3, len(data.src))))
        src, lengths, _, _ = self._batch(data, ids)
        with eval_mode(model):
            outputs = self.decode(model, to_device(src, model_device(model)), lengths, "greedy")
        return "".join(
            f"\n{data.sources[i]} -> {detokenize(out, self.tokenizer)}"
            f"   (reference: {detokenize(data.references[i], self.tokenizer)})"
            for i, out in zip(ids, outputs, strict=True)
        )

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """``source -> output`` per input; options: decode, beam_width, seed, temperature,
        n_best (beam search's N best outputs per input, one line each with its score)."""
        how = options.get("decode") or self.options.decode
        if how not in DECODERS:
            raise UserError(f"--decode must be one of {DECODERS}, got {how!r}")
        width = _option(options, "beam_width", self.options.beam_width, int, 1)
        n_best = _option(options, "n_best", 1, int, 1)
        if n_best > 1:
            if how != "beam":
                raise UserError(f"--n-best {n_best} needs --decode beam (got --decode {how})")
            if n_best > width:
                raise UserError(f"--n-best {n_best}: at most --beam-width ({width})")
            return self._predict_n_best(model, inputs, width, n_best)
        seed = _option(options, "seed", self.config.train.seed, int, 0)
        temp = _option(options, "temperature", 1.0, float, 0.0, strict=True)
        device = model_device(model)
        generator = torch.Generator(device=device).manual_seed(seed)
        lines, size = [], self.config.train.batch_size
        for start in range(0, len(inputs), size):
            chunk = inputs[start : start + size]
            src, lengths = pad([self._encode_source(s) for s in chunk], PAD)
            with eval_mode(model):
                src = to_device(src, device)
                outputs = self.decode(model, src, lengths, how, width, temp, generator)
            for source, output in zip(chunk, outputs, strict=True):
                lines.append(f"{source} -> {detokenize(output, self.tokenizer)}")
        return "\n".join(lines)

    def _predict_n_best(self, model: nn.Module, inputs: list[str], width: int, n: int) -> str:
        """Beam search's ``n`` best outputs per input, best first: ``source -> output   (rank
        r, score s)`` with s = sum log p / length ** --length-penalty."""
        lines, size, device = [], self.config.train.batch_size, model_device(model)
        k = self.options
        for start in range(0, len(inputs), size):
            chunk = inputs[start : start + size]
            src, lengths = pad([self._encode_source(s) for s in chunk], PAD)
            with eval_mode(model):
                found = beam_hypotheses(
                    model, to_device(src, device), lengths, width, k.max_len, k.length_penalty
                )
            for source, hyps in zip(chunk, found, strict=True):
                for rank, (score, ids) in enumerate(hyps[:n], 1):
                    output = detokenize(self.target_vocab.decode(ids), self.tokenizer)
                    lines.append(f"{source} -> {output}   (rank {rank}, score {score:.4f})")
        return "\n".join(lines)


@contextmanager
def eval_mode(model: nn.Module):
    """Eval mode and no gradients inside; the model's previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy (N*T,) of logits (N, T, V) against targets (N, T); 0 at padding."""
    flat = logits.flatten(0, 1)  # (N*T, V)
    return F.cross_entropy(flat, targets.flatten(), reduction="none", ignore_index=PAD)


def _option(options: dict, key: str, default, kind: type, low: float, strict: bool = False):
    """``options[key]`` as ``kind`` (>= low, or > low with ``strict``), else ``default``."""
    value = options.get(key)
    if value is None:
        return default
    try:
        number = None if isinstance(value, bool) else kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < low or (strict and number == low):
        kind_name = "an integer" if kind is int else "a number"
        expected = f"{kind_name} {'>' if strict else '>='} {low:g}"
        raise UserError(f"--{key.replace('_', '-')} must be {expected}, got {value!r}")
    return number
