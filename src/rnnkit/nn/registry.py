"""The cell registry: one row per recurrent cell, and every list of cells in rnnkit reads it.

Plain data, importable without torch (``config.py`` builds ``--cell``'s choices from it before
torch is loaded): a row names the cell, its layer class as a dotted import path (resolved only
by :meth:`Cell.layer_class`), its gates in the order of its weight chunks, its state tensors,
and what it supports. The config's choices and rules, the models, ONNX export, the analyses,
``experiment memory``, ``demo`` and ``bench`` ask the registry; nothing else spells out a list
of cells.

Adding a cell: its equations (``cells.py`` or its own file), its layer (a
:class:`~rnnkit.nn.cell_layer.CellLayer` or another :class:`~rnnkit.nn.base.RecurrentLayer`),
one row here, and tests.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

#: what ``--impl`` means to a cell: config value -> the layer's ``impl`` argument, or None when
#: the layer takes no ``impl`` (one path only); a value missing from the map is refused
TORCH_IMPLS = {"auto": "auto", "fused": "fused", "cells": "cells"}
CELLS_ONLY: dict[str, str | None] = {"auto": None, "cells": None}
MINIMAL_IMPLS = {"auto": "auto", "fused": "fused", "cells": "sequential"}
#: the modern layers (``modern.py``): ``fused`` is their chunkwise training form
MODERN_IMPLS = {"auto": "auto", "fused": "chunk", "cells": "sequential"}


@dataclass(frozen=True)
class Cell:
    """One registered cell."""

    name: str  # the ``--cell`` value
    layer: str  # "module:Class", the rnnkit recurrent layer (batch_first, num_layers, ...)
    summary: str  # a few words for ``--help``
    gates: tuple[str, ...] = ()  # in the order of the weight chunks (torch's i, f, g, o ...)
    state: tuple[str, ...] = ("h",)  # the state tensors, ("h",) or ("h", "c")
    fused_kernel: bool = False  # torch has a fused multi-layer kernel for it (``fused.py``)
    projection: bool = False  # takes ``proj_size``
    regularisers: bool = False  # takes ``zoneout`` and ``recurrent_dropout`` (cells path)
    weight_drop: bool = False  # has weight_hh_* matrices, so takes ``weight_drop`` (DropConnect)
    nonlinearity: bool = False  # takes ``nonlinearity`` (``--nonlinearity``)
    memory: bool = False  # its c is a memory (matrices, normalisers, windows), not H cell units
    onnx: bool = True  # ``rnnkit export`` writes its ONNX step graph
    probes: bool = True  # ``analyze gradients`` and the report's activation trace read it
    impls: dict[str, str | None] = field(default_factory=lambda: dict(TORCH_IMPLS))

    @property
    def has_cell_state(self) -> bool:
        return len(self.state) == 2

    def layer_class(self) -> type:
        """The layer class, imported on first use."""
        module, name = self.layer.split(":")
        return getattr(importlib.import_module(module), name)

    def layer_impl(self, impl: str) -> str | None:
        """The layer's ``impl`` argument for ``--impl impl`` (None: pass none)."""
        if impl not in self.impls:
            allowed = " or ".join(self.impls)
            raise ValueError(f"--cell {self.name} takes --impl {allowed}, got --impl {impl}")
        return self.impls[impl]


_LSTM_GATES = ("input", "forget", "candidate", "output")
_WIDE = ("h", "c")  # a modern layer's state: its output h and its memory, flattened, as c

CELLS: dict[str, Cell] = {
    cell.name: cell
    for cell in (
        Cell("lstm", "rnnkit.nn.layers:LSTM", "long short-term memory", _LSTM_GATES,
             ("h", "c"), fused_kernel=True, projection=True, regularisers=True,
             weight_drop=True),
        Cell("gru", "rnnkit.nn.layers:GRU", "gated recurrent unit",
             ("reset", "update", "candidate"), fused_kernel=True, regularisers=True,
             weight_drop=True),
        Cell("rnn", "rnnkit.nn.layers:RNN", "Elman RNN", fused_kernel=True, regularisers=True,
             nonlinearity=True, weight_drop=True),
        Cell("lnlstm", "rnnkit.nn.layernorm:LayerNormLSTM",
             "layer-normalised LSTM, cells path", _LSTM_GATES, ("h", "c"), regularisers=True,
             weight_drop=True, impls=CELLS_ONLY),
        Cell("mingru", "rnnkit.nn.minimal:MinGRU", "Feng et al. 2024 minimal GRU",
             ("update", "candidate"), impls=MINIMAL_IMPLS),
        Cell("minlstm", "rnnkit.nn.minimal:MinLSTM", "Feng et al. 2024 minimal LSTM",
             ("input", "forget", "candidate"), impls=MINIMAL_IMPLS),
        Cell("indrnn", "rnnkit.nn.indrnn:IndRNN", "Li et al. 2018 independently recurrent, relu",
             regularisers=True, weight_drop=True, impls=CELLS_ONLY),
        Cell("mlstm", "rnnkit.nn.xlstm:MLSTM", "xLSTM's matrix-memory mLSTM, Beck et al. 2024",
             ("forget", "output"), _WIDE, memory=True, impls=MODERN_IMPLS),
        Cell("slstm", "rnnkit.nn.xlstm:SLSTM", "xLSTM's scalar-memory sLSTM, Beck et al. 2024",
             ("forget", "output"), _WIDE, memory=True, impls=MODERN_IMPLS),
        Cell("deltanet", "rnnkit.nn.linear:GatedDeltaNet", "Gated DeltaNet, Yang et al. 2024",
             ("decay", "beta"), _WIDE, memory=True, impls=MODERN_IMPLS),
        Cell("mamba2", "rnnkit.nn.linear:Mamba2", "Mamba-2 (SSD), Dao & Gu 2024", ("decay",),
             _WIDE, memory=True, impls=MODERN_IMPLS),
        Cell("gla", "rnnkit.nn.linear:GLA", "gated linear attention, Yang et al. 2023",
             ("decay",), _WIDE, memory=True, impls=MODERN_IMPLS),
        Cell("rwkv7", "rnnkit.nn.rwkv:RWKV7", "RWKV-7 time mixing, Peng et al. 2025",
             ("decay", "learning_rate"), _WIDE, memory=True, impls=MODERN_IMPLS),
    )
}  # fmt: skip


def names() -> tuple[str, ...]:
    """Every registered cell's name, in registry order."""
    return tuple(CELLS)


def get_cell(name: str) -> Cell:
    """The row of ``name``; ValueError listing the registered cells otherwise."""
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {name!r}")
    return CELLS[name]


def where(**support: bool) -> tuple[str, ...]:
    """The names of the cells whose row has every given flag, e.g. ``where(onnx=True)``."""
    return tuple(
        c.name for c in CELLS.values() if all(getattr(c, k) == v for k, v in support.items())
    )
