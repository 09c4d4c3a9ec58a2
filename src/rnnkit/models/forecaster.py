"""Forecaster: a recurrent model of a real-valued series that predicts its own next step.

    model = Forecaster(config.model, channels=3)            # a point forecast (MSE/MAE)
    pred = model(x)                          # (N, W, C): x[:, t + 1] predicted from x[:, :t + 1]
    future = model.forecast(x, horizon=12)   # (N, 12, C), fed back autoregressively
    params = model.params(x)                 # (N, W, C, P): the distribution of each next step
    model = Forecaster(config.model, 1, inputs=4, likelihood=make_likelihood("gaussian"))
    paths = model.sample_paths(x, 12, samples=100, z=z)     # (N, 100, 12, C)

What is here: the model (input projection -> rnnkit RNN/LSTM/GRU -> linear head, residual),
its autoregressive ``forecast`` (reads the window once, then carries the recurrent state
through its own median forecasts) and ``sample_paths`` (the same, feeding back a draw from the
predicted distribution: DeepAR's ancestral sampling). Inputs known in advance (exogenous
columns, calendar features) enter beside the value read: ``z[:, t]`` belongs to the step
predicted at t. What is not here: what the head's numbers mean and how they are scored
(``rnnkit.models.likelihoods``); windows, normalisation (``rnnkit.tasks.forecast``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.models.common import recurrent
from rnnkit.models.likelihoods import Likelihood
from rnnkit.nn.cells import LSTMState

#: The recurrent state between calls: h (layers, N, H) for RNN/GRU, LSTMState(h, c) for LSTM.
State = Tensor | LSTMState


class Forecaster(nn.Module):
    """[x_t, z_{t+1}] -> e_t = W_in [x_t, z_{t+1}] + b_in -> h_t = RNN(e_t, h_{t-1})
    -> theta_{t+1} = likelihood.constrain(W_out h_t + b_out, x_t)

    Shape legend: ``N`` batch, ``W`` steps read, ``C`` channels (the series' values), ``K``
    inputs known in advance (0 without), ``P`` parameters per channel (1 for a point forecast,
    2 Gaussian, 3 Student-t, Q quantiles), ``E`` the projection size (``config.embed``), ``H``
    hidden units (``config.hidden``), ``S`` sample paths.

    Every location is residual (``x_t +`` the head's output): a smooth series moves little per
    step, so a fresh model starts near "no change" (the last-value forecast) and learns the
    correction, which trains much faster than predicting the value itself.
    ``config.dropout`` applies between recurrent layers and before the head.

    * ``params(x (N, W, C), z (N, W, K)) -> (N, W, C, P)``: the distribution of step t + 1
      at every t (teacher forcing: the network reads the true values); ``forward``: its
      median (N, W, C).
    * ``forecast_params(x, horizon, z (N, W + horizon - 1, K)) -> (N, horizon, C, P)``: read
      ``x`` once, then feed each median back as the next input, carrying the recurrent state;
      ``forecast``: the medians (N, horizon, C).
    * ``sample_paths(x, horizon, samples, z) -> (N, S, horizon, C)``: the same with a draw
      fed back; draws come from torch's global generator (seed it for repeatable paths).
    * ``step(x (N, L, C), z, state) -> (params (N, L, C, P), state)``: the building block.
    """

    def __init__(
        self,
        config: ModelConfig,
        channels: int,
        inputs: int = 0,
        likelihood: Likelihood | None = None,
    ) -> None:
        super().__init__()
        if channels < 1 or inputs < 0:
            raise UserError(f"channels must be >= 1 and inputs >= 0, got {channels}, {inputs}")
        self.config, self.channels, self.inputs = config, channels, inputs
        self.likelihood = likelihood or Likelihood()
        self.project = nn.Linear(channels + inputs, config.embed)
        self.rnn = recurrent(config, config.embed)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, channels * self.likelihood.params)

    def step(
        self, x: Tensor, z: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """The distributions of the step after each of ``x`` (N, L, C) with the known inputs
        ``z`` (N, L, K) of those steps, and the state after it."""
        e = self.project(torch.cat([x, z], dim=-1) if self.inputs else x)  # (N, L, E)
        h, state = self.rnn(e, state)  # (N, L, H)
        state = LSTMState(*state) if isinstance(state, tuple) else state  # the layer's (h, c)
        raw = self.head(self.dropout(h)).unflatten(-1, (self.channels, -1))  # (N, L, C, P)
        return self.likelihood.constrain(raw, x), state

    def params(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """One-step-ahead distribution parameters (N, W, C, P) for ``x`` (N, W, C)."""
        _check_input(x, self.channels, z, self.inputs, x.size(1) if x.dim() == 3 else 0)
        return self.step(x, z)[0]

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """One-step-ahead predictions (N, W, C) for ``x`` (N, W, C): the medians."""
        return self.likelihood.point(self.params(x, z))

    def _walk(self, x: Tensor, horizon: int, z: Tensor | None, sample: bool) -> Tensor:
        """Read ``x``, then ``horizon - 1`` fed-back steps; the parameters (N, horizon, C, P)
        or, with ``sample``, the values fed back (N, horizon, C)."""
        W = x.size(1)
        _check_input(x, self.channels, z, self.inputs, W + horizon - 1)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        zs = z if self.inputs else None
        params, state = self.step(x, None if zs is None else zs[:, :W])  # read the window once
        params = params[:, -1:]  # (N, 1, C, P)
        outputs = []
        for k in range(horizon):
            value = self.likelihood.sample(params) if sample else self.likelihood.point(params)
            outputs.append(value if sample else params)
            if k == horizon - 1:
                break
            step_z = None if zs is None else zs[:, W + k : W + k + 1]
            params, state = self.step(value, step_z, state)  # (N, 1, C, P), state carried
        return torch.cat(outputs, dim=1)

    def forecast_params(self, x: Tensor, horizon: int, z: Tensor | None = None) -> Tensor:
        """The distributions (N, horizon, C, P) of the ``horizon`` steps after ``x``, each
        median fed back as the next input."""
        return self._walk(x, horizon, z, sample=False)

    def forecast(self, x: Tensor, horizon: int, z: Tensor | None = None) -> Tensor:
        """The ``horizon`` steps after ``x`` (N, W, C), autoregressively: (N, horizon, C),
        the medians of ``forecast_params``."""
        return self.likelihood.point(self._walk(x, horizon, z, sample=False))

    def sample_paths(
        self, x: Tensor, horizon: int, samples: int, z: Tensor | None = None
    ) -> Tensor:
        """``samples`` paths (N, S, horizon, C) of the steps after ``x``: each step's draw is
        the next step's input (the window's state is shared, read once per path)."""
        N = x.size(0)
        xs = x.repeat_interleave(samples, dim=0)  # (N * S, W, C)
        zs = None if z is None else z.repeat_interleave(samples, dim=0)
        paths = self._walk(xs, horizon, zs, sample=True)  # (N * S, horizon, C)
        return paths.view(N, samples, horizon, self.channels)


def _check_input(x: Tensor, channels: int, z: Tensor | None, inputs: int, length: int) -> None:
    if x.dim() != 3 or x.size(-1) != channels or x.size(1) < 1:
        raise ValueError(f"x must be (N, W>=1, C={channels}), got shape {tuple(x.shape)}")
    if inputs and (z is None or tuple(z.shape) != (x.size(0), length, inputs)):
        got = None if z is None else tuple(z.shape)
        raise ValueError(f"z must be (N={x.size(0)}, {length}, K={inputs}), got {got}")
