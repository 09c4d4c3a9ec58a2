"""``rnnkit sample``: text from a trained language model, or from a condition.

    rnnkit sample runs/charlm --prime "ROMEO:" --temperature 0.8 --length 500
    rnnkit sample runs/names-gen --condition Italian --num-samples 5
    rnnkit sample model.onnx --runtime onnx --prime "ROMEO:"

Nothing reaches stdout before the arguments and the prime are checked, so an error is never
glued to half a line of output. What is not here: sampling (``rnnkit.generation``), the ONNX
graph it may run (``rnnkit.export.checked``) and what a task generates (``rnnkit.tasks``).
"""

from __future__ import annotations

import argparse
import sys

from rnnkit.commands.args import add_device, add_threads, positive, use_device, use_threads
from rnnkit.errors import UserError
from rnnkit.generation import DEFAULT_LENGTH, DEFAULT_TEMPERATURE
from rnnkit.wording import sample_banner

_DEVICE_HELP = (
    "where the model runs (--runtime torch): auto (CUDA if available, else MPS if available, "
    "else the CPU), cpu, cuda, cuda:N or mps; a seed gives the same text on the same device "
    "(a CUDA generator draws other numbers than the CPU's)"
)


def add_parser(commands) -> None:
    sample = commands.add_parser("sample", help="generate text from a trained model")
    sample.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint")
    sample.add_argument("--prime", default="", help="text to start from (default: a newline)")
    sample.add_argument(
        "--length", type=int, default=DEFAULT_LENGTH, help="characters (tokens) to generate"
    )
    sample.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help="0: greedy; 1: the model's distribution; generate() defaults to the same",
    )
    sample.add_argument("--top-k", type=int, default=0, help="sample among the k most likely")
    sample.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    sample.add_argument("--stop", action="append", default=[], help="stop at this string")
    sample.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    sample.add_argument("--num-samples", type=positive, default=1, help="independent samples")
    sample.add_argument(
        "--condition", help="class name or vector to generate from (--task generate-from runs)"
    )
    sample.add_argument(
        "--unknown",
        choices=("error", "skip"),
        default="error",
        help="prime characters outside the vocabulary",
    )
    sample.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default=None,
        help="run the model on PyTorch or on onnxruntime (default: onnx for a .onnx file, "
        "else torch; a run directory is exported on the fly unless it holds model.onnx)",
    )
    add_threads(sample)
    add_device(sample, help=_DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from rnnkit.generation import generate
    from rnnkit.tasks.saved import load_task

    use_threads(args)
    runtime = args.runtime or ("onnx" if str(args.checkpoint).endswith(".onnx") else "torch")
    device = use_device(args)  # a missing device is refused before the checkpoint is read
    if runtime == "onnx":
        if args.device not in ("auto", "cpu"):
            raise UserError(f"--device {args.device} needs --runtime torch (onnx runs on the CPU)")
        from rnnkit.export.checked import load_for_sample

        if args.condition is not None:
            raise UserError("--condition needs --runtime torch (ONNX export is for lm runs)")
        model, vocab = load_for_sample(args.checkpoint, threads=args.threads or None)
    else:
        task, model, config = load_task(args.checkpoint, device)
        if task.conditional_sampling:
            return _sample_conditioned(task, model, args)
        if not task.language_model:
            raise UserError(
                f"{args.checkpoint} holds a --task {config.task.name} model; rnnkit sample "
                "reads lm and generate-from runs (try rnnkit predict)"
            )
        if args.condition is not None:
            raise UserError(
                "--condition needs a --task generate-from run; this is a language model"
            )
        vocab = task.vocab
    unseen = vocab.unknown_words(args.prime) if hasattr(vocab, "unknown_words") else []
    if unseen:  # a word model reads them as <unk>
        listed = ", ".join(map(repr, unseen[:10])) + (" ..." if len(unseen) > 10 else "")
        print(
            f"rnnkit: note: prime words not in the vocabulary read as <unk>: {listed}",
            file=sys.stderr,
        )
    streaming = args.num_samples == 1
    primed = False  # the prime is printed with the first text: after generate checked it

    def emit(text: str) -> None:
        nonlocal primed
        sys.stdout.write(text if primed else _join(args.prime, text, vocab))
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
            print(sample_banner(f"sample {i + 1}", _join(args.prime, text, vocab)))
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


def _join(prime: str, text: str, vocab) -> str:
    """The prime and its continuation; a word model's first word after a space."""
    word = getattr(vocab, "kind", None) == "word"
    if word and prime and text and not prime[-1].isspace() and not text[0].isspace():
        return f"{prime} {text}"
    return prime + text
