"""Training speed of the canonical character model: ``rnnkit.training`` against the loop a user
would write by hand with ``torch.nn``, on the same batches, interleaved.

The canonical model (the issue's, and char-rnn's classic size): vocabulary 65 (Tiny Shakespeare),
embedding 64, a 2-layer LSTM of 512 units, sequences of 100 characters, batches of 64.

* rnnkit: a real :class:`rnnkit.trainer.loop.Trainer` on the bundled corpus; one contender call
  is ``Trainer._train_step()`` -- batch from the token streams, forward with the carried state,
  loss, backward, clipping, Adam, scheduler -- everything a training step does except the
  periodic logging and evaluation.
* hand-written: ``nn.Embedding -> nn.LSTM -> nn.Linear`` with the same initial weights, Adam,
  ``clip_grad_norm_(5)``, the hidden state detached between batches (``repackage_hidden`` of
  pytorch/examples' word_language_model) and ``loss.item()`` for the log, fed the very batches
  the trainer reads.

FLOPs per character for a training step are counted as 3x the forward multiply-adds x 2 (the
backward pass costs about twice the forward): per LSTM layer ``2 * 4H * (I + H)``, plus the
head ``2 * H * V``; the achieved rate over the fp32 GEMM reference is ``train_gemm_fraction``.

On another device (``device=``) both loops run there: the trainer gets ``Trainer(config,
device=...)``, the hand-written model is moved there and its batches are moved with
``rnnkit.devices.to_device`` (as the trainer's are); each step ends with one host read (the
trainer's loss and norm, the loop's ``loss.item()``), and the timing synchronises the device.
On a GPU the canonical model is too small to measure anything but launch overhead, so
``rnnkit bench --device cuda`` uses ``rnnkit.benchmark.shapes.GPU_SHAPE``, the ``gpu`` preset's
model and batch.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.benchmark.shapes import CANONICAL
from rnnkit.benchmark.timing import interleaved
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.devices import to_device


def training_flops_per_char(embed: int, hidden: int, layers: int, vocab: int) -> float:
    """3 x the forward FLOPs of one character (2 per multiply-add)."""
    forward = 0
    for layer in range(layers):
        inputs = embed if layer == 0 else hidden
        forward += 2 * 4 * hidden * (inputs + hidden)
    forward += 2 * hidden * vocab
    return 3.0 * forward


class HandWritten(nn.Module):
    """What a user writes: embedding, torch.nn.LSTM, linear head."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):
        out, state = self.rnn(self.embedding(x), state)
        return self.head(out), state


@dataclass
class TrainingSpeed:
    rnnkit_chars_per_s: float
    torch_chars_per_s: float
    flops_per_char: float

    @property
    def ratio(self) -> float:
        return self.rnnkit_chars_per_s / self.torch_chars_per_s

    def gemm_fraction(self, gemm_gflops: float) -> float:
        return self.rnnkit_chars_per_s * self.flops_per_char / (gemm_gflops * 1e9)


def canonical_trainer(
    out: str, *, cell: str = "lstm", impl: str = "auto", precision=None, shape=None, device=None
):
    """A Trainer of the canonical model (or ``shape``) on the bundled Tiny Shakespeare, with
    logging and evaluation off, on ``device`` (the CPU when None)."""
    from rnnkit.trainer.loop import Trainer

    c = shape or CANONICAL
    config = RunConfig()
    settings = {
        "model": {"cell": cell, "embed": c["embed"], "hidden": c["hidden"],
                  "layers": c["layers"], "dropout": 0.0, "impl": impl},
        "train": {"out": out, "seq_len": c["seq_len"], "batch_size": c["batch"], "lr": 2e-3,
                  "clip_norm": 5.0, "eval_every": 10**9, "log_every": 10**9,
                  "sample_every": 0, "seed": 1},
    }  # fmt: skip
    if precision is not None:
        settings["train"]["precision"] = precision
    apply_overrides(config, settings, "rnnkit bench")
    return Trainer(config, log=lambda *_: None, device=device or torch.device("cpu"))


def measure_training(
    rounds: int = 10, steps_per_round: int = 2, shape=None, device=None
) -> TrainingSpeed:
    """chars/s of both loops, ``steps_per_round`` steps per contender per round (``shape``:
    a smaller model for tests; default the canonical one), on ``device`` (the CPU when None)."""
    c = shape or CANONICAL
    device = torch.device(device or "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = canonical_trainer(f"{tmp}/run", shape=c, device=device)
        model = trainer.model
        hand = HandWritten(len(trainer.task.vocab), c["embed"], c["hidden"], c["layers"])
        hand.embedding.load_state_dict(model.embedding.state_dict())
        hand.rnn.load_state_dict(model.rnn.state_dict())
        hand.head.load_state_dict(model.head.state_dict())
        hand.to(device)
        optimizer = torch.optim.Adam(hand.parameters(), lr=2e-3)
        state = {"h": None, "index": 0}

        def hand_step() -> None:
            batch = trainer.task.train_batch(0, state["index"] % trainer.steps_per_epoch)
            x, y = to_device(batch, device)
            state["index"] += 1
            hidden = state["h"]
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)  # repackage_hidden
            logits, state["h"] = hand(x, hidden)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(hand.parameters(), 5.0)
            optimizer.step()
            loss.item()

        def repeat(step):
            return lambda: [step() for _ in range(steps_per_round)]

        seconds = interleaved(
            {"rnnkit": repeat(trainer._train_step), "torch": repeat(hand_step)},
            rounds=rounds,
            device=device,
        )
    chars = steps_per_round * c["batch"] * c["seq_len"]
    flops = training_flops_per_char(c["embed"], c["hidden"], c["layers"], c["vocab"])
    return TrainingSpeed(chars / seconds["rnnkit"], chars / seconds["torch"], flops)
