"""Where the work runs: ``--device auto|cpu|cuda|cuda:N|mps``, chosen once, checked in one line.

    device = resolve_device("auto")     # CUDA if available, else MPS if available, else CPU
    device = resolve_device("cuda:1")   # UserError (exit 2) when this PyTorch or machine lacks it
    describe_device(device)             # "cuda:0 (NVIDIA H100 80GB HBM3)", "cpu", for headers
    batch = to_device(batch, device)    # tensors anywhere inside: pinned, non_blocking copies
    model_device(model)                 # where a module's parameters are

Every command takes ``--device`` (``rnnkit.commands.args.add_device``) and hands the resolved
``torch.device`` down: the trainer, the tasks, generation, serving and analysis move their
models and tensors there and nothing else decides. Checkpoints are device-free (tensors are
saved from the CPU and loaded onto the CPU, then moved), so a run trained on one device resumes
or samples on another. What is not here: mixed precision (``rnnkit.training.precision``) and
several processes (``rnnkit.training.distributed``: ``LOCAL_RANK`` picks a process's GPU).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch
from torch import nn

from rnnkit.errors import UserError

#: what ``--device`` accepts, as its help says it
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,4})?")


def check_device_text(text: str) -> str:
    """``text`` if it is one of :data:`DEVICE_CHOICES` (spelling only; :func:`resolve_device`
    checks that the device is there). Raises UserError naming ``--device``."""
    if not isinstance(text, str) or not _PATTERN.fullmatch(text):
        shown = text if isinstance(text, str) and len(text) <= 40 else repr(text)[:40]
        raise UserError(f"--device must be {DEVICE_CHOICES}, got {shown!r}")
    return text


def cuda_built() -> bool:
    """This PyTorch was built with CUDA (a CPU wheel was not)."""
    return torch.backends.cuda.is_built()


def cuda_count() -> int:
    """CUDA devices this process can see (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(text: str = "auto") -> torch.device:
    """The ``torch.device`` that ``--device text`` names, checked to exist here.

    ``auto``: the first CUDA device if one is visible, else MPS if available, else the CPU.
    Raises UserError, one line: "--device cuda: this PyTorch has no CUDA support", "--device
    cuda: no CUDA device is visible", "--device cuda:3: only 2 CUDA devices are visible
    (cuda:0 to cuda:1)", "--device mps: MPS is not available ...".
    """
    text = check_device_text(text)
    if text == "auto":
        if cuda_count():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not mps_available():
            raise UserError(
                "--device mps: MPS is not available (it needs Apple silicon and a PyTorch "
                "built with MPS)"
            )
        return torch.device("mps")
    if not cuda_built():
        raise UserError(f"--device {text}: this PyTorch has no CUDA support (a CPU build)")
    count = cuda_count()
    if count == 0:
        raise UserError(f"--device {text}: no CUDA device is visible")
    index = int(text.partition(":")[2] or torch.cuda.current_device())
    if index >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise UserError(
            f"--device {text}: only {count} CUDA device{'s are' if count > 1 else ' is'} "
            f"visible ({visible})"
        )
    return torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    """The device as a run's header and metrics name it: ``cpu``, ``mps`` or ``cuda:0
    (NVIDIA H100 80GB HBM3)``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters (or buffers) are; the CPU for a module without any."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (tuples, named tuples, lists, dicts, dataclasses) on
    ``device``. CPU tensors bound for CUDA go through pinned memory with ``non_blocking=True``,
    so the copy overlaps the GPU's work; on the CPU nothing is copied."""
    device = torch.device(device)
    if isinstance(obj, torch.Tensor):
        if obj.device == device or (device.index is None and obj.device.type == device.type):
            return obj
        if device.type == "cuda" and obj.device.type == "cpu":
            return obj.pin_memory().to(device, non_blocking=True)
        return obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple (LSTMState...)
        return type(obj)(*(to_device(item, device) for item in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(item, device) for item in obj)
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: to_device(getattr(obj, f.name), device)
            for f in dataclasses.fields(obj)
            if f.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timing; a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
