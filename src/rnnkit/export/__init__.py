"""Exporting trained models for other runtimes: ONNX, one step of a language model.

    rnnkit export runs/charlm --format onnx -o charlm.onnx
    rnnkit sample charlm.onnx --runtime onnx --seed 1

``onnx.py`` writes the graph (``to_onnx``, ``write_onnx``), ``runtime.py`` runs it on
onnxruntime behind the interface ``rnnkit.generation.generate`` uses (``OnnxLanguageModel``),
``command.py`` is the command line. The onnx packages are optional (``pip install
'rnnkit[export]'``) and imported only when used, so this package imports without them.
"""

from __future__ import annotations

from rnnkit.export.onnx import StepGraph, to_onnx, write_onnx
from rnnkit.export.runtime import OnnxLanguageModel

__all__ = ["OnnxLanguageModel", "StepGraph", "to_onnx", "write_onnx"]
