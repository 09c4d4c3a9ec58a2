"""The training loop of a character-level language model, top to bottom in phases:
setup -> data -> model -> optimiser -> loop -> save.

    rnnkit train                                   # bundled Tiny Shakespeare, default preset
    rnnkit train notes/*.txt --preset quality --max-time 900
    rnnkit train --resume --out runs/charlm --max-steps 5000

Explicit on purpose: no framework, no callbacks. A step is forward -> loss -> backward -> clip
-> optimiser; the state is carried across chunks and detached (truncated BPTT). A non-finite
loss or gradient norm skips the step before the optimiser touches anything; after
``nan_tolerance`` of them in a row the last good checkpoint is reloaded at half the learning
rate. Ctrl-C or SIGTERM finishes the current step, saves ``last`` and returns ``interrupted``.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rnnkit.config import RunConfig, apply_overrides, validate
from rnnkit.data import TokenStreams, load_corpus, split
from rnnkit.errors import UserError
from rnnkit.generation import generate
from rnnkit.models import LanguageModel
from rnnkit.training.metrics import MetricsLog, plot_losses
from rnnkit.training.optim import (
    build_optimizer,
    build_scheduler,
    clip_gradients,
    l1_penalty,
    scale_learning_rate,
)
from rnnkit.training.runs import check_new_run_dir, read_run_checkpoint, save_run_checkpoint
from rnnkit.training.tbptt import detach_state, evaluate

LN2 = math.log(2)


@dataclass
class TrainResult:
    out: Path
    step: int
    best_val: float
    last_val: float
    stopped: str  # "max_steps", "max_epochs", "max_time", "early_stopping", "interrupted"


class _StopSignal:
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _load_data(config: RunConfig, vocab=None):
    """The corpus, its train/val token arrays and the TBPTT streams over each."""
    d, t = config.data, config.train
    corpus = load_corpus(d.paths or None, d.tokenizer, vocab=vocab, cache_dir=d.cache_dir)
    if d.val:
        train_tokens = corpus.tokens
        val = load_corpus([d.val], d.tokenizer, vocab=corpus.vocab, cache_dir=d.cache_dir)
        val_tokens = val.tokens
    else:
        train_tokens, val_tokens = split(corpus.tokens, d.val_fraction)
    train_streams = TokenStreams(train_tokens, t.batch_size, t.seq_len, name="training text")
    val_streams = TokenStreams.for_evaluation(val_tokens, t.batch_size, t.seq_len)
    return corpus, train_streams, val_streams


def _rng_state() -> dict:
    """The generators training draws from (dropout masks use torch's; numpy's is unused)."""
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


class Trainer:
    """Holds what a run carries from step to step; ``run()`` is the loop."""

    def __init__(
        self, config: RunConfig, *, resume: bool = False, overrides: dict | None = None, log=print
    ) -> None:
        """``config`` for a fresh run; with ``resume``, the run in ``config.train.out`` is
        continued with its saved config, updated by ``overrides`` ({"train": {...}} only)."""
        # ---- setup -------------------------------------------------------------------------
        self.log = log
        out = Path(config.train.out)
        ckpt = vocab = None
        if resume:
            ckpt, config, vocab = read_run_checkpoint(out / "last", training=True)
            apply_overrides(config, overrides or {}, "command line")
            config.train.out = str(out)
        else:
            check_new_run_dir(out)
        self.config, self.out, t = config, out, config.train
        validate(config)
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        np.random.seed(t.seed % 2**32)
        random.seed(t.seed)
        # ---- data --------------------------------------------------------------------------
        corpus, self.train_streams, self.val_streams = _load_data(config, vocab)
        self.vocab = corpus.vocab
        config.model.vocab_size = len(self.vocab)
        # ---- model and optimiser -----------------------------------------------------------
        self.model = LanguageModel(config.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, t)
        self.scheduler = build_scheduler(self.optimizer, t, len(self.train_streams))
        self.step = self.epoch = self.batch_index = self.bad_steps = self.bad_evals = 0
        self.best_val = self.last_val = math.inf
        self.last_eval_step = -1
        self.state = None  # the carried hidden state (truncated BPTT)
        if ckpt is not None:
            self._restore(ckpt)
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLog(
            self.out / "metrics.csv", resume_step=self.step if resume else None
        )  # noqa: E501
        self.tensorboard = self._open_tensorboard() if t.tensorboard else None

    # ---- checkpoints ---------------------------------------------------------------------------
    def _training_state(self) -> dict:
        state = self.state
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "best_val": self.best_val,
            "last_val": self.last_val,
            "bad_evals": self.bad_evals,
            "last_eval_step": self.last_eval_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "state": None
            if state is None
            else tuple(state)
            if isinstance(state, tuple)
            else (state,),  # noqa: E501
        }

    def _restore(self, ckpt) -> None:
        s = ckpt.training
        if not isinstance(s, dict) or "step" not in s:
            raise UserError(f"{ckpt.path}: no training state to resume from")
        self.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        for key in (
            "step",
            "epoch",
            "batch_index",
            "best_val",
            "last_val",
            "bad_evals",
            "last_eval_step",
        ):  # noqa: E501
            setattr(self, key, s[key])
        carried = s["state"]
        if carried is not None:
            fresh = self.model.initial_state(1)
            self.state = type(fresh)(*carried) if isinstance(fresh, tuple) else carried[0]
        _set_rng_state(s["rng"])

    def save(self, name: str) -> None:
        save_run_checkpoint(
            self.out / name, self.config, self.model, self.vocab, self._training_state()
        )  # noqa: E501

    def _reload_last_good(self) -> None:
        ckpt, _, _ = read_run_checkpoint(self.out / "last", training=True)
        step, epoch, batch_index = self.step, self.epoch, self.batch_index
        self._restore(ckpt)  # weights, optimiser and schedule of the last good checkpoint
        self.step, self.epoch, self.batch_index = step, epoch, batch_index  # data moves on
        self.state = None
        scale_learning_rate(self.optimizer, self.scheduler, 0.5)

    # ---- the loop ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        t = self.config.train
        steps_per_epoch = len(self.train_streams)
        total = t.max_steps or (math.ceil(t.max_epochs * steps_per_epoch) if t.max_epochs else None)
        self._announce(steps_per_epoch)
        if self.step == 0:
            self.save("last")  # a good checkpoint to fall back on from the first step
            if t.sample_every:
                self._print_sample()  # "at first": what an untrained model writes
        interactive = sys.stderr.isatty()
        bar = tqdm(
            total=total,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not interactive,
            file=sys.stderr,
        )
        self.log = bar.write if interactive else self.log
        start, window_start, window_tokens = time.perf_counter(), time.perf_counter(), 0
        stopped = None
        with _StopSignal() as stop_signal:
            while stopped is None:
                loss = self._train_step()
                window_tokens += self.train_streams.tokens_per_batch
                bar.update(1)
                if self.step % t.log_every == 0 and loss is not None:
                    speed = window_tokens / max(1e-9, time.perf_counter() - window_start)
                    self._log_train(loss, speed, time.perf_counter() - start, bar, interactive)
                    window_start, window_tokens = time.perf_counter(), 0
                if self.step % t.eval_every == 0:
                    self._evaluate_and_save()
                if t.sample_every and self.step % t.sample_every == 0:
                    self._print_sample()
                stopped = self._stop_reason(start, stop_signal)
        bar.close()
        if self.last_eval_step != self.step:
            self._evaluate_and_save()
        else:
            self.save("last")
        self.log(
            f"stopped ({stopped}) at step {self.step}: best val {self.best_val:.4f} nats/char "
            f"({self.best_val / LN2:.4f} bits/char); run saved in {self.out}"
        )
        return TrainResult(self.out, self.step, self.best_val, self.last_val, stopped)

    def _train_step(self) -> float | None:
        """One optimiser step on the next chunk; returns the loss, or None if it was skipped."""
        t = self.config.train
        if self.batch_index >= len(self.train_streams):  # epoch boundary: streams restart
            self.epoch, self.batch_index, self.state = self.epoch + 1, 0, None
        x, y = self.train_streams.batch(self.batch_index)
        self.batch_index += 1
        self.model.train()
        output = self.model(x, y, self.state)
        self.state = detach_state(output.state)  # carry the values, cut the graph
        loss = output.loss + t.l1 * l1_penalty(self.model) if t.l1 else output.loss
        self.optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        norm = math.nan
        if math.isfinite(value):
            loss.backward()
            norm = clip_gradients(self.params, t).item()  # the pre-clip global norm
        self.grad_norm = norm
        if not (math.isfinite(value) and math.isfinite(norm)):
            return self._skip_bad_step(value, norm)
        self.bad_steps = 0
        self.optimizer.step()
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        self.step += 1
        return output.loss.item() if t.l1 else value

    def _skip_bad_step(self, loss: float, norm: float) -> None:
        """Never let a non-finite loss or gradient reach the weights."""
        self.optimizer.zero_grad(set_to_none=True)
        self.state, self.bad_steps = None, self.bad_steps + 1
        self.step += 1
        self.metrics.write(
            step=self.step,
            epoch=self.epoch,
            kind="skip",
            loss=loss,
            grad_norm=norm,
            note="non-finite loss or gradient: step skipped",
        )
        self.log(f"step {self.step}: non-finite loss ({loss}) or gradient norm ({norm}); skipped")
        if self.bad_steps >= self.config.train.nan_tolerance:
            self._reload_last_good()
            self.bad_steps = 0
            lr = self.optimizer.param_groups[0]["lr"]
            self.metrics.write(
                step=self.step,
                epoch=self.epoch,
                kind="reload",
                lr=lr,
                note="reloaded last good checkpoint at half the learning rate",
            )
            self.log(f"step {self.step}: reloaded the last good checkpoint; lr now {lr:.3g}")
        return None

    def _stop_reason(self, start: float, stop_signal: _StopSignal) -> str | None:
        t = self.config.train
        if stop_signal.received is not None:
            return "interrupted"
        if t.max_steps and self.step >= t.max_steps:
            return "max_steps"
        if t.max_epochs and self.step >= t.max_epochs * len(self.train_streams):
            return "max_epochs"
        if t.max_time and time.perf_counter() - start >= t.max_time:
            return "max_time"
        if t.patience and self.bad_evals >= t.patience:
            return "early_stopping"
        return None

    # ---- evaluation, samples, logs ---------------------------------------------------------------
    def _evaluate_and_save(self) -> None:
        t = self.config.train
        val, chars = evaluate(self.model, self.val_streams, t.eval_batches)
        self.last_val, self.last_eval_step = val, self.step
        improved = val < self.best_val
        if improved:
            self.best_val, self.bad_evals = val, 0
        else:
            self.bad_evals += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val)
        lr = self.optimizer.param_groups[0]["lr"]
        self.metrics.write(
            step=self.step,
            epoch=self.epoch,
            kind="val",
            loss=val,
            bpc=val / LN2,
            lr=lr,
            note=f"{chars} chars" + (", best" if improved else ""),
        )
        self._tensorboard("val/loss", val)
        self.log(
            f"step {self.step}: val {val:.4f} nats/char ({val / LN2:.4f} bits/char)"
            + (" *best*" if improved else "")
        )
        self.save("last")
        if improved:
            self.save("best")
        plot_losses(self.out / "metrics.csv", self.out / "loss.png", title=self._title())

    def _print_sample(self) -> None:
        text = generate(
            self.model,
            self.vocab,
            length=self.config.train.sample_length,
            temperature=0.8,
            seed=self.config.train.seed,
        )[0]
        self.log(f"---- sample at step {self.step} (temperature 0.8) ----\n{text}\n----")

    def _log_train(self, loss: float, speed: float, elapsed: float, bar, interactive) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        self.metrics.write(
            step=self.step,
            epoch=self.epoch,
            kind="train",
            loss=loss,
            bpc=loss / LN2,
            lr=lr,
            grad_norm=self.grad_norm,
            chars_per_s=speed,
            elapsed_s=elapsed,
        )
        self._tensorboard("train/loss", loss)
        if interactive:
            bar.set_postfix(loss=f"{loss:.3f}", chars_s=f"{speed:,.0f}", refresh=False)
        elif self.step % (self.config.train.log_every * 10) == 0:
            self.log(
                f"step {self.step} | epoch {self.epoch} | loss {loss:.4f} | lr {lr:.3g} | "
                f"{speed:,.0f} chars/s | {elapsed:.0f}s"
            )

    def _title(self) -> str:
        m = self.config.model
        return f"{m.cell.upper()} {m.layers}x{m.hidden}, embed {m.embed}"

    def _announce(self, steps_per_epoch: int) -> None:
        t, n = self.config.train, self.model.num_parameters()
        self.log(
            f"rnnkit train: {self._title()}, {n:,} parameters, vocab {len(self.vocab)} "
            f"({self.vocab.kind}); {steps_per_epoch} steps/epoch of {t.batch_size}x"
            f"{t.seq_len} chars; run directory {self.out}"
        )

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("--tensorboard: the tensorboard package is not installed; skipping it")
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def _tensorboard(self, tag: str, value: float) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(tag, value, self.step)


def train(config: RunConfig, *, resume: bool = False, overrides=None, log=print) -> TrainResult:
    """Train (or, with ``resume``, continue) a character-level language model."""
    return Trainer(config, resume=resume, overrides=overrides, log=log).run()
