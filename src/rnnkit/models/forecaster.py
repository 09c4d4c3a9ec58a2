"""Forecaster: a recurrent model of a real-valued series that predicts its own next step.

    model = Forecaster(config.model, channels=3)
    pred = model(x)                          # (N, W, C): x[:, t + 1] predicted from x[:, :t + 1]
    future = model.forecast(x, horizon=12)   # (N, 12, C), fed back autoregressively

What is here: the model (input projection -> rnnkit RNN/LSTM/GRU -> linear head, residual) and
its autoregressive ``forecast``, which reads the window once and then carries the recurrent
state through its own predictions. What is not here: windows, normalisation and losses
(``rnnkit.tasks.forecast``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import recurrent
from rnnkit.nn.cells import LSTMState

#: The recurrent state between calls: h (layers, N, H) for RNN/GRU, LSTMState(h, c) for LSTM.
State = Tensor | LSTMState


class Forecaster(nn.Module):
    """x_t -> e_t = W_in x_t + b_in -> h_t = RNN(e_t, h_{t-1}) -> x̂_{t+1} = x_t + W_out h_t + b_out

    Shape legend: ``N`` batch, ``W`` steps read, ``C`` channels, ``E`` the projection size
    (``config.embed``), ``H`` hidden units (``config.hidden``).

    The head predicts the **change** from the current value (residual, the ``x_t +`` above): a
    smooth series moves little per step, so a fresh model starts near "no change" (the
    last-value forecast) and learns the correction, which trains much faster than predicting
    the value itself. ``config.dropout`` applies between recurrent layers and before the head.

    * ``forward(x (N, W, C)) -> (N, W, C)``: the prediction of step t + 1 at every t (teacher
      forcing: the network reads the true values).
    * ``forecast(x (N, W, C), horizon) -> (N, horizon, C)``: read ``x`` once, then feed each
      prediction back as the next input, carrying the recurrent state.
    * ``step(x (N, L, C), state) -> (predictions (N, L, C), state)``: the building block.
    """

    def __init__(self, config: ModelConfig, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise UserError(f"channels must be >= 1, got {channels}")
        self.config, self.channels = config, channels
        self.project = nn.Linear(channels, config.embed)
        self.rnn = recurrent(config, config.embed)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, channels)

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Predictions of the step after each of ``x`` (N, L, C), and the state after it."""
        e = self.project(x)  # (N, L, E)
        h, state = self.rnn(e, state)  # (N, L, H)
        state = LSTMState(*state) if isinstance(state, tuple) else state  # the layer's (h, c)
        return x + self.head(self.dropout(h)), state  # (N, L, C)

    def forward(self, x: Tensor) -> Tensor:
        """One-step-ahead predictions (N, W, C) for ``x`` (N, W, C)."""
        _check_input(x, self.channels)
        return self.step(x)[0]

    def forecast(self, x: Tensor, horizon: int) -> Tensor:
        """The ``horizon`` steps after ``x`` (N, W, C), autoregressively: (N, horizon, C)."""
        _check_input(x, self.channels)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        pred, state = self.step(x)  # (N, W, C): read the window once
        outputs = [pred[:, -1:]]  # (N, 1, C)
        for _ in range(horizon - 1):
            pred, state = self.step(outputs[-1], state)  # (N, 1, C), state carried
            outputs.append(pred)
        return torch.cat(outputs, dim=1)  # (N, horizon, C)


def _check_input(x: Tensor, channels: int) -> None:
    if x.dim() != 3 or x.size(-1) != channels or x.size(1) < 1:
        raise ValueError(f"x must be (N, W>=1, C={channels}), got shape {tuple(x.shape)}")
