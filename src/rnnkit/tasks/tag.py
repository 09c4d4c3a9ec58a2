"""``--task tag``: one label per word (many-to-many, aligned), e.g. part-of-speech tagging.

    rnnkit train --preset tag en_ewt-ud-train.conllu --val en_ewt-ud-dev.conllu --out runs/tag
    rnnkit eval runs/tag/best en_ewt-ud-test.conllu        # token_accuracy: UPOS accuracy
    rnnkit predict runs/tag "The cat sat on the mat."   # The/DET cat/NOUN sat/VERB ...

Data: CoNLL-U (FORM and UPOS) or ``token<TAB>tag`` files (``data/conllu.py``), split into
train/val/test sentences by ``--val-fraction`` and ``--test-fraction``; with ``--val FILE`` (an
official dev split) the validation sentences are that file's, every sentence of the training
files trains, and ``rnnkit eval RUN TEST_FILE`` scores the test split. Vocabularies come from
the training sentences: lower-cased words seen ``min_count`` times, characters (original
casing, for the spelling encoder), and every tag. Training replaces rare words by ``<unk>``
now and then (word dropout, probability ``alpha / (alpha + count)``) so the ``<unk>``
embedding learns to lean on the spelling.
``--crf`` scores each sentence's tags together with a linear-chain CRF (``models/crf.py``):
the loss is its negative log-likelihood per token, and predictions are Viterbi's.
Metrics: token accuracy, macro-F1 and each tag's F1 (``f1_<TAG>``). Not here: the model
(``models/tagger.py``) and the loop (``rnnkit/trainer/loop.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.config import RunConfig, TaskOptions, need, opt
from rnnkit.data.batching import EpochOrder, pad, split_indices
from rnnkit.data.conllu import Sentence, read_tagged
from rnnkit.data.tokens import PAD, UNK, TokenVocab
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError
from rnnkit.models.tagger import SequenceTagger
from rnnkit.tasks import metrics
from rnnkit.tasks.base import StepOutput, Task, World, data_names
from rnnkit.wording import plural

IGNORE = -100  # target at padded positions (cross_entropy's ignore_index)
MAX_WORD_CHARS = 20  # longer words keep their first and last MAX_WORD_CHARS // 2 characters
WORD_DROPOUT_ALPHA = 0.25  # P(word -> <unk>) = alpha / (alpha + training count)
EVAL_BATCH = 128
_PUNCT = re.compile(r"([(\[{\"'“‘]*)(.*?)((?:\.\.\.|[.,;:!?)\]}\"'”’])*)", re.DOTALL)


class TagBatch(NamedTuple):
    words: Tensor  # (N, L) word ids, PAD past each length
    lengths: Tensor  # (N,) CPU int64
    chars: Tensor  # (N, L, W) character ids
    char_lengths: Tensor  # (N, L), 0 at padded positions
    tags: Tensor  # (N, L) tag ids, IGNORE past each length


@dataclass
class TagOptions(TaskOptions):
    """One tag per token (many-to-many, aligned)."""

    bidirectional: bool = opt(False, "read the input both ways")
    char_hidden: int = opt(0, "per-word character RNN size, 0: off")
    min_count: int = opt(1, "words seen fewer times map to <unk> (word tokens)")
    crf: bool = opt(
        False, "a linear-chain CRF output layer: tag transitions, Viterbi decoding (Lample 2016)"
    )

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        for name in ("char_hidden", "min_count"):
            need(
                getattr(self, name) >= 0,
                name.replace("_", "-"),
                "an integer >= 0",
                getattr(self, name),
            )


class TagTask(Task):
    name = "tag"
    val_file = True
    Options = TagOptions
    predict_inputs = "one or more sentences to tag"
    unit = "token"
    loss_name = "nats/token"
    metric_names = ("token_accuracy", "macro_f1")
    selection = ("token_accuracy", "max")  # best/ is the run's best tagger, not its best loss

    def __init__(
        self, config: RunConfig, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        self.words: TokenVocab | None = None
        self.chars: TokenVocab | None = None
        self.tags: list[str] = []
        self.splits: dict[str, list[Sentence]] = {}
        if meta is not None:
            self.words, self.chars, self.tags = _load_meta(meta)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        d, seed = self.config.data, self.config.train.seed
        sentences = read_tagged(d.paths)
        held_out = read_tagged([d.val]) if d.val else []  # --val: the validation sentences
        fractions = (0.0, 0.0) if d.val else (d.val_fraction, d.test_fraction)
        train, val, test = split_indices(len(sentences), *fractions, seed)
        if len(train) == 0:
            raise UserError(
                f"no training sentences left of {len(sentences)} after the val/test split "
                "(add sentences or lower --val-fraction / --test-fraction)"
            )
        self.splits = {
            "train": [sentences[i] for i in train],
            "val": held_out or [sentences[i] for i in val],
            "test": [sentences[i] for i in test],
        }
        if self.saved_meta is None:
            lowered = [[w.lower() for w in words] for words, _ in self.splits["train"]]
            self.words = TokenVocab.build(lowered, max(1, self.options.min_count))
            self.chars = TokenVocab.build("".join(words) for words, _ in self.splits["train"])
            self.tags = sorted({t for _, tags in sentences + held_out for t in tags})
            self.tag_index = {t: i for i, t in enumerate(self.tags)}
        else:
            self._check_tags(sentences, d.paths)
            self._check_tags(held_out, [d.val])
        counts = Counter(w.lower() for words, _ in self.splits["train"] for w in words)
        self.drop_p = np.array(
            [WORD_DROPOUT_ALPHA / (WORD_DROPOUT_ALPHA + counts[s]) for s in self.words.symbols]
        )
        self.drop_p[[PAD, UNK]] = 0.0
        self.encoded = {
            name: [self.encode(s) for s in split] for name, split in self.splits.items()
        }
        lengths = [len(words) for words, _ in self.splits["train"]]
        self.order = EpochOrder(len(lengths), self.config.train.batch_size, seed, lengths=lengths)

    def meta(self) -> dict[str, Any]:
        return {
            "words": self.words.to_json(),
            "chars": self.chars.to_json(),
            "tags": list(self.tags),
        }

    def vocab_symbols(self) -> list[str]:
        return self.words.to_json()

    def steps_per_epoch(self) -> int:
        return len(self.order)

    def encode(
        self, sentence: Sentence | list[str]
    ) -> tuple[list[int], list[list[int]], list[int]]:
        """(word ids, character ids per word, tag ids) of ``(words, tags)`` or of bare words."""
        words, tags = sentence if isinstance(sentence, tuple) else (sentence, [])
        index = self.tag_index
        word_ids = self.words.encode([w.lower() for w in words])
        char_ids = [self.chars.encode(list(clip_word(w))) for w in words]
        return word_ids, char_ids, [index[t] for t in tags]

    def train_batch(self, epoch: int, index: int) -> TagBatch:
        ids = self.order.batch(epoch, index)
        examples = [self.encoded["train"][i] for i in ids]
        rng = np.random.default_rng([self.config.train.seed, epoch, index, 0x7A6])
        dropped = []
        for words, chars, tags in examples:
            keep = rng.random(len(words)) >= self.drop_p[words]
            dropped.append(
                ([w if k else UNK for w, k in zip(words, keep, strict=True)], chars, tags)
            )
        return collate(dropped)

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        t = self.options
        return SequenceTagger(
            self.config.model,
            len(self.words),
            len(self.chars),
            len(self.tags),
            t.char_hidden,
            t.bidirectional,
            t.crf,
        )

    def describe(self, model: nn.Module) -> str:
        sizes = ", ".join(f"{len(s):,} {name}" for name, s in self.splits.items())
        return (
            f"tag: {sum(p.numel() for p in model.parameters()):,} parameters, "
            f"{plural(len(self.words), 'word')}, {plural(len(self.chars), 'char')}, "
            f"{plural(len(self.tags), 'tag')}{', CRF' if self.options.crf else ''}; "
            f"sentences: {sizes}"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def train_loss(self, model: nn.Module, batch: TagBatch, step: int) -> StepOutput:
        model.train()
        logits = _forward(model, batch)  # (N, L, T)
        targets = to_device(batch.tags, logits.device)
        tokens = int(batch.lengths.sum())
        return StepOutput(model.summed_loss(logits, targets, batch.lengths) / tokens, tokens)

    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int = 0) -> dict:
        if split not in self.splits:
            raise UserError(f"unknown split {split!r}: choose val or test")
        if not self.encoded[split]:
            why = (
                "--val: every sentence of the training files trains"
                if self.config.data.val
                else f"raise --{split}-fraction"
            )
            raise UserError(
                f"the {split} split is empty ({why}); score a file: rnnkit eval RUN "
                f"{split.upper()}.conllu"
            )
        return self._metrics(model, self.encoded[split], max_batches)

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        sentences = read_tagged(paths)
        self._check_tags(sentences, paths)
        return self._metrics(model, [self.encode(s) for s in sentences])

    def write_figures(self, model: nn.Module, out: Path, split: str = "val") -> list[Path]:
        if not self.encoded.get(split):
            return []
        matrix, _, _ = _confusion(model, self.encoded[split], len(self.tags))
        path = Path(out) / "confusion.png"
        return [metrics.plot_confusion(matrix, self.tags, path, f"tags ({split})")]

    def progress_sample(self, model: nn.Module) -> str | None:
        if not self.splits.get("val"):
            return None
        words, truth = self.splits["val"][0]
        predicted = self.tag_words(model, [words])[0]
        wrong = sum(p != t for p, t in zip(predicted, truth, strict=True))
        return f"{format_tagged(words, predicted)}   ({wrong} of {len(words)} wrong)"

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        sentences = []
        for number, text in enumerate(inputs, start=1):
            words = split_words(text)
            if not words:
                raise UserError(f"predict: input {number} has no words, got {text!r}")
            sentences.append(words)
        tagged = self.tag_words(model, sentences)
        return "\n".join(format_tagged(w, t) for w, t in zip(sentences, tagged, strict=True))

    def tag_words(self, model: nn.Module, sentences: list[list[str]]) -> list[list[str]]:
        """The predicted tags of each sentence (a list of words)."""
        out = []
        for start in range(0, len(sentences), EVAL_BATCH):
            chunk = sentences[start : start + EVAL_BATCH]
            batch = collate([self.encode(words) for words in chunk])
            predicted = _predict(model, batch)  # (N, L)
            for row, words in zip(predicted.tolist(), chunk, strict=True):
                out.append([self.tags[i] for i in row[: len(words)]])
        return out

    # ---- helpers -------------------------------------------------------------------------
    def _metrics(self, model: nn.Module, encoded: list, max_batches: int = 0) -> dict:
        matrix, loss_sum, tokens = _confusion(model, encoded, len(self.tags), max_batches)
        _, _, f1 = metrics.per_class_f1(matrix)
        result = {
            "loss": loss_sum / max(1, tokens),
            "token_accuracy": metrics.accuracy(matrix),
            "macro_f1": metrics.macro_f1(matrix),
        }
        result.update({f"f1_{tag}": float(f1[i]) for i, tag in enumerate(self.tags)})
        return result

    def own_data(self, split: str = "val") -> str:
        d = self.config.data
        if d.val and split == "val":
            return f"the validation file {data_names([d.val])} (data.val from the checkpoint)"
        return super().own_data(split)

    def _check_tags(self, sentences: list[Sentence], paths: list[str]) -> None:
        unknown = sorted({t for _, tags in sentences for t in tags} - set(self.tags))
        if unknown:
            raise UserError(
                f"{', '.join(map(str, paths))}: tags the model was not trained on: "
                f"{', '.join(unknown)} (known: {', '.join(self.tags)})"
            )


def collate(examples: list[tuple[list[int], list[list[int]], list[int]]]) -> TagBatch:
    """Pad encoded sentences into a :class:`TagBatch` (tags may be empty: all IGNORE)."""
    words, lengths = pad([w for w, _, _ in examples], PAD)  # (N, L)
    N, L = words.shape
    W = max(len(c) for _, chars, _ in examples for c in chars)
    chars = torch.full((N, L, W), PAD, dtype=torch.long)
    char_lengths = torch.zeros(N, L, dtype=torch.long)
    tags = torch.full((N, L), IGNORE, dtype=torch.long)
    for n, (_, spelled, tag_ids) in enumerate(examples):
        for t, c in enumerate(spelled):
            chars[n, t, : len(c)] = torch.tensor(c, dtype=torch.long)
            char_lengths[n, t] = len(c)
        tags[n, : len(tag_ids)] = torch.tensor(tag_ids, dtype=torch.long)
    return TagBatch(words, lengths, chars, char_lengths, tags)


def _forward(model: nn.Module, batch: TagBatch) -> Tensor:
    """The model's logits (N, L, T): word and character ids go to its device; both kinds of
    lengths stay on the host, where packing reads them."""
    words, chars = to_device((batch.words, batch.chars), model_device(model))
    return model(words, batch.lengths, chars, batch.char_lengths)


@torch.no_grad()
def _predict(model: nn.Module, batch: TagBatch) -> Tensor:
    model.eval()
    return model.decode(_forward(model, batch), batch.lengths).cpu()  # (N, L)


@torch.no_grad()
def _confusion(
    model: nn.Module, encoded: list, num_tags: int, max_batches: int = 0
) -> tuple[np.ndarray, float, int]:
    """Confusion matrix over every valid token, the summed loss (cross-entropy, or the CRF's
    negative log-likelihood, with Viterbi's tags) and the token count.
    Summed on the model's device (padding ignored by index, never cut out by a mask, which
    would wait for the device) and read once at the end."""
    model.eval()
    device = model_device(model)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # less padding
    counts = torch.zeros(num_tags, num_tags, dtype=torch.long, device=device)
    loss_sum, tokens = metrics.Sums(device, "loss"), 0
    for b, start in enumerate(range(0, len(order), EVAL_BATCH)):
        if max_batches and b >= max_batches:
            break
        batch = collate([encoded[i] for i in order[start : start + EVAL_BATCH]])
        tokens += int((batch.tags != IGNORE).sum())  # on the host
        logits = _forward(model, batch).float()  # (N, L, T)
        tags = to_device(batch.tags, device)  # (N, L)
        loss_sum.add("loss", model.summed_loss(logits, tags, batch.lengths))
        valid = tags != IGNORE
        predicted = model.decode(logits, batch.lengths)  # (N, L)
        metrics.count_pairs(counts, tags.clamp(min=0), predicted, valid)
    return counts.cpu().numpy(), loss_sum.read()["loss"], tokens


def split_words(text: str) -> list[str]:
    """Whitespace tokens with leading brackets/quotes and trailing punctuation split off:
    ``'"Hi," she said.'`` -> ``['"', 'Hi', ',', '"', 'she', 'said', '.']``."""
    words = []
    for chunk in text.split():
        lead, core, trail = _PUNCT.fullmatch(chunk).groups()
        words += [*lead, *([core] if core else []), *re.findall(r"\.\.\.|.", trail)]
    return words


def format_tagged(words: list[str], tags: list[str]) -> str:
    return " ".join(f"{w}/{t}" for w, t in zip(words, tags, strict=True))


def clip_word(word: str) -> str:
    """The characters the spelling encoder reads: long words (URLs) keep both ends."""
    if len(word) <= MAX_WORD_CHARS:
        return word
    return word[: MAX_WORD_CHARS // 2] + word[-(MAX_WORD_CHARS // 2) :]


def _load_meta(meta: Any) -> tuple[TokenVocab, TokenVocab, list[str]]:
    """Vocabularies and tags from a checkpoint's meta; UserError naming a bad key."""
    if not isinstance(meta, dict):
        raise UserError(f"tag meta must be a JSON object, got {type(meta).__name__}")
    for key in ("words", "chars", "tags"):
        if key not in meta:
            raise UserError(f"tag meta: missing key {key!r}")
    words = TokenVocab.from_json(meta["words"], "tag meta 'words'")
    chars = TokenVocab.from_json(meta["chars"], "tag meta 'chars'")
    tags = meta["tags"]
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise UserError(f"tag meta 'tags' must be a non-empty list of strings, got {tags!r}")
    if len(set(tags)) != len(tags):
        raise UserError("tag meta 'tags' must not repeat a tag")
    return words, chars, list(tags)
