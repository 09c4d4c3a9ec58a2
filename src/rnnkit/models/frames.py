"""Next-frame prediction: a ConvLSTM stack reads frames 1..t and draws frame t+1.

    model = FramePredictor(ModelConfig(hidden=32, layers=1), channels=1, kernel=5)
    pred = model(frames)               # (N, L, C, H, W): pred[:, t] is the guess of frames[:, t+1]
    loss = F.mse_loss(pred[:, :-1], frames[:, 1:])      # every next frame in one pass
    nxt = model.predict_next(frames)   # (N, C, H, W): the frame after the last one

What is here: ``FramePredictor`` (frames -> ConvLSTM stack -> dropout -> convolution -> sigmoid,
pixels in [0, 1]) and the checks of the ModelConfig fields it reads. What is not here: the data
(``rnnkit.data.shapes``), the loss, baseline and pictures (``rnnkit.tasks.frames``), and
rolling predictions forward several frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.config import ModelConfig
from rnnkit.errors import UserError
from rnnkit.nn.convlstm import ConvLSTM


def check_config(config: ModelConfig) -> None:
    """ConvLSTM is an LSTM; refuse the ModelConfig choices it cannot honour, naming the flag."""
    if config.cell != "lstm":
        raise UserError(f"--task frames runs a ConvLSTM: --cell must be lstm, got {config.cell}")
    if config.init != "torch":
        raise UserError(
            f"--task frames initialises like torch.nn.Conv2d: --init must be torch, "
            f"got {config.init}"
        )
    if config.impl == "fused":
        raise UserError("--task frames has no fused ConvLSTM kernel: --impl must be auto or cells")
    if config.tie_weights:
        raise UserError("--tie-weights needs an embedding; --task frames has none")


class FramePredictor(nn.Module):
    """frames -> ConvLSTM (``config.layers`` layers of ``config.hidden`` channels, ``kernel``
    x ``kernel``, "same" padding) -> dropout (``config.dropout``) -> ``head_kernel`` x
    ``head_kernel`` convolution to ``channels`` -> sigmoid.

    Shape legend: ``N`` batch, ``L`` frames, ``C`` channels, ``H x W`` frame size (any: every
    layer is convolutional), ``C_h`` hidden channels.

    * ``forward(frames (N, L, C, H, W)) -> pred (N, L, C, H, W)``: ``pred[:, t]`` predicts frame
      ``t + 1`` from frames ``0..t`` only (the recurrence is causal), so training compares
      ``pred[:, :-1]`` with ``frames[:, 1:]``: L - 1 targets per sequence in one pass.
    * ``predict_next(frames) -> (N, C, H, W)``: the frame after the last one.

    Initialisation: torch's ``Conv2d`` default everywhere; ``config.forget_bias`` is added to the
    ConvLSTM's forget-gate bias.
    """

    def __init__(
        self, config: ModelConfig, channels: int = 1, kernel: int = 3, head_kernel: int = 1
    ) -> None:
        super().__init__()
        check_config(config)
        if head_kernel < 1 or head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be an odd positive integer, got {head_kernel!r}")
        self.config, self.channels = config, channels
        self.rnn = ConvLSTM(channels, config.hidden, kernel, config.layers, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Conv2d(config.hidden, channels, head_kernel, padding=head_kernel // 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's defaults, then ``forget_bias`` on the forget gate of every layer."""
        for cell in self.rnn.cells:
            cell.reset_parameters()
            if cell.bias is not None and self.config.forget_bias:
                h = cell.hidden_channels
                with torch.no_grad():
                    cell.bias[h : 2 * h] += self.config.forget_bias
        self.head.reset_parameters()

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 5 or frames.size(2) != self.channels:
            raise ValueError(
                f"FramePredictor: frames must be (N, L, C={self.channels}, H, W), "
                f"got shape {tuple(frames.shape)}"
            )
        h, _ = self.rnn(frames)  # (N, L, C_h, H, W)
        h = self.dropout(h)
        logits = self.head(h.flatten(0, 1))  # (N*L, C, H, W)
        return torch.sigmoid(logits).unflatten(0, frames.shape[:2])  # (N, L, C, H, W)

    @torch.no_grad()
    def predict_next(self, frames: Tensor) -> Tensor:
        """The frame after ``frames`` (N, L, C, H, W): (N, C, H, W), no gradient."""
        return self(frames)[:, -1]
