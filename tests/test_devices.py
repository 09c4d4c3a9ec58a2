"""``rnnkit.devices``: what ``--device`` resolves to and how each missing device is refused,
on this machine and with CUDA's availability faked in-process; ``to_device`` and
``model_device``."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest
import torch
from torch import nn

from rnnkit import devices
from rnnkit.devices import model_device, resolve_device, to_device
from rnnkit.errors import UserError


def fake_cuda(monkeypatch, *, built: bool = True, count: int = 0) -> None:
    """CUDA as a machine with ``count`` visible GPUs (and a CUDA build when ``built``) has it."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: built)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_is_the_cpu_here_and_cpu_is_always_there():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    assert devices.describe_device(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "CUDA", "cuda:-1", "", " cpu", "tpu"])
def test_a_misspelt_device_names_the_flag(text):
    with pytest.raises(UserError, match=r"^--device must be auto, cpu, cuda, cuda:N or mps, got"):
        resolve_device(text)


def test_a_cpu_build_has_no_cuda(monkeypatch):
    fake_cuda(monkeypatch, built=False)
    for text in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(UserError) as error:
            resolve_device(text)
        assert (
            str(error.value) == f"--device {text}: this PyTorch has no CUDA support (a CPU build)"
        )
    assert resolve_device("auto") in (torch.device("cpu"), torch.device("mps"))


def test_a_cuda_build_without_a_visible_gpu(monkeypatch):
    fake_cuda(monkeypatch, built=True, count=0)
    with pytest.raises(UserError, match=r"^--device cuda: no CUDA device is visible$"):
        resolve_device("cuda")
    assert resolve_device("auto") in (torch.device("cpu"), torch.device("mps"))


def test_visible_gpus_are_chosen_and_counted(monkeypatch):
    fake_cuda(monkeypatch, count=2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError) as error:
        resolve_device("cuda:2")
    assert str(error.value) == "--device cuda:2: only 2 CUDA devices are visible (cuda:0 to cuda:1)"
    fake_cuda(monkeypatch, count=1)
    with pytest.raises(UserError, match=r"only 1 CUDA device is visible \(cuda:0\)$"):
        resolve_device("cuda:1")


def test_mps_is_refused_where_it_is_not(monkeypatch):
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    with pytest.raises(UserError, match=r"^--device mps: MPS is not available"):
        resolve_device("mps")


class Pair(NamedTuple):
    h: torch.Tensor
    c: torch.Tensor


@dataclasses.dataclass
class Batch:
    words: torch.Tensor
    lengths: list
    name: str = "x"


def test_to_device_moves_every_tensor_inside_and_keeps_the_shapes_of_containers():
    x = torch.arange(6.0).reshape(2, 3)
    batch = {"a": (x, [x, Pair(x, x)]), "b": Batch(x, [x, 3]), "n": 5}
    moved = to_device(batch, torch.device("meta"))
    assert moved["a"][0].device.type == "meta" and isinstance(moved["a"], tuple)
    assert isinstance(moved["a"][1][1], Pair) and moved["a"][1][1].c.device.type == "meta"
    assert isinstance(moved["b"], Batch) and moved["b"].words.device.type == "meta"
    assert moved["b"].lengths[0].device.type == "meta" and moved["b"].lengths[1] == 3
    assert moved["n"] == 5 and moved["b"].name == "x"
    assert batch["a"][0].device.type == "cpu"  # the original is left as it was


def test_to_device_does_not_copy_what_is_already_there():
    x = torch.ones(3)
    assert to_device(x, torch.device("cpu")) is x
    assert to_device((x,), "cpu")[0] is x


def test_model_device_reads_parameters_then_buffers():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert model_device(nn.BatchNorm1d(2, affine=False, device="meta")).type == "meta"
    assert model_device(nn.ReLU()) == torch.device("cpu")
