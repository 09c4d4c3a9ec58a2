"""``rnnkit sample`` and ``rnnkit predict``: a trained model applied to what the user gives.

    rnnkit sample runs/charlm --prime "ROMEO:" --temperature 0.8 --length 500
    rnnkit sample runs/names-gen --condition Italian --num-samples 5
    rnnkit predict runs/names Rossi Nakamura --top 3
    rnnkit predict runs/frames -o frames.png           # default: runs/frames/frames_predict.png

Nothing reaches stdout before the arguments and the prime are checked, so an error is never
glued to half a line of output. What is not here: the parsers (``cli.py``), sampling
(``generation.py``) and what each task predicts (``rnnkit.tasks``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.wording import sample_banner


def run_sample(args: argparse.Namespace) -> int:
    from rnnkit.generation import generate
    from rnnkit.tasks.saved import load_task

    runtime = args.runtime or ("onnx" if str(args.checkpoint).endswith(".onnx") else "torch")
    if runtime == "onnx":
        from rnnkit.export.command import load_for_sample

        if args.condition is not None:
            raise UserError("--condition needs --runtime torch (ONNX export is for lm runs)")
        model, vocab = load_for_sample(args.checkpoint)
    else:
        task, model, config = load_task(args.checkpoint)
        if config.task.name == "generate-from":
            return _sample_conditioned(task, model, args)
        if config.task.name != "lm":
            raise UserError(
                f"{args.checkpoint} holds a --task {config.task.name} model; rnnkit sample "
                "reads lm and generate-from runs (try rnnkit predict)"
            )
        if args.condition is not None:
            raise UserError(
                "--condition needs a --task generate-from run; this is a language model"
            )
        vocab = task.vocab
    streaming = args.num_samples == 1
    primed = False  # the prime is printed with the first text: after generate checked it

    def emit(text: str) -> None:
        nonlocal primed
        sys.stdout.write(text if primed else args.prime + text)
        sys.stdout.flush()
        primed = True

    texts = generate(
        model,
        vocab,
        prime=args.prime,
        length=args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=args.stop,
        seed=args.seed,
        unknown=args.unknown,
        on_text=emit if streaming else None,
        num_samples=args.num_samples,
    )
    if streaming:
        print("" if primed else args.prime)  # the continuation follows the prime
    else:
        for i, text in enumerate(texts):
            print(sample_banner(f"sample {i + 1}", args.prime + text))
    return 0


def _sample_conditioned(task, model, args: argparse.Namespace) -> int:
    if args.condition is None:
        raise UserError("this run generates from a condition: pass --condition CLASS or VECTOR")
    texts = task.sample(
        model,
        args.condition,
        num_samples=args.num_samples,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        max_len=args.length,
        prime=args.prime,
    )
    for text in texts:
        print(text)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from rnnkit.tasks.saved import load_task

    task, model, config = load_task(args.checkpoint)
    names = ("top", "decode", "beam_width", "temperature", "num_samples", "seed", "out")
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    name = config.task.name
    if not args.inputs and name in PREDICT_INPUTS:
        raise UserError(
            f"rnnkit predict {args.checkpoint}: give {PREDICT_INPUTS[name]} after the run "
            f"directory (a --task {name} run)"
        )
    if name == "frames":  # a picture: into the run directory unless --out says where
        out = Path(args.out) if args.out else _run_dir(args.checkpoint) / "frames_predict.png"
        _check_picture_path(out)
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


def _check_picture_path(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name like {path}/frames.png")
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: the directory {path.parent} does not exist")
