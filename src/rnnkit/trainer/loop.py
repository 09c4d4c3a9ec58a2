"""The one training loop, on top of a Task, top to bottom in phases:
setup -> data -> model -> optimiser -> loop -> save.

    rnnkit train                                   # bundled Tiny Shakespeare, default preset
    rnnkit train notes/*.txt --preset quality --max-time 900
    rnnkit train --resume runs/charlm --max-steps 5000
    rnnkit train --task classify data/names/       # any task: see rnnkit.tasks

Explicit on purpose: no framework, no callbacks. A step is batch -> task loss -> backward ->
clip -> one read of the step's figures -> optimiser. The run is on one device (``--device``,
``device=``; resolved before any data is read): the model, the optimiser's state and the carried
state live there, the batches are moved there, and the host reads the device once per step (the
loss, the gradient norm and the task's step figures together). ``--precision bf16|fp16``
autocasts the forward (``training/precision.py``: fp16 with a gradient scaler saved for an exact
resume), ``--deterministic`` asks torch for deterministic kernels and ``--compile`` compiles
each cells-path layer's step. What differs between tasks (data, model, loss, metrics, pictures)
is the task's (``rnnkit.tasks.base.Task``); the language model carries its state across chunks
and detaches it (truncated BPTT). A non-finite loss or gradient norm skips the step before the
optimiser touches anything; after ``nan_tolerance`` of them in a row the last good checkpoint is
reloaded at half the learning rate. Ctrl-C or SIGTERM (in the main thread) or ``stop()`` (from
any thread) finishes the current step, saves ``last`` and returns ``interrupted``. What the
run shows while it runs (bar or lines, the time left, the notes) is
``rnnkit.training.progress``'s; with ``--max-time`` the cosine schedule follows the
clock (``optim.TimeBudget``). Under torchrun every process runs this loop on its share of the
batch, the model wrapped in DistributedDataParallel; what the ranks must agree on goes through
``rnnkit.training.distributed``. What the run carries and saves to resume is one
``TrainProgress`` (``state.py``); a step returns a ``StepResult``; metrics.csv, TensorBoard and
the loss picture are ``logs.py``'s.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from rnnkit.checkpoint.lock import check_unlocked, lock_run_dir
from rnnkit.checkpoint.runs import check_new_run_dir
from rnnkit.config import COMMAND_LINE, RunConfig, TrainConfig, apply_overrides, validate
from rnnkit.devices import describe_device, resolve_device
from rnnkit.io_errors import writing
from rnnkit.tasks import get_task
from rnnkit.tasks.base import summary
from rnnkit.tasks.saved import load_task, read_run_checkpoint, save_run_checkpoint
from rnnkit.trainer.logs import RunLogs
from rnnkit.trainer.state import (
    StepResult,
    TrainProgress,
    read_step,
    restore_training,
    training_state,
)
from rnnkit.training import distributed
from rnnkit.training.ntasgd import Averaging
from rnnkit.training.optim import (
    build_optimizer,
    build_scheduler,
    clip_gradients,
    l1_penalty,
    scale_learning_rate,
    scaled_learning_rate,
    time_budget,
)
from rnnkit.training.precision import Precision, set_deterministic
from rnnkit.training.progress import Progress, small_data_hint, time_limit_note
from rnnkit.training.stopping import StopSignal
from rnnkit.wording import sample_banner


@dataclass
class TrainResult:
    out: Path
    step: int
    best_val: float  # of the task's selection metric (the validation loss for most tasks)
    last_val: float
    stopped: str  # "max_steps", "max_epochs", "max_time", "early_stopping", "interrupted"


def _silent(*args, **kwargs) -> None:
    """The log of ranks > 0: rank 0 speaks for the run."""


def _seed(t: TrainConfig) -> None:
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)  # every device's generator (CUDA's too)
    np.random.seed(t.seed % 2**32)
    random.seed(t.seed)


def _device(device: torch.device | str | None) -> torch.device:
    """``device=`` of the library: None means ``--device auto``; text or a torch.device is
    checked as ``--device`` is (one-line UserError for a device that is not there)."""
    return resolve_device("auto" if device is None else str(device))


class Trainer:
    """Holds what a run carries from step to step; ``run()`` is the loop."""

    def __init__(
        self,
        config: RunConfig,
        *,
        resume: bool = False,
        overrides: dict | None = None,
        log=print,
        device: torch.device | str | None = None,
    ) -> None:
        """``config`` for a fresh run; with ``resume``, the run in ``config.train.out`` is
        continued with its saved config, updated by ``overrides`` ({"train": {...}} only).
        ``device``: where to train (None: ``auto``, CUDA if available; a resumed run goes on
        wherever it is run now, never where its checkpoint was written). The run directory is
        locked (``rnnkit.checkpoint.lock``) until ``run()`` ends; a run that fails before its
        first save leaves no directory behind."""
        self.stop_requested = threading.Event()  # stop(): the loop stops after its step
        self.world = world = distributed.setup(_device(device))  # torchrun: cuda:LOCAL_RANK
        self.device = world.device
        self.deterministic_before = torch.are_deterministic_algorithms_enabled()
        self.log = log if world.is_main else _silent
        out = Path(config.train.out)
        if world.is_main and not resume:  # before anything is created; again under the lock
            check_unlocked(out)  # a live trainer there is named first ...
            check_new_run_dir(out)  # ... then what the directory holds
        self.lock = lock_run_dir(out, create=not resume) if world.is_main else None
        try:
            self._setup(config, out, resume, overrides)
        except BaseException:
            torch.use_deterministic_algorithms(self.deterministic_before)
            if self.lock is not None:
                self.lock.release(abandon=True)  # removes the directory it made, if empty
            raise

    def _setup(self, config: RunConfig, out: Path, resume: bool, overrides: dict | None) -> None:
        # ---- setup -------------------------------------------------------------------------
        world = self.world
        ckpt = meta = None
        if resume:
            ckpt, config, meta = read_run_checkpoint(out / "last", training=True)
            apply_overrides(config, overrides or {}, COMMAND_LINE)
            config.train.out = str(out)
        else:
            check_new_run_dir(out)
        self.config, self.out, t = config, out, config.train
        validate(config)
        task_class = get_task(config.task.name)
        task_class.check_world(world)  # several processes: only a task whose batches split
        distributed.check_divisible(world, t.batch_size)
        self.precision = Precision(t.precision, self.device)
        set_deterministic(t.deterministic)  # before any CUDA work
        _seed(t)
        # ---- data: each rank reads its own block of the batch ------------------------------
        self.task = task = task_class(config, meta, world)
        task.prepare()
        self.steps_per_epoch = task.steps_per_epoch()
        # ---- model and optimiser, on the device --------------------------------------------
        self.model = task.build_model().to(self.device)  # built on the CPU, then moved
        self.compiled = self._compile() if t.compile else 0
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, t)
        self.averaging = Averaging(self.optimizer, t.nonmono)  # nt-asgd: the averaged weights
        self.budget = time_budget(t)  # with --max-time the cosine schedule follows the clock
        self.scheduler = build_scheduler(self.optimizer, t, self.steps_per_epoch, self.budget)
        self.progress, self.bad_steps = TrainProgress(), 0
        if ckpt is not None:
            self._restore(ckpt, log=self.log)
        self.earlier_s = self.progress.elapsed_s  # seconds trained by earlier sessions
        self.session_start = time.perf_counter()  # elapsed(): earlier_s + this session's time
        # what backward runs through: the model itself, or DDP around it (same parameters)
        self.train_model = self._wrap(self.model)
        if world.rank:  # dropout masks: the ranks' own draws, not copies of rank 0's
            torch.manual_seed(t.seed + 1_000_003 * world.rank + self.progress.step)
        distributed.barrier(world)  # every rank has checked --out before rank 0 writes to it
        if world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if self.progress.step == 0:  # a good checkpoint to fall back on, before any other file
            self.save("last")
        resume_step = self.progress.step if resume else None  # metrics.csv & co: rank 0's
        self.logs = RunLogs(
            out,
            task,
            t,
            is_main=world.is_main,
            resume_step=resume_step,
            log=self.log,
            device=describe_device(self.device),
        )

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What backward runs through: the model itself, or DDP around it (same parameters;
        on CUDA each process's own GPU)."""
        if not self.world.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # the adaptive softmax leaves a tail cluster out of the graph when no target of the
        # batch falls in it: DDP must not wait for those gradients
        unused = self.config.model.softmax == "adaptive"
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)

    def _compile(self) -> int:
        """``--compile``: ``torch.compile`` each cells-path layer's step (``rnnkit.nn.unroll.
        compile_steps``); returns how many layers were switched, and says so."""
        from rnnkit.nn.unroll import compile_steps

        count = compile_steps(self.model)
        if count:
            self.log(f"--compile: compiled the step of {count} recurrent layer(s)")
        else:
            self.log("--compile: no layer runs on the cells path (see --impl); nothing compiled")
        return count

    # ---- checkpoints ---------------------------------------------------------------------------
    def _restore(self, ckpt, log=_silent) -> None:
        """The progress, optimiser, schedule, scaler, RNG, carried state and weights of
        ``ckpt`` (read onto the CPU; each lands on the device). ``log``: the resume's note on
        the random generators (a reload of the last good checkpoint says it once only)."""
        saved = restore_training(
            ckpt,
            self.optimizer,
            self.scheduler,
            self.task,
            self.budget,
            self.precision,
            self.device,
            log=log,
        )
        self.progress.load(saved)  # in place: the loop holds self.progress
        self.model.load_state_dict(ckpt.model_state)  # after an nt-asgd switch: the averages
        self.averaging.restore(ckpt.training.get("raw_weights"), f"{ckpt.path}/training.json")

    def save(self, name: str) -> None:
        self.progress.elapsed_s = self.elapsed()
        self.progress.time_used = self.budget.fraction if self.budget is not None else 0.0
        state = training_state(
            self.progress, self.optimizer, self.scheduler, self.task, self.precision, self.device
        )
        state.update(self.averaging.training_fields())  # nt-asgd: the raw weights, if switched
        with self.averaging.averaged():  # nt-asgd: the model's files hold the averaged weights
            if self.world.is_main:  # (training_state on every rank: the carried state is gathered)
                save_run_checkpoint(self.out / name, self.config, self.model, self.task, state)

    def _reload_last_good(self) -> None:
        distributed.barrier(self.world)  # rank 0's last save is complete
        ckpt, _, _ = read_run_checkpoint(self.out / "last", training=True)
        p = self.progress
        position = p.step, p.epoch, p.batch_index
        self._restore(ckpt)  # weights, optimiser, schedule and scores of the last good checkpoint
        p.step, p.epoch, p.batch_index = position  # the data moves on (the clock too: earlier_s)
        self.task.reset_carried_state()
        scale_learning_rate(self.optimizer, self.scheduler, 0.5)

    # ---- the loop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask ``run()`` to finish the step it is in, save ``last`` and return "interrupted",
        as Ctrl-C does; safe from any thread (a run in a thread installs no signal handler)."""
        self.stop_requested.set()

    def run(self) -> TrainResult:
        """Train until a stop reason; the run directory stays locked until then."""
        try:
            return self._loop()
        finally:
            torch.use_deterministic_algorithms(self.deterministic_before)
            if self.lock is not None:
                self.lock.release()

    def _loop(self) -> TrainResult:
        t, p = self.config.train, self.progress
        total = t.max_steps or (
            math.ceil(t.max_epochs * self.steps_per_epoch) if t.max_epochs else None
        )
        name = self.config.task.name
        what = self.task.describe(self.model).removeprefix(f"{name}: ")
        on = describe_device(self.device)
        self.log(f"rnnkit train --task {name}: {what}; on {on}; run directory {self.out}")
        self._hint_small_data(total)
        if p.step == 0 and t.sample_every:
            self._print_sample()  # "at first": what an untrained model writes
        first = p.step
        self.loop_start = start = time.perf_counter()
        self.session_start = start  # elapsed() counts from here, after earlier sessions' time
        progress = Progress(
            total=total,
            first=first,
            max_time=t.max_time,
            unit=self.task.unit,
            log_every=t.log_every,
            interactive=sys.stderr.isatty() and self.world.is_main,
            log=self.log,
            seconds=t.progress_every,
        )
        self.log = progress.log
        window_start, window_units = time.perf_counter(), 0
        with StopSignal(abort_on_second=not self.world.enabled) as stop_signal:
            stopped = self._stop_reason(start, stop_signal)  # a finished run resumed: no step
            while stopped is None:
                result = self._train_step()
                units = result.units * self.world.size  # chars/s of all ranks together
                window_units += units
                lr = self.optimizer.param_groups[0]["lr"]
                progress.update(p.step, p.epoch, result.loss, lr, units)
                if p.step % t.log_every == 0 and result.loss is not None:
                    speed = window_units / max(1e-9, time.perf_counter() - window_start)
                    self.logs.train(p.step, p.epoch, result, lr, speed, self.elapsed())
                    window_start, window_units = time.perf_counter(), 0
                if p.step % t.eval_every == 0:
                    self._evaluate_and_save()
                if t.sample_every and p.step % t.sample_every == 0:
                    self._print_sample()
                stopped = self._stop_reason(start, stop_signal)
        progress.close()
        return self._finish(stopped, start, first, total)

    def _finish(self, stopped: str, start: float, first: int, total: int | None) -> TrainResult:
        """The last evaluation and save, the figures and the run's last line."""
        p = self.progress
        if p.last_eval_step != p.step:
            self._evaluate_and_save()
        else:
            self.save("last")
        agree = distributed.check_ranks_agree(self.world, self.model)
        if agree:
            self.log(agree)
        if self.world.is_main:
            self._write_figures()
        distributed.teardown(self.world)
        metric, direction = self.task.selection
        best = p.best_val if direction == "min" else -p.best_val
        if stopped == "max_time":
            elapsed, followed = time.perf_counter() - start, self.budget is not None
            self.log(time_limit_note(p.step, total, first, elapsed, followed=followed))
        self.log(
            f"stopped ({stopped}) at step {p.step:,}: best val "
            f"{self.task.score_line(metric, best)}; run saved in {self.out}"
        )
        last = p.last_val if direction == "min" else -p.last_val
        return TrainResult(self.out, p.step, best, last, stopped)

    def _train_step(self) -> StepResult:
        """One optimiser step on the next batch.

        Backward always runs; then the host reads the step's figures once (loss, gradient
        norm, the task's info) and only then decides: a non-finite loss or norm skips the step
        before the optimiser touches anything (fp16: a non-finite norm alone is the gradient
        scaler's overflow, ``_skip_overflow``)."""
        t, p = self.config.train, self.progress
        if p.batch_index >= self.task.epoch_steps(p.epoch):  # epoch boundary: data restarts
            p.epoch, p.batch_index = p.epoch + 1, 0
            self.task.reset_carried_state()
        batch = self.task.train_batch(p.epoch, p.batch_index)  # moved to the device by the task
        p.batch_index += 1
        self.train_model.train()
        with self.precision.autocast():
            output = self.task.train_loss(self.train_model, batch, p.step)  # fp32 weights
        loss = output.loss + t.l1 * l1_penalty(self.model) if t.l1 else output.loss
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.precision.unscale(self.optimizer)  # fp16: true gradients before clipping
        norm = clip_gradients(self.params, t)  # the pre-clip global norm, still on the device
        value, norm, logged, info = read_step(self.world, loss, norm, output, l1=bool(t.l1))
        if not (math.isfinite(value) and math.isfinite(norm)):
            self.precision.step(self.optimizer, apply=False)  # fp16: the scale is halved
            if self.precision.scaler is not None and math.isfinite(value):
                self._skip_overflow(value, norm)
                return StepResult(logged, output.count, norm, info)
            self._skip_bad_step(value, norm)
            return StepResult(None, output.count, norm, info)
        self.bad_steps = 0
        watch = self.logs.ratios is not None and (p.step + 1) % t.log_every == 0
        self._update(watch, output.lr_scale)
        return StepResult(logged, output.count, norm, info)

    def _update(self, watch: bool, lr_scale: float = 1.0) -> None:
        """The optimiser and schedule step (``watch``: update-to-data ratios around it), at
        the learning rate times the batch's ``lr_scale`` (--variable-bptt)."""
        if watch:
            self.logs.before_update(self.model)
        with scaled_learning_rate(self.optimizer, lr_scale):
            self.precision.step(self.optimizer, apply=True)
        if watch:
            self.logs.after_update(self.model, self.progress.step + 1)
        if self.budget is not None:  # the ranks' mean clock: one learning rate for all
            elapsed = torch.tensor(time.perf_counter() - self.loop_start, dtype=torch.float64)
            self.budget.advance(distributed.mean_over_ranks(self.world, elapsed).item())
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        self.progress.step += 1

    def _skip_overflow(self, loss: float, norm: float) -> None:
        """fp16: the scaled gradients overflowed. Routine for a gradient scaler (its first
        steps find the scale, and every 2,000 good steps it tries a larger one): the update is
        skipped, the scale halved, the data moves on; not a bad step, so no reload."""
        p = self.progress
        p.step += 1
        self.logs.skip(p.step, p.epoch, loss, norm, "fp16 gradient overflow: loss scale halved")

    def _skip_bad_step(self, loss: float, norm: float) -> None:
        """Never let a non-finite loss or gradient reach the weights."""
        p = self.progress
        self.optimizer.zero_grad(set_to_none=True)
        self.task.reset_carried_state()
        self.bad_steps += 1
        p.step += 1
        self.logs.skip(p.step, p.epoch, loss, norm, "non-finite loss or gradient: step skipped")
        self.log(f"step {p.step}: non-finite loss ({loss}) or gradient norm ({norm}); skipped")
        if self.bad_steps >= self.config.train.nan_tolerance:
            self._reload_last_good()
            self.bad_steps = 0
            lr = self.optimizer.param_groups[0]["lr"]
            self.logs.write(
                step=p.step,
                epoch=p.epoch,
                kind="reload",
                lr=lr,
                note="reloaded last good checkpoint at half the learning rate",
            )
            self.log(f"step {p.step}: reloaded the last good checkpoint; lr now {lr:.3g}")

    def _stop_reason(self, start: float, stop_signal: StopSignal) -> str | None:
        """Why to stop after this step (None: go on), the same on every rank."""
        return distributed.agree_on_stop(self.world, self._local_stop(start, stop_signal))

    def _local_stop(self, start: float, stop_signal: StopSignal) -> str | None:
        t, p = self.config.train, self.progress
        if stop_signal.received is not None or self.stop_requested.is_set():
            return "interrupted"
        if t.max_steps and p.step >= t.max_steps:
            return "max_steps"
        epochs = p.epoch + p.batch_index / self.task.epoch_steps(p.epoch)  # epochs may differ
        if t.max_epochs and epochs >= t.max_epochs:
            return "max_epochs"
        if t.max_time and time.perf_counter() - start >= t.max_time:
            return "max_time"
        if t.patience and p.bad_evals >= t.patience:
            return "early_stopping"
        return None

    # ---- evaluation, samples, logs ---------------------------------------------------------------
    def _evaluate_and_save(self) -> None:
        t, p = self.config.train, self.progress
        figures = None
        if self.world.is_main:  # one rank scores the (identical) weights; all get the figures
            with self.averaging.averaged():  # nt-asgd: after its switch, the averaged weights
                figures = self.task.evaluate(self.model, "val", t.eval_batches)
        figures = distributed.broadcast(self.world, figures)
        val = figures["loss"]
        # nt-asgd's rule reads the scheduled evaluations only (not a stop's), as a resume does
        switch = self.averaging.observe(p, val) if p.step % t.eval_every == 0 else None
        if switch:
            self.logs.write(step=p.step, epoch=p.epoch, kind="nt-asgd", note=switch)
            self.log(switch)
        metric, direction = self.task.selection
        score = figures[metric] if direction == "min" else -figures[metric]  # lower is better
        p.last_val, p.last_eval_step = score, p.step
        improved = score < p.best_val
        if improved:
            p.best_val, p.bad_evals = score, 0
        else:
            p.bad_evals += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val)
        self.logs.val(p.step, p.epoch, self.optimizer.param_groups[0]["lr"], improved, figures)
        self.log(
            f"step {p.step:,}: val {summary(figures, self.task.metric_names)}"
            + (" *best*" if improved else "")
        )
        if improved:  # best first: a kill between the two never leaves last ahead of best
            self.save("best")
        self.save("last")
        self.logs.plot()

    def _write_figures(self) -> None:
        """The task's pictures of the best model on the validation split (confusion matrix,
        forecast, frames), beside loss.png."""
        if not (self.out / "best").exists():
            return
        _, best, _ = load_task(self.out / "best", self.device)
        with writing(self.out, "write the figures in"):  # a full disk: one line naming the run
            paths = self.task.write_figures(best, self.out, "val")
        for path in paths:
            self.log(f"wrote {path}")

    def elapsed(self) -> float:
        """Seconds trained so far, earlier sessions of a resumed run included."""
        return self.earlier_s + time.perf_counter() - self.session_start

    def _print_sample(self) -> None:
        if not self.world.is_main:
            return
        self.model.eval()
        text = self.task.progress_sample(self.model)
        if text is not None:
            note = self.task.sample_note
            self.log(sample_banner(f"sample at step {self.progress.step:,}", text, note))

    def _hint_small_data(self, planned: int | None) -> None:
        """A training set the run will memorise gets a hint before the first step."""
        if self.progress.step:
            return
        hint = small_data_hint(
            parameters=sum(p.numel() for p in self.model.parameters()),
            steps_per_epoch=self.steps_per_epoch,
            planned=planned,
            eval_every=self.config.train.eval_every,
            train_units=self.task.train_units(),
            unit=self.task.unit,
        )
        if hint:
            self.log(hint)


def train(
    config: RunConfig,
    *,
    resume: bool = False,
    overrides=None,
    log=print,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue) the model of ``config.task`` (default: a
    character-level language model) on ``device`` (None: ``auto``, CUDA if available)."""
    trainer = Trainer(config, resume=resume, overrides=overrides, log=log, device=device)
    return trainer.run()
