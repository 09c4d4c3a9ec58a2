"""Gradient flow through time: exact on linear recurrences, equal to torch.nn's own autograd, to
finite differences, to a language model's own loss; the lecture's RNN-vs-LSTM fact; runs; plots."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.analysis.gradient_flow import (
    GradientFlow,
    fresh_gradient_flow,
    layer_gradient_flow,
    lm_gradient_flow,
    run_gradient_flow,
    state_gradients,
    step_jacobian_singular_values,
    summary,
    to_json,
)
from rnnkit.analysis.gradient_plots import plot_gradient_flow, plot_jacobian_spectrum
from rnnkit.config import ModelConfig, RunConfig, apply_overrides
from rnnkit.errors import UserError
from rnnkit.models.language_model import LanguageModel
from rnnkit.nn.cells import gru_step
from rnnkit.nn.layers import GRU, LSTM, RNN

D = torch.float64


# --------------------------------------------------------------------------- (a) linear, exact


@pytest.mark.parametrize("a", [0.5, 1.0, 1.5])
def test_scalar_linear_recurrence_is_exact(a):
    L, N, H = 23, 3, 5
    xs = torch.randn(L, N, H, dtype=D)
    w = torch.randn(H, dtype=D)
    grads = state_gradients(lambda x, s: (a * s[0] + x,), xs, (torch.zeros(N, H, dtype=D),),
                            lambda states: (states[-1][0] * w).sum())  # fmt: skip
    expected = np.abs(a) ** (L - 1 - np.arange(L)) * np.linalg.norm(w.numpy())
    np.testing.assert_allclose(grads.norms[:, 0], expected, rtol=1e-12, atol=0)
    zeros = (torch.zeros(N, H, dtype=D),)
    steps, sv = step_jacobian_singular_values(
        lambda x, s: (a * s[0] + x,), xs, zeros, [0, 7, L - 1]
    )
    assert steps.tolist() == [0, 7, L - 1] and sv.shape == (3, H)
    np.testing.assert_allclose(sv, np.full((3, H), abs(a)), rtol=1e-12)


@pytest.mark.parametrize("scale", [0.6, 1.3])
def test_matrix_linear_recurrence_matches_numpy(scale):
    L, N, H = 17, 2, 7
    rng = np.random.default_rng(1)
    W = scale * rng.standard_normal((H, H)) / math.sqrt(H)
    w = rng.standard_normal(H)
    Wt = torch.tensor(W)
    step = lambda x, s: (s[0] @ Wt.T + x,)  # noqa: E731  h_t = W h_{t-1} + x_t (rows)
    xs = torch.randn(L, N, H, dtype=D)
    grads = state_gradients(step, xs, (torch.zeros(N, H, dtype=D),),
                            lambda states: (states[-1][0] @ torch.tensor(w)).sum())  # fmt: skip
    expected = [np.linalg.norm(np.linalg.matrix_power(W.T, L - 1 - k) @ w) for k in range(L)]
    np.testing.assert_allclose(grads.norms[:, 0], expected, rtol=1e-12)
    _, sv = step_jacobian_singular_values(step, xs, (torch.zeros(N, H, dtype=D),), [3, 9])
    np.testing.assert_allclose(sv, np.tile(np.linalg.svd(W, compute_uv=False), (2, 1)), rtol=1e-12)


def test_batch_rows_are_separate_gradients_and_c_is_reported():
    # two-tensor state: h_t = 0.5 h_{t-1} + c_{t-1}, c_t = 2 c_{t-1} + x_t; loss = sum over
    # rows n of scale_n * sum(h_{L-1}[n]), so row n's gradient is scale_n times the ones-vector
    # case: ||dL/dh_k|| = scale_n * 0.5^d * sqrt(H), ||dL/dc_k|| = scale_n * G(d) * sqrt(H) with
    # d = L-1-k and G(d) = sum_{m<d} 2^m 0.5^(d-1-m); the batch mean has scale 2 and sqrt(H) 2.
    L, H = 6, 4
    scale = torch.tensor([[1.0], [3.0]], dtype=D)
    step = lambda x, s: (0.5 * s[0] + s[1], 2 * s[1] + x)  # noqa: E731
    zeros = (torch.zeros(2, H, dtype=D), torch.zeros(2, H, dtype=D))
    grads = state_gradients(step, torch.ones(L, 2, H, dtype=D), zeros,
                            lambda st: (scale * st[-1][0]).sum())  # fmt: skip
    d = L - 1 - np.arange(L)
    G = np.array([sum(2.0**m * 0.5 ** (n - 1 - m) for m in range(n)) for n in d])
    np.testing.assert_allclose(grads.norms[:, 0], 4 * 0.5**d, rtol=1e-12)
    np.testing.assert_allclose(grads.norms[:, 1], 4 * G, rtol=1e-12)
    assert grads.norms[-1, 1] == 0.0  # c_{L-1} reaches nothing


# --------------------------------------------------------------------------- (b) torch.nn


def copied_pair(layers=2, H_in=5, H=7):
    torch.manual_seed(0)
    ours = LSTM(H_in, H, num_layers=layers, dtype=D)
    theirs = torch.nn.LSTM(H_in, H, num_layers=layers, dtype=D)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("loss", ["last", "sum"])
def test_rnnkit_and_torch_lstm_with_copied_weights_agree(loss):
    ours, theirs = copied_pair()
    x = torch.randn(11, 3, 5, dtype=D)
    for layer_index in (0, 1):
        a = layer_gradient_flow(ours, x, layer_index=layer_index, loss=loss, jacobian_steps=4)
        b = layer_gradient_flow(theirs, x, layer_index=layer_index, loss=loss, jacobian_steps=4)
        np.testing.assert_allclose(a.h_norm, b.h_norm, rtol=1e-12)
        np.testing.assert_allclose(a.c_norm, b.c_norm, rtol=1e-12)
        np.testing.assert_allclose(a.jacobian_sv, b.jacobian_sv, rtol=1e-10)
        assert (a.cell, a.layer, a.layers, a.hidden) == ("lstm", layer_index, 2, 7)
        assert a.jacobian_sv.shape == (4, 14)  # the full 2H x 2H Jacobian of (h, c)


def unit_projection(H, seed=0):
    u = torch.randn(H, generator=torch.Generator().manual_seed(seed), dtype=D)
    return u / u.norm()


def split_stack(stack):
    """Two one-layer torch.nn.LSTMs holding the layers of a two-layer one."""
    state = stack.state_dict()
    lower, upper = torch.nn.LSTM(5, 7, dtype=D), torch.nn.LSTM(7, 7, dtype=D)
    lower.load_state_dict({k: v for k, v in state.items() if "_l0" in k})
    upper.load_state_dict({k.replace("_l1", "_l0"): v for k, v in state.items() if "_l1" in k})
    return lower, upper


def through_h(gh, h, c):
    """The path c_k -> h_k = o_k tanh(c_k) inside step k: dL/dh_k * o_k * (1 - tanh^2 c_k),
    with the output gate o_k = h_k / tanh(c_k) read off the layer's own states."""
    return gh * h / torch.tanh(c) * (1 - torch.tanh(c) ** 2)


def mean_norm(g):
    return g.norm(dim=1).mean().item()


def test_probe_equals_torch_autograd_through_the_layers_own_forward():
    """Total dL/ds_k from torch.nn.LSTM's own forward: run to step k, make the state at step k
    a leaf, run the rest from it (for the bottom layer: its later steps *and* the top layer over
    its outputs, the leaf itself included), differentiate the same loss. The probe's dL/dc_k is
    the total derivative of the tensor c_k, which also reaches L through h_k = o_k tanh(c_k)."""
    _, theirs = copied_pair()
    lower, upper = split_stack(theirs)
    L, N = 9, 4
    x = torch.randn(L, N, 5, dtype=D)
    u = unit_projection(7)
    top, bottom = (layer_gradient_flow(theirs, x, layer_index=i, loss="last") for i in (1, 0))
    y0, _ = lower(x)  # (L, N, H) the bottom layer's outputs
    for k in range(L - 1):
        _, (h, c) = theirs(x[: k + 1])  # both layers' states after step k
        h, c = h.detach().requires_grad_(True), c.detach().requires_grad_(True)
        rest, _ = theirs(x[k + 1 :], (h, c))
        gh, gc = torch.autograd.grad((rest[-1] @ u).sum(), (h, c))
        assert top.h_norm[k] == pytest.approx(mean_norm(gh[1]), rel=1e-10)
        total_c = gc[1] + through_h(gh[1], h[1], c[1])
        assert top.c_norm[k] == pytest.approx(mean_norm(total_c), rel=1e-10)
        h0, c0 = h[:1].detach().requires_grad_(True), c[:1].detach().requires_grad_(True)
        later, _ = lower(x[k + 1 :], (h0, c0))
        y = torch.cat([y0[:k].detach(), h0, later])  # (L, N, H) the top layer's input
        gh0, gc0 = torch.autograd.grad((upper(y)[0][-1] @ u).sum(), (h0, c0))
        assert bottom.h_norm[k] == pytest.approx(mean_norm(gh0[0]), rel=1e-10)
        total_c = gc0[0] + through_h(gh0[0], h0[0], c0[0])
        assert bottom.c_norm[k] == pytest.approx(mean_norm(total_c), rel=1e-10)
    # the last step: dL/dh_{L-1} from the layer's own output, and c_{L-1} only through h_{L-1}
    out, (h, c) = theirs(x)
    y_last = out[-1].detach().requires_grad_(True)
    (g_last,) = torch.autograd.grad((y_last @ u).sum(), y_last)
    assert top.h_norm[-1] == pytest.approx(mean_norm(g_last), rel=1e-12)
    assert top.c_norm[-1] == pytest.approx(mean_norm(through_h(g_last, h[1], c[1])), rel=1e-10)
    assert top.loss_value == pytest.approx((out[-1] @ u).mean().item(), rel=1e-12)


def test_bad_layers_are_refused():
    x = torch.randn(4, 2, 3)
    with pytest.raises(UserError, match="bidirectional"):
        layer_gradient_flow(torch.nn.GRU(3, 4, bidirectional=True), x)
    with pytest.raises(UserError, match="proj_size"):
        layer_gradient_flow(torch.nn.LSTM(3, 4, proj_size=2), x)
    with pytest.raises(UserError, match="--loss"):
        layer_gradient_flow(RNN(3, 4), x, loss="mean")
    with pytest.raises(UserError, match="--layer"):
        layer_gradient_flow(RNN(3, 4, num_layers=2), x, layer_index=2)
    with pytest.raises(UserError, match="features"):
        layer_gradient_flow(RNN(3, 4), torch.randn(4, 2, 5))
    with pytest.raises(UserError, match="RNN, LSTM or GRU"):
        layer_gradient_flow(torch.nn.Linear(3, 4), x)


def test_relu_rnn_and_batch_first_gru_from_torch_match_rnnkit():
    torch.manual_seed(2)
    x = torch.randn(3, 8, 4, dtype=D)  # (N, L, H_in) batch first
    for ours, theirs in (
        (RNN(4, 6, nonlinearity="relu", batch_first=True, dtype=D),
         torch.nn.RNN(4, 6, nonlinearity="relu", batch_first=True, dtype=D)),
        (GRU(4, 6, batch_first=True, dtype=D), torch.nn.GRU(4, 6, batch_first=True, dtype=D)),
    ):  # fmt: skip
        theirs.load_state_dict(ours.state_dict())
        a, b = layer_gradient_flow(ours, x), layer_gradient_flow(theirs, x)
        np.testing.assert_allclose(a.h_norm, b.h_norm, rtol=1e-12)
        assert a.c_norm is None and len(a.distance) == 8 and a.distance[0] == 7


# --------------------------------------------------------------------------- (c) finite differences


def test_gru_state_gradient_matches_finite_differences():
    torch.manual_seed(3)
    layer = GRU(3, 4, dtype=D)
    w = {n.removesuffix("_l0"): p.detach() for n, p in layer.named_parameters()}
    L, k = 8, 2
    x = torch.randn(L, 1, 3, dtype=D)
    u = unit_projection(4)

    def loss_from(h_k):  # the manual unroll after step k, from a given h_k
        h = h_k
        for t in range(k + 1, L):
            h = gru_step(x[t], h, **w)
        return (h @ u).sum().item()

    h = torch.zeros(1, 4, dtype=D)
    for t in range(k + 1):
        h = gru_step(x[t], h, **w)
    eps = 1e-6
    numeric = np.array([(loss_from(h + eps * e) - loss_from(h - eps * e)) / (2 * eps)
                        for e in torch.eye(4, dtype=D)[:, None, :]])  # fmt: skip
    flow = layer_gradient_flow(layer, x, loss="last")
    assert flow.h_norm[k] == pytest.approx(np.linalg.norm(numeric), rel=1e-7)


# --------------------------------------------------------------------------- (d) language model


def tiny_lm(cell="lstm", layers=2):
    torch.manual_seed(4)
    config = ModelConfig(vocab_size=11, embed=6, hidden=8, layers=layers, cell=cell)
    return LanguageModel(config).double().eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_lm_loss_is_the_models_own_cross_entropy(cell):
    model = tiny_lm(cell)
    idx = torch.randint(11, (5, 13), generator=torch.Generator().manual_seed(0))
    logits = model(idx[:, :-1]).logits  # (N, L, V)
    last = lm_gradient_flow(model, idx, loss="last", jacobian_steps=3)
    assert last.loss_value == pytest.approx(
        F.cross_entropy(logits[:, -1], idx[:, -1]).item(), rel=1e-12
    )
    total = lm_gradient_flow(model, idx, loss="sum", jacobian_steps=0)
    assert total.loss_value == pytest.approx(model(idx[:, :-1], idx[:, 1:]).loss.item() * 12)
    assert last.h_norm.shape == (12,) and last.jacobian_sv.shape == (3, 16 if cell == "lstm" else 8)
    assert total.jacobian_sv.shape == (0, 16 if cell == "lstm" else 8)
    # h_{L-1} reaches only the last position's loss: both losses give it the same gradient
    assert total.h_norm[-1] == pytest.approx(last.h_norm[-1], rel=1e-12)
    assert total.h_norm[0] > 10 * last.h_norm[0]  # far back, the near positions dominate


def test_lm_layer_index_picks_the_layer_and_bad_ones_are_refused():
    model = tiny_lm("gru")
    idx = torch.randint(11, (3, 10), generator=torch.Generator().manual_seed(1))
    top, bottom = (lm_gradient_flow(model, idx, layer_index=i) for i in (-1, 0))
    assert (top.layer, bottom.layer) == (1, 0)
    # the top layer's last state feeds the head directly: its gradient is W_head^T (p - y)
    logits = model(idx[:, :-1]).logits[:, -1]  # (N, V)
    direct = (logits.softmax(-1) - F.one_hot(idx[:, -1], 11)) @ model.head.weight  # (N, H)
    assert top.h_norm[-1] == pytest.approx(direct.norm(dim=1).mean().item(), rel=1e-12)
    assert bottom.h_norm[-1] != pytest.approx(top.h_norm[-1])
    for bad in (2, -3):
        with pytest.raises(UserError, match="--layer"):
            lm_gradient_flow(model, idx, layer_index=bad)
    with pytest.raises(UserError, match="token ids"):
        lm_gradient_flow(model, idx + 11)


# --------------------------------------------------------------------------- (e) the lecture


def test_tanh_rnn_gradient_vanishes_far_faster_than_the_lstm_cell_path():
    """At init (seed 0, H=32, 8 random sequences) the ratio at distance 50 to distance 0 is
    ~1e-19 for a tanh RNN and ~1e-11 for the LSTM cell state (~1e-6 with forget bias 1)."""
    options = {"hidden": 32, "length": 61, "batch": 8, "jacobian_steps": 0}
    rnn = fresh_gradient_flow("rnn", **options)
    lstm = fresh_gradient_flow("lstm", **options)
    lstm_fb = fresh_gradient_flow("lstm", forget_bias=1.0, **options)
    at50 = lambda norms: norms[10] / norms[-1]  # noqa: E731  distance 50 over distance 0
    assert at50(rnn.h_norm) < 1e-3 * at50(lstm.c_norm)
    assert at50(rnn.h_norm) < 1e-6 * at50(lstm_fb.c_norm)
    assert summary(rnn)["h_vanish_distance"] < summary(lstm_fb)["c_vanish_distance"]


# --------------------------------------------------------------------------- (f) runs

WORDS = "the cat sat on a mat and saw the dog run to his red hat".split()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from rnnkit.trainer.loop import train

    tmp = tmp_path_factory.mktemp("gradflow")
    rng = random.Random(0)
    text = " ".join(rng.choice(WORDS) for _ in range(1500)) + "\n"
    (tmp / "corpus.txt").write_text(text)
    config = RunConfig()
    apply_overrides(config, {
        "data": {"paths": [str(tmp / "corpus.txt")], "cache_dir": str(tmp / "cache")},
        "model": {"cell": "gru", "embed": 8, "hidden": 12, "layers": 1},
        "train": {"out": str(tmp / "run"), "seq_len": 16, "batch_size": 4, "lr": 0.05,
                  "max_steps": 5, "eval_every": 5, "eval_batches": 1, "sample_every": 0,
                  "log_every": 5, "threads": 1, "seed": 3},
    }, "test")  # fmt: skip
    train(config, log=lambda s: None)
    return tmp / "run", text


def test_run_gradient_flow_before_and_after(tiny_run):
    run, text = tiny_run
    flows = run_gradient_flow(str(run), text=text, length=20, batch=3, jacobian_steps=4)
    assert set(flows) == {"before", "after"}
    for flow in flows.values():
        assert isinstance(flow, GradientFlow)
        assert flow.h_norm.shape == (20,) and flow.c_norm is None
        assert flow.jacobian_sv.shape == (4, 12) and flow.cell == "gru" and flow.batch == 3
        assert np.all(np.diff(flow.jacobian_sv, axis=1) <= 0)  # descending
    assert not np.allclose(flows["before"].h_norm, flows["after"].h_norm)
    again = run_gradient_flow(str(run), text=text, length=20, batch=3, jacobian_steps=4)
    np.testing.assert_array_equal(again["before"].h_norm, flows["before"].h_norm)  # seeded
    json.dumps(to_json(flows["after"]))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"length": 1}, "--length"),
        ({"batch": 0}, "--batch"),
        ({"loss": "mean"}, "--loss"),
        ({"text": "the cat"}, "--length"),
        ({"text": "THE CAT Q" * 20}, "'Q'"),
        ({"text": None}, "not in the run's vocabulary"),  # the bundled Shakespeare
    ],
)
def test_run_gradient_flow_refuses_bad_input(tiny_run, kwargs, needle):
    run, text = tiny_run
    options = {"text": text, "length": 20, "batch": 2, **kwargs}
    with pytest.raises(UserError, match=needle):
        run_gradient_flow(str(run), **options)


def test_run_gradient_flow_refuses_a_missing_run(tmp_path):
    with pytest.raises(UserError):
        run_gradient_flow(str(tmp_path / "nothing"))


# --------------------------------------------------------------------------- summary and plots


def test_summary_and_json_on_a_hand_made_flow():
    flow = GradientFlow(
        distance=np.array([3, 2, 1, 0]), h_norm=np.array([1e-4, 1e-2, 0.5, 1.0]), c_norm=None,
        jacobian_steps=np.array([0, 3]), jacobian_sv=np.array([[2.0, 1.0], [0.5, 0.1]]),
        cell="rnn", hidden=2, layer=0, layers=1, loss="last", loss_value=float("nan"), batch=1,
    )  # fmt: skip
    s = summary(flow)
    assert s["h_ratio"] == pytest.approx(1e-4) and s["h_vanish_distance"] == 3
    assert s["c_ratio"] is None and s["top_sv_median"] == pytest.approx(1.25)
    assert s["top_sv_max"] == 2.0 and s["loss_value"] is None
    data = json.loads(json.dumps(to_json(flow)))
    assert data["jacobian_sv"] == [[2.0, 1.0], [0.5, 0.1]] and data["c_norm"] is None


def test_plots_write_pngs(tmp_path):
    options = {"hidden": 6, "embed": 4, "vocab_size": 7, "length": 12, "batch": 2,
               "jacobian_steps": 3}  # fmt: skip
    flows = {
        cell.upper(): {"before": fresh_gradient_flow(cell, seed=0, **options),
                       "after": fresh_gradient_flow(cell, seed=1, **options)}
        for cell in ("rnn", "lstm", "gru")
    }  # fmt: skip
    for plot, name in ((plot_gradient_flow, "flow.png"), (plot_jacobian_spectrum, "sv.png")):
        path = plot(flows, tmp_path / "sub" / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        assert len(plot(flows).axes) == 3  # no path: the Figure, one panel per cell


@pytest.mark.parametrize(
    "flags",
    [{"weight_drop": 0.5}, {"locked_dropout": True}, {"weight_drop": 0.5, "locked_dropout": True}],
)
def test_awd_wrapped_models_are_probed_with_their_trained_weights(flags):
    """WeightDrop and LockedStack read as the layer they hold: the flow of a model with AWD's
    flags equals the plain model's with the same weights (the probe runs undropped weights)."""
    torch.manual_seed(0)
    size = {"vocab_size": 20, "embed": 8, "hidden": 16, "layers": 2}
    plain = LanguageModel(ModelConfig(**size)).eval()
    wrapped = LanguageModel(ModelConfig(**size, **flags)).eval()
    wrapped.load_state_dict(plain.state_dict())
    idx = torch.randint(0, 20, (2, 12))
    for layer_index in (0, -1):
        want = lm_gradient_flow(plain, idx, layer_index=layer_index)
        got = lm_gradient_flow(wrapped, idx, layer_index=layer_index)
        np.testing.assert_allclose(got.h_norm, want.h_norm, rtol=1e-6)
        np.testing.assert_allclose(got.c_norm, want.c_norm, rtol=1e-6)
        np.testing.assert_allclose(got.jacobian_sv, want.jacobian_sv, rtol=1e-5, atol=1e-7)
