"""The cell registry: one row per cell, read by every list of cells; every registered cell
trains in every task's model, trains a language model end to end, exports to ONNX, is traced
for the report and runs ``analyze gradients`` -- or its row says it does not, and the user
gets one line and exit 2. Tiny sizes, a few steps: the whole module runs in well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rnnkit.nn
from rnnkit.cli import main
from rnnkit.config import ModelConfig, RunConfig, validate
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.conditional import ConditionalGenerator
from rnnkit.models.forecaster import Forecaster
from rnnkit.models.frames import check_config
from rnnkit.models.seq2seq import Seq2Seq
from rnnkit.models.tagger import SequenceTagger
from rnnkit.nn import registry
from rnnkit.nn.base import RecurrentLayer

CELLS = registry.names()
V = 13  # vocabulary size of the model tests


def model_config(cell: str, **overrides) -> ModelConfig:
    options = {"cell": cell, "vocab_size": V, "embed": 6, "hidden": 5, "layers": 2}
    return ModelConfig(**(options | overrides))


def test_the_registry_is_plain_data_importable_without_torch():
    path = Path(registry.__file__)
    code = (
        "import importlib.util, sys\n"
        "sys.modules['torch'] = None  # any import of torch fails\n"
        f"spec = importlib.util.spec_from_file_location('registry', {str(path)!r})\n"
        "module = sys.modules['registry'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(','.join(module.names()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ",".join(CELLS)


def test_config_choices_and_rules_read_the_registry():
    field = next(f for f in ModelConfig.__dataclass_fields__.values() if f.name == "cell")
    assert tuple(field.metadata["choices"]) == CELLS
    for cell in CELLS:
        row, run = registry.get_cell(cell), RunConfig()
        run.model.cell, run.model.zoneout = cell, 0.1
        if row.regularisers:
            validate(run)
        else:
            with pytest.raises(UserError, match="--zoneout applies to --cell lstm, gru"):
                validate(run)
        run.model.zoneout, run.model.impl = 0.0, "fused"
        if "fused" in row.impls:
            validate(run)
        else:
            with pytest.raises(UserError, match=f"--cell {cell} has no fused kernel"):
                validate(run)
    with pytest.raises(ValueError, match="cell must be one of lstm, gru"):
        registry.get_cell("transformer")


@pytest.mark.parametrize("cell", CELLS)
def test_each_row_describes_its_layer(cell):
    row = registry.get_cell(cell)
    cls = row.layer_class()
    assert getattr(rnnkit.nn, cls.__name__) is cls  # every registered layer: rnnkit.nn.Name
    layer = cls(4, 5, num_layers=2, batch_first=True, bidirectional=True)
    assert isinstance(layer, RecurrentLayer) and layer.cell == cell
    assert layer.state_spec().names == row.state
    if hasattr(layer, "weight_ih_l0"):  # torch-named weights: one block of W_ih per gate
        chunks = layer.weight_ih_l0.shape[0] // 5
        assert chunks == max(1, len(row.gates))  # (or one for none)
    else:  # a modern layer: its mixer reads out the row's gates
        assert layer.block(0).mixer.gate_names == row.gates
    out, state = layer(torch.randn(3, 7, 4), lengths=[7, 2, 5])
    assert out.shape == (3, 7, 10)
    step = layer.step_function(1, 1)  # the public cell interface, layer 1, reverse direction
    sizes = layer.state_spec().sizes  # h's 5 units, then c's: 5, or a modern layer's memory
    new = step(torch.randn(3, 10), tuple(torch.zeros(3, s) for s in sizes))
    assert sizes[0] == 5 and [s.shape for s in new] == [(3, size) for size in sizes]
    assert (layer.fused_step(0) is not None) == row.fused_kernel


@pytest.mark.parametrize("cell", CELLS)
def test_every_task_model_trains_through_the_cell(cell):
    torch.manual_seed(0)
    config = model_config(cell)
    tokens, lengths = torch.randint(1, V, (3, 6)), torch.tensor([6, 2, 4])
    models_and_losses = []
    classifier = SequenceClassifier(config, V, 4, bidirectional=True, pooling="last")
    models_and_losses.append(
        (classifier, F.cross_entropy(classifier(tokens, lengths), torch.tensor([0, 1, 3])))
    )
    tagger = SequenceTagger(config, V, 7, 3, char_hidden=2)
    chars, char_lengths = torch.randint(1, 7, (3, 6, 4)), torch.full((3, 6), 4)
    models_and_losses.append((tagger, tagger(tokens, lengths, chars, char_lengths).sum()))
    seq2seq = Seq2Seq(config, V, 10, bidirectional=True, attention=True)
    models_and_losses.append(
        (seq2seq, seq2seq(tokens, lengths, torch.randint(3, 10, (3, 4))).sum())
    )
    forecaster = Forecaster(config, channels=2)
    models_and_losses.append((forecaster, forecaster.forecast(torch.randn(3, 8, 2), 4).sum()))
    generator = ConditionalGenerator(config, V, "class", 4, condition_input=True)
    cond = torch.tensor([0, 3])
    models_and_losses.append((generator, generator(cond, tokens[:2], torch.tensor([6, 3])).sum()))
    lm = LanguageModel(config)
    models_and_losses.append((lm, lm(tokens, tokens).loss))
    for model, loss in models_and_losses:
        assert torch.isfinite(loss)
        loss.backward()
        rnn = [m for m in model.modules() if isinstance(m, RecurrentLayer)]
        assert rnn and all(p.grad is not None for p in rnn[-1].parameters()), type(model)
    if cell != "lstm":  # --task frames runs a ConvLSTM: one line for any other cell
        with pytest.raises(UserError, match=f"--cell must be lstm, got {cell}"):
            check_config(config)


@pytest.mark.parametrize("cell", CELLS)
def test_a_language_model_trains_exports_traces_and_probes(cell, tmp_path, capsys):
    row, run = registry.get_cell(cell), str(tmp_path / "run")
    train = ["train", "--preset", "tiny", "--cell", cell, "--hidden", "8", "--embed", "8"]
    assert main([*train, "--max-steps", "2", "--eval-every", "2", "--out", run]) == 0
    onnx_file = str(tmp_path / "m.onnx")
    code = main(["export", run, "--format", "onnx", "-o", onnx_file])
    err = capsys.readouterr().err
    if row.onnx:
        assert code == 0, err
        assert Path(onnx_file).stat().st_size > 0
    else:
        assert code == 2 and err.count("\n") == 1 and f"--cell {cell}" in err
    code = main(["analyze", "gradients", run, "--length", "8", "--batch", "2",
                 "-o", str(tmp_path / "g.png")])  # fmt: skip
    err = capsys.readouterr().err
    assert (code == 0) if row.probes else (code == 2 and err.count("\n") == 1), err
    if row.probes:
        from rnnkit.analysis.activations import trace
        from rnnkit.analysis.runs import language_model_run

        model, vocab, _ = language_model_run(run)
        traced = trace(model, vocab, "to be or not")
        assert traced.cell == cell and len(traced.hidden) == 1
        assert (traced.cell_state is not None) == (row.has_cell_state and not row.memory)
