"""Compiled steps (:func:`rnnkit.nn.unroll.compile_steps`): the cells path's per-step recurrence run
by ``torch.compile`` computes what the plain step computes.

A cells-path LSTM and GRU, switched, must give the plain layer's outputs, final states and every
parameter's gradient to 1e-5 in float32 (inductor may reorder a sum), with and without lengths; a
second forward must reuse the graphs of the first (no recompilation); a switched layer loaded with
other weights must compute with them; and the count says which layers were switched (cells-path
ones only; fused and MinGRU layers untouched). Skipped, saying why, where torch.compile cannot run.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rnnkit.nn import layers, minimal
from rnnkit.nn.unroll import compile_steps, compile_unavailable

_WHY = compile_unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

IN, H, N, L = 5, 7, 3, 6
LENGTHS = torch.tensor([4, 6, 3])  # unsorted: the batch shrinks as sequences end (never to 1)


def _run(layer: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None):
    """Output, final states and every parameter's gradient of ``sum(output) + sum(states)``."""
    layer.zero_grad()
    out, state = layer(x, lengths=lengths)
    states = state if isinstance(state, tuple) else (state,)
    (out.sum() + sum(s.sum() for s in states)).backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    return [out.detach(), *(s.detach() for s in states), *grads]


@pytest.mark.parametrize("cls", [layers.LSTM, layers.GRU])
def test_compiled_steps_equal_plain_steps(cls):
    torch.manual_seed(0)
    plain = cls(IN, H, num_layers=2, impl="cells")
    compiled = copy.deepcopy(plain)
    assert compile_steps(compiled) == 1 and compiled.compile_step
    x = torch.randn(L, N, IN)
    for lengths in (None, LENGTHS):
        expected, got = _run(plain, x, lengths), _run(compiled, x, lengths)
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_second_forward_reuses_the_graphs_and_loaded_weights_are_used():
    from torch._dynamo.utils import counters

    torch.manual_seed(1)
    layer, other = (layers.LSTM(IN, H, impl="cells") for _ in range(2))
    compile_steps(layer)
    x = torch.randn(L, N, IN)
    _run(layer, x, None)
    graphs = counters["stats"]["unique_graphs"]
    _run(layer, x, None)
    assert counters["stats"]["unique_graphs"] == graphs  # compiled once, not per forward
    layer.load_state_dict(other.state_dict())  # no stale weights baked into the graph
    assert "compile_step" not in str(layer.state_dict().keys())
    for a, b in zip(_run(other, x, None), _run(layer, x, None), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_only_cells_path_layers_are_switched():
    model = nn.ModuleDict(
        {
            "cells": layers.LSTM(IN, H, impl="cells"),
            "regularised": layers.GRU(IN, H, zoneout=0.1),  # auto -> the cells path
            "fused": layers.LSTM(IN, H),  # auto -> torch's kernel: left alone
            "minimal": minimal.MinGRU(IN, H),  # its own scan: left alone
        }
    )
    assert compile_steps(model) == 2
    assert model["cells"].compile_step and model["regularised"].compile_step
    assert not hasattr(model["fused"], "compile_step")
    assert not hasattr(model["minimal"], "compile_step")
