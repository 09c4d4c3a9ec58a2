"""Typed configuration: dataclasses whose field help is the ``--help`` text of ``rnnkit train``.

What is here: ``DataConfig``, ``ModelConfig``, ``TrainConfig`` and ``TaskConfig`` (grouped in
``RunConfig``), the generic rules every field follows (types, choices, finite numbers, sizes;
every error names the flag, what was expected and what came), ``TaskOptions`` (the base of each
task's own options dataclass), presets from ``rnnkit/configs/NAME.toml``, overrides from a TOML
file, the precedence between them, and conversion to and from the JSON stored in a checkpoint.
What is not here: argument parsing (``rnnkit.commands``) and each task's options and rules
(``rnnkit.tasks``: ``Task.Options``).

Precedence, lowest first: the defaults below, ``--preset NAME``, ``--config FILE.toml``, flags;
on ``--resume DIR``: the run's saved config, then ``[train]`` flags only (:func:`run_config`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError, short
from rnnkit.nn import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS_DIR = Path(__file__).parent / "configs"


def opt(default: Any, help: str, *, choices: tuple | None = None, flag: str | None = None):
    """A config field with its ``--help`` text (and optional choices / CLI flag name)."""
    meta = {"help": help, "choices": choices, "flag": flag}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    paths: list[str] = opt(
        [], "training text: files, directories or globs (default: the bundled Tiny Shakespeare)"
    )
    tokenizer: str = opt(
        "char",
        "char: Unicode characters of the text; byte: 256 byte values, reads any file; word: "
        "whitespace tokens of pre-tokenised text, <eos> at each line end (lm, classify, seq2seq); "
        "bpe: subword units learnt from the training text (lm; Hugging Face tokenizers)",
        choices=("char", "byte", "word", "bpe"),
    )
    val: str | None = opt(
        None, "validation text (default: the last val_fraction of the training text)"
    )
    val_fraction: float = opt(0.1, "fraction held out for validation when --val is not given")
    test_fraction: float = opt(
        0.1, "fraction of the examples held out as a test split (tasks other than lm)"
    )
    synthetic: str = opt(
        "",
        "a built-in dataset instead of PATH: reverse, add, date (seq2seq); sine, lorenz "
        "(forecast); shapes (frames) (default: none)",
        choices=("reverse", "add", "date", "sine", "lorenz", "shapes"),
    )
    synthetic_size: int = opt(5000, "examples (or time steps) the synthetic generator makes")
    cache_dir: str | None = opt(
        None, "where encoded corpora are cached (default: $RNNKIT_CACHE, else ~/.cache/rnnkit)"
    )


@dataclass
class ModelConfig:
    cell: str = opt(
        "lstm",
        "recurrent cell ("
        + "; ".join(f"{c.name}: {c.summary}" for c in registry.CELLS.values())
        + ")",
        choices=registry.names(),
    )
    vocab_size: int = opt(0, "number of symbols (set from the data)")
    embed: int = opt(64, "embedding size")
    hidden: int = opt(
        512,
        "hidden units of every layer, or of each (language model: 1150,1150,400)",
    )
    #: one size per layer (``--hidden 1150,1150,400``), the last equal to ``hidden``; empty:
    #: every layer has ``hidden`` units. Set with ``--hidden``; no flag of its own.
    hidden_sizes: list[int] = opt([], "hidden units of each layer (set by --hidden A,B,C)")
    layers: int = opt(2, "number of stacked recurrent layers")
    dropout: float = opt(0.0, "dropout between recurrent layers and on the output")
    #: None: the layers get ``dropout`` too (every config written before this field existed)
    layer_dropout: float | None = opt(
        None, "dropout between recurrent layers only (AWD-LSTM's dropouth; default: --dropout)"
    )
    embed_dropout: float = opt(0.0, "dropout on the embedding")
    tie_weights: bool = opt(
        False, "share the embedding and output matrices (needs embed == hidden)"
    )
    nonlinearity: str = opt(
        "tanh",
        "activation of a vanilla RNN",
        choices=("tanh", "relu", "leaky_relu", "hardtanh", "softplus"),
    )
    init: str = opt(
        "torch",
        "initialisation: torch default, or orthogonal recurrent + xavier input",
        choices=("torch", "orthogonal"),
    )
    forget_bias: float = opt(0.0, "initial LSTM forget-gate bias (1.0 helps long memory)")
    impl: str = opt("auto", "layer implementation", choices=("auto", "fused", "cells"))
    zoneout: float = opt(
        0.0, "zoneout rate: each unit keeps its previous state with this probability (cells path)"
    )
    recurrent_dropout: float = opt(
        0.0, "variational dropout on h(t-1), one mask per sequence for all steps (cells path)"
    )
    weight_drop: float = opt(
        0.0,
        "language model: DropConnect rate on the recurrent (weight_hh) matrices, one mask per "
        "batch (AWD-LSTM's wdrop, Merity et al. 2017)",
    )
    word_dropout: float = opt(
        0.0,
        "language model: drop whole words (rows of the embedding) at this rate (AWD-LSTM's "
        "dropoute, Merity et al. 2017)",
    )
    locked_dropout: bool = opt(
        False,
        "language model: embed-dropout and dropout become variational, one mask per sequence, "
        "on the embedding, between layers and on the output (AWD-LSTM, Merity et al. 2017)",
    )
    ar: float = opt(
        0.0,
        "language model: activation regularisation alpha * mean(h^2) of the last layer's dropped "
        "output, added to the training loss (Merity et al. 2017)",
    )
    tar: float = opt(
        0.0,
        "language model: temporal activation regularisation beta * mean((h_t - h_t-1)^2) of the "
        "last layer's output, added to the training loss (Merity et al. 2017)",
    )
    softmax: str = opt(
        "full",
        "language model output layer: full softmax, or adaptive (torch's "
        "AdaptiveLogSoftmaxWithLoss, Grave et al. 2017: frequent words in a head, the rest in "
        "smaller tail clusters; for large vocabularies)",
        choices=("full", "adaptive"),
    )
    cutoffs: list[int] = opt(
        [],
        "--softmax adaptive: increasing word ranks where the clusters start, e.g. 2000,10000 "
        "(each below the vocabulary size)",
    )

    def layer_sizes(self) -> list[int]:
        """The hidden size of each layer: ``hidden_sizes``, or ``hidden`` for every layer."""
        return list(self.hidden_sizes) or [self.hidden] * self.layers

    def between_dropout(self) -> float:
        """The dropout rate between recurrent layers: ``layer_dropout``, else ``dropout``."""
        return self.dropout if self.layer_dropout is None else self.layer_dropout

    def stack(self) -> str:
        """The stack as a run's header says it: ``2x512``, or ``1150,1150,400`` per layer."""
        sizes = self.hidden_sizes
        return ",".join(map(str, sizes)) if sizes else f"{self.layers}x{self.hidden}"


@dataclass
class TrainConfig:
    out: str = opt("runs/charlm", "run directory (checkpoints, metrics.csv, loss.png)")
    seq_len: int = opt(100, "truncated-BPTT chunk length T")
    variable_bptt: bool = opt(
        False,
        "language model: draw each batch's length around --seq-len (T with probability 0.95, "
        "else T/2; then normal with sd 5, at least 5, at most 2T) and scale its learning rate by "
        "length / T "
        "(AWD-LSTM, Merity et al. 2017)",
    )
    batch_size: int = opt(64, "number of parallel text streams B")
    optimizer: str = opt(
        "adam",
        "optimiser; nt-asgd: plain SGD that switches to averaged SGD when a validation loss is "
        "above the best one from before the last --nonmono evaluations (AWD-LSTM, Merity et al. "
        "2017); evaluation and checkpoints then use the averaged weights",
        choices=("adam", "adamw", "sgd", "rmsprop", "adagrad", "nt-asgd"),
    )
    nonmono: int = opt(
        5,
        "nt-asgd: switch when a validation loss is above the best from before the last N "
        "evaluations (only those every --eval-every steps count)",
    )
    lr: float = opt(2e-3, "peak learning rate")
    momentum: float = opt(0.9, "momentum for sgd and rmsprop")
    beta2: float = opt(0.999, "second-moment decay of adam and adamw")
    nesterov: bool = opt(False, "Nesterov momentum for sgd")
    weight_decay: float = opt(0.0, "L2 weight decay (decoupled for adamw)")
    l1: float = opt(0.0, "L1 penalty on the weights, added to the loss")
    schedule: str = opt(
        "constant", "learning-rate schedule", choices=("constant", "cosine", "step", "plateau")
    )
    warmup: int = opt(0, "linear warm-up steps (cosine schedule)")
    min_lr_ratio: float = opt(0.1, "final lr / peak lr for the cosine schedule")
    step_size: int = opt(1000, "steps between decays (step schedule)")
    gamma: float = opt(0.5, "decay factor (step and plateau schedules)")
    clip_norm: float = opt(5.0, "clip the global gradient norm to this (0: off)")
    clip_value: float = opt(0.0, "clip each gradient element to [-v, v] (0: off)")
    max_steps: int = opt(0, "stop after this many optimiser steps (0: no limit)")
    max_epochs: float = opt(0.0, "stop after this many passes over the training text (0: no limit)")
    max_time: float = opt(0.0, "stop after this many seconds of training (0: no limit)")
    eval_every: int = opt(200, "evaluate on the validation text every N steps")
    eval_batches: int = opt(0, "validation chunks per evaluation (0: the whole validation text)")
    patience: int = opt(0, "stop after this many evaluations without improvement (0: never)")
    sample_every: int = opt(500, "print a sample every N steps (0: never)")
    sample_length: int = opt(200, "characters per printed sample")
    log_every: int = opt(10, "write metrics.csv every N steps")
    progress_every: float = opt(
        10.0,
        "when the output is not a terminal (a pipe, a log file), a progress line at least every "
        "this many seconds, besides every 10 x --log-every steps (0: by steps only)",
    )
    nan_tolerance: int = opt(
        3, "non-finite steps in a row before reloading the last good checkpoint"
    )
    seed: int = opt(1337, "random seed")
    threads: int = opt(0, "torch threads (0: torch's default)")
    precision: str = opt(
        "fp32",
        "bf16 or fp16: autocast for the forward pass on the run's device, fp32 master weights "
        "(fp16 with a gradient scaler, saved for an exact resume). Both are fast on CUDA; on the "
        "CPU bf16 is fast only with native bfloat16 (AVX512-BF16 or AMX) and fp16 is slow",
        choices=("fp32", "bf16", "fp16"),
    )
    deterministic: bool = opt(
        False,
        "deterministic kernels only (torch.use_deterministic_algorithms; on CUDA also "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8 and no cuDNN autotuning): repeatable runs, maybe slower",
    )
    compile: bool = opt(
        False,
        "torch.compile each recurrent layer's step (the cells path; CUDA: fused elementwise "
        "kernels)",
    )
    tensorboard: bool = opt(False, "also log to TensorBoard (if the package is installed)")
    diagnostics: bool = opt(
        False, "log gradient- and update-to-data ratios per parameter (diagnostics.csv/.png)"
    )


DEFAULT_TASK = "lm"  # its preset is configs/default.toml; other tasks have configs/TASK.toml


@dataclass
class TaskOptions:
    """The base of a task's own options: the ``[task]`` keys besides ``name``.

    Each task declares a subclass (``rnnkit.tasks.classify.ClassifyOptions``...) whose fields,
    made with :func:`opt`, are its flags (the help is the ``--help`` text of the task's argument
    group) and whose ``validate`` adds the task's rules to the generic ones. The base has no
    fields: a task without options uses it as it is.
    """

    @classmethod
    def from_values(cls, values: dict[str, Any], sources: dict[str, str]) -> TaskOptions:
        """The options with ``values`` (keys of this class, checked against their types) set;
        ``sources[key]`` names where a key was read, for the error."""
        options, known = cls(), {f.name: f for f in fields(cls)}
        for key, value in values.items():
            source = sources.get(key, "config")
            setattr(options, key, _coerce(value, str(known[key].type), f"task.{key}", source))
        return options

    def validate(self, config: RunConfig) -> None:
        """Raise UserError naming the flag for an impossible value: the generic rules (choices,
        finite numbers) here; a task adds its own after ``super().validate(config)``."""
        check_choices(self)
        check_finite(self)


@dataclass(slots=True)  # slots: ``config.task.pooling = ...`` is an error, not a lost value
class TaskConfig:
    """``[task]``: what the network is used for, and that task's options as read (flat keys,
    as in the TOML and config.json files); the named task's ``Options`` class checks them and
    gives them their types (``rnnkit.tasks.task_options``)."""

    name: str = opt(
        DEFAULT_TASK, "what to train (see README: Every way to use an RNN)", flag="task"
    )
    options: dict[str, Any] = field(default_factory=dict)
    #: where each option key was read (for the error naming it); not part of the config
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-able sections; ``[task]`` flat (``name`` and the task's option keys)."""
        sections = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        sections["task"] = {"name": self.task.name, **self.task.options}
        return sections

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> RunConfig:
        config = cls()
        apply_overrides(config, data, source)
        return config


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "task": TaskConfig}


def _coerce(value: Any, annotation: str, name: str, source: str) -> Any:
    """Check ``value`` against a field's type annotation (as written in this file)."""
    kind = annotation.replace(" | None", "")
    if value is None and "None" in annotation:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    small = number and (isinstance(value, float) or abs(value) < 2**64)  # float() cannot overflow
    ok = {
        "int": small and isinstance(value, int),
        "float": small,
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "list[int]": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63 for v in value),
        "list[float]": isinstance(value, list) and all(_finite_number(v) for v in value),
    }[kind]
    if not ok:
        raise UserError(f"{source}: {name} must be {kind}, got {short(value)}")
    if kind == "list[float]":
        return [float(v) for v in value]
    return float(value) if kind == "float" else value


def _finite_number(value: Any) -> bool:
    """A list[float] element: an int or a finite float (never a bool, never NaN or inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < 2**63 if isinstance(value, int) else math.isfinite(value)


def key_name(key: object) -> str:
    """A key as an error message shows it: itself if printable (cut to 60 characters), else its
    short repr, so a hostile key cannot break the message's one line."""
    if isinstance(key, str) and key.isprintable():
        return key if len(key) <= 60 else key[:57] + "..."
    return short(key)


def apply_overrides(config: RunConfig, data: Any, source: str) -> None:
    """Set ``config`` fields from ``{"section": {"key": value}}``; unknown keys are errors."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a table of sections, got {type(data).__name__}")
    for section, values in data.items():
        if section not in SECTIONS:
            raise UserError(
                f"{source}: unknown section [{key_name(section)}] (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(values, dict):
            raise UserError(f"{source}: [{section}] must be a table, got {short(values)}")
        target = getattr(config, section)
        known = {f.name: f for f in fields(target)}
        for key, value in values.items():
            if section == "task" and key != "name":  # checked by the task's own options
                target.options[key], target.sources[key] = value, source
                continue
            if key not in known:
                raise UserError(f"{source}: unknown key {section}.{key_name(key)}")
            value = _coerce(value, str(known[key].type), f"{section}.{key}", source)
            setattr(target, key, value)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"cannot read config {path}: {error}") from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r} (choose from {', '.join(preset_names())})")
    return load_toml(path)


def preset_for(flags: dict[str, Any], toml: dict[str, Any]) -> str | None:
    """The preset of the task that ``--task`` (or the ``--config`` file) names: ``default`` for
    the default task, the task's own ``configs/TASK.toml`` otherwise (None if it has none)."""
    section = toml.get("task") if isinstance(toml.get("task"), dict) else {}
    task = flags.get("task", {}).get("name") or section.get("name") or DEFAULT_TASK
    if task == DEFAULT_TASK:
        return "default"
    return task if task in preset_names() else None


COMMAND_LINE = "command line"  # the source of the flags, as errors and rules name it


def fresh_config(
    flags: dict[str, dict[str, Any]], preset: str | None = None, config_file: str | None = None
) -> RunConfig:
    """The config of a new run: the defaults, then ``preset`` (default: :func:`preset_for`),
    then the ``config_file`` TOML, then ``flags`` (``{"section": {"key": value}}``)."""
    config = RunConfig()
    toml = load_toml(config_file) if config_file else {}
    preset = preset or preset_for(flags, toml)
    if preset:
        apply_overrides(config, load_preset(preset), f"preset {preset}")
    if config_file:
        apply_overrides(config, toml, config_file)
    apply_overrides(config, flags, COMMAND_LINE)
    return config


def resume_overrides(
    flags: dict[str, dict[str, Any]], resume: str, config_file: str | None = None
) -> dict[str, dict[str, Any]]:
    """What may change when resuming the run in ``resume``: ``[train]`` flags only (the data,
    the model and the task are the saved run's). Returns the flags to apply to the saved
    config, ``train.out`` set to ``resume``; raises UserError naming the flags that cannot."""
    fixed = sorted(
        "PATH" if key == "paths" else f"--{flag_name(key if key != 'name' else 'task')}"
        for section in ("data", "model", "task")
        for key in flags.get(section, {})
        if key != "hidden_sizes"  # set by --hidden, which is named
    )
    if fixed or config_file:
        what = ", ".join(fixed) or "--config"
        raise UserError(f"{what} cannot change when resuming (only [train] flags can)")
    return {**flags, "train": {**flags.get("train", {}), "out": resume}}


MAX_OUTPUT_LEN = 1_000_000  # --sample-length, seq2seq --max-len: tokens generated per input
# sizes and loop counts no real run meets; the task-specific ones are in each task's options
MAX_SYNTHETIC = 1_000_000  # --synthetic-size: the presets use 5,000 (lorenz: a Python loop)
MAX_THREADS = 1024  # --threads: torch's intra-op threads
MAX_FORGET_BIAS = 100.0  # --forget-bias: sigmoid(+-100) is 0 or 1 in float32 already


def need(ok: bool, flag: str, expected: str, value: Any) -> None:
    """Raise ``--flag must be EXPECTED, got VALUE`` unless ``ok``: the one wording of a rule."""
    if not ok:
        raise UserError(f"--{flag} must be {expected}, got {value!r}")


def check_choices(section: Any) -> None:
    """Each field is one of its choices, if it has some (an empty string means "off" where
    that is the default: ``--synthetic``)."""
    for f in fields(section):
        choices, value = f.metadata.get("choices"), getattr(section, f.name)
        off = value == "" and f.default == ""
        need(choices is None or value in choices or off, flag_name(f), f"one of {choices}", value)


def check_finite(section: Any) -> None:
    """Each float field is finite: JSON cannot hold nan or inf, so such a run could not be saved."""
    for f in fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float):
            need(math.isfinite(value), flag_name(f), "a finite number", value)


def validate(config: RunConfig) -> None:
    """Reject impossible hyper-parameters, naming the flag, the expectation and the value.
    The task's own options are checked by the task (``rnnkit.tasks.task_options``)."""
    m, t, d = config.model, config.train, config.data
    for section in (m, t, d):
        check_choices(section)
    for name in ("embed", "hidden", "layers"):
        need(getattr(m, name) >= 1, name, "a positive integer", getattr(m, name))
    for name in ("seq_len", "batch_size"):
        need(getattr(t, name) >= 1, flag_name(name), "a positive integer", getattr(t, name))
    for name in ("dropout", "embed_dropout", "weight_drop", "word_dropout"):
        value = getattr(m, name)
        need(math.isfinite(value) and 0 <= value < 1, flag_name(name), "in [0, 1)", value)
    if m.layer_dropout is not None:
        value = m.layer_dropout
        need(math.isfinite(value) and 0 <= value < 1, "layer-dropout", "in [0, 1)", value)
    for name in ("ar", "tar"):
        value = getattr(m, name)
        need(math.isfinite(value) and value >= 0, flag_name(name), "a number >= 0", value)
    need(0 < d.val_fraction < 1, "val-fraction", "in (0, 1)", d.val_fraction)
    need(0 <= d.test_fraction < 1, "test-fraction", "in [0, 1)", d.test_fraction)
    expected = "< 1 - test-fraction"
    need(d.val_fraction + d.test_fraction < 1, "val-fraction", expected, d.val_fraction)
    need(d.synthetic_size >= 1, "synthetic-size", "a positive integer", d.synthetic_size)
    need(t.sample_length <= MAX_OUTPUT_LEN, "sample-length", "at most 1,000,000", t.sample_length)
    need(d.synthetic_size <= MAX_SYNTHETIC, "synthetic-size", "at most 1,000,000", d.synthetic_size)
    need(t.threads <= MAX_THREADS, "threads", f"at most {MAX_THREADS}", t.threads)
    need(math.isfinite(t.lr) and t.lr > 0, "lr", "a positive number", t.lr)
    for name in (
        "clip_norm",
        "clip_value",
        "weight_decay",
        "l1",
        "max_time",
        "progress_every",
        "max_epochs",
        "momentum",
        "warmup",
    ):
        value = getattr(t, name)
        need(math.isfinite(value) and value >= 0, flag_name(name), "a number >= 0", value)
    for name in ("max_steps", "patience", "sample_every", "sample_length", "threads"):
        need(getattr(t, name) >= 0, flag_name(name), "an integer >= 0", getattr(t, name))
    for name in ("eval_every", "log_every", "step_size", "nan_tolerance"):
        need(getattr(t, name) >= 1, flag_name(name), "a positive integer", getattr(t, name))
    need(0 < t.gamma <= 1, "gamma", "in (0, 1]", t.gamma)
    need(0 <= t.beta2 < 1, "beta2", "in [0, 1)", t.beta2)
    need(0 <= t.min_lr_ratio <= 1, "min-lr-ratio", "in [0, 1]", t.min_lr_ratio)
    _check_sizes(m)
    need(t.nonmono >= 1, "nonmono", "a positive integer", t.nonmono)
    _check_cell_options(m)
    for section in (m, t, d):
        check_finite(section)
    bound = MAX_FORGET_BIAS
    need(abs(m.forget_bias) <= bound, "forget-bias", f"in [-{bound:g}, {bound:g}]", m.forget_bias)


def _check_sizes(m: ModelConfig) -> None:
    """Per-layer hidden sizes, tying and the adaptive softmax's cutoffs (the cutoffs against the
    vocabulary size are checked when the model is built: the data sets it)."""
    if m.hidden_sizes:
        sizes = ",".join(map(str, m.hidden_sizes))
        if len(m.hidden_sizes) != m.layers:
            raise UserError(
                f"--hidden {sizes} gives {len(m.hidden_sizes)} sizes but --layers is {m.layers}"
            )
        if min(m.hidden_sizes) < 1:
            raise UserError(f"--hidden sizes must be positive integers, got {sizes}")
        if m.hidden != m.hidden_sizes[-1]:
            raise UserError(
                f"model.hidden ({m.hidden}) must be the last of model.hidden_sizes ({sizes})"
            )
    if m.tie_weights and m.embed != m.hidden:
        what = "the last layer's size" if m.hidden_sizes else "--hidden"
        raise UserError(f"--tie-weights needs --embed == {what}, got {m.embed} and {m.hidden}")
    if m.softmax == "adaptive":
        cuts = m.cutoffs
        if not cuts:
            raise UserError("--softmax adaptive needs --cutoffs (e.g. --cutoffs 2000,10000)")
        if cuts[0] < 1 or any(a >= b for a, b in zip(cuts, cuts[1:], strict=False)):
            listed = ",".join(map(str, cuts))
            raise UserError(f"--cutoffs must be positive and increasing, got {listed}")
        if m.tie_weights:
            raise UserError("--tie-weights needs --softmax full (the adaptive head has clusters)")
    elif m.cutoffs:
        raise UserError("--cutoffs is for --softmax adaptive")


def flag_name(f: dataclasses.Field | str) -> str:
    """The CLI flag of a field: its metadata ``flag`` or the name with dashes."""
    if isinstance(f, str):
        return f.replace("_", "-")
    return f.metadata.get("flag") or f.name.replace("_", "-")


def _check_cell_options(m: ModelConfig) -> None:
    """The model options a cell takes, as its row in :mod:`rnnkit.nn.registry` says."""
    cell = registry.CELLS.get(m.cell)
    if cell is None:
        raise UserError(f"--cell must be one of {_listed(registry.names())}, got {m.cell!r}")
    for name in ("zoneout", "recurrent_dropout"):
        value = getattr(m, name)
        need(math.isfinite(value) and 0 <= value < 1, flag_name(name), "in [0, 1)", value)
        if value and not cell.regularisers:
            cells = _listed(registry.where(regularisers=True))
            raise UserError(f"--{flag_name(name)} applies to --cell {cells}")
        if value and m.impl == "fused":
            raise UserError(f"--{flag_name(name)} runs on the cells path; drop --impl fused")
    if m.weight_drop and not cell.weight_drop:  # DropConnect needs weight_hh matrices
        cells = _listed(registry.where(weight_drop=True))
        raise UserError(f"--weight-drop applies to --cell {cells} only, got --cell {m.cell}")
    if m.impl not in cell.impls:
        raise UserError(f"--cell {m.cell} has no {m.impl} kernel; use --impl {_listed(cell.impls)}")
    if m.nonlinearity != "tanh" and not cell.nonlinearity:
        cells = _listed(registry.where(nonlinearity=True))
        raise UserError(f"--nonlinearity applies to --cell {cells} only, got --cell {m.cell}")


def _listed(names) -> str:
    """'a', 'a or b', 'a, b or c'."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
