"""rnnkit's RNN, LSTM and GRU in torch's registries that look layers up by exact class.

``isinstance(rnnkit.LSTM(...), nn.LSTM)`` holds, but two torch features check ``type(m)``
against a table, so subclasses are not found unless registered:

* dynamic quantization: ``torch.ao.quantization.quantize_dynamic(model, {rnnkit.LSTM,
  rnnkit.GRU})`` swaps each for torch's dynamically quantized LSTM/GRU built from its weights
  (:class:`DynamicQuantized`, in torch's default dynamic mapping). The qconfig is looked up by
  exact class too, so a set naming only ``{nn.LSTM, nn.GRU}`` -- or ``quantize_dynamic(model)``
  with its default set -- leaves rnnkit's layers in float: name rnnkit's classes (as well).
  torch has no dynamically quantized RNN, so ``rnnkit.RNN`` is not registered.
* ``torch.load(weights_only=True)``: unpickling a whole module needs each class on its
  allowlist; rnnkit's three are added (``torch.serialization.add_safe_globals``), so a script
  whose allowlist names torch.nn's classes (pytorch/examples' word_language_model) loads a
  model holding rnnkit's layers. Their pickled state is plain data -- sizes, flags, rates,
  strings and the parameters -- so this allows nothing torch.nn's own classes do not.

What is not here: the layers (``layers.py``), whose :meth:`~rnnkit.nn.layers.LSTM.to_torch`
gives the torch.nn layer over the same parameters that quantization starts from.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization.quantization_mappings import get_default_dynamic_quant_module_mappings

_QUANTIZED = {"LSTM": nnqd.LSTM, "GRU": nnqd.GRU}


class DynamicQuantized:
    """The dynamic-quantization mapping's entry for rnnkit's LSTM and GRU (torch calls
    ``from_float`` on each layer it swaps)."""

    @staticmethod
    def from_float(mod: nn.RNNBase, use_precomputed_fake_quant: bool = False) -> nn.Module:
        """torch's ``nnqd.LSTM`` / ``nnqd.GRU`` from ``mod``'s weights and qconfig. Refuses
        what torch's quantized layers cannot compute: the cells path's extensions and an LSTM
        projection (``proj_size``)."""
        if getattr(mod, "proj_size", 0):
            raise ValueError(
                f"{mod!r}: torch's dynamically quantized LSTM has no projection (proj_size=0 only)"
            )
        twin = mod.to_torch()  # ValueError for what torch.nn cannot express
        twin.qconfig = mod.qconfig
        return _QUANTIZED[mod.mode].from_float(
            twin, use_precomputed_fake_quant=use_precomputed_fake_quant
        )


def register(rnn: type, lstm: type, gru: type) -> None:
    """Put rnnkit's classes in torch's dynamic-quantization mapping and ``torch.load``
    allowlist (called once, where the classes are defined)."""
    mapping = get_default_dynamic_quant_module_mappings()  # torch's own table, not a copy
    mapping.setdefault(lstm, DynamicQuantized)
    mapping.setdefault(gru, DynamicQuantized)
    torch.serialization.add_safe_globals([rnn, lstm, gru])


__all__ = ["DynamicQuantized", "register"]
