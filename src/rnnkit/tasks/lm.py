"""The language model as a task: many-to-many, the next character (or byte, or word).

The corpus is read as B parallel streams cut into T-token chunks (truncated BPTT, see
``rnnkit.training.tbptt``); the recurrent state after each chunk is carried into the next one,
so this is the one task with state between batches (``carried_state``). Metrics: the loss in
nats per token, ``ppl = exp(loss)`` and ``bpc`` (bits per character of the text: for a word
model, total nats / characters / ln 2, each line end one character, so char and word models of
one text compare). ``--tokenizer word`` reads whitespace-separated words, ``<eos>`` at each
line end, the vocabulary from the training lines (``--vocab-size``, ``--min-count``).
The token streams are built on the host; each batch goes to the model's device (pinned,
non-blocking), where the carried state lives; a step's ``bpc`` (a word model's ``ppl``) stays a
tensor there, for the trainer's one read per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.config import RunConfig, TaskOptions, opt
from rnnkit.data import (
    TokenStreams,
    Vocab,
    WordText,
    WordVocab,
    encode_lines,
    load_corpus,
    read_lines,
    split,
    split_lines,
)
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError, short
from rnnkit.generation import generate
from rnnkit.models import LanguageModel
from rnnkit.models.common import has_cell_state
from rnnkit.nn.cells import LSTMState
from rnnkit.tasks.base import StepOutput, Task, World, data_names
from rnnkit.training import distributed
from rnnkit.training.tbptt import detach_state, evaluate

LN2 = math.log(2)


@dataclass
class LanguageModelOptions(TaskOptions):
    """The word vocabulary's size rules (``--tokenizer word``); char and byte have none."""

    vocab_size: int = opt(
        0, "--tokenizer word: keep the N most frequent words, <unk> and <eos> included (0 = all)"
    )
    min_count: int = opt(1, "words seen fewer times map to <unk> (word tokens)")

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        if config.data.tokenizer != "word":
            for flag, value, default in (
                ("vocab-size", self.vocab_size, 0),
                ("min-count", self.min_count, 1),
            ):
                if value != default:
                    raise UserError(
                        f"--{flag} is for --tokenizer word; a {config.data.tokenizer} "
                        "vocabulary keeps every symbol"
                    )
        if self.min_count < 0:
            raise UserError(f"--min-count must be an integer >= 0, got {self.min_count}")
        if self.vocab_size < 0 or 0 < self.vocab_size < 3:
            raise UserError(f"--vocab-size must be 0 (all) or at least 3, got {self.vocab_size}")


class LanguageModelTask(Task):
    name = "lm"
    Options = LanguageModelOptions
    unit = "char"
    loss_name = "nats/char"
    sample_note = "temperature 0.8"
    metric_names = ("bpc", "chars")
    info_names = ("bpc",)
    multi_process = True  # B parallel streams: each process reads a contiguous block of them
    language_model = True
    checkpoint_keys = ("vocab_kind",)  # the language model's format since version 1

    def __init__(self, config, meta=None, world: World | None = None) -> None:
        super().__init__(config, meta, world)
        self.vocab: Vocab | WordVocab | None = None
        if meta is not None:
            kind = meta.get("vocab_kind")
            if kind not in ("char", "byte", "word"):
                raise UserError(f"vocab_kind must be 'char', 'byte' or 'word', got {short(kind)}")
            if kind == "word":
                self.vocab = WordVocab.from_json(meta.get("symbols"), source="vocab.json")
            else:
                self.vocab = Vocab.from_json(kind, meta.get("symbols"), source="vocab.json")
            if config.model.vocab_size != len(self.vocab):
                raise UserError(
                    f"model.vocab_size is {config.model.vocab_size} but vocab.json has "
                    f"{len(self.vocab)} symbols"
                )
        self.state = None  # the carried hidden state (truncated BPTT)
        self.val_chars = None  # word models: the characters each validation token stands for
        if config.data.tokenizer == "word" or isinstance(self.vocab, WordVocab):
            self.unit, self.loss_name = "word", "nats/word"
            self.metric_names, self.info_names = ("ppl", "bpc", "tokens"), ("ppl",)

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        d, t = self.config.data, self.config.train
        if d.tokenizer == "word":
            self._prepare_words()
            return
        corpus = load_corpus(d.paths or None, d.tokenizer, vocab=self.vocab, cache_dir=d.cache_dir)
        if d.val:
            train_tokens = corpus.tokens
            val = load_corpus([d.val], d.tokenizer, vocab=corpus.vocab, cache_dir=d.cache_dir)
            val_tokens = val.tokens
        else:
            train_tokens, val_tokens = split(corpus.tokens, d.val_fraction)
        self.val_tokens = val_tokens  # kept for the analysis tools (rnnkit report)
        self.vocab = corpus.vocab
        self.config.model.vocab_size = len(self.vocab)
        self.train_streams = TokenStreams(
            train_tokens, t.batch_size, t.seq_len, name="training text"
        )
        if self.world.enabled:  # this process's contiguous block of the streams
            self.train_streams = self.train_streams.shard(self.world.rows(t.batch_size))
        self.val_streams = TokenStreams.for_evaluation(val_tokens, t.batch_size, t.seq_len)

    def _prepare_words(self) -> None:
        """Word streams: the vocabulary from the training lines only (unless resuming), the
        validation lines (the last val_fraction, or --val) with unseen words as <unk>."""
        d, t, o = self.config.data, self.config.train, self.options
        lines = read_lines(d.paths or None)
        if d.val:
            train_lines, val_lines = lines, read_lines([d.val])
        else:
            train_lines, val_lines = split_lines(lines, d.val_fraction)
        if self.vocab is None:
            self.vocab = WordVocab.build(train_lines, o.vocab_size, o.min_count)
        train = encode_lines(train_lines, self.vocab)
        val = encode_lines(val_lines, self.vocab)
        self.val_tokens, self.val_chars = val.tokens, val.chars
        self.config.model.vocab_size = len(self.vocab)
        self.train_streams = TokenStreams(
            train.tokens, t.batch_size, t.seq_len, name="training text"
        )
        if self.world.enabled:
            self.train_streams = self.train_streams.shard(self.world.rows(t.batch_size))
        self.val_streams = TokenStreams.for_evaluation(val.tokens, t.batch_size, t.seq_len)

    def meta(self) -> dict:
        return {"vocab_kind": self.vocab.kind}

    def vocab_symbols(self) -> list[str]:
        return self.vocab.to_json()

    def steps_per_epoch(self) -> int:
        return len(self.train_streams)

    def train_batch(self, epoch: int, index: int):
        return self.train_streams.batch(index)

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        return LanguageModel(self.config.model)

    def describe(self, model) -> str:
        m, t = self.config.model, self.config.train
        return (
            f"{m.cell.upper()} {m.layers}x{m.hidden}, embed {m.embed}, "
            f"{model.num_parameters():,} parameters, vocab {len(self.vocab)} ({self.vocab.kind});"
            f" {self.steps_per_epoch():,} steps/epoch of {t.batch_size}x{t.seq_len} {self.unit}s"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def train_loss(self, model, batch, step: int) -> StepOutput:
        device = model_device(model)
        x, y = to_device(batch, device)  # (B, T) each, built on the host
        output = model(x, y, self._carried(model, device))
        self.state = detach_state(output.state)  # carry the values, cut the graph
        if self.unit == "word":
            return StepOutput(output.loss, y.numel(), {"ppl": output.loss.detach().exp()})
        return StepOutput(output.loss, y.numel(), {"bpc": output.loss.detach() / LN2})

    def evaluate(self, model, split: str = "val", max_batches: int = 0) -> dict:
        if split != "val":
            raise UserError(f"--task lm has a validation split only, not {split!r}")
        loss, count = evaluate(model, self.val_streams, max_batches, show=self.show_progress)
        if self.unit != "word":
            return _figures(loss, count)
        chars = _scored_chars(self.val_chars, self.val_streams, max_batches)
        return _figures(loss, count, chars)

    def evaluate_paths(self, model, paths: list[str]) -> dict:
        d, t = self.config.data, self.config.train
        if isinstance(self.vocab, WordVocab):
            text: WordText = encode_lines(read_lines(paths), self.vocab)
            streams = TokenStreams.for_evaluation(
                text.tokens, t.batch_size, t.seq_len, name="evaluation text"
            )
            loss, count = evaluate(model, streams, show=self.show_progress)
            chars = _scored_chars(text.chars, streams, 0)
            return {**_figures(loss, count, chars), "unk": text.oov}
        tokens = load_corpus(paths, self.vocab.kind, vocab=self.vocab, cache_dir=d.cache_dir).tokens
        streams = TokenStreams.for_evaluation(
            tokens, t.batch_size, t.seq_len, name="evaluation text"
        )
        return _figures(*evaluate(model, streams, show=self.show_progress))

    def progress_sample(self, model) -> str:
        text = generate(
            model,
            self.vocab,
            length=self.config.train.sample_length,
            temperature=0.8,
            seed=self.config.train.seed,
        )[0]
        return text

    def write_figures(self, model, out: Path, split: str = "val") -> list[Path]:
        return []

    # ---- what the run says ---------------------------------------------------------------
    def title(self) -> str:
        return super().title().removeprefix(f"{self.name}: ")  # the default task goes unnamed

    def score_line(self, metric: str, value: float) -> str:
        line = super().score_line(metric, value)
        if metric == "loss" and self.unit == "word":
            return f"{line} (perplexity {math.exp(value):.2f})"
        return f"{line} ({value / LN2:.4f} bits/char)" if metric == "loss" else line

    def eval_line(self, figures: dict) -> str:
        loss, bpc, chars = figures["loss"], figures["bpc"], figures["chars"]
        if self.unit == "word":
            unk = f" | {figures['unk']:,} words became <unk>" if "unk" in figures else ""
            return (
                f"loss {loss:.4f} nats/word | perplexity {figures['ppl']:.2f} | {bpc:.4f} "
                f"bits/char | {figures['tokens']:,} words, {chars:,} chars{unk}"
            )
        return f"loss {loss:.4f} nats/char | {bpc:.4f} bits/char | {chars:,} chars"

    def own_data(self, split: str = "val") -> str:
        d = self.config.data
        if d.val and not (d.synthetic and not d.paths):
            return f"the validation text {data_names([d.val])} (data.val from the checkpoint)"
        return super().own_data(split)

    def train_units(self) -> int:
        """Tokens per epoch: streams of seq_len tokens, batch_size of them a step."""
        t = self.config.train
        return self.steps_per_epoch() * t.batch_size * t.seq_len

    # ---- the checkpoint: vocab_kind beside the config, the symbols in vocab.json ----------
    def checkpoint_fields(self) -> dict:
        return {"vocab_kind": self.vocab.kind}

    @classmethod
    def meta_from_checkpoint(cls, fields: dict, symbols: list[str], source: str) -> dict:
        return {"vocab_kind": fields.get("vocab_kind"), "symbols": symbols}  # checked by __init__

    # ---- the carried state ---------------------------------------------------------------
    def carried_state(self):
        """The state of every stream, (layers, B, H) each: with several processes, their
        blocks gathered in order (a collective: every rank calls it), as one process has it."""
        state = self.state
        if state is None:
            return None
        parts = tuple(state) if isinstance(state, tuple) else (state,)
        return tuple(distributed.gather_rows(self.world, s, dim=1) for s in parts)

    def restore_carried_state(self, carried) -> None:
        if carried is None:
            self.state = None
            return
        m, batch = self.config.model, self.config.train.batch_size
        count, shape = (2 if has_cell_state(m.cell) else 1), (m.layers, batch, m.hidden)
        if not (
            isinstance(carried, tuple)
            and len(carried) == count
            and all(isinstance(s, Tensor) and s.is_floating_point() for s in carried)
            and all(tuple(s.shape) == shape for s in carried)
        ):
            got = [
                tuple(s.shape) if isinstance(s, Tensor) else s
                for s in (carried if isinstance(carried, tuple | list) else [carried])
            ]
            raise UserError(
                f"state must be {count} float tensor(s) of shape {shape} (layers, "
                f"--batch-size, hidden), got {short(got)}"
            )
        if self.world.enabled:  # this process's block of the streams
            rows = self.world.rows(self.config.train.batch_size)
            carried = tuple(s[:, rows] for s in carried)
        carried = to_device(carried, self.world.device)  # read onto the CPU; trained on this
        lstm = has_cell_state(self.config.model.cell)
        self.state = LSTMState(*carried) if lstm else carried[0]

    def reset_carried_state(self) -> None:
        self.state = None

    def _carried(self, model, device):
        """The carried state on ``device``; without autocast, in the weights' dtype: a state
        carried (or saved) in bf16/fp16 by an autocast run goes on in a run resumed in fp32
        (the fused kernels take one dtype). Under autocast it stays as it came (exact resume)."""
        state = to_device(self.state, device)
        if state is None or torch.is_autocast_enabled(device.type):
            return state
        dtype = next(model.parameters()).dtype
        if isinstance(state, Tensor):
            return state.to(dtype)
        cast = [s.to(dtype) for s in state]
        return type(state)(*cast) if hasattr(state, "_fields") else type(state)(cast)


def _figures(loss: float, tokens: int, chars: int | None = None) -> dict:
    """A word model's figures (``chars`` given): ``ppl = exp(loss)`` (loss in nats per word),
    ``bpc = loss * tokens / chars / ln 2``, bits per character of the text. A char or byte
    model (``chars`` None) keeps its figures as they were: loss, ``bpc = loss / ln 2``, and
    ``chars`` (the tokens scored)."""
    if chars is None:
        return {"loss": loss, "bpc": loss / LN2, "chars": tokens}
    ppl = math.exp(loss) if loss < 700 else math.inf
    bpc = loss * tokens / chars / LN2
    return {"loss": loss, "ppl": ppl, "tokens": tokens, "bpc": bpc, "chars": chars}


def _scored_chars(chars, streams: TokenStreams, max_batches: int) -> int:
    """The characters of the targets ``evaluate`` scores: ``chars`` laid out as ``streams``."""
    layout = TokenStreams(chars, streams.batch_size, streams.seq_len, name="characters")
    count = len(layout) if max_batches <= 0 else min(max_batches, len(layout))
    return int(sum(int(layout.batch(i)[1].sum()) for i in range(count)))
