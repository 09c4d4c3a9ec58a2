"""``--task classify``: many-to-one, a label for each text (names -> language, reviews -> rating)
or each numeric series (sensor recordings, the UCR/UEA archives).

    rnnkit train --preset classify data/names/     # or --task classify --bidirectional ...
    rnnkit predict runs/classify Rossi Nguyen      # Rossi: Italian 0.91, Spanish 0.04, ...
    rnnkit train --preset ucr X_TRAIN.ts           # .ts, .npz, series CSV: numeric inputs
    rnnkit predict runs/ucr X_TEST.ts              # X_TEST.ts:9: 1 0.97, 2 0.03

What is here: ``ClassifyTask`` (the :class:`~rnnkit.tasks.base.Task` contract): read the
labelled files (``rnnkit.data.labelled``), tokenise as characters or words, split
train/val/test, build the vocabulary from the training split, batch by similar length, mean
cross-entropy per example, accuracy and macro-F1, a confusion-matrix figure and ``predict``.
Numeric series take the same path with normalised vectors for token ids
(``rnnkit.tasks.classify_numeric``). What is not here: the model
(``rnnkit.models.classifier``), the loop (``rnnkit.training``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import RunConfig, TaskOptions, need, opt
from rnnkit.data.batching import EpochOrder, pad, split_indices
from rnnkit.data.labelled import check_classes, read_labelled
from rnnkit.data.tokens import PAD, TokenVocab, tokenize
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.tasks import metrics
from rnnkit.tasks.base import StepOutput, Task, World
from rnnkit.tasks.classify_numeric import SeriesInputs, pad_series, wants_series
from rnnkit.wording import plural

TOKENIZERS = ("char", "word")
Batch = tuple[Tensor, Tensor, Tensor]  # tokens (N, L) or series (N, L, K), lengths (N,), targets
Example = tuple[list[int] | np.ndarray, int]  # token ids or a normalised series (T, K); label


@dataclass
class ClassifyOptions(TaskOptions):
    """One label per sequence (many-to-one)."""

    bidirectional: bool = opt(False, "read the input both ways")
    pooling: str = opt("last", "sequence summary", choices=("last", "mean", "max"))
    min_count: int = opt(1, "words seen fewer times map to <unk> (word tokens)")
    inputs: str = opt(
        "auto",
        "what the files hold: auto (numeric series for a .ts, an .npz, a directory of "
        "LABEL/*.csv files or a .csv whose header names --label-column and >= 2 steps; "
        "labelled text otherwise), text or series",
        choices=("auto", "text", "series"),
    )
    label_column: str = opt("label", "the label column of a series CSV (a sequence per row)")
    project: bool = opt(
        False,
        "series: a linear layer maps each step's channels to --embed features before the RNN "
        "(default: the RNN reads the channels)",
    )

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        need(self.min_count >= 0, "min-count", "an integer >= 0", self.min_count)
        need(bool(self.label_column.strip()), "label-column", "a column name", self.label_column)


class ClassifyTask(Task):
    name = "classify"
    val_file = True
    Options = ClassifyOptions
    predict_inputs = "one or more texts (or series files: .ts, .npz, .csv) to classify"
    unit = "example"
    loss_name = "nats/example"
    metric_names = ("accuracy", "macro_f1")

    def __init__(
        self, config: RunConfig, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        self.labels: list[str] = []
        self.vocab: TokenVocab | None = None
        self.tokenizer = config.data.tokenizer
        self.examples: list[Example] = []
        self.splits: dict[str, np.ndarray] = {}
        self.order: EpochOrder | None = None
        self.series: SeriesInputs | None = None  # numeric inputs (set by prepare or the meta)
        if meta is not None:
            self._load_meta(meta)
        elif self.tokenizer not in TOKENIZERS:
            raise UserError(
                f"--task classify reads --tokenizer char or word, got {self.tokenizer!r}"
            )

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        data = self.config.data
        if data.synthetic:
            raise UserError(
                f"--synthetic {data.synthetic} does not apply to --task classify; "
                "give labelled files"
            )
        if not data.paths:
            raise UserError(
                "--task classify needs labelled data: "
                "a directory of LABEL.txt files, a .tsv or a .csv"
            )
        if self.saved_meta is not None:  # a saved run reads what it was trained on
            series = self.series is not None
        else:
            series = wants_series(data.paths, self.options.inputs, self.options.label_column)
        if series:
            return self._prepare_series()
        if self.options.project:
            raise UserError("--project applies to numeric series inputs, not labelled text")
        pairs = read_labelled(data.paths)
        held = read_labelled([data.val]) if data.val else []  # --val: the validation examples
        found = [label for label, _ in pairs]
        check_classes(found)
        if self.saved_meta is None:
            self.labels = sorted(set(found))
        else:
            self._check_known(found, data.paths)
        if held:
            self._check_known([label for label, _ in held], [data.val])
        index = {label: i for i, label in enumerate(self.labels)}
        n = len(pairs)
        train, val, test = split_indices(
            n, 0 if held else data.val_fraction, data.test_fraction, self.config.train.seed
        )
        if held:
            val, pairs = np.arange(n, n + len(held)), pairs + held
        tokens = [tokenize(text, self.tokenizer) for _, text in pairs]
        if len(train) == 0:
            raise UserError(f"{len(pairs)} examples leave none for training; add more examples")
        if self.vocab is None:
            self.vocab = TokenVocab.build([tokens[i] for i in train], self.options.min_count)
        self.examples = [
            (self.vocab.encode(t), index[label])
            for t, (label, _) in zip(tokens, pairs, strict=True)
        ]
        self.splits = {"train": train, "val": val, "test": test}
        lengths = [len(self.examples[i][0]) for i in train]
        self.order = EpochOrder(
            len(train), self.config.train.batch_size, self.config.train.seed, lengths=lengths
        )

    def _prepare_series(self) -> None:
        """Numeric series: split (``--val FILE`` is the val split when given), fit the
        normalisation on the training split only, normalise every split with it."""
        data = self.config.data
        if self.series is None:
            self.series = SeriesInputs(self.options.label_column)
        found = self.series.read(data.paths)
        val = self.series.read([data.val]) if data.val else None
        check_classes(found.labels)
        if self.saved_meta is None:
            self.labels = sorted(set(found.labels))
        else:
            self._check_known(found.labels, data.paths)
        if val is not None:
            self._check_known(val.labels, [data.val])
        n, seed = len(found.values), self.config.train.seed
        train, held, test = split_indices(
            n, 0 if val else data.val_fraction, data.test_fraction, seed
        )
        if len(train) == 0:
            raise UserError(f"{n} sequences leave none for training; add more sequences")
        if self.saved_meta is None:
            self.series.fit([found.values[i] for i in train])
        if val is not None:
            held = np.arange(n, n + len(val.values))
            found.extend(val)
        self.examples = self.series.examples(found, self.labels)
        self.splits = {"train": train, "val": held, "test": test}
        lengths = [len(self.examples[i][0]) for i in train]
        self.order = EpochOrder(len(train), self.config.train.batch_size, seed, lengths=lengths)

    def meta(self) -> dict[str, Any]:
        if self.series is not None:
            return {"labels": list(self.labels), **self.series.to_json()}
        return {
            "labels": list(self.labels),
            "vocab": self._vocab().to_json(),
            "tokenizer": self.tokenizer,
        }

    def vocab_symbols(self) -> list[str]:
        return [] if self.series is not None else list(self._vocab().symbols)

    def steps_per_epoch(self) -> int:
        return len(self._order())

    def train_batch(self, epoch: int, index: int) -> Batch:
        return self._collate(self.splits["train"][self._order().batch(epoch, index)])

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        if self.series is not None:
            return SequenceClassifier(
                self.config.model,
                0,
                len(self.labels),
                self.options.bidirectional,
                self.options.pooling,
                channels=self.series.channels,
                project=self.options.project,
            )
        return SequenceClassifier(
            self.config.model,
            len(self._vocab()),
            len(self.labels),
            self.options.bidirectional,
            self.options.pooling,
        )

    def describe(self, model: nn.Module) -> str:
        sizes = "/".join(f"{len(self.splits.get(s, ())):,}" for s in ("train", "val", "test"))
        params = sum(p.numel() for p in model.parameters())
        inputs = (
            f"{self.series.channels} channels"
            if self.series is not None
            else f"{len(self._vocab())} {self.tokenizer} symbols"
        )
        return (
            f"classify: {params:,} parameters, {len(self.labels)} classes, "
            f"{inputs}, train/val/test {sizes} examples"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def train_loss(self, model: nn.Module, batch: Batch, step: int) -> StepOutput:
        model.train()
        tokens, lengths, targets = batch  # lengths stay on the host: packing reads them there
        tokens, targets = to_device((tokens, targets), model_device(model))
        logits = model(tokens, lengths)  # (N, C)
        loss = F.cross_entropy(logits, targets)
        return StepOutput(loss, len(targets))

    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int = 0) -> dict:
        loss, matrix = self._score(model, self._split(split), max_batches)
        return _metrics(loss, matrix)

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        if self.series is not None:
            found = self.series.read(paths)
            self._check_known(found.labels, paths)
            return _metrics(*self._score(model, self.series.examples(found, self.labels)))
        pairs = read_labelled(paths)
        self._check_known([label for label, _ in pairs], paths)
        index = {label: i for i, label in enumerate(self.labels)}
        examples = [(self._encode(text), index[label]) for label, text in pairs]
        loss, matrix = self._score(model, examples)
        return _metrics(loss, matrix)

    def write_figures(self, model: nn.Module, out: Path, split: str = "val") -> list[Path]:
        if len(self.splits.get(split, ())) == 0:
            return []
        _, matrix = self._score(model, self._split(split))
        examples = plural(int(matrix.sum()), "example")
        title = f"{split}: accuracy {metrics.accuracy(matrix):.3f} ({examples})"
        return [metrics.plot_confusion(matrix, self.labels, Path(out) / "confusion.png", title)]

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """One line per input: the input and its ``top`` classes with probabilities."""
        top = options.get("top", 3)
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise UserError(f"--top must be a positive integer, got {top!r}")
        if not inputs:
            raise UserError("rnnkit predict needs at least one text to classify")
        if self.series is not None:  # files: one line per sequence, named by file and line
            found = self.series.read(inputs, labelled=False)
            texts = found.sources
            examples: list[Example] = self.series.examples(found)
        else:
            texts = []
            for number, text in enumerate(inputs, start=1):
                if not text.strip():
                    raise UserError(f"input {number} is empty; give a text to classify")
                texts.append(text.strip())
            examples = [(self._encode(text), 0) for text in texts]
        probs = torch.cat(
            [
                self._probabilities(model, examples[i : i + 256])
                for i in range(0, len(examples), 256)
            ]
        )
        values, ids = probs.topk(min(top, len(self.labels)), dim=-1)
        lines = []
        for text, p, i in zip(texts, values.tolist(), ids.tolist(), strict=True):
            ranked = ", ".join(f"{self.labels[c]} {q:.2f}" for q, c in zip(p, i, strict=True))
            lines.append(f"{text}: {ranked}")
        return "\n".join(lines)

    # ---- helpers -------------------------------------------------------------------------
    def _probabilities(self, model: nn.Module, examples: list[Example]) -> Tensor:
        tokens, lengths, _ = _batch(examples)
        model.eval()
        with torch.no_grad():
            return model(to_device(tokens, model_device(model)), lengths).softmax(-1).cpu()

    def _vocab(self) -> TokenVocab:
        if self.vocab is None:
            raise RuntimeError("ClassifyTask: call prepare() (or pass saved meta) first")
        return self.vocab

    def _order(self) -> EpochOrder:
        if self.order is None:
            raise RuntimeError("ClassifyTask: call prepare() before asking for batches")
        return self.order

    def _encode(self, text: str) -> list[int]:
        return self._vocab().encode(tokenize(text, self.tokenizer))

    def _collate(self, ids: np.ndarray) -> Batch:
        return _batch([self.examples[i] for i in ids])

    def _split(self, split: str) -> list[Example]:
        if split not in ("train", "val", "test"):
            raise UserError(f"split must be train, val or test, got {split!r}")
        if split not in self.splits:
            raise RuntimeError("ClassifyTask: call prepare() before evaluating a split")
        if len(self.splits[split]) == 0:
            raise UserError(f"the {split} split is empty (raise --{split}-fraction above 0)")
        return [self.examples[i] for i in self.splits[split]]

    def _score(
        self, model: nn.Module, examples: list[Example], max_batches: int = 0
    ) -> tuple[float, np.ndarray]:
        """Mean cross-entropy and confusion matrix over ``examples``, batched by length;
        ``max_batches`` > 0 scores a fixed seeded sample of that many batches. Both are summed
        on the model's device and read once at the end."""
        size = max(self.config.train.batch_size, 256)
        if max_batches > 0 and len(examples) > max_batches * size:
            sample = np.random.default_rng([self.config.train.seed, 1]).permutation(len(examples))
            examples = [examples[i] for i in sample[: max_batches * size]]
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
        starts = range(0, len(order), size)
        was_training, device = model.training, model_device(model)
        model.eval()
        total = metrics.Sums(device, "loss")
        counts = torch.zeros(len(self.labels), len(self.labels), dtype=torch.long, device=device)
        with torch.no_grad():
            for start in starts:
                tokens, lengths, targets = _batch(
                    [examples[i] for i in order[start : start + size]]
                )
                tokens, targets = to_device((tokens, targets), device)
                logits = model(tokens, lengths).float()  # (N, C)
                total.add("loss", F.cross_entropy(logits, targets, reduction="sum"))
                metrics.count_pairs(counts, targets, logits.argmax(-1))
        model.train(was_training)
        matrix = counts.cpu().numpy()
        return total.read()["loss"] / max(1, int(matrix.sum())), matrix

    def _check_known(self, labels: list[str], paths: list[str]) -> None:
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            names = ", ".join(repr(label) for label in unknown)
            raise UserError(
                f"{', '.join(map(str, paths))}: labels the model does not know: {names} "
                f"(it knows {', '.join(self.labels)})"
            )

    def _load_meta(self, meta: Any) -> None:
        """Labels, vocabulary and tokenizer from a checkpoint, each checked."""
        if not isinstance(meta, dict):
            raise UserError(f"classify meta must be a JSON object, got {type(meta).__name__}")
        series = meta.get("inputs") == "series"
        for key in ("labels",) if series else ("labels", "vocab", "tokenizer"):
            if key not in meta:
                raise UserError(
                    f"classify meta: missing key {key!r} (the checkpoint is incomplete)"
                )
        labels, tokenizer = meta["labels"], meta.get("tokenizer", "char")
        if (
            not isinstance(labels, list)
            or not all(isinstance(x, str) for x in labels)
            or len(set(labels)) != len(labels)
            or len(labels) < 2
        ):
            raise UserError(
                "classify meta: 'labels' must be a list of >= 2 distinct strings, "
                f"got {str(labels)[:80]}"
            )
        if tokenizer not in TOKENIZERS:
            raise UserError(f"classify meta: 'tokenizer' must be char or word, got {tokenizer!r}")
        self.labels, self.tokenizer = list(labels), tokenizer
        if series:
            self.series = SeriesInputs.from_json(meta)
            return
        self.vocab = TokenVocab.from_json(meta["vocab"], source="classify meta 'vocab'")


def _batch(examples: list[Example]) -> Batch:
    if examples and isinstance(examples[0][0], np.ndarray):
        tokens, lengths = pad_series([x for x, _ in examples])  # (N, L, K), (N,)
    else:
        tokens, lengths = pad([ids for ids, _ in examples], PAD)  # (N, L), (N,)
    targets = torch.tensor([label for _, label in examples], dtype=torch.long)  # (N,)
    return tokens, lengths, targets


def _metrics(loss: float, matrix: np.ndarray) -> dict[str, float]:
    return {
        "loss": loss,
        "accuracy": metrics.accuracy(matrix),
        "macro_f1": metrics.macro_f1(matrix),
    }
