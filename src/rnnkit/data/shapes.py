"""Moving shapes: Moving MNIST without MNIST, a built-in data set for next-frame prediction.

    frames = moving_shapes(n=100, frames=10, size=16, seed=0)   # (100, 10, 1, 16, 16) float32

Each sequence holds ``shapes`` objects -- a square, a disc or a cross, of random size -- that
start at a random place, move with a random constant velocity and bounce off the borders (the
velocity component normal to the wall flips). Objects are drawn with a soft one-pixel edge (the
intensity falls linearly from 1 to 0 across the boundary), so sub-pixel motion shows, and
overlapping objects combine by their maximum. Everything comes from one seeded generator: the
same arguments give the same array. What is not here: reading videos from files, colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KINDS = ("square", "disc", "cross")


def _check(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def moving_shapes(
    n: int, frames: int, size: int, seed: int | Sequence[int], shapes: int = 2
) -> np.ndarray:
    """``n`` sequences of ``frames`` images ``size`` x ``size``: (n, frames, 1, size, size)
    float32 in [0, 1]. ``seed`` is anything ``numpy.random.default_rng`` takes."""
    kind, radius, centres = trajectories(n, frames, size, seed, shapes)
    out = np.empty((n, frames, 1, size, size), dtype=np.float32)
    for t in range(frames):
        out[:, t, 0] = _draw(kind, radius, centres[:, t], size).max(axis=1)
    return out


def trajectories(
    n: int, frames: int, size: int, seed: int | Sequence[int], shapes: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``moving_shapes`` draws: each object's kind (n, shapes) (an index into ``KINDS``),
    radius (n, shapes) in pixels and centre (n, frames, shapes, [row, column]) per frame."""
    n, frames = _check("n", n, 0), _check("frames", frames, 1)
    size, shapes = _check("size", size, 4), _check("shapes", shapes, 1)
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(KINDS), size=(n, shapes))
    radius = rng.uniform(max(1.0, size / 10), max(1.0, size / 5), size=(n, shapes))
    low, high = radius[..., None], size - 1 - radius[..., None]  # centre's range (n, shapes, 1)
    position = low + rng.uniform(0, 1, size=(n, shapes, 2)) * (high - low)  # (n, shapes, 2)
    speed = rng.uniform(size / 20, size / 10, size=(n, shapes, 1))
    angle = rng.uniform(0, 2 * np.pi, size=(n, shapes, 1))
    velocity = speed * np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)
    centres = np.empty((n, frames, shapes, 2))
    for t in range(frames):
        centres[:, t] = position
        position, velocity = _bounce(position + velocity, velocity, low, high)
    return kind, radius, centres


def _bounce(position: np.ndarray, velocity: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Reflect centres that crossed ``low`` or ``high`` back inside and flip that velocity."""
    below, above = position < low, position > high
    position = np.where(below, 2 * low - position, np.where(above, 2 * high - position, position))
    velocity = np.where(below | above, -velocity, velocity)
    return np.clip(position, low, high), velocity


def _draw(kind: np.ndarray, radius: np.ndarray, position: np.ndarray, size: int) -> np.ndarray:
    """Each object alone on a blank image: (n, shapes, size, size) in [0, 1]."""
    grid = np.arange(size, dtype=np.float64)
    dy = np.abs(grid[None, None, :, None] - position[..., 0, None, None])  # (n, shapes, size, 1)
    dx = np.abs(grid[None, None, None, :] - position[..., 1, None, None])  # (n, shapes, 1, size)
    r = radius[..., None, None] + 0.5  # the soft edge runs from r - 0.5 to r + 0.5

    def inside(distance: np.ndarray) -> np.ndarray:
        return np.clip(r - distance, 0.0, 1.0)

    arm = np.maximum(0.5, radius[..., None, None] / 3) + 0.5  # half thickness of a cross's bar
    square = inside(np.maximum(dy, dx))
    disc = inside(np.sqrt(dy**2 + dx**2))
    bars = np.maximum(
        np.minimum(inside(dx), np.clip(arm - dy, 0.0, 1.0)),
        np.minimum(inside(dy), np.clip(arm - dx, 0.0, 1.0)),
    )
    k = kind[..., None, None]
    return np.where(k == 0, square, np.where(k == 1, disc, bars)).astype(np.float32)
