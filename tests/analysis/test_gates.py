"""gate_saturation on hand-made traces with known fractions, and its scatter plot."""

import numpy as np
import pytest
import torch

from rnnkit.analysis.activation_plots import plot_gate_saturation
from rnnkit.analysis.activations import Trace, trace
from rnnkit.analysis.gates import Saturation, gate_saturation
from rnnkit.config import ModelConfig
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models.language_model import LanguageModel


def fake_trace(cell: str, gates: list[dict[str, np.ndarray]]) -> Trace:
    L, H = next(iter(gates[0].values())).shape if gates[0] else (4, 2)
    hidden = [np.zeros((L, H)) for _ in gates]
    return Trace(
        "x" * L,
        cell,
        hidden,
        hidden if cell == "lstm" else None,
        gates,
        [[]] * L,
        np.full(L, np.nan),
        np.zeros(L, dtype=np.int64),
        np.zeros((L, 2)),
    )


def test_known_fractions_for_an_lstm():
    # 5 positions x 3 units; unit 0 always shut, unit 1 always open, unit 2 a switch + middle
    forget = np.array(
        [
            [0.01, 0.99, 0.05],
            [0.02, 0.95, 0.97],
            [0.0, 1.0, 0.5],
            [0.09, 0.91, 0.93],
            [0.05, 0.92, 0.03],
        ]
    )
    at_thresholds = np.full((5, 3), 0.1)
    at_thresholds[:, 1] = 0.9  # exactly at low / high: not saturated (strict inequalities)
    middle = np.full((5, 3), 0.5)
    candidate = -np.ones((5, 3))  # tanh gate: ignored
    layer = {"input": at_thresholds, "forget": forget, "output": middle, "candidate": candidate}
    [result] = gate_saturation(fake_trace("lstm", [layer]))
    assert list(result) == ["input", "forget", "output"]
    np.testing.assert_array_equal(result["forget"].left, [1.0, 0.0, 0.4])
    np.testing.assert_array_equal(result["forget"].right, [0.0, 1.0, 0.4])
    np.testing.assert_array_equal(result["input"].left, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(result["input"].right, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(result["output"].right, [0.0, 0.0, 0.0])
    [wide] = gate_saturation(fake_trace("lstm", [layer]), low=0.5, high=0.95)
    np.testing.assert_array_equal(wide["input"].left, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(wide["forget"].right, [0.0, 0.4, 0.2])
    assert (wide["forget"].low, wide["forget"].high) == (0.5, 0.95)


def test_gru_gates_per_layer():
    L = 4
    reset = np.tile([[0.0], [0.0], [1.0], [0.5]], (1, 2))  # (L, 2)
    layer0 = {"reset": reset, "update": np.full((L, 2), 0.95)}
    layer1 = {"reset": np.full((L, 2), 0.05), "update": np.full((L, 2), 0.5)}
    result = gate_saturation(fake_trace("gru", [layer0, layer1]))
    assert len(result) == 2 and list(result[1]) == ["reset", "update"]
    np.testing.assert_array_equal(result[0]["reset"].left, [0.5, 0.5])
    np.testing.assert_array_equal(result[0]["reset"].right, [0.25, 0.25])
    np.testing.assert_array_equal(result[0]["update"].right, [1.0, 1.0])
    np.testing.assert_array_equal(result[1]["reset"].left, [1.0, 1.0])
    assert isinstance(result[1]["update"], Saturation)


@pytest.mark.parametrize(
    "low,high,name",
    [
        (-0.1, 0.9, "low"),
        (0.1, 1.5, "high"),
        (0.5, 0.5, "low must be smaller"),
        (0.9, 0.1, "low must be smaller"),
        (float("nan"), 0.9, "low"),
        (True, 0.9, "low"),
    ],
)
def test_bad_thresholds_are_refused(low, high, name):
    gates = [{"reset": np.zeros((3, 2)), "update": np.zeros((3, 2))}]
    with pytest.raises(UserError, match=name):
        gate_saturation(fake_trace("gru", gates), low=low, high=high)


def test_vanilla_rnn_has_no_gates():
    with pytest.raises(UserError, match="no gates"):
        gate_saturation(fake_trace("rnn", [{}]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_real_trace_and_scatter_png(tmp_path, cell):
    text = "the cat sat on the mat. " * 6
    vocab = Vocab.from_text_chars(text)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(vocab), embed=4, hidden=9, layers=2, cell=cell)
    tr = trace(LanguageModel(config).eval(), vocab, text)
    result = gate_saturation(tr)
    for layer, gates in enumerate(result):
        for name, sat in gates.items():
            g = tr.gates[layer][name]
            assert sat.left.shape == (9,) and np.all(sat.left + sat.right <= 1.0)
            np.testing.assert_allclose(sat.left * len(text), (g < 0.1).sum(axis=0))
    path = plot_gate_saturation(result, tmp_path / "s.png", cell)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
    with pytest.raises(UserError, match="saturation is empty"):
        plot_gate_saturation([], tmp_path / "x.png", cell)
