"""Truncated backpropagation through time: carry the state, cut the graph, evaluate in streams.

The corpus is read as B parallel streams in chunks of T characters (see
:class:`rnnkit.data.streams.TokenStreams`)::

    stream 0: |chunk 0|chunk 1|chunk 2| ...      the state after chunk i of a stream is the
    stream 1: |chunk 0|chunk 1|chunk 2| ...      true initial state of its chunk i + 1, so it is
    ...                                          carried forward; the graph behind it is cut
    stream B-1: ...                              (detach_state), so backprop spans T steps.

What is not here: the optimiser step (``rnnkit.trainer.loop``) and the batches themselves
(``data``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.data.streams import TokenStreams
from rnnkit.devices import model_device, to_device
from rnnkit.training.progress import counted


def detach_state(state):
    """Cut the autograd graph behind the carried state, keeping its values.

    Without this, backward at chunk i would run back through every earlier chunk: memory and
    time would grow with the length of the corpus instead of staying O(T).
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    detached = [s.detach() for s in state]
    return type(state)(*detached) if hasattr(state, "_fields") else type(state)(detached)


@torch.no_grad()
def evaluate(
    model: nn.Module, streams: TokenStreams, max_batches: int = 0, *, show: bool = False
) -> tuple[float, int]:
    """Mean loss in nats per token over ``streams`` (state carried across chunks) and the
    number of tokens scored. ``max_batches`` > 0 scores only the first chunks; ``show``:
    progress on stderr (``rnnkit eval`` of a whole corpus takes minutes).

    On the model's device: each chunk is moved there, the loss is summed there (float64; MPS
    has none: float32) and read once at the end, so the host never waits on a chunk."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    total, count, state = torch.zeros((), dtype=dtype, device=device), 0, None
    batches = range(len(streams) if max_batches <= 0 else min(max_batches, len(streams)))
    try:
        for index in counted(batches, "rnnkit eval", show=show):
            x, y = to_device(streams.batch(index), device)
            output = model(x, y, state)
            state = output.state
            total += output.loss.to(dtype) * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    return total.item() / count, count
