"""``--cell lnlstm`` (LayerNormLSTM) in every task's model: built from the config, state (h, c)
carried like an LSTM's, gradients reaching the layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit import LayerNormLSTM, LSTMState
from rnnkit.config import ModelConfig, RunConfig, validate
from rnnkit.errors import UserError
from rnnkit.models import LanguageModel
from rnnkit.models.classifier import SequenceClassifier
from rnnkit.models.common import recurrent
from rnnkit.models.conditional import ConditionalGenerator
from rnnkit.models.forecaster import Forecaster
from rnnkit.models.seq2seq import Seq2Seq


def config(**overrides) -> ModelConfig:
    options = {"cell": "lnlstm", "vocab_size": 13, "embed": 8, "hidden": 11, "layers": 2}
    return ModelConfig(**(options | overrides))


def test_config_builds_a_layernorm_lstm_and_refuses_fused():
    layer = recurrent(config(zoneout=0.1), 4, bidirectional=True)
    assert type(layer) is LayerNormLSTM and layer.bidirectional and layer.batch_first
    run = RunConfig()
    run.model.cell, run.model.impl = "lnlstm", "fused"
    with pytest.raises(UserError, match="no fused kernel"):
        validate(run)


def test_language_model_chunks_steps_and_forget_bias():
    torch.manual_seed(0)
    model = LanguageModel(config(forget_bias=1.0, init="orthogonal")).double().eval()
    assert float(model.rnn.bias_ih_l0.detach().chunk(4)[1].min()) == 1.0  # gates i, f, g, o
    idx = torch.randint(0, 13, (2, 9))
    full = model(idx)
    assert isinstance(full.state, LSTMState) and full.state.c.shape == (2, 2, 11)
    first = model(idx[:, :4])
    torch.testing.assert_close(model(idx[:, 4:], state=first.state).logits, full.logits[:, 4:])
    state = model.initial_state(2)
    for t in range(9):
        logits, state = model.step(idx[:, t], state)
    torch.testing.assert_close(logits, full.logits[:, -1])


def test_every_task_model_trains_through_it():
    torch.manual_seed(0)
    tokens, lengths = torch.randint(1, 13, (3, 6)), torch.tensor([6, 2, 4])
    classifier = SequenceClassifier(config(), 13, 4, bidirectional=True, pooling="last")
    F.cross_entropy(classifier(tokens, lengths), torch.tensor([0, 1, 3])).backward()
    assert classifier.rnn.ln_gain_hh_l0.grad is not None
    seq2seq = Seq2Seq(config(), 13, 10, bidirectional=True, attention=True)
    assert seq2seq.bridge_c is not None  # the decoder starts from (h, c)
    seq2seq(tokens, lengths, torch.randint(3, 10, (3, 4))).sum().backward()
    assert seq2seq.decoder.weight_hh_l1.grad is not None
    forecaster = Forecaster(config(), channels=2)
    assert forecaster.forecast(torch.randn(3, 8, 2), horizon=4).shape == (3, 4, 2)
    generator = ConditionalGenerator(config(), 13, "class", 4, condition_input=True)
    cond = torch.tensor([0, 3])
    state = generator.initial_state(cond)
    assert isinstance(state, tuple) and len(state) == 2
    logits = generator(cond, tokens[:2], torch.tensor([6, 3]))
    step_logits, _ = generator.step(tokens[:2, 0], state, cond)
    torch.testing.assert_close(step_logits, logits[:, 0], rtol=1e-5, atol=1e-6)
