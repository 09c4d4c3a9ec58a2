"""trace() against the model's own forward, torch.nn's layers and hand-computed gates."""

import math

import numpy as np
import pytest
import torch

from rnnkit.analysis.activation_plots import plot_activation_heatmap
from rnnkit.analysis.activations import UnitKey, trace, unit_matrix, units, values
from rnnkit.config import ModelConfig
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models.language_model import LanguageModel
from rnnkit.nn.cells import LSTMState
from rnnkit.nn.layers import LSTM

TEXT = 'def f(x):\n    # say "hi"\n    return (x + 1) * 2\n'
VOCAB = Vocab.from_text_chars(TEXT)
TORCH_NN = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def make_model(cell: str, layers: int, dtype=torch.float32, hidden: int = 7) -> LanguageModel:
    torch.manual_seed(3)
    config = ModelConfig(vocab_size=len(VOCAB), embed=5, hidden=hidden, layers=layers, cell=cell)
    return LanguageModel(config).to(dtype).eval()


def forward(model: LanguageModel, text: str, state=None):
    idx = torch.as_tensor(VOCAB.encode(text))[None]  # (1, L)
    with torch.no_grad():
        out, final = model.rnn(model.embedding(idx), state)  # (1, L, H)
        return out[0], model(idx, state=state).logits[0], final


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trace_equals_the_models_forward(cell, layers, dtype, tol):
    model = make_model(cell, layers, dtype)
    tr = trace(model, VOCAB, TEXT)
    top_h, logits, final = forward(model, TEXT)
    assert tr.cell == cell and tr.text == TEXT and tr.layers == layers
    assert tr.hidden[-1].dtype == (np.float32 if dtype == torch.float32 else np.float64)
    np.testing.assert_allclose(tr.hidden[-1], top_h.numpy(), atol=tol, rtol=0)
    np.testing.assert_allclose(tr.logits, logits.numpy(), atol=tol * 10, rtol=0)
    h_n = final[0] if cell == "lstm" else final  # (layers, 1, H)
    for k in range(layers):
        np.testing.assert_allclose(tr.hidden[k][-1], h_n[k, 0].numpy(), atol=tol, rtol=0)
        if cell == "lstm":
            np.testing.assert_allclose(tr.cell_state[k][-1], final[1][k, 0].numpy(), atol=tol)
    assert (tr.cell_state is None) == (cell != "lstm")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_every_layer_equals_torch_nn(cell):
    """Layer 0's whole h sequence from a one-layer torch.nn module holding its weights."""
    model = make_model(cell, 2, torch.float64)
    tr = trace(model, VOCAB, TEXT)
    reference = TORCH_NN[cell](5, 7, num_layers=1, batch_first=True, dtype=torch.float64)
    layer0 = {k: v for k, v in model.rnn.state_dict().items() if k.endswith("_l0")}
    reference.load_state_dict(layer0)
    with torch.no_grad():
        emb = model.embedding(torch.as_tensor(VOCAB.encode(TEXT))[None])
        out = reference(emb)[0][0]  # (L, H)
    np.testing.assert_allclose(tr.hidden[0], out.numpy(), atol=1e-12)


def test_top_k_and_loss_equal_softmax_of_the_logits():
    model = make_model("gru", 2, torch.float64)
    tr = trace(model, VOCAB, TEXT, top_k=4)
    probs = torch.softmax(forward(model, TEXT)[1], dim=-1).numpy()  # (L, V)
    ids = VOCAB.encode(TEXT)
    for t, row in enumerate(tr.top):
        order = np.argsort(-probs[t])[:4]
        assert [c for c, _ in row] == [VOCAB.symbols[i] for i in order]
        np.testing.assert_allclose([p for _, p in row], probs[t, order], rtol=1e-10)
    expected = [-math.log(probs[t, ids[t + 1]]) for t in range(len(TEXT) - 1)]
    np.testing.assert_allclose(tr.loss[:-1], expected, rtol=1e-10)
    assert np.isnan(tr.loss[-1])
    assert len(trace(model, VOCAB, "de", top_k=1000).top[0]) == len(VOCAB)  # clipped to V


def test_lstm_gates_equal_an_independent_computation():
    model = make_model("lstm", 2, torch.float64)
    tr = trace(model, VOCAB, TEXT)
    reference = torch.nn.LSTMCell(5, 7, dtype=torch.float64)
    reference.load_state_dict({k[:-3]: v for k, v in model.rnn.state_dict().items() if "_l0" in k})
    x0 = model.embedding.weight[VOCAB.encode(TEXT[0])[0]].detach().numpy()  # (E,)
    W, b = reference.weight_ih.detach().numpy(), reference.bias_ih.detach().numpy()
    b = b + reference.bias_hh.detach().numpy()  # h_0 = 0: only the biases of W_hh h remain
    pre = W @ x0 + b  # (4H,)
    sigmoid = 1 / (1 + np.exp(-pre))
    np.testing.assert_allclose(tr.gates[0]["input"][0], sigmoid[:7], atol=1e-12)
    np.testing.assert_allclose(tr.gates[0]["forget"][0], sigmoid[7:14], atol=1e-12)
    np.testing.assert_allclose(tr.gates[0]["candidate"][0], np.tanh(pre[14:21]), atol=1e-12)
    np.testing.assert_allclose(tr.gates[0]["output"][0], sigmoid[21:], atol=1e-12)
    for k in range(2):  # the recorded gates reproduce the recorded states: c = f c + i g, ...
        g, c = tr.gates[k], tr.cell_state[k]
        c_prev = np.vstack([np.zeros(7), c[:-1]])
        expected = g["forget"] * c_prev + g["input"] * g["candidate"]
        np.testing.assert_allclose(c, expected, atol=1e-12)
        np.testing.assert_allclose(tr.hidden[k], g["output"] * np.tanh(c), atol=1e-12)


def test_gru_gates_reproduce_the_states():
    model = make_model("gru", 2, torch.float64)
    tr = trace(model, VOCAB, TEXT)
    w_ih, b_ih = model.rnn.weight_ih_l0.detach().numpy(), model.rnn.bias_ih_l0.detach().numpy()
    b_hh = model.rnn.bias_hh_l0.detach().numpy()
    x0 = model.embedding.weight[VOCAB.encode(TEXT[0])[0]].detach().numpy()
    reset = 1 / (1 + np.exp(-(w_ih[:7] @ x0 + b_ih[:7] + b_hh[:7])))  # h_0 = 0
    np.testing.assert_allclose(tr.gates[0]["reset"][0], reset, atol=1e-12)
    for k in range(2):
        g, h = tr.gates[k], tr.hidden[k]
        h_prev = np.vstack([np.zeros(7), h[:-1]])
        expected = (1 - g["update"]) * g["candidate"] + g["update"] * h_prev
        np.testing.assert_allclose(h, expected, atol=1e-12)
    assert trace(make_model("rnn", 1), VOCAB, TEXT).gates == [{}]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_starting_state_continues_a_sequence(cell):
    model = make_model(cell, 2, torch.float64)
    _, _, state = forward(model, TEXT[:10])
    if cell == "lstm":  # (layers, H) is accepted as well as (layers, 1, H)
        state = LSTMState(state[0][:, 0], state[1][:, 0])
    part = trace(model, VOCAB, TEXT[10:], state=state)
    whole = trace(model, VOCAB, TEXT)
    np.testing.assert_allclose(part.hidden[1], whole.hidden[1][10:], atol=1e-12)
    np.testing.assert_allclose(part.logits, whole.logits[10:], atol=1e-12)


def test_units_values_and_matrix():
    tr = trace(make_model("lstm", 2), VOCAB, TEXT)
    keys = units(tr)
    assert len(keys) == 2 * 2 * 7 and keys[0] == UnitKey(0, "h", 0)
    assert keys[7] == UnitKey(0, "c", 0)
    assert keys[-1] == UnitKey(1, "c", 6)
    np.testing.assert_array_equal(values(tr, UnitKey(1, "h", 3)), tr.hidden[1][:, 3])
    np.testing.assert_array_equal(values(tr, UnitKey(0, "c", 6)), tr.cell_state[0][:, 6])
    listed, matrix = unit_matrix(tr)
    assert listed == keys and matrix.shape == (len(TEXT), 28) and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix[:, 20], values(tr, keys[20]))
    assert len(units(trace(make_model("gru", 1), VOCAB, TEXT))) == 7
    for bad, name in [((2, "h", 0), "layer"), ((0, "h", 7), "unit"), ((0, "x", 0), "kind")]:
        with pytest.raises(UserError, match=name):
            values(tr, UnitKey(*bad))
    with pytest.raises(UserError, match="no cell state"):
        values(trace(make_model("gru", 1), VOCAB, TEXT), UnitKey(0, "c", 0))


def test_bad_inputs_are_refused():
    model = make_model("lstm", 1)
    with pytest.raises(UserError, match="non-empty"):
        trace(model, VOCAB, "")
    listed = r"'A', 'B', 'C', 'D', 'E' and 2 more; the vocabulary is '\\n "
    with pytest.raises(UserError, match=listed):
        trace(model, VOCAB, "ABCDEFG def")
    with pytest.raises(UserError, match="max_chars=5"):
        trace(model, VOCAB, "defdef", max_chars=5)
    with pytest.raises(UserError, match="top_k"):
        trace(model, VOCAB, "def", top_k=0)
    with pytest.raises(UserError, match=r"state tensors must have shape \(1, 1, 7\)"):
        trace(model, VOCAB, "def", state=LSTMState(torch.zeros(2, 1, 7), torch.zeros(2, 1, 7)))
    with pytest.raises(UserError, match="LSTMState"):
        trace(model, VOCAB, "def", state=torch.zeros(1, 1, 7))
    with pytest.raises(UserError, match="vocab has 3 symbols"):
        trace(model, Vocab.from_text_chars("def"), "def")
    model.rnn = LSTM(5, 7, batch_first=True, bidirectional=True)
    with pytest.raises(UserError, match="bidirectional=True"):
        trace(model, VOCAB, "def")


def test_byte_vocabulary_traces_one_symbol_per_byte():
    vocab = Vocab.byte()
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=256, embed=4, hidden=5, layers=1, cell="gru"))
    tr = trace(model.eval(), vocab, "né")
    assert tr.text == "n\xc3\xa9" and tr.hidden[0].shape == (3, 5)


@pytest.mark.parametrize("cell,kind", [("rnn", "h"), ("lstm", "c"), ("gru", "h")])
def test_heatmap_writes_a_png(tmp_path, cell, kind):
    tr = trace(make_model(cell, 2), VOCAB, TEXT * 3)
    path = plot_activation_heatmap(tr, UnitKey(1, kind, 2), tmp_path / "h.png", width=20, start=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert plot_activation_heatmap(tr, UnitKey(1, kind, 2), width=20).axes  # no path: Figure
    with pytest.raises(UserError, match="width"):
        plot_activation_heatmap(tr, UnitKey(1, kind, 2), tmp_path / "x.png", width=0)
    with pytest.raises(UserError, match="start"):
        plot_activation_heatmap(tr, UnitKey(1, kind, 2), tmp_path / "x.png", start=len(tr.text))
