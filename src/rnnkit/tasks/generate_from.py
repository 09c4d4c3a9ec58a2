"""One-to-many as a task: generate a text from a condition (a class, or a real vector).

    rnnkit train --task generate-from data/names --preset generate-from
    rnnkit sample runs/names --condition Italian --num-samples 5

Data: class conditions come from ``rnnkit.data.labelled`` (a directory of LABEL.txt files, one
text per line, or ``label<TAB>text``); vector conditions from ``rnnkit.data.conditions``
(``v1,...,vD<TAB>text``); which one is detected from the first line. Each text is encoded as
characters ``<bos> t e x t <eos>``; the model (:class:`ConditionalGenerator`) reads ``<bos>
t e x t`` from the condition's initial state and predicts ``t e x t <eos>``. The loss is the
mean cross-entropy over the real (unpadded) target characters; ``accuracy`` is the next-char
accuracy. Evaluation also reports ``loss_shuffled_condition``: the same loss with the
conditions permuted across the split, so the gap to ``loss`` is what the condition tells.

Not here: the model (``rnnkit.models.conditional``), the sampling functions
(``rnnkit.generation``) and the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import MAX_OUTPUT_LEN, RunConfig, TaskOptions, need, opt
from rnnkit.data.batching import EpochOrder, pad, split_indices
from rnnkit.data.conditions import detect_condition_kind, parse_vector, read_vector_pairs
from rnnkit.data.textfile import read_text
from rnnkit.data.tokens import BOS, EOS, PAD, UNK, TokenVocab
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError
from rnnkit.generation import sample_next
from rnnkit.models.conditional import ConditionalGenerator
from rnnkit.tasks.base import StepOutput, Task, World
from rnnkit.tasks.metrics import Sums

_SHOWN_LABELS = 20  # known classes listed in an "unknown condition" message


class _Split:
    """Conditions (N,) class ids or (N, D) vectors, and the encoded ``<bos> text <eos>``."""

    def __init__(self, cond: Tensor, seqs: list[list[int]]) -> None:
        self.cond, self.seqs = cond, seqs

    def __len__(self) -> int:
        return len(self.seqs)

    def subset(self, ids: np.ndarray) -> _Split:
        return _Split(
            self.cond[torch.as_tensor(ids, dtype=torch.long)], [self.seqs[i] for i in ids]
        )


_ONE = "write one vector in it"


@dataclass
class GenerateFromOptions(TaskOptions):
    """A text from a class or a vector (one-to-many)."""

    condition_input: bool = opt(False, "also feed the condition at every step")
    max_len: int = opt(100, "longest output generated")

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        need(self.max_len >= 1, "max-len", "a positive integer", self.max_len)
        need(self.max_len <= MAX_OUTPUT_LEN, "max-len", "at most 1,000,000", self.max_len)


class GenerateFromTask(Task):
    name = "generate-from"
    Options = GenerateFromOptions
    predict_inputs = "one or more conditions (class names or vectors)"
    unit = "char"
    loss_name = "nats/char"
    metric_names = ("accuracy", "loss_shuffled_condition")
    conditional_sampling = True  # rnnkit sample --condition

    def __init__(
        self, config, meta: dict[str, Any] | None = None, world: World | None = None
    ) -> None:
        super().__init__(config, meta, world)
        self.kind: str | None = None
        self.labels: list[str] = []
        self.dim = 0
        self.vocab: TokenVocab | None = None
        self.splits: dict[str, _Split] = {}
        if meta is not None:
            self._load_meta(meta)

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        d, seed = self.config.data, self.config.train.seed
        fresh = self.vocab is None
        cond, texts = self._read(d.paths, fresh)
        train, val, test = split_indices(len(texts), d.val_fraction, d.test_fraction, seed)
        if fresh:
            self.vocab = TokenVocab.build(list(texts[i]) for i in train)
        self.config.model.vocab_size = len(self.vocab)
        data = _Split(cond, [self._encode(t) for t in texts])
        self.splits = {"train": data.subset(train), "val": data.subset(val)}
        self.splits["test"] = data.subset(test)
        lengths = [len(s) for s in self.splits["train"].seqs]
        self.order = EpochOrder(len(lengths), self.config.train.batch_size, seed, lengths=lengths)

    def _read(self, paths: list[str], fresh: bool) -> tuple[Tensor, list[str]]:
        """Conditions and texts of ``paths``; a fresh run fixes the kind and the classes."""
        kind = "class" if any(str(p).lower().endswith(".csv") for p in paths) else None
        kind = kind or detect_condition_kind(paths)
        if self.kind is not None and kind != self.kind:
            raise UserError(f"{', '.join(paths)}: {kind} conditions, but the model has {self.kind}")
        self.kind = kind
        if kind == "vector":
            vectors, texts = read_vector_pairs(paths)
            if fresh:
                self.dim = vectors.shape[1]
            elif vectors.shape[1] != self.dim:
                raise UserError(
                    f"{', '.join(paths)}: vectors of size {vectors.shape[1]}, "
                    f"but the model reads size {self.dim}"
                )
            return torch.from_numpy(vectors), texts
        from rnnkit.data.labelled import check_classes, read_labelled

        pairs = read_labelled(list(paths))
        labels = [label for label, _ in pairs]
        if fresh:
            check_classes(labels)
            self.labels = sorted(set(labels))
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise UserError(
                f"{', '.join(paths)}: classes the model does not know: "
                f"{_listing(unknown)} (known: {_listing(self.labels)})"
            )
        cond = torch.tensor([index[label] for label in labels], dtype=torch.long)
        return cond, [text for _, text in pairs]

    def _encode(self, text: str) -> list[int]:
        return [BOS, *self.vocab.encode(list(text)), EOS]

    def meta(self) -> dict[str, Any]:
        described = {"labels": list(self.labels)} if self.kind == "class" else {"dim": self.dim}
        return {"kind": self.kind, **described, "vocab": self.vocab.to_json()}

    def _load_meta(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            raise UserError(f"task meta must be a JSON object, got {type(meta).__name__}")
        self.kind = meta.get("kind")
        if self.kind not in ("class", "vector"):
            raise UserError(f"meta key 'kind' must be 'class' or 'vector', got {self.kind!r}")
        self.vocab = TokenVocab.from_json(meta.get("vocab"), source="meta key 'vocab'")
        self.config.model.vocab_size = len(self.vocab)
        if self.kind == "class":
            labels = meta.get("labels")
            ok = isinstance(labels, list) and all(isinstance(x, str) for x in labels)
            if not ok or len(labels) < 2 or len(set(labels)) != len(labels):
                raise UserError(f"meta key 'labels' must be >= 2 distinct strings, got {labels!r}")
            self.labels = labels
        else:
            dim = meta.get("dim")
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                raise UserError(f"meta key 'dim' must be a positive integer, got {dim!r}")
            self.dim = dim

    def vocab_symbols(self) -> list[str]:
        return self.vocab.to_json()

    def steps_per_epoch(self) -> int:
        return len(self.order)

    def train_batch(self, epoch: int, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return _batch(self.splits["train"], self.order.batch(epoch, index))

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> ConditionalGenerator:
        if self.vocab is None:
            raise RuntimeError("GenerateFromTask.build_model needs prepare() or saved meta first")
        size = len(self.labels) if self.kind == "class" else self.dim
        return ConditionalGenerator(
            self.config.model, len(self.vocab), self.kind, size, self.options.condition_input
        )

    def describe(self, model: nn.Module) -> str:
        what = f"{len(self.labels)} classes" if self.kind == "class" else f"{self.dim}-d vectors"
        n = len(self.splits["train"]) if self.splits else 0
        params = sum(p.numel() for p in model.parameters())
        return f"{self.name}: {what}, {n:,} training texts, {params:,} parameters"

    # ---- training and evaluation ---------------------------------------------------------
    def train_loss(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        model.train()
        cond, inputs, targets, lengths = _to(batch, model_device(model))
        logits = model(cond, inputs, lengths)  # (N, L, V)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD)
        return StepOutput(loss, int(lengths.sum()))

    def evaluate(self, model: nn.Module, split: str = "val", max_batches: int = 0) -> dict:
        if split not in self.splits:
            raise UserError(f"no {split!r} split: prepare() reads the data first")
        if len(self.splits[split]) == 0:
            return {"loss": math.nan, "accuracy": math.nan, "loss_shuffled_condition": math.nan}
        return self._metrics(model, self.splits[split], max_batches)

    def evaluate_paths(self, model: nn.Module, paths: list[str]) -> dict:
        cond, texts = self._read(list(paths), fresh=False)
        data = _Split(cond, [self._encode(t) for t in texts])
        return {**self._metrics(model, data, 0), "examples": len(data)}

    def _metrics(self, model: nn.Module, data: _Split, max_batches: int) -> dict:
        """Mean next-char loss and accuracy, and the loss under permuted conditions (summed on
        the model's device, read once at the end)."""
        device, was_training = model_device(model), model.training
        shuffled = np.random.default_rng([self.config.train.seed, 7]).permutation(len(data))
        order = EpochOrder(len(data), self.config.train.batch_size, 0, shuffle=False)
        sums = Sums(device, "loss", "loss_shuffled", "correct", "count")
        model.eval()
        with torch.no_grad():
            for index, ids in enumerate(order.batches()):
                if max_batches and index >= max_batches:
                    break
                cond, inputs, targets, lengths = _to(_batch(data, ids), device)
                logits = model(cond, inputs, lengths)  # (N, L, V)
                valid = targets != PAD  # (N, L)
                sums.add("loss", _summed_loss(logits, targets))
                sums.add("correct", ((logits.argmax(-1) == targets) & valid).sum())
                sums.add("count", valid.sum())
                other = to_device(data.cond[torch.as_tensor(shuffled[ids])], device)
                logits = model(other, inputs, lengths)  # (N, L, V)
                sums.add("loss_shuffled", _summed_loss(logits, targets))
        model.train(was_training)
        total = sums.read()
        return {
            "loss": total["loss"] / total["count"],
            "accuracy": total["correct"] / total["count"],
            "loss_shuffled_condition": total["loss_shuffled"] / total["count"],
        }

    def progress_sample(self, model: nn.Module) -> str | None:
        """One sample for each of up to 4 classes (or 4 validation vectors)."""
        seed = self.config.train.seed
        if self.kind == "class":
            step = max(1, math.ceil(len(self.labels) / 4))
            shown = self.labels[::step][:4]
            return "\n".join(f"{c}: {self.sample(model, c, seed=seed)[0]}" for c in shown)
        data = self.splits.get("val") or self.splits.get("train")
        if not data:
            return None
        pieces = []
        for i in range(min(4, len(data))):
            truth = self.vocab.decode(data.seqs[i])
            text = self._generate(model, data.cond[i : i + 1], 1, 0.8, 0, 1.0, seed, "")[0]
            pieces.append(f"{''.join(truth)!r} -> {text!r}")
        return "\n".join(pieces)

    # ---- generation ----------------------------------------------------------------------
    def sample(
        self,
        model: nn.Module,
        condition: str,
        num_samples: int = 1,
        temperature: float = 0.8,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_len: int | None = None,
        prime: str = "",
    ) -> list[str]:
        """``num_samples`` texts for ``condition``: a class name, or for vector models a
        comma-separated vector or a file holding one. Each text starts with ``prime`` (the
        whole text is returned) and ends before ``<eos>`` or after ``max_len`` generated
        characters (default ``--max-len``). Sampling follows
        :func:`rnnkit.generation.sample_next` (temperature 0: greedy) with a private
        generator seeded with ``seed``; ``<pad>``, ``<unk>`` and ``<bos>`` are never drawn."""
        max_len = self.options.max_len if max_len is None else max_len
        _check_sampling(num_samples, temperature, top_k, top_p, max_len)
        cond = self.encode_condition(condition)
        return self._generate(
            model, cond, num_samples, temperature, top_k, top_p, seed, prime, max_len
        )

    def encode_condition(self, condition: str) -> Tensor:
        """The model's input for one condition: class id (1,) or vector (1, D)."""
        if self.kind == "class":
            if condition not in self.labels:
                raise UserError(
                    f"unknown condition {condition!r}; known classes: {_listing(self.labels)}"
                )
            return torch.tensor([self.labels.index(condition)])
        if Path(condition).is_file():
            lines = [
                (n, line)
                for n, line in enumerate(read_text(condition, empty_hint=_ONE).splitlines(), 1)
                if line.strip()
            ]
            if not lines:
                raise UserError(f"{condition}: no vector in the file")
            where = f"{condition}:{lines[0][0]}"
            vector = parse_vector(lines[0][1].partition("\t")[0], where)
        else:
            where = "--condition"
            try:
                vector = parse_vector(condition, where)
            except UserError as error:
                raise UserError(
                    f"{error} (give {self.dim} comma-separated numbers or a file holding them)"
                ) from None
        if len(vector) != self.dim:
            raise UserError(f"{where}: expected a vector of {self.dim} numbers, got {len(vector)}")
        return torch.tensor([vector], dtype=torch.float32)

    def _generate(
        self, model, cond, num_samples, temperature, top_k, top_p, seed, prime, max_len=None
    ) -> list[str]:
        """Feed ``<bos> prime`` one step at a time from the condition's state, then draw up
        to ``max_len`` characters carrying the state (the prefix is never re-run)."""
        max_len = self.options.max_len if max_len is None else max_len
        unknown = sorted({ch for ch in prime if ch not in self.vocab})
        if unknown:
            raise UserError(f"--prime has characters the model never saw: {''.join(unknown)!r}")
        device, was_training = model_device(model), model.training
        generator = torch.Generator(device=device)  # on the model's device: draws stay there
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        n = num_samples
        cond = to_device(cond, device).expand(n, *cond.shape[1:])  # (n,) or (n, D)
        never = torch.tensor([PAD, UNK, BOS], device=device)  # ids never drawn
        out: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        model.eval()
        try:
            with torch.inference_mode():
                state = model.initial_state(cond)
                for t in [BOS, *self.vocab.encode(list(prime))]:
                    token = torch.full((n,), t, dtype=torch.long, device=device)
                    logits, state = model.step(token, state, cond)  # (n, V)
                for produced in range(max_len):
                    logits = logits.index_fill(1, never, -math.inf)
                    token = sample_next(
                        logits,
                        temperature=temperature,
                        top_k=top_k,
                        top_p=top_p,
                        generator=generator,
                    )  # (n,)
                    for i, t in enumerate(token.tolist()):  # the host's one read per step
                        done[i] = done[i] or t == EOS
                        if not done[i]:
                            out[i].append(t)
                    if all(done) or produced == max_len - 1:
                        break
                    logits, state = model.step(token, state, cond)  # (n, V)
        finally:
            model.train(was_training)
        return [prime + "".join(self.vocab.decode(ids)) for ids in out]

    def predict(self, model: nn.Module, inputs: list[str], options: dict) -> str:
        """``condition: sample`` lines, ``options["num_samples"]`` per condition."""
        num = int(options.get("num_samples", 1))
        lines = []
        for condition in inputs:
            texts = self.sample(
                model,
                condition,
                num_samples=num,
                temperature=float(options.get("temperature", 0.8)),
                top_k=int(options.get("top_k", 0)),
                top_p=float(options.get("top_p", 1.0)),
                seed=options.get("seed"),
                max_len=options.get("max_len"),
                prime=options.get("prime", ""),
            )
            lines.extend(f"{condition}: {text}" for text in texts)
        return "\n".join(lines)


def _batch(data: _Split, ids: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(cond, inputs ``<bos> text`` (N, L), targets ``text <eos>`` (N, L), lengths (N,))."""
    seqs = [data.seqs[i] for i in ids]
    inputs, lengths = pad([s[:-1] for s in seqs], PAD)
    targets, _ = pad([s[1:] for s in seqs], PAD)
    return data.cond[torch.as_tensor(ids, dtype=torch.long)], inputs, targets, lengths


def _to(batch, device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The batch on ``device`` (pinned, non-blocking copies), but ``lengths``: packing reads
    them on the host."""
    cond, inputs, targets, lengths = batch
    return (*to_device((cond, inputs, targets), device), lengths)


def _summed_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of logits (N, L, V) against targets (N, L), summed over non-PAD."""
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="sum", ignore_index=PAD)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN_LABELS])
    more = len(names) - _SHOWN_LABELS
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _check_sampling(num_samples, temperature, top_k, top_p, max_len) -> None:
    def need(ok: bool, flag: str, expected: str, value) -> None:
        if not ok:
            raise UserError(f"--{flag} must be {expected}, got {value!r}")

    ok = isinstance(temperature, int | float) and math.isfinite(temperature) and temperature >= 0
    need(ok, "temperature", "a number >= 0 (0: greedy)", temperature)
    need(isinstance(top_k, int) and top_k >= 0, "top-k", "an integer >= 0 (0: off)", top_k)
    need(0 < top_p <= 1, "top-p", "in (0, 1] (1: off)", top_p)
    need(isinstance(num_samples, int) and num_samples >= 1, "num-samples", ">= 1", num_samples)
    need(isinstance(max_len, int) and max_len >= 1, "max-len", "a positive integer", max_len)
