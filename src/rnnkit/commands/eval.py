"""``rnnkit eval``: the metrics of a trained model on its held-out split or on other data.

    rnnkit eval runs/charlm                     # the run's own validation split
    rnnkit eval runs/names --split test --json
    rnnkit eval runs/charlm other.txt           # data in the training format
    rnnkit eval runs/ptb test.txt --cache-size 2000 --cache-theta 0.3 --cache-lambda 0.1
    rnnkit eval runs/ptb test.txt --tune-cache  # theta, lambda chosen on the validation split
    rnnkit eval runs/demand demand.csv --backtest --horizon 48 --windows 7   # rolling origin

What the metrics are and how their line reads are the task's (``Task.evaluate``,
``Task.eval_line``, ``Task.own_data``). The neural cache (Grave et al. 2017) is the language
model's, at evaluation time only (``rnnkit.tasks.lm_cache``, ``rnnkit.training.cache``); the
rolling-origin backtest is the forecaster's (``rnnkit.tasks.forecast_eval.backtest``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnkit.commands.args import add_decoding, add_device, add_threads, use_device, use_threads
from rnnkit.errors import UserError


def add_parser(commands) -> None:
    evaluate = commands.add_parser("eval", help="metrics of a trained model on data")
    evaluate.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    evaluate.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="data in the training format (default: the run's --split of its own data)",
    )
    evaluate.add_argument(
        "--split", choices=("val", "test"), default="val", help="which held-out split to score"
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--figures", metavar="DIR", help="also write the task's pictures of --split into DIR"
    )
    add_decoding(evaluate)
    evaluate.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where encoded text is cached (default: $RNNKIT_CACHE, else $XDG_CACHE_HOME/rnnkit "
        "or ~/.cache/rnnkit; never the checkpoint's data.cache_dir)",
    )
    cache = evaluate.add_argument_group(
        "neural cache (--task lm; Grave, Joulin and Usunier 2017)",
        "p(w) = (1 - lambda) p_model(w) + lambda p_cache(w), p_cache attending with weights "
        "exp(theta h_t . h_i) to the last --cache-size positions of the text. Any of the three "
        "flags turns it on; the others keep their defaults.",
    )
    cache.add_argument(
        "--cache-size", type=int, metavar="N", help="positions the cache keeps (default: 2000)"
    )
    cache.add_argument(
        "--cache-theta", type=float, metavar="X", help="attention sharpness (default: 0.3)"
    )
    cache.add_argument(
        "--cache-lambda", type=float, metavar="X", help="the cache's weight (default: 0.1)"
    )
    cache.add_argument(
        "--tune-cache",
        action="store_true",
        help="choose theta and lambda on the run's validation split (theta 0..2 step 0.05 x "
        "lambda 0.05..0.5 step 0.05), then score PATH (the test text) with them and without",
    )
    backtest = evaluate.add_argument_group(
        "rolling-origin backtest (--task forecast)",
        "In each series of PATH, the last --windows stretches of --horizon steps, each forecast "
        "from the history before it: MASE (scaled by the in-sample seasonal-naive MAE, the "
        "run's --season), sMAPE, MAE and, for a probabilistic run, CRPS or quantile loss and the "
        "interval's coverage, averaged over windows and series.",
    )
    backtest.add_argument("--backtest", action="store_true", help="run the backtest on PATH")
    backtest.add_argument(
        "--horizon", type=int, metavar="H", help="steps per window (default: the run's)"
    )
    backtest.add_argument(
        "--windows", type=int, metavar="K", help="windows per series (default: 5)"
    )
    add_threads(evaluate)
    add_device(evaluate)


def run(args: argparse.Namespace) -> int:
    from rnnkit.devices import describe_device
    from rnnkit.tasks.saved import load_task

    use_threads(args)
    cache = _cache_settings(args)  # bad cache flags: refused before the checkpoint is read
    _check_backtest(args)
    device = use_device(args)  # a missing device is refused before the checkpoint is read
    task, model, config = load_task(args.checkpoint, device)
    config.data.cache_dir = args.cache_dir  # never the checkpoint's: it would choose our writes
    if args.decode is not None:  # the task decodes by its options: the run's, unless given
        task.options.decode = args.decode
    if args.beam_width is not None:
        task.options.beam_width = args.beam_width
    task.show_progress = True  # a whole corpus takes minutes: never silent
    if cache is not None:
        return _run_cache(args, task, model, cache, describe_device(device))
    if args.backtest:
        return _run_backtest(args, task, model, describe_device(device))
    if args.paths:
        figures = task.evaluate_paths(model, args.paths)
    else:
        where = describe_device(device)
        print(f"rnnkit eval: scoring {task.own_data(args.split)} on {where}", file=sys.stderr)
        task.prepare()  # the run's own data, split as in training
        figures = task.evaluate(model, args.split)
        if args.figures:
            Path(args.figures).mkdir(parents=True, exist_ok=True)
            for path in task.write_figures(model, Path(args.figures), args.split):
                print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({**figures, "device": describe_device(device)}))
    else:
        print(task.eval_line(figures))
    return 0


def _cache_settings(args: argparse.Namespace):
    """The cache's settings from the flags (None: no cache flag given), checked."""
    from rnnkit.tasks.lm_cache import CacheSettings

    given = (args.cache_size, args.cache_theta, args.cache_lambda)
    if not args.tune_cache and given == (None, None, None):
        return None
    if args.tune_cache and (args.cache_theta, args.cache_lambda) != (None, None):
        raise UserError(
            "--tune-cache chooses theta and lambda itself: drop --cache-theta and --cache-lambda"
        )
    if args.tune_cache and not args.paths:
        raise UserError(
            "--tune-cache needs the test text: rnnkit eval RUN TEST_FILE --tune-cache (theta "
            "and lambda are chosen on the run's validation split)"
        )
    if args.figures:
        raise UserError("--figures draws the task's pictures without the cache: run it apart")
    defaults = (2000, 0.3, 0.1)
    settings = CacheSettings(*(d if v is None else v for v, d in zip(given, defaults, strict=True)))
    settings.check()
    return settings


def _check_backtest(args: argparse.Namespace) -> None:
    """The backtest flags, checked before the checkpoint is read."""
    if not args.backtest:
        given = [
            f
            for f, v in (("--horizon", args.horizon), ("--windows", args.windows))
            if v is not None
        ]
        if given:
            raise UserError(f"{given[0]} is a --backtest flag: add --backtest")
        return
    for flag, value, high in (
        ("--horizon", args.horizon, 10_000),
        ("--windows", args.windows, 10_000),
    ):
        if value is not None and not 1 <= value <= high:
            raise UserError(f"{flag} must be an integer in [1, {high:,}], got {value}")
    if not args.paths:
        raise UserError("--backtest needs the CSV files: rnnkit eval RUN FILE.csv --backtest")
    cache = (args.cache_size, args.cache_theta, args.cache_lambda)
    if args.figures or args.tune_cache or cache != (None, None, None):
        raise UserError("--backtest scores PATH alone: drop --figures and the cache flags")


def _run_backtest(args: argparse.Namespace, task, model, device: str) -> int:
    """``rnnkit eval RUN FILE --backtest``: the task's rolling-origin backtest."""
    if not hasattr(task, "backtest"):
        raise UserError(f"--backtest is for --task forecast runs, not --task {task.name}")
    horizon = args.horizon or task.options.horizon
    figures = task.backtest(model, args.paths, horizon, args.windows or 5)
    if args.json:
        print(json.dumps({**figures, "device": device}))
    else:
        print(task.backtest_line(figures))
    return 0


def _run_cache(args: argparse.Namespace, task, model, cache, device: str) -> int:
    """``rnnkit eval`` with the neural cache: at the given settings, or (``--tune-cache``)
    tuned on the validation split and reported on the test text, with and without it."""
    from rnnkit.tasks.lm_cache import GRID, cache_figures, check_task, tune_on_validation

    check_task(task)
    if args.split != "val":
        raise UserError(f"--task lm has a validation split only, not {args.split!r}")
    if args.tune_cache:
        test = task.text_streams(args.paths)  # a bad test file is refused before the tuning
        print(
            f"rnnkit eval: tuning the cache on {task.own_data('val')} on {device}", file=sys.stderr
        )
        task.prepare()
        result = tune_on_validation(task, model, test, cache.size)
        if args.json:
            print(json.dumps({**result, "device": device}))
            return 0
        print(
            f"cache tuned on the validation split ({GRID}, size {cache.size:,}): "
            f"theta {result['cache_theta']:g}, lambda {result['cache_lambda']:g}"
        )
        for name, key in (
            ("validation, cache", "val"),
            ("validation, no cache", "val_plain"),
            ("test, cache", "test"),
            ("test, no cache", "test_plain"),
        ):
            print(f"{name}: {task.eval_line(result[key])}")
        return 0
    if args.paths:
        text = task.text_streams(args.paths)
    else:
        print(f"rnnkit eval: scoring {task.own_data('val')} on {device}", file=sys.stderr)
        task.prepare()
        text = task.val_text
    figures = cache_figures(task, model, text, cache)
    if args.json:
        print(json.dumps({**figures, "device": device}))
    else:
        print(f"{task.eval_line(figures)} | {cache.line()}")
    return 0
