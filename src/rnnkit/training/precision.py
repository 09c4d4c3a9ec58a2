"""How the training step computes: mixed precision (``--precision fp32|bf16|fp16``) and
deterministic kernels (``--deterministic``).

    precision = Precision("fp16", device)
    with precision.autocast():
        loss = task_loss(...)              # the forward in fp16/bf16 where torch's rules allow
    precision.backward(loss)               # fp16: the loss scaled first (GradScaler)
    precision.unscale(optimizer)           # true gradients again, before clipping
    norm = clip_gradients(...)
    precision.step(optimizer, apply=finite)    # the optimiser (if finite), then the scale update

The weights stay fp32 (the master copy the optimiser updates); ``torch.autocast`` casts the
forward's matrix products to the low precision. bf16 has fp32's range, so it needs nothing
else. fp16 does: small gradients underflow, so the loss is multiplied by a scale before
backward (``torch.amp.GradScaler``) and the gradients divided by it before clipping; a step
whose unscaled gradients are not finite is skipped and the scale halved, and after 2,000 good
steps in a row it doubles. The scale is part of the training state: it is saved in
training.json and restored on resume (``state_dict``), so a resumed fp16 run is exact.

fp16 and bf16 are fast on CUDA (tensor cores). On the CPU, bf16 is fast only with native
bfloat16 instructions (AVX512-BF16 or AMX) and fp16 runs (autocast and the scaler exist for the
CPU in torch >= 2.3) but is slow: it is allowed so that runs, resumes and tests behave alike on
every device. ``set_deterministic`` asks torch for deterministic kernels only: repeatable
runs (on CUDA some kernels are slower). What is not here: the step itself
(``rnnkit.trainer.loop``) and clipping (``optim.py``).
"""

from __future__ import annotations

import contextlib
import os

import torch

from rnnkit.errors import UserError

#: ``--precision`` -> the autocast dtype (None: autocast off)
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The autocast context and, for fp16, the gradient scaler of one training run."""

    def __init__(self, kind: str, device: torch.device) -> None:
        if kind not in DTYPES:
            raise UserError(f"--precision must be one of {tuple(DTYPES)}, got {kind!r}")
        self.kind, self.device = kind, torch.device(device)
        self.dtype = DTYPES[kind]
        self.scaler = torch.amp.GradScaler(self.device.type) if kind == "fp16" else None

    def autocast(self):
        """The forward's context: ``torch.autocast`` on the run's device type, or nothing."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss`` (fp16: of the scaled loss)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale in place (fp16), so clipping sees true values."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, *, apply: bool) -> None:
        """The optimiser step when ``apply`` (the caller read that the loss and the unscaled
        gradient norm are finite), then, for fp16, the scale's update: halved after a skipped
        step, doubled after ``growth_interval`` good ones.

        Not ``GradScaler.step``: it reads the inf flags back to the host, a second sync per
        step; the caller's one read of the gradient norm already says the same thing (a
        non-finite gradient makes the norm non-finite)."""
        if apply:
            optimizer.step()
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        """What training.json keeps: the scaler's scale and growth tracker ({} without one)."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: object) -> None:
        """Restore a saved scaler state. A checkpoint from an fp32 or bf16 run (or from before
        the scaler was saved) has none: an fp16 resume then starts from the default scale."""
        if self.scaler is None or not state:
            return
        if not isinstance(state, dict) or not isinstance(state.get("scale"), int | float):
            raise UserError(f"scaler must hold a number 'scale', got {type(state).__name__}")
        scale = float(state["scale"])
        if not (scale > 0 and scale < float("inf")):
            raise UserError(f"scaler.scale must be a positive finite number, got {scale}")
        self.scaler.load_state_dict(state)


def set_deterministic(on: bool) -> None:
    """``--deterministic``: torch's deterministic kernels only (an op without one raises),
    cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, which cuBLAS reads when its first
    handle is made: so before any CUDA work, unless the environment chose one) and no cuDNN
    autotuning. ``on`` false changes nothing; the trainer puts torch's previous setting back
    when its run ends (a library caller's other work is not changed behind its back)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        if torch.backends.cudnn.benchmark:  # (a setter that raises where torch's test
            torch.backends.cudnn.benchmark = False  # utilities froze the flags: only if on)
