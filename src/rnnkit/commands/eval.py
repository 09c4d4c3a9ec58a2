"""``rnnkit eval``: the metrics of a trained model on its held-out split or on other data.

    rnnkit eval runs/charlm                     # the run's own validation split
    rnnkit eval runs/names --split test --json
    rnnkit eval runs/charlm other.txt           # data in the training format

What the metrics are and how their line reads are the task's (``Task.evaluate``,
``Task.eval_line``, ``Task.own_data``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnkit.commands.args import add_decoding, add_device, add_threads, use_device, use_threads


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
    add_threads(evaluate)
    add_device(evaluate)


def run(args: argparse.Namespace) -> int:
    from rnnkit.devices import describe_device
    from rnnkit.tasks.saved import load_task

    use_threads(args)
    device = use_device(args)  # a missing device is refused before the checkpoint is read
    task, model, config = load_task(args.checkpoint, device)
    config.data.cache_dir = args.cache_dir  # never the checkpoint's: it would choose our writes
    if args.decode is not None:  # the task decodes by its options: the run's, unless given
        task.options.decode = args.decode
    if args.beam_width is not None:
        task.options.beam_width = args.beam_width
    task.show_progress = True  # a whole corpus takes minutes: never silent
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
