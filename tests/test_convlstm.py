"""ConvLSTM against independent implementations: per-gate convolutions written out by hand,
torch.nn's LSTM (a 1x1 ConvLSTM on 1x1 images is an LSTM), gradcheck, and its own layouts."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.nn.cells import LSTMCell, LSTMState
from rnnkit.nn.convlstm import ConvLSTM, ConvLSTMCell, convlstm_step

# odd prime sizes, so a transposition of channels, height or width cannot hide
N, C_IN, C_H, HEIGHT, WIDTH = 3, 2, 5, 7, 11


def reference_step(x, h, c, weight, bias, padding):
    """The ConvLSTM equations gate by gate: conv(x, W_x^gate) + conv(h, W_h^gate) + b^gate."""
    c_in, c_h = x.size(1), h.size(1)
    gates = []
    for k in range(4):  # i, f, g, o
        w = weight[k * c_h : (k + 1) * c_h]
        b = None if bias is None else bias[k * c_h : (k + 1) * c_h]
        from_x = F.conv2d(x, w[:, :c_in], b, padding=padding)  # W_x^gate * x + b^gate
        from_h = F.conv2d(h, w[:, c_in:], padding=padding)  # W_h^gate * h
        gates.append(from_x + from_h)
    i, f, g, o = gates
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel", [3, (1, 5), 5])
@pytest.mark.parametrize("zero_state", [True, False])
def test_cell_matches_per_gate_reference(bias, kernel, zero_state):
    torch.manual_seed(0)
    cell = ConvLSTMCell(C_IN, C_H, kernel, bias=bias).double()
    x = torch.randn(N, C_IN, HEIGHT, WIDTH, dtype=torch.float64)
    shape = (N, C_H, HEIGHT, WIDTH)
    h, c = (torch.zeros(shape, dtype=torch.float64) for _ in range(2))
    if not zero_state:
        h, c = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    out = cell(x, None if zero_state else LSTMState(h, c))
    h_ref, c_ref = reference_step(x, h, c, cell.weight, cell.bias, cell.padding)
    assert isinstance(out, LSTMState)
    assert out.h.shape == shape and out.c.shape == shape
    torch.testing.assert_close(out.h, h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.c, c_ref, rtol=0, atol=1e-12)


def copy_lstm_weights(cells, lstm):
    """A torch.nn.LSTM whose layer k uses ConvLSTM cell k's (1x1) weights."""
    with torch.no_grad():
        for k, cell in enumerate(cells):
            w = cell.weight[:, :, 0, 0]
            getattr(lstm, f"weight_ih_l{k}").copy_(w[:, : cell.in_channels])
            getattr(lstm, f"weight_hh_l{k}").copy_(w[:, cell.in_channels :])
            getattr(lstm, f"bias_ih_l{k}").copy_(cell.bias)
            getattr(lstm, f"bias_hh_l{k}").zero_()


def test_1x1_cell_is_an_lstm_cell():
    torch.manual_seed(1)
    conv = ConvLSTMCell(C_IN, C_H, 1).double()
    ours, theirs = LSTMCell(C_IN, C_H).double(), nn.LSTMCell(C_IN, C_H).double()
    w = conv.weight[:, :, 0, 0]
    for cell in (ours, theirs):
        cell.load_state_dict(
            {
                "weight_ih": w[:, :C_IN],
                "weight_hh": w[:, C_IN:],
                "bias_ih": conv.bias,
                "bias_hh": torch.zeros_like(conv.bias),
            }
        )
    x = torch.randn(N, C_IN, dtype=torch.float64)
    h, c = torch.randn(N, C_H, dtype=torch.float64), torch.randn(N, C_H, dtype=torch.float64)
    image = conv(x[..., None, None], (h[..., None, None], c[..., None, None]))
    for expected in (ours(x, (h, c)), theirs(x, (h, c))):
        torch.testing.assert_close(image.h[..., 0, 0], expected[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(image.c[..., 0, 0], expected[1], rtol=0, atol=1e-12)


def test_1x1_stacked_convlstm_is_torch_lstm():
    torch.manual_seed(2)
    conv = ConvLSTM(C_IN, C_H, 1, num_layers=2).double()
    lstm = nn.LSTM(C_IN, C_H, num_layers=2).double()
    copy_lstm_weights(conv.cells, lstm)
    x = torch.randn(4, N, C_IN, dtype=torch.float64)  # (L, N, C_in)
    out, states = conv(x[..., None, None])
    expected, (h_n, c_n) = lstm(x)
    torch.testing.assert_close(out[..., 0, 0], expected, rtol=0, atol=1e-12)
    for k, state in enumerate(states):
        torch.testing.assert_close(state.h[..., 0, 0], h_n[k], rtol=0, atol=1e-12)
        torch.testing.assert_close(state.c[..., 0, 0], c_n[k], rtol=0, atol=1e-12)


def test_gradcheck_tiny_cell():
    """Gradients of h' and c' w.r.t. the input, both states, the weight and the bias."""
    torch.manual_seed(3)
    cell = ConvLSTMCell(2, 3, 3).double()

    def step(x, h, c, weight, bias):
        return tuple(convlstm_step(x, (h, c), weight, bias, cell.padding))

    args = [torch.randn(2, 2, 3, 5), torch.randn(2, 3, 3, 5), torch.randn(2, 3, 3, 5)]
    args += [cell.weight.detach(), cell.bias.detach()]
    args = [a.double().clone().requires_grad_() for a in args]
    assert torch.autograd.gradcheck(step, tuple(args))


@pytest.mark.parametrize("batch_first", [False, True])
def test_stacked_layers_chain_cells_and_carry_state(batch_first):
    torch.manual_seed(4)
    conv = ConvLSTM(C_IN, [C_H, 3], 3, num_layers=2, batch_first=batch_first).double()
    x = torch.randn(6, N, C_IN, HEIGHT, WIDTH, dtype=torch.float64)  # (L, N, C, H, W)
    out, states = conv(x.transpose(0, 1) if batch_first else x)
    out = out.transpose(0, 1) if batch_first else out
    assert out.shape == (6, N, 3, HEIGHT, WIDTH)
    assert [s.h.shape[1] for s in states] == [C_H, 3]
    # the same computation with the cells stepped by hand
    s0 = s1 = None
    for t in range(6):
        s0 = conv.cells[0](x[t], s0)
        s1 = conv.cells[1](s0.h, s1)
        torch.testing.assert_close(out[t], s1.h, rtol=0, atol=1e-12)
    torch.testing.assert_close(states[0].c, s0.c, rtol=0, atol=1e-12)
    torch.testing.assert_close(states[1].h, s1.h, rtol=0, atol=1e-12)
    # two halves with the state carried == one call
    first = x[:3].transpose(0, 1) if batch_first else x[:3]
    second = x[3:].transpose(0, 1) if batch_first else x[3:]
    _, mid = conv(first)
    out2, end = conv(second, mid)
    out2 = out2.transpose(0, 1) if batch_first else out2
    torch.testing.assert_close(out2, out[3:], rtol=0, atol=1e-12)
    torch.testing.assert_close(end[1].c, states[1].c, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ConvLSTMCell(2, 3, 4), "kernel_size must be an odd positive integer"),
        (lambda: ConvLSTMCell(2, 3, 0), "kernel_size must be an odd positive integer"),
        (lambda: ConvLSTMCell(2, 3, (3, 2)), r"kernel_size .* got \(3, 2\)"),
        (lambda: ConvLSTMCell(2, 3, 3, padding=0), r"padding must be None or 'same' .* got 0"),
        (lambda: ConvLSTMCell(0, 3, 3), "in_channels must be an integer >= 1, got 0"),
        (lambda: ConvLSTMCell(2, 3, 3, bias=1), "bias must be a bool"),
        (lambda: ConvLSTM(2, [3], 3, num_layers=2), "hidden_channels must be an int or a list"),
        (lambda: ConvLSTM(2, 3, 3, num_layers=0), "num_layers must be an integer >= 1"),
        (lambda: ConvLSTM(2, 3, 3, batch_first="yes"), "batch_first must be a bool"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_explicit_same_padding_is_accepted():
    assert ConvLSTMCell(2, 3, 5, padding=2).padding == (2, 2)
    assert ConvLSTMCell(2, 3, (3, 5), padding="same").padding == (1, 2)


def test_bad_inputs_name_the_expected_shape():
    cell = ConvLSTMCell(2, 3, 3)
    with pytest.raises(
        ValueError, match=r"x must be \(N, C_in=2, H, W\), got shape \(1, 4, 5, 5\)"
    ):
        cell(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"state.h must have shape \(1, 3, 5, 5\)"):
        cell(torch.zeros(1, 2, 5, 5), (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 5, 5)))
    layer = ConvLSTM(2, 3, 3, num_layers=2, batch_first=True)
    with pytest.raises(ValueError, match=r"5-D \(N, L, C_in, H, W\)"):
        layer(torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match="one \\(h, c\\) per layer \\(2\\), got 1"):
        layer(
            torch.zeros(1, 3, 2, 5, 5),
            [LSTMState(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, 5))],
        )


def test_initialisation_is_conv2d_default_bound():
    torch.manual_seed(5)
    cell = ConvLSTMCell(3, 4, 3)
    bound = 1 / (7 * 9) ** 0.5  # fan_in = (C_in + C_h) * k * k
    assert cell.weight.abs().max() <= bound and cell.bias.abs().max() <= bound
    assert cell.weight.abs().max() > 0.9 * bound  # uniform over the whole range
