"""Typed configuration: dataclasses whose field help is the ``--help`` text of ``rnnkit train``.

What is here: ``DataConfig``, ``ModelConfig``, ``TrainConfig`` (grouped in ``RunConfig``), their
validation (every error names the flag, what was expected and what came), presets from
``rnnkit/configs/NAME.toml``, overrides from a TOML file, and conversion to and from the JSON
stored in a checkpoint. What is not here: argument parsing (``cli.py``).

Precedence, lowest first: the defaults below, ``--preset NAME``, ``--config FILE.toml``, flags.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError, short

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
    )  # noqa: E501
    tokenizer: str = opt(
        "char",
        "char: Unicode characters of the text; byte: 256 byte values, reads any file",
        choices=("char", "byte", "word"),
    )  # noqa: E501
    val: str | None = opt(
        None, "validation text (default: the last val_fraction of the training text)"
    )  # noqa: E501
    val_fraction: float = opt(0.1, "fraction held out for validation when --val is not given")
    test_fraction: float = opt(
        0.1, "fraction of the examples held out as a test split (tasks other than lm)"
    )
    synthetic: str = opt(
        "",
        "a built-in dataset instead of PATH: reverse, add, date (seq2seq); sine, lorenz "
        "(forecast); shapes (frames)",
        choices=("", "reverse", "add", "date", "sine", "lorenz", "shapes"),
    )
    synthetic_size: int = opt(5000, "examples (or time steps) the synthetic generator makes")
    cache_dir: str | None = opt(
        None, "where encoded corpora are cached (default: $RNNKIT_CACHE, else ~/.cache/rnnkit)"
    )  # noqa: E501


@dataclass
class ModelConfig:
    cell: str = opt(
        "lstm",
        "recurrent cell (lnlstm: layer-normalised LSTM, cells path; mingru, minlstm: Feng et "
        "al. 2024's minimal RNNs, gates from the input)",
        choices=("lstm", "gru", "rnn", "lnlstm", "mingru", "minlstm"),
    )
    vocab_size: int = opt(0, "number of symbols (set from the data)")
    embed: int = opt(64, "embedding size")
    hidden: int = opt(512, "hidden units per layer")
    layers: int = opt(2, "number of stacked recurrent layers")
    dropout: float = opt(0.0, "dropout between recurrent layers and on the output")
    embed_dropout: float = opt(0.0, "dropout on the embedding")
    tie_weights: bool = opt(
        False, "share the embedding and output matrices (needs embed == hidden)"
    )  # noqa: E501
    nonlinearity: str = opt(
        "tanh",
        "activation of a vanilla RNN",
        choices=("tanh", "relu", "leaky_relu", "hardtanh", "softplus"),
    )  # noqa: E501
    init: str = opt(
        "torch",
        "initialisation: torch default, or orthogonal recurrent + xavier input",
        choices=("torch", "orthogonal"),
    )  # noqa: E501
    forget_bias: float = opt(0.0, "initial LSTM forget-gate bias (1.0 helps long memory)")
    impl: str = opt("auto", "layer implementation", choices=("auto", "fused", "cells"))
    zoneout: float = opt(
        0.0, "zoneout rate: each unit keeps its previous state with this probability (cells path)"
    )
    recurrent_dropout: float = opt(
        0.0, "variational dropout on h(t-1), one mask per sequence for all steps (cells path)"
    )


@dataclass
class TrainConfig:
    out: str = opt("runs/charlm", "run directory (checkpoints, metrics.csv, loss.png)")
    seq_len: int = opt(100, "truncated-BPTT chunk length T")
    batch_size: int = opt(64, "number of parallel text streams B")
    optimizer: str = opt(
        "adam", "optimiser", choices=("adam", "adamw", "sgd", "rmsprop", "adagrad")
    )  # noqa: E501
    lr: float = opt(2e-3, "peak learning rate")
    momentum: float = opt(0.9, "momentum for sgd and rmsprop")
    beta2: float = opt(0.999, "second-moment decay of adam and adamw")
    nesterov: bool = opt(False, "Nesterov momentum for sgd")
    weight_decay: float = opt(0.0, "L2 weight decay (decoupled for adamw)")
    l1: float = opt(0.0, "L1 penalty on the weights, added to the loss")
    schedule: str = opt(
        "constant", "learning-rate schedule", choices=("constant", "cosine", "step", "plateau")
    )  # noqa: E501
    warmup: int = opt(0, "linear warm-up steps (cosine schedule)")
    min_lr_ratio: float = opt(0.1, "final lr / peak lr for the cosine schedule")
    step_size: int = opt(1000, "steps between decays (step schedule)")
    gamma: float = opt(0.5, "decay factor (step and plateau schedules)")
    clip_norm: float = opt(5.0, "clip the global gradient norm to this (0: off)")
    clip_value: float = opt(0.0, "clip each gradient element to [-v, v] (0: off)")
    max_steps: int = opt(0, "stop after this many optimiser steps (0: no limit)")
    max_epochs: float = opt(0.0, "stop after this many passes over the training text (0: no limit)")  # noqa: E501
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
    )  # noqa: E501
    seed: int = opt(1337, "random seed")
    threads: int = opt(0, "torch threads (0: torch's default)")
    precision: str = opt(
        "fp32",
        "bf16: CPU autocast for the forward pass, fp32 master weights (fast only on CPUs with "
        "native bfloat16, e.g. AVX512-BF16 or AMX)",
        choices=("fp32", "bf16"),
    )
    tensorboard: bool = opt(False, "also log to TensorBoard (if the package is installed)")
    diagnostics: bool = opt(
        False, "log gradient- and update-to-data ratios per parameter (diagnostics.csv/.png)"
    )


TASK_NAMES = ("lm", "classify", "tag", "generate-from", "seq2seq", "forecast", "frames")


@dataclass
class TaskConfig:
    """What the network is used for; the fields after ``name`` apply to the task in brackets."""

    name: str = opt(
        "lm", "what to train (see README: Every way to use an RNN)", choices=TASK_NAMES, flag="task"
    )  # noqa: E501
    bidirectional: bool = opt(False, "read the input both ways (classify, tag, seq2seq encoder)")
    pooling: str = opt("last", "sequence summary (classify)", choices=("last", "mean", "max"))
    char_hidden: int = opt(0, "per-word character RNN size, 0: off (tag)")
    min_count: int = opt(1, "words seen fewer times map to <unk> (word tokens)")
    condition_input: bool = opt(False, "also feed the condition at every step (generate-from)")
    teacher_forcing: str = opt(
        "inverse_sigmoid",
        "scheduled sampling: how P(feed the truth) decays (seq2seq)",
        choices=("always", "linear", "exponential", "inverse_sigmoid"),
    )
    tf_k: float = opt(
        1000.0,
        "schedule rate: linear steps to reach tf_min, exponential k**step (k<1), "
        "inverse sigmoid k/(k+exp(step/k))",
    )
    tf_min: float = opt(0.0, "lowest P(feed the truth) (seq2seq)")
    decode: str = opt("greedy", "decoding (seq2seq)", choices=("greedy", "sample", "beam"))
    beam_width: int = opt(5, "beam width (seq2seq --decode beam)")
    length_penalty: float = opt(1.0, "beam score = log p / length**alpha (seq2seq)")
    max_len: int = opt(100, "longest output generated (seq2seq)")
    window: int = opt(48, "input steps per forecast window (forecast)")
    horizon: int = opt(12, "steps forecast, fed back autoregressively (forecast)")
    columns: list[str] = opt([], "CSV columns to use (default: all numeric columns) (forecast)")
    season: int = opt(0, "season length of the seasonal-naive baseline, 0: last value (forecast)")  # noqa: E501
    loss: str = opt("mse", "regression loss (forecast, frames)", choices=("mse", "mae"))
    frame_size: int = opt(16, "frame height and width in pixels (frames)")
    frames: int = opt(10, "frames per sequence: input + 1 predicted (frames)")
    kernel: int = opt(3, "ConvLSTM kernel size (frames)")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

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
    }[kind]
    if not ok:
        raise UserError(f"{source}: {name} must be {kind}, got {short(value)}")
    return float(value) if kind == "float" else value


def _name(key: object) -> str:
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
                f"{source}: unknown section [{_name(section)}] (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(values, dict):
            raise UserError(f"{source}: [{section}] must be a table, got {short(values)}")
        target = getattr(config, section)
        known = {f.name: f for f in fields(target)}
        for key, value in values.items():
            if key not in known:
                raise UserError(f"{source}: unknown key {section}.{_name(key)}")
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


MAX_BEAM = 1024  # seq2seq --beam-width: beam search keeps this many hypotheses per input
MAX_OUTPUT_LEN = 1_000_000  # seq2seq --max-len: output tokens decoded per input
# sizes and loop counts no real run meets; the task-specific ones are in rnnkit.tasks.meta
MAX_SYNTHETIC = 1_000_000  # --synthetic-size: the presets use 5,000 (lorenz: a Python loop)
MAX_THREADS = 1024  # --threads: torch's intra-op threads
MAX_FORGET_BIAS = 100.0  # --forget-bias: sigmoid(+-100) is 0 or 1 in float32 already


def validate(config: RunConfig) -> None:
    """Reject impossible hyper-parameters, naming the flag, the expectation and the value."""
    m, t, d, k = config.model, config.train, config.data, config.task

    def need(ok: bool, flag: str, expected: str, value: Any) -> None:
        if not ok:
            raise UserError(f"--{flag} must be {expected}, got {value!r}")

    for section in (m, t, d, k):
        for f in fields(section):
            choices = f.metadata.get("choices")
            value = getattr(section, f.name)
            need(choices is None or value in choices, flag_name(f), f"one of {choices}", value)
    for name in ("embed", "hidden", "layers"):
        need(getattr(m, name) >= 1, name, "a positive integer", getattr(m, name))
    for name in ("seq_len", "batch_size"):
        need(getattr(t, name) >= 1, flag_name(name), "a positive integer", getattr(t, name))
    for name in ("dropout", "embed_dropout"):
        value = getattr(m, name)
        need(0 <= value < 1, flag_name(name), "in [0, 1)", value)
    need(0 < d.val_fraction < 1, "val-fraction", "in (0, 1)", d.val_fraction)
    need(0 <= d.test_fraction < 1, "test-fraction", "in [0, 1)", d.test_fraction)
    need(
        d.val_fraction + d.test_fraction < 1, "val-fraction", "< 1 - test-fraction", d.val_fraction
    )  # noqa: E501
    for name in ("synthetic_size", "beam_width", "max_len", "window", "horizon", "frame_size"):
        section = d if name == "synthetic_size" else k
        need(
            getattr(section, name) >= 1,
            flag_name(name),
            "a positive integer",
            getattr(section, name),
        )  # noqa: E501
    # a beam of 10**9 or outputs of 10**12 steps would allocate before any check downstream
    need(k.beam_width <= MAX_BEAM, "beam-width", f"at most {MAX_BEAM}", k.beam_width)
    need(k.max_len <= MAX_OUTPUT_LEN, "max-len", f"at most {MAX_OUTPUT_LEN:,}", k.max_len)
    need(t.sample_length <= MAX_OUTPUT_LEN, "sample-length", "at most 1,000,000", t.sample_length)
    need(d.synthetic_size <= MAX_SYNTHETIC, "synthetic-size", "at most 1,000,000", d.synthetic_size)
    need(t.threads <= MAX_THREADS, "threads", f"at most {MAX_THREADS}", t.threads)
    need(k.frames >= 2, "frames", "an integer >= 2", k.frames)
    need(k.kernel >= 1 and k.kernel % 2 == 1, "kernel", "an odd positive integer", k.kernel)
    for name in ("char_hidden", "min_count", "season"):
        need(getattr(k, name) >= 0, flag_name(name), "an integer >= 0", getattr(k, name))
    need(math.isfinite(k.tf_k) and k.tf_k > 0, "tf-k", "a positive number", k.tf_k)
    if k.teacher_forcing == "exponential":
        need(k.tf_k < 1, "tf-k", "in (0, 1) for --teacher-forcing exponential", k.tf_k)
    need(0 <= k.tf_min <= 1, "tf-min", "in [0, 1]", k.tf_min)
    need(
        math.isfinite(k.length_penalty) and k.length_penalty >= 0,
        "length-penalty",
        "a number >= 0",
        k.length_penalty,
    )  # noqa: E501
    if k.name == "lm" and d.tokenizer == "word":
        raise UserError(
            "--tokenizer word is for the classify and seq2seq tasks; lm reads char or byte"
        )  # noqa: E501
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
    if m.tie_weights and m.embed != m.hidden:
        raise UserError(f"--tie-weights needs --embed == --hidden, got {m.embed} and {m.hidden}")
    for name in ("zoneout", "recurrent_dropout"):
        value = getattr(m, name)
        need(math.isfinite(value) and 0 <= value < 1, flag_name(name), "in [0, 1)", value)
        if value and m.cell not in ("rnn", "lstm", "gru", "lnlstm"):
            raise UserError(f"--{flag_name(name)} applies to --cell rnn, lstm, gru or lnlstm")
        if value and m.impl == "fused":
            raise UserError(f"--{flag_name(name)} runs on the cells path; drop --impl fused")
    if m.cell == "lnlstm" and m.impl == "fused":
        raise UserError("--cell lnlstm has no fused kernel; use --impl auto or cells")
    if m.nonlinearity != "tanh" and m.cell != "rnn":
        raise UserError(f"--nonlinearity applies to --cell rnn only, got --cell {m.cell}")
    for section in (m, t, d, k):  # JSON cannot hold nan or inf: such a run could not be saved
        for f in fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float):
                need(math.isfinite(value), flag_name(f), "a finite number", value)
    bound = MAX_FORGET_BIAS
    need(abs(m.forget_bias) <= bound, "forget-bias", f"in [-{bound:g}, {bound:g}]", m.forget_bias)


def flag_name(f: dataclasses.Field | str) -> str:
    """The CLI flag of a field: its metadata ``flag`` or the name with dashes."""
    if isinstance(f, str):
        return f.replace("_", "-")
    return f.metadata.get("flag") or f.name.replace("_", "-")
