"""Nested training state <-> (tensors, JSON skeleton), so it can be saved without pickle.

``flatten_state`` turns dicts (str or int keys), lists, tuples, ints of any size, floats
(nan/inf included), bools, None, strings and tensors into a dict of tensors (for safetensors)
plus a JSON-serialisable skeleton; ``unflatten_state`` is its exact inverse. Optimiser and
scheduler state dicts, RNG states and the carried hidden state all round-trip through it.
What is not here: files and atomicity (``files.py``).
"""

from __future__ import annotations

import math
import random
import re

import torch

from rnnkit.errors import UserError, describe, short

_JSON_SAFE_INT = 2**53  # larger ints are written as hex strings: exact for every JSON reader
_HEX_INT = re.compile(r"-?0x[0-9a-f]+")
MAX_DEPTH = 64  # a real training state nests ~6 deep; a hostile skeleton must not recurse 1000


def flatten_state(obj: object) -> tuple[dict[str, torch.Tensor], object]:
    """Split a nested state into ``(tensors, skeleton)``; ``unflatten_state`` is the inverse.

    ``tensors`` maps a dotted path (``"optimizer.state.0.exp_avg"``) to each tensor. ``skeleton``
    is plain JSON (no nan): None, bool, str, small ints, finite floats and lists stay as they
    are; everything else becomes a one-key object: ``{"$tensor": key}``, ``{"$tuple": [...]}``,
    ``{"$dict": {str: ...}}`` (all keys str), ``{"$items": [[key, value], ...]}`` (some int
    keys), ``{"$float": "nan" | "inf" | "-inf"}``, ``{"$int": "0x..."}`` (beyond +-2**53).

    Raises:
        TypeError: a value or dict key of another type; the message names its path.
    """
    tensors: dict[str, torch.Tensor] = {}
    return tensors, _flatten(obj, (), tensors)


def _flatten(obj: object, path: tuple, tensors: dict[str, torch.Tensor]) -> object:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        value = int(obj)
        return value if abs(value) < _JSON_SAFE_INT else {"$int": hex(value)}
    if isinstance(obj, float):
        value = float(obj)
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return {"$tensor": _add_tensor(path, obj, tensors)}
    if isinstance(obj, list):
        return [_flatten(item, (*path, i), tensors) for i, item in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"$tuple": [_flatten(item, (*path, i), tensors) for i, item in enumerate(obj)]}
    if isinstance(obj, dict):
        return _flatten_dict(obj, path, tensors)
    raise TypeError(
        f"flatten_state: {_where(path)} is a {type(obj).__name__}; expected dict, list, tuple, "
        "int, float, bool, None, str or torch.Tensor"
    )


def _flatten_dict(obj: dict, path: tuple, tensors: dict[str, torch.Tensor]) -> object:
    for key in obj:
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(
                f"flatten_state: key {key!r} at {_where(path)} is a {type(key).__name__}; "
                "expected str or int"
            )
    if all(isinstance(key, str) for key in obj):
        return {"$dict": {str(k): _flatten(v, (*path, k), tensors) for k, v in obj.items()}}
    items = [[_flatten(k, path, tensors), _flatten(v, (*path, k), tensors)] for k, v in obj.items()]
    return {"$items": items}


def _add_tensor(path: tuple, tensor: torch.Tensor, tensors: dict[str, torch.Tensor]) -> str:
    base = ".".join(str(part) for part in path) or "_"
    key, n = base, 1
    while key in tensors:  # "a.b" the key and ("a", "b") the path would collide
        n += 1
        key = f"{base}#{n}"
    tensors[key] = tensor
    return key


def _where(path: tuple) -> str:
    """The dotted path, cut to ~120 characters (keys from a hostile file can be any size)."""
    text = ".".join(str(part)[:60] for part in path[:16]) or "the top level"
    return text if len(text) <= 120 and len(path) <= 16 else text[:120] + "..."


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: object) -> object:
    """Rebuild what ``flatten_state`` split: tuples, int keys, nan/inf and big ints included.

    Raises:
        UserError: the skeleton is malformed, nests deeper than ``MAX_DEPTH`` or refers to a
            tensor missing from ``tensors``.
    """
    try:
        return _unflatten(skeleton, tensors, (), 0)
    except RecursionError:  # only when called from deep in the stack; MAX_DEPTH bounds our own
        raise UserError("state skeleton: nested too deeply") from None


def _unflatten(node: object, tensors: dict[str, torch.Tensor], path: tuple, depth: int) -> object:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if depth >= MAX_DEPTH:
        raise UserError(f"state skeleton: {_where(path)} nests deeper than {MAX_DEPTH}")
    down = depth + 1
    if isinstance(node, list):
        return [_unflatten(item, tensors, (*path, i), down) for i, item in enumerate(node)]
    tag, value = next(iter(node.items())) if isinstance(node, dict) and len(node) == 1 else ("", 0)
    if tag == "$tensor" and isinstance(value, str):
        if value not in tensors:
            raise UserError(
                f"state skeleton: {_where(path)} refers to missing tensor {short(value)}"
            )
        return tensors[value]
    if tag == "$tuple" and isinstance(value, list):
        return tuple(_unflatten(item, tensors, (*path, i), down) for i, item in enumerate(value))
    if tag == "$dict" and isinstance(value, dict):
        return {k: _unflatten(v, tensors, (*path, k), down) for k, v in value.items()}
    if tag == "$items" and isinstance(value, list):
        return _unflatten_items(value, tensors, path, down)
    if tag == "$float" and value in ("nan", "inf", "-inf"):
        return float(value)
    if tag == "$int" and isinstance(value, str) and _HEX_INT.fullmatch(value):
        return int(value, 16)
    raise UserError(
        f"state skeleton: {_where(path)} is {describe(node)}; expected a JSON value or a one-key "
        "object tagged $tensor, $tuple, $dict, $items, $float or $int"
    )


def _unflatten_items(pairs: list, tensors: dict[str, torch.Tensor], path: tuple, depth: int):
    out = {}
    for pair in pairs:
        ok = isinstance(pair, list) and len(pair) == 2
        key = _unflatten(pair[0], tensors, path, depth) if ok else None
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise UserError(
                f"state skeleton: {_where(path)} has {describe(pair)} in $items; "
                "expected a [str or int key, value] pair"
            )
        out[key] = _unflatten(pair[1], tensors, (*path, key), depth)
    return out


def rng_state(*, cuda: bool = False) -> dict:
    """The generators training draws from (dropout masks use torch's; numpy's is unused):
    torch's CPU generator and Python's always, and with ``cuda`` (a run on CUDA) every CUDA
    device's generator (``torch.cuda.get_rng_state_all``: CPU byte tensors, one per GPU)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, *, cuda: bool = False) -> str | None:
    """Restore ``rng_state``'s generators; ``cuda``: this run is on CUDA. The data order
    depends only on the step, so it is exact on any device; the dropout masks are drawn on the
    run's device, so they continue exactly only where the saved generators can be restored.
    Returns the one line to show when they cannot (None when they can):

    - saved on CUDA, resumed off CUDA or with another number of visible GPUs;
    - saved off CUDA (no CUDA generators), resumed on CUDA."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    saved = state.get("cuda")
    if saved is None and not cuda:
        return None
    count = torch.cuda.device_count() if cuda else 0
    if saved is not None and cuda and isinstance(saved, list) and len(saved) == count:
        torch.cuda.set_rng_state_all(saved)
        return None
    if saved is None:
        was = "off CUDA"
    else:
        gpus = len(saved) if isinstance(saved, list) else "?"
        was = f"on CUDA ({gpus} GPU{'s' if gpus != 1 else ''} visible)"
    now = f"on CUDA ({count} GPU{'s' if count != 1 else ''} visible)" if cuda else "off CUDA"
    return (
        f"warning: this run was saved {was} and resumes {now}: the data order stays exact, "
        "the dropout masks differ from an uninterrupted run's"
    )


# --- a resumed state, checked before anything trains or saves ------------------------------

#: training.json's counters and the lowest value each may take
COUNTERS = {"step": 0, "epoch": 0, "batch_index": 0, "bad_evals": 0, "last_eval_step": -1}


def check_progress(state: dict) -> None:
    """The loop's counters, scores and clock in a saved training state, by type and range.

    Raises:
        UserError: naming the field, what it must be and what it holds (a tampered
            ``batch_index`` -5, a ``step`` "abc" or 1.5, a ``best_val`` "x").
    """
    for key, low in COUNTERS.items():
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{key} must be an integer >= {low}, got {short(value)}")
        if value >= _JSON_SAFE_INT:
            raise UserError(f"{key} must be below 2**53, got {short(value)}")
    if state["last_eval_step"] > state["step"]:
        raise UserError(
            f"last_eval_step must be at most step ({state['step']}), got {state['last_eval_step']}"
        )
    for key in ("best_val", "last_val"):  # scores, lower is better: +inf before any evaluation
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{key} must be a number, got {short(value)}")
        if key == "best_val" and math.isnan(value):  # last_val is nan after a nan evaluation
            raise UserError(f"{key} must be a number or inf, got nan")
    # the clock: absent from checkpoints written before it was kept (then 0)
    elapsed, used = state.get("elapsed_s", 0.0), state.get("time_used", 0.0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, int | float) or not elapsed >= 0:
        raise UserError(f"elapsed_s must be a number of seconds >= 0, got {short(elapsed)}")
    if isinstance(used, bool) or not isinstance(used, int | float) or not 0 <= used <= 1:
        raise UserError(f"time_used must be a number in [0, 1], got {short(used)}")


def check_like(want: object, got: object, where: str, *, strict_keys: bool = False) -> None:
    """``got`` (read from training.json) has the structure of ``want`` (the state a fresh
    optimiser or scheduler has): the same kind of scalar (no nan), sequences of the same
    length, dicts whose shared keys match; with ``strict_keys`` no key ``want`` lacks (a
    scheduler's state becomes its attributes). ``None`` and tensors in ``want`` are not checked.

    Raises:
        UserError: naming ``where`` and the key.
    """
    if want is None or isinstance(want, torch.Tensor):
        return
    if isinstance(want, bool):
        ok, kind = isinstance(got, bool), "true or false"
    elif isinstance(want, int | float):
        number = isinstance(got, int | float) and not isinstance(got, bool)
        ok = number and not math.isnan(got) and (isinstance(got, int) or isinstance(want, float))
        kind = "an integer" if isinstance(want, int) else "a number"
    elif isinstance(want, str):
        ok, kind = isinstance(got, str), "a string"
    elif isinstance(want, list | tuple):
        ok = isinstance(got, type(want)) and len(got) == len(want)
        kind = f"a {type(want).__name__} of {len(want)}"
    elif isinstance(want, dict):
        ok, kind = isinstance(got, dict), "an object"
    else:
        return
    if not ok:
        raise UserError(f"{where} must be {kind}, got {short(got)}")
    if isinstance(want, dict):
        assert isinstance(got, dict)
        extra = next((k for k in got if k not in want), None)
        if strict_keys and extra is not None:
            raise UserError(f"{where} has an unknown key {short(extra)}")
        for key in want.keys() & got.keys():
            check_like(want[key], got[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            check_like(a, b, f"{where}[{i}]")


def check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Every tensor of a loaded optimiser state is a scalar or has its parameter's shape."""
    for g, group in enumerate(optimizer.param_groups):
        for i, param in enumerate(group["params"]):
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    raise UserError(
                        f"optimizer state {name} of parameter {i} (group {g}) has shape "
                        f"{tuple(value.shape)}, the parameter {tuple(param.shape)}"
                    )
