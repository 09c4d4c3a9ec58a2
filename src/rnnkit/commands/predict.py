"""``rnnkit predict``: a trained task model applied to what the user gives.

    rnnkit predict runs/names Rossi Nakamura --top 3
    rnnkit predict runs/dates "March 3, 2021" --decode beam --beam-width 5
    rnnkit predict runs/dates "March 3, 2021" --decode beam --n-best 3   # with their scores
    rnnkit predict runs/frames -o frames.png           # default: runs/frames/frames_predict.png
    rnnkit predict runs/forecast recent.csv --horizon 24    # median and interval columns

What each task predicts, what it reads and whether it draws a picture are the task's
(``Task.predict``, ``predict_inputs``, ``predict_picture``); this module checks the arguments
and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.commands.args import (
    add_decoding,
    add_device,
    add_threads,
    check_writable,
    deprecated,
    positive,
    use_device,
    use_threads,
)
from rnnkit.errors import UserError


def add_parser(commands) -> None:
    predict = commands.add_parser("predict", help="apply a trained task model to inputs")
    predict.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    predict.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="texts (classify, tag, seq2seq), sequence files .ts/.npz/.csv (classify), conditions "
        "(generate-from) or CSV files (forecast)",
    )
    predict.add_argument("--top", type=positive, help="classes shown per input (classify)")
    add_decoding(predict)
    predict.add_argument(
        "--n-best",
        type=positive,
        help="(seq2seq --decode beam) the N best outputs per input, each with its score",
    )
    predict.add_argument("--temperature", type=float, help="(seq2seq, generate-from)")
    predict.add_argument(
        "--num-samples", type=positive, help="(generate-from; forecast: sample paths)"
    )
    predict.add_argument("--horizon", type=positive, help="steps to forecast (forecast)")
    predict.add_argument("--seed", type=int, help="random seed (default: the run's)")
    predict.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the picture to write (frames; default: RUN/frames_predict.png)",
    )
    deprecated(predict, "--out", "--output", metavar="FILE")
    add_threads(predict)
    add_device(predict)


def run(args: argparse.Namespace) -> int:
    import torch

    from rnnkit.tasks.saved import load_task

    use_threads(args)
    device = use_device(args)  # a missing device is refused before the checkpoint is read
    task, model, _ = load_task(args.checkpoint, device)
    names = ("top", "decode", "beam_width", "n_best", "temperature", "num_samples", "horizon",
             "seed")  # fmt: skip
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if not args.inputs and task.predict_inputs:
        raise UserError(
            f"rnnkit predict {args.checkpoint}: give {task.predict_inputs} after the run "
            f"directory (a --task {task.name} run)"
        )
    if task.predict_picture:  # into the run directory unless -o says where
        out = Path(args.output or _run_dir(args.checkpoint) / task.predict_picture)
        check_writable(out, "-o")
        options["out"], existed = str(out), out.exists()
        with torch.inference_mode():
            task.predict(model, args.inputs, options)
        print(f"wrote {out}" + (" (replaced the previous one)" if existed else ""))
        return 0
    with torch.inference_mode():
        print(task.predict(model, args.inputs, options))
    return 0


def _run_dir(checkpoint: str) -> Path:
    """The run directory of ``checkpoint`` (RUN, RUN/best or RUN/last)."""
    path = Path(checkpoint)
    return path.parent if path.name in ("best", "last") else path
