"""``rnnkit predict``: a trained task model applied to what the user gives.

    rnnkit predict runs/names Rossi Nakamura --top 3
    rnnkit predict runs/dates "March 3, 2021" --decode beam --beam-width 5
    rnnkit predict runs/frames -o frames.png           # default: runs/frames/frames_predict.png

What each task predicts is the task's (``Task.predict``); this module checks the arguments,
says what a task reads when no input is given (``PREDICT_INPUTS``) and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.commands.args import add_threads, check_writable, deprecated, positive, use_threads
from rnnkit.errors import UserError


def add_parser(commands) -> None:
    predict = commands.add_parser("predict", help="apply a trained task model to inputs")
    predict.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    predict.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="texts (classify, tag, seq2seq), conditions (generate-from) or CSV files (forecast)",
    )
    predict.add_argument("--top", type=positive, help="classes shown per input (classify)")
    predict.add_argument(
        "--decode", choices=("greedy", "sample", "beam"), help="(seq2seq; default: the run's)"
    )
    predict.add_argument(
        "--beam-width", type=positive, help="(seq2seq --decode beam; default: the run's)"
    )
    predict.add_argument("--temperature", type=float, help="(seq2seq, generate-from)")
    predict.add_argument("--num-samples", type=positive, help="(generate-from)")
    predict.add_argument("--seed", type=int, help="random seed (default: the run's)")
    predict.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the picture to write (frames; default: RUN/frames_predict.png)",
    )
    deprecated(predict, "--out", "--output", metavar="FILE")
    add_threads(predict)


def run(args: argparse.Namespace) -> int:
    import torch

    from rnnkit.tasks.saved import load_task

    use_threads(args)
    task, model, config = load_task(args.checkpoint)
    names = ("top", "decode", "beam_width", "temperature", "num_samples", "seed")
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    name = config.task.name
    if not args.inputs and name in PREDICT_INPUTS:
        raise UserError(
            f"rnnkit predict {args.checkpoint}: give {PREDICT_INPUTS[name]} after the run "
            f"directory (a --task {name} run)"
        )
    if name == "frames":  # a picture: into the run directory unless -o says where
        out = Path(args.output) if args.output else _run_dir(args.checkpoint) / "frames_predict.png"
        check_writable(out, "-o")
        options["out"], existed = str(out), out.exists()
        with torch.inference_mode():
            task.predict(model, args.inputs, options)
        print(f"wrote {out}" + (" (replaced the previous one)" if existed else ""))
        return 0
    with torch.inference_mode():
        print(task.predict(model, args.inputs, options))
    return 0


#: what ``rnnkit predict`` reads per task (frames generates its own sequences)
PREDICT_INPUTS = {
    "classify": "one or more texts to classify",
    "tag": "one or more sentences to tag",
    "seq2seq": "one or more source texts",
    "generate-from": "one or more conditions (class names or vectors)",
    "forecast": "one or more CSV files (the forecast follows each file's last rows)",
}


def _run_dir(checkpoint: str) -> Path:
    """The run directory of ``checkpoint`` (RUN, RUN/best or RUN/last)."""
    path = Path(checkpoint)
    return path.parent if path.name in ("best", "last") else path
