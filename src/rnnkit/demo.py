"""A tour of the layers in one screen: build a layer, run it, and check it against torch.nn.

``rnnkit demo`` prints the module, its parameters (torch.nn's names), the shapes that flow
through it, the final states of a padded batch taken at each sequence's true end, and the
largest difference to ``torch.nn`` with copied weights and between rnnkit's two execution paths.
On ``device`` (CUDA: torch.nn and rnnkit's fused path run cuDNN's kernels, in float64) the layers
and inputs live there, drawn on the host first, so every device shows the same numbers to
rounding; the lengths of the padded batch stay on the host, as packing wants them.
"""

from __future__ import annotations

import torch

from rnnkit.nn.registry import get_cell, where

#: The cells torch.nn has too (a fused kernel): the tour compares each with its torch.nn twin.
LAYERS = {name: get_cell(name).layer_class() for name in where(fused_kernel=True)}


def demo(
    cell: str = "lstm",
    input_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    batch: int = 4,
    length: int = 12,
    bidirectional: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[str]:
    """Run the tour on ``device`` and return the lines to print."""
    torch.manual_seed(seed)
    kwargs = dict(num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
    ours = LAYERS[cell](input_size, hidden_size, **kwargs, dtype=torch.float64)
    theirs = getattr(torch.nn, cell.upper())(input_size, hidden_size, **kwargs, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    cells = LAYERS[cell](input_size, hidden_size, **kwargs, dtype=torch.float64, impl="cells")
    cells.load_state_dict(ours.state_dict())
    for layer in (ours, theirs, cells):  # built on the host: the same weights on every device
        layer.to(device)

    lines = [f"rnnkit.{type(ours).__name__}: {ours}", "parameters (torch.nn names):"]
    lines += [f"  {name:<22} {tuple(p.shape)}" for name, p in ours.named_parameters()]
    x = torch.randn(batch, length, input_size, dtype=torch.float64)  # (N, L, H_in), seeded
    x = x.to(device)  # drawn on the host: the same numbers on every device
    output, state = ours(x)
    h_n = state[0] if cell == "lstm" else state
    lines.append(f"input  (N, L, H_in)            {tuple(x.shape)}")
    lines.append(f"output (N, L, D*H_out)         {tuple(output.shape)}")
    lines.append(f"h_n    (D*num_layers, N, H_out) {tuple(h_n.shape)}")
    if cell == "lstm":
        lines.append(f"c_n    (D*num_layers, N, H_cell) {tuple(state[1].shape)}")

    expected, _ = theirs(x)
    via_cells, _ = cells(x)
    lines.append(f"max |rnnkit - torch.nn|        {(output - expected).abs().max().item():.2e}")
    lines.append(f"max |fused - cells|            {(output - via_cells).abs().max().item():.2e}")

    lengths = torch.arange(length, length - batch, -1).clamp(min=1)
    padded_out, padded_state = ours(x, lengths=lengths)
    h_top = (padded_state[0] if cell == "lstm" else padded_state)[-ours.num_directions :]
    lines.append(f"padded batch, lengths {lengths.tolist()}:")
    for b, n in enumerate(lengths.tolist()):
        alone, _ = ours(x[b : b + 1, :n])
        # forward direction ends at the last step, the reverse direction at the first one
        ends = [alone[0, -1, :hidden_size], alone[0, 0, hidden_size:]][: ours.num_directions]
        same = all(torch.allclose(h[b], e, atol=1e-12) for h, e in zip(h_top, ends, strict=True))
        lines.append(
            f"  sequence {b}: output zero past step {n}: "
            f"{bool((padded_out[b, n:] == 0).all())}; final state == run alone: {same}"
        )
    return lines
