"""--task frames: the moving-shapes generator, the next-frame model, the copy-last baseline and
the task's data, errors, figures, meta and a tiny training run that beats the baseline."""

import json
import re

import numpy as np
import pytest
import torch
from fitting import fit
from torch import nn

from rnnkit.config import RunConfig, apply_overrides, load_preset, validate
from rnnkit.data.shapes import _bounce, moving_shapes, trajectories
from rnnkit.errors import UserError
from rnnkit.models.frames import FramePredictor
from rnnkit.tasks import get_task
from rnnkit.tasks.frames import NO_FILES, FramesTask, baseline_errors


def make_config(**task) -> RunConfig:
    config = RunConfig()
    config.task.name = "frames"
    config.data.synthetic = "shapes"
    config.data.synthetic_size = 40
    config.task.options.update(frame_size=8, frames=5, kernel=3)
    config.model.hidden, config.model.layers = 4, 1
    config.train.batch_size, config.train.seed = 8, 7
    for key, value in task.items():
        config.task.options[key] = value
    return config


# ---- the generator -----------------------------------------------------------------------
def test_shapes_deterministic_in_range_and_moving():
    a = moving_shapes(20, 8, 16, seed=3)
    assert a.shape == (20, 8, 1, 16, 16) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1 and a.max() == 1
    np.testing.assert_array_equal(a, moving_shapes(20, 8, 16, seed=3))
    assert not np.array_equal(a, moving_shapes(20, 8, 16, seed=4))
    assert (a.sum(axis=(2, 3, 4)) > 1).all()  # the objects never leave the frame
    assert (np.abs(np.diff(a, axis=1)).sum(axis=(2, 3, 4)) > 0).all()  # every frame moves


def test_objects_move_with_constant_velocity_and_bounce_inside_the_frame():
    kind, radius, centres = trajectories(60, 12, 16, seed=0)
    low, high = radius[:, None, :, None], 16 - 1 - radius[:, None, :, None]
    assert ((centres >= low) & (centres <= high)).all()
    step = np.diff(centres, axis=1)  # (n, L-1, shapes, 2)
    speed = np.linalg.norm(step, axis=-1)
    assert (speed > 0).all() and (speed <= 1.6 + 1e-9).all()
    # per axis: a full step of |v| repeats unchanged; a wall cuts one step short and the
    # step after it is the one before it reversed
    full = np.isclose(np.abs(step), np.abs(step).max(axis=1, keepdims=True))
    both = full[:, 1:] & full[:, :-1]
    assert np.isclose(step[:, 1:], step[:, :-1])[both].all() and full.mean() > 0.8
    bounce = ~full[:, 1:-1]
    assert bounce.any()
    np.testing.assert_allclose(step[:, 2:][bounce], -step[:, :-2][bounce])


def test_drawn_squares_and_discs_are_centred_on_their_trajectory():
    frames = moving_shapes(60, 6, 16, seed=1, shapes=1)[:, :, 0]  # (n, L, S, S)
    kind, _, centres = trajectories(60, 6, 16, seed=1, shapes=1)
    grid = np.arange(16)
    mass = frames.sum(axis=(2, 3))
    drawn = np.stack([(frames.sum(3) * grid).sum(2), (frames.sum(2) * grid).sum(2)], -1)
    drawn /= mass[..., None]  # centre of mass (n, L, 2)
    symmetric = kind[:, 0] < 2  # squares and discs (a cross is symmetric too, but thin)
    assert symmetric.sum() > 20
    np.testing.assert_allclose(drawn[symmetric], centres[symmetric, :, 0], atol=0.1)
    assert (mass > 1).all()  # never leaves the frame


def test_bounce_reflects_off_both_walls():
    low, high = np.array([[1.0]]), np.array([[5.0]])
    position, velocity = _bounce(
        np.array([[0.5, 5.75, 3.0]]), np.array([[-1.0, 1.0, 1.0]]), low, high
    )
    np.testing.assert_allclose(position, [[1.5, 4.25, 3.0]])
    np.testing.assert_allclose(velocity, [[1.0, -1.0, 1.0]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 3}, "size must be an integer >= 4, got 3"),
        ({"frames": 0}, "frames must be an integer >= 1, got 0"),
        ({"n": -1}, "n must be an integer >= 0, got -1"),
        ({"shapes": 0}, "shapes must be an integer >= 1, got 0"),
    ],
)
def test_shapes_bad_arguments(kwargs, match):
    arguments = {"n": 2, "frames": 3, "size": 8, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        moving_shapes(**arguments)


# ---- the model and the baseline ----------------------------------------------------------
def test_predictor_is_causal_and_predict_next_is_the_last_output():
    torch.manual_seed(0)
    config = make_config()
    config.model.layers, config.model.forget_bias = 2, 1.0
    model = FramePredictor(config.model, kernel=3).eval()
    frames = torch.rand(2, 5, 1, 7, 9)
    pred = model(frames)
    assert pred.shape == frames.shape and 0 < pred.min() and pred.max() < 1
    changed = frames.clone()
    changed[:, 3:] = torch.rand(2, 2, 1, 7, 9)
    torch.testing.assert_close(model(changed)[:, :3], pred[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(model.predict_next(frames[:, :4]), pred[:, 3])
    h = config.model.hidden
    assert (model.rnn.cells[1].bias[h : 2 * h] > 0.5).all()  # forget_bias added


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("cell", "gru", "--cell must be lstm"),
        ("init", "orthogonal", "--init must be torch"),
        ("impl", "fused", "--impl must be auto or cells"),
        ("tie_weights", True, "--tie-weights"),
    ],
)
def test_predictor_refuses_config_it_cannot_honour(field, value, match):
    config = make_config()
    setattr(config.model, field, value)
    with pytest.raises(UserError, match=match):
        FramePredictor(config.model)


class ShiftModel(nn.Module):
    """Predicts frame t+1 = frame t (copy-last) -- or a constant, for a hand-computed MSE."""

    def __init__(self, constant=None):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.constant = constant

    def forward(self, frames):
        return frames.clone() if self.constant is None else torch.full_like(frames, self.constant)


def hand_task() -> FramesTask:
    """A task whose test split is two 4x4 sequences of 3 frames built by hand."""
    task = FramesTask(make_config(frame_size=4, frames=3))
    frames = np.zeros((2, 3, 1, 4, 4), dtype=np.float32)
    frames[0, 2, 0, 0, 0] = 1.0  # one pixel appears in the last frame: SE 1 over 16 pixels
    frames[1, 1, 0, 1, 1] = 0.5  # one pixel present before the last frame only: SE 0.25
    frames[1, 2, 0, 2, 2] = 0.5  # ... and another appears: SE 0.25
    task.data = {"train": frames, "val": frames, "test": frames}
    return task


def test_baseline_on_a_hand_case():
    task = hand_task()
    errors = baseline_errors(torch.from_numpy(task.data["test"]))
    assert errors.shape == (2, 1, 4, 4)
    expected = (1.0 + 0.5) / (2 * 16)  # mean squared error per pixel over both sequences
    metrics = task.evaluate(ShiftModel(), "test")
    assert metrics["baseline_mse"] == pytest.approx(expected)
    assert metrics["mse"] == pytest.approx(expected) and metrics[
        "mse_vs_baseline"
    ] == pytest.approx(1)
    zero = task.evaluate(ShiftModel(constant=0.0), "test")  # predicts black frames
    assert zero["mse"] == pytest.approx((1.0 + 0.25) / 32)  # only the last frames' pixels count
    assert zero["mse_vs_baseline"] == pytest.approx(1.25 / 1.5)
    # loss: every next frame (2 per sequence), with --loss mse or mae
    assert zero["loss"] == pytest.approx((0.25 + 1.0 + 0.25) / (2 * 2 * 16))
    task.options.loss = "mae"
    assert task.evaluate(ShiftModel(constant=0.0), "test")["loss"] == pytest.approx(2.0 / 64)


# ---- the task ------------------------------------------------------------------------------
def test_registry_and_splits_are_disjoint_and_deterministic():
    assert get_task("frames") is FramesTask
    task = FramesTask(make_config())
    task.prepare()
    sizes = {k: len(v) for k, v in task.data.items()}
    assert sizes == {"train": 32, "val": 4, "test": 4}
    flat = np.concatenate([v.reshape(len(v), -1) for v in task.data.values()])
    assert len(np.unique(flat, axis=0)) == len(flat)  # no sequence in two splits
    again = FramesTask(make_config())
    again.prepare()
    assert task.steps_per_epoch() == 4
    torch.testing.assert_close(task.train_batch(1, 2), again.train_batch(1, 2), rtol=0, atol=0)
    assert task.train_batch(0, 0).shape == (8, 5, 1, 8, 8)


def test_train_loss_counts_predicted_frames():
    torch.manual_seed(0)
    task = FramesTask(make_config())
    task.prepare()
    out = task.train_loss(task.build_model(), task.train_batch(0, 0), 0)
    assert out.count == 8 * 4 and out.loss.ndim == 0 and out.loss.requires_grad


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda c: setattr(c.data, "paths", ["clips/"]),
            re.escape(NO_FILES),
        ),
        (
            lambda c: setattr(c.data, "synthetic", "sine"),
            "needs --synthetic shapes, got --synthetic sine",
        ),
        (lambda c: c.task.options.update(frame_size=3), "--frame-size must be an integer >= 4"),
        (lambda c: setattr(c.data, "synthetic_size", 1), "leaves no training sequences"),
    ],
)
def test_prepare_errors(change, match):
    config = make_config()
    change(config)
    with pytest.raises(UserError, match=match):
        FramesTask(config).prepare()


def test_files_are_refused_and_empty_split_named():
    task = FramesTask(make_config())
    assert NO_FILES == (
        "frames reads the built-in moving-shapes generator (--synthetic shapes); "
        "files are not supported yet"
    )
    with pytest.raises(UserError, match=re.escape(NO_FILES)):
        task.evaluate_paths(ShiftModel(), ["a.npy"])
    config = make_config()
    config.data.test_fraction = 0.0
    with pytest.raises(UserError, match="the test split is empty"):
        FramesTask(config).evaluate(ShiftModel(), "test")


def test_meta_round_trip_rebuilds_an_identical_model(tmp_path):
    torch.manual_seed(0)
    task = FramesTask(make_config())
    task.prepare()
    model = task.build_model()
    meta = json.loads(json.dumps(task.meta()))
    assert meta == {"frame_size": 8, "frames": 5, "channels": 1}
    loaded = FramesTask(make_config(), meta)  # no prepare(): no data needed
    clone = loaded.build_model()
    clone.load_state_dict(model.state_dict())
    frames = torch.from_numpy(task.data["test"])
    torch.testing.assert_close(clone(frames), model(frames), rtol=0, atol=0)
    first = loaded.predict(clone, [], {"out": str(tmp_path / "a.png"), "seed": 5})
    assert first == str(tmp_path / "a.png") and (tmp_path / "a.png").stat().st_size > 1000
    assert not loaded.data  # predict generated its own sequences


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"frames": 5, "channels": 1}, "frame_size must be an integer >= 4, got None"),
        (
            {"frame_size": 8, "frames": "5", "channels": 1},
            "frames must be an integer >= 2, got '5'",
        ),
        ({"frame_size": 8, "frames": 5, "channels": 3}, "channels must be 1, got 3"),
    ],
)
def test_bad_meta_names_the_key(meta, match):
    with pytest.raises(UserError, match=match):
        FramesTask(make_config(), meta)


def test_predict_rejects_inputs_and_bad_options(tmp_path):
    task = FramesTask(make_config())
    with pytest.raises(UserError, match="takes no inputs"):
        task.predict(ShiftModel(), ["movie.mp4"], {})
    with pytest.raises(UserError, match="predict option seed must be an integer >= 0, got -1"):
        task.predict(ShiftModel(), [], {"seed": -1, "out": str(tmp_path / "x.png")})


def test_write_figures(tmp_path):
    torch.manual_seed(0)
    task = FramesTask(make_config())
    task.prepare()
    paths = task.write_figures(task.build_model(), tmp_path, "test")
    assert paths == [tmp_path / "frames.png"] and paths[0].stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp.png"))


def test_tiny_training_run_beats_copy_last_frame():
    """The trainer's recipe in miniature: Adam, clipping, batches from train_batch."""
    torch.manual_seed(0)
    config = make_config(frame_size=8, frames=6, kernel=3)
    config.data.synthetic_size, config.model.hidden = 300, 8
    config.train.batch_size = 16
    task = FramesTask(config)
    task.prepare()
    model = task.build_model()
    before = task.evaluate(model, "test")
    fit(task, model, 100, 0.02, clip=5.0)
    after = task.evaluate(model, "test")
    assert after["loss"] < 0.5 * before["loss"]
    assert after["mse_vs_baseline"] < 0.8, after


def test_preset_is_valid_and_uses_the_generator():
    config = RunConfig()
    apply_overrides(config, load_preset("frames"), "frames.toml")
    validate(config)
    assert config.task.name == "frames" and config.data.synthetic == "shapes"
    assert config.train.max_time > 0  # a time guard on slower machines


def test_predict_defaults_write_frames_png_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    task = FramesTask(make_config(), {"frame_size": 8, "frames": 5, "channels": 1})
    assert task.predict(task.build_model(), [], {"seed": None, "out": None}) == "frames.png"
    assert (tmp_path / "frames.png").is_file()
