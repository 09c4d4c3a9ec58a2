"""The language model as a task: many-to-many, the next character (or byte, word, subword).

The corpus is read as B parallel streams cut into T-token chunks (truncated BPTT, see
``rnnkit.training.tbptt``); the recurrent state after each chunk is carried into the next one,
so this is the one task with state between batches (``carried_state``). Metrics, for every
tokenizer: the loss in nats per token, ``ppl = exp(loss)``, ``tokens`` and ``bpc``, bits per
character of the original text (total nats / characters / ln 2, each line end one character),
so char, byte, word and BPE models of one text compare. ``--tokenizer word`` reads
whitespace-separated words, ``<eos>`` at each line end; ``--tokenizer bpe`` byte-level BPE
subwords (``rnnkit.data.bpe``); both learn their vocabulary from the training lines only.
The token streams are built on the host; each batch goes to the model's device (pinned,
non-blocking), where the carried state lives; a step's ``bpc`` (a word model's ``ppl``) stays a
tensor there, for the trainer's one read per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnkit.config import RunConfig, TaskOptions, opt
from rnnkit.data import (
    BpeVocab,
    ScoredText,
    TokenStreams,
    Vocab,
    WordVocab,
    char_counts,
    encode_lines,
    load_corpus,
    read_lines,
    scored_chars,
    split,
    split_lines,
)
from rnnkit.data.bpe import DEFAULT_VOCAB_SIZE
from rnnkit.devices import model_device, to_device
from rnnkit.errors import UserError, short
from rnnkit.generation import generate
from rnnkit.models import LanguageModel
from rnnkit.models.common import has_cell_state, state_widths
from rnnkit.nn.cells import LSTMState
from rnnkit.tasks.base import StepOutput, Task, World, data_names
from rnnkit.training import distributed
from rnnkit.training.tbptt import detach_state, evaluate

LN2 = math.log(2)


@dataclass
class LanguageModelOptions(TaskOptions):
    """Vocabulary size: --vocab-size (word, bpe), --min-count (word); char and byte keep all."""

    vocab_size: int = opt(
        0,
        "--tokenizer word: keep the N most frequent words, <unk> and <eos> included (0 = all); "
        f"--tokenizer bpe: N subword units, the 256 bytes included (0 = {DEFAULT_VOCAB_SIZE})",
    )
    min_count: int = opt(1, "words seen fewer times map to <unk> (--tokenizer word only)")

    def validate(self, config: RunConfig) -> None:
        super().validate(config)
        tokenizer = config.data.tokenizer
        for flag, value, default, kinds in (
            ("vocab-size", self.vocab_size, 0, ("word", "bpe")),
            ("min-count", self.min_count, 1, ("word",)),
        ):
            if value != default and tokenizer not in kinds:
                raise UserError(
                    f"--{flag} is for --tokenizer {' or '.join(kinds)}; a {tokenizer} "
                    "vocabulary keeps every symbol" + (" it learns" if tokenizer == "bpe" else "")
                )
        if self.min_count < 0:
            raise UserError(f"--min-count must be an integer >= 0, got {self.min_count}")
        if tokenizer == "bpe" and 0 < self.vocab_size < 256:
            raise UserError(
                f"--vocab-size must be 0 (default {DEFAULT_VOCAB_SIZE}) or at least 256 with "
                f"--tokenizer bpe (the byte alphabet), got {self.vocab_size}"
            )
        if self.vocab_size < 0 or 0 < self.vocab_size < 3:
            raise UserError(f"--vocab-size must be 0 (all) or at least 3, got {self.vocab_size}")


class LanguageModelTask(Task):
    name = "lm"
    val_file = True
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
        self.vocab: Vocab | WordVocab | BpeVocab | None = None
        if meta is not None:
            kind = meta.get("vocab_kind")
            if kind not in ("char", "byte", "word", "bpe"):
                raise UserError(
                    f"vocab_kind must be 'char', 'byte', 'word' or 'bpe', got {short(kind)}"
                )
            if kind == "word":
                self.vocab = WordVocab.from_json(meta.get("symbols"), source="vocab.json")
            elif kind == "bpe":
                self.vocab = BpeVocab.from_json(meta.get("symbols"), source="vocab.json")
            else:
                self.vocab = Vocab.from_json(kind, meta.get("symbols"), source="vocab.json")
            if config.model.vocab_size != len(self.vocab):
                raise UserError(
                    f"model.vocab_size is {config.model.vocab_size} but vocab.json has "
                    f"{len(self.vocab)} symbols"
                )
        self.state = None  # the carried hidden state (truncated BPTT)
        self.val_text: ScoredText | None = None  # the validation split, after prepare()
        kind = self.vocab.kind if self.vocab is not None else config.data.tokenizer
        if kind in ("word", "bpe"):  # perplexity in the progress line and metrics.csv
            self.unit = "word" if kind == "word" else "token"
            self.loss_name = f"nats/{self.unit}"
            self.metric_names, self.info_names = ("ppl", "bpc", "tokens"), ("ppl",)

    # ---- data ----------------------------------------------------------------------------
    def prepare(self) -> None:
        d, t = self.config.data, self.config.train
        if d.tokenizer in ("word", "bpe"):
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
        if t.variable_bptt:  # AWD-LSTM's lengths around T, drawn from (seed, epoch)
            self.train_streams = self.train_streams.varying(t.seed)
        self.val_streams = TokenStreams.for_evaluation(val_tokens, t.batch_size, t.seq_len)
        self.val_text = ScoredText(self.val_streams, char_counts(val_tokens, d.tokenizer), None)

    def _prepare_words(self) -> None:
        """Word or BPE streams: the vocabulary from the training lines only (unless resuming),
        the validation lines (the last val_fraction, or --val) encoded with it."""
        d, t, o = self.config.data, self.config.train, self.options
        lines = read_lines(d.paths or None)
        if d.val:
            train_lines, val_lines = lines, read_lines([d.val])
        else:
            train_lines, val_lines = split_lines(lines, d.val_fraction)
        if self.vocab is None and d.tokenizer == "bpe":
            self.vocab = BpeVocab.build(train_lines, o.vocab_size)
        elif self.vocab is None:
            self.vocab = WordVocab.build(train_lines, o.vocab_size, o.min_count)
        cache = d.cache_dir
        train, val = _encode(train_lines, self.vocab, cache), _encode(val_lines, self.vocab, cache)
        self.val_tokens = val.tokens
        self.config.model.vocab_size = len(self.vocab)
        self.train_streams = TokenStreams(
            train.tokens, t.batch_size, t.seq_len, name="training text"
        )
        if self.world.enabled:
            self.train_streams = self.train_streams.shard(self.world.rows(t.batch_size))
        if t.variable_bptt:
            self.train_streams = self.train_streams.varying(t.seed)
        self.val_streams = TokenStreams.for_evaluation(val.tokens, t.batch_size, t.seq_len)
        self.val_text = ScoredText(self.val_streams, val.chars, val.unk)

    def meta(self) -> dict:
        return {"vocab_kind": self.vocab.kind}

    def vocab_symbols(self) -> list[str]:
        return self.vocab.to_json()

    def steps_per_epoch(self) -> int:
        return self.train_streams.epoch_steps(0)  # --variable-bptt: epochs differ a little

    def epoch_steps(self, epoch: int) -> int:
        return self.train_streams.epoch_steps(epoch)

    def train_batch(self, epoch: int, index: int):
        return self.train_streams.epoch_batch(epoch, index)

    # ---- model ---------------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        return LanguageModel(self.config.model)

    def describe(self, model) -> str:
        m, t = self.config.model, self.config.train
        return (
            f"{m.cell.upper()} {m.stack()}, embed {m.embed}, "
            f"{model.num_parameters():,} parameters, vocab {len(self.vocab)} ({self.vocab.kind});"
            f" {self.steps_per_epoch():,} steps/epoch of {t.batch_size}x{t.seq_len} {self.unit}s"
        )

    # ---- training and evaluation ---------------------------------------------------------
    def train_loss(self, model, batch, step: int) -> StepOutput:
        device = model_device(model)
        x, y = to_device(batch, device)  # (B, T) each, built on the host
        output = model(x, y, self._carried(model, device))
        self.state = detach_state(output.state)  # carry the values, cut the graph
        if self.unit in ("word", "token"):  # word and BPE models: perplexity
            info = {"ppl": output.loss.detach().exp()}
        else:
            info = {"bpc": output.loss.detach() / LN2}
        scale = y.shape[1] / self.config.train.seq_len  # --variable-bptt: length / T, else 1
        return StepOutput(output.loss, y.numel(), info, lr_scale=scale)

    def evaluate(self, model, split: str = "val", max_batches: int = 0) -> dict:
        if split != "val":
            raise UserError(f"--task lm has a validation split only, not {split!r}")
        text = self.val_text
        loss, count = evaluate(model, text.streams, max_batches, show=self.show_progress)
        return self.figures_for(loss, count, text, max_batches)

    def text_streams(self, paths: list[str]) -> ScoredText:
        """``paths`` as this model reads them, for scoring: evaluation streams, the characters
        behind each token and (word vocabularies) how many words became ``<unk>``."""
        d, t = self.config.data, self.config.train
        if isinstance(self.vocab, WordVocab | BpeVocab):
            encoded = _encode(read_lines(paths), self.vocab, d.cache_dir)
            tokens, chars, unk = encoded.tokens, encoded.chars, encoded.unk
        else:
            kind = self.vocab.kind
            tokens = load_corpus(paths, kind, vocab=self.vocab, cache_dir=d.cache_dir).tokens
            chars, unk = char_counts(tokens, kind), None
        streams = TokenStreams.for_evaluation(
            tokens, t.batch_size, t.seq_len, name="evaluation text"
        )
        return ScoredText(streams, chars, unk)

    def evaluate_paths(self, model, paths: list[str]) -> dict:
        text = self.text_streams(paths)
        loss, count = evaluate(model, text.streams, show=self.show_progress)
        return self.figures_for(loss, count, text)

    def figures_for(self, loss: float, count: int, text: ScoredText, max_batches: int = 0) -> dict:
        """``rnnkit eval --json``'s figures for ``loss`` (nats per token) over the ``count``
        targets of ``text``'s first ``max_batches`` batches (0: all): see :func:`_figures`;
        ``unk`` added where ``text`` has it."""
        figures = _figures(loss, count, scored_chars(text, max_batches))
        return figures if text.unk is None else {**figures, "unk": text.unk}

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
        if metric == "loss" and self.unit in ("word", "token"):
            return f"{line} (perplexity {math.exp(value):.2f})"
        return f"{line} ({value / LN2:.4f} bits/char)" if metric == "loss" else line

    def eval_line(self, figures: dict) -> str:
        loss, bpc, chars = figures["loss"], figures["bpc"], figures["chars"]
        if self.unit in ("word", "token"):
            unk = f" | {figures['unk']:,} words became <unk>" if "unk" in figures else ""
            return (
                f"loss {loss:.4f} nats/{self.unit} | perplexity {figures['ppl']:.2f} | "
                f"{bpc:.4f} bits/char | {figures['tokens']:,} {self.unit}s, {chars:,} chars{unk}"
            )
        if self.vocab.kind == "byte":  # bits per character of the text, not per byte
            return (
                f"loss {loss:.4f} nats/byte | {bpc:.4f} bits/char | {figures['tokens']:,} bytes, "
                f"{chars:,} chars"
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
        # per-layer sizes: the state is padded to the widest; a modern layer's c is its memory
        shapes = [(m.layers, batch, width) for width in state_widths(m, m.embed)]
        count, shape = len(shapes), shapes[0] if len(set(shapes)) == 1 else tuple(shapes)
        if not (
            isinstance(carried, tuple)
            and len(carried) == count
            and all(isinstance(s, Tensor) and s.is_floating_point() for s in carried)
            and all(tuple(s.shape) == want for s, want in zip(carried, shapes, strict=True))
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


def _figures(loss: float, tokens: int, chars: int) -> dict:
    """The figures of ``tokens`` targets scored at ``loss`` nats each, standing for ``chars``
    characters of the text::

        ppl = exp(loss)                       perplexity per token
        bpc = loss * tokens / chars / ln 2    bits per character of the original text

    A char model has ``chars == tokens``, so ``bpc = loss / ln 2`` as before."""
    ppl = math.exp(loss) if loss < 700 else math.inf
    bpc = loss / LN2 if chars == tokens else loss * tokens / chars / LN2
    return {"loss": loss, "ppl": ppl, "tokens": tokens, "bpc": bpc, "chars": chars}


class _Encoded(NamedTuple):
    tokens: np.ndarray
    chars: np.ndarray
    unk: int | None


def _encode(lines: list[str], vocab: WordVocab | BpeVocab, cache_dir) -> _Encoded:
    """Token ids of ``lines`` (each with its line end), the characters behind each token and
    the words that became ``<unk>`` (word vocabularies; BPE has every byte: None). BPE tokens
    are cached in ``cache_dir`` (None: the default cache) as char corpora are."""
    if isinstance(vocab, BpeVocab):
        return _Encoded(*vocab.encode_lines(lines, cache_dir=cache_dir, cache=True), None)
    text = encode_lines(lines, vocab)
    return _Encoded(text.tokens, text.chars, text.oov)
