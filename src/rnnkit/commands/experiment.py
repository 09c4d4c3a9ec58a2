"""``rnnkit experiment``: the lecture's experiments, reproduced (``rnnkit.analysis``).

rnnkit experiment memory [--tasks adding copy] [--lengths 10 25 50 100 200 400] [--out DIR]
rnnkit experiment exploding [--gain 2.0] [--modes off norm value] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from rnnkit.commands.analyze import fmt
from rnnkit.commands.args import (
    add_device,
    add_threads,
    make_dir,
    positive,
    use_device,
    use_threads,
    write_json,
)
from rnnkit.errors import UserError
from rnnkit.io_errors import writing


def add_parser(commands) -> None:
    from rnnkit.analysis import memory as m

    experiment = commands.add_parser("experiment", help="the lecture's experiments, reproduced")
    kinds = experiment.add_subparsers(
        dest="experiment", required=True, parser_class=type(experiment), metavar="EXPERIMENT"
    )
    memory = kinds.add_parser("memory", help="adding and copy tasks at growing lengths")
    add = memory.add_argument
    add("--tasks", nargs="+", choices=m.TASKS, default=m.TASKS, help="tasks to run")
    add("--cells", nargs="+", choices=m.CELL_CHOICES, default=m.CELLS, help="cells to compare")
    add("--lengths", nargs="+", type=positive, default=m.DEFAULT_LENGTHS, metavar="T",
        help="sequence lengths")  # fmt: skip
    add("--seeds", type=positive, default=3, help="seeds per setting")
    add("--steps", type=positive, default=m.DEFAULTS["steps"], help="training steps per trial")
    add("--budget", type=positive, default=m.DEFAULTS["budget"], help="parameters per model")
    add("--batch", type=positive, default=m.DEFAULTS["batch"], help="sequences per step")
    add("--lr", type=float, default=m.DEFAULTS["lr"], help="Adam learning rate")
    add("--margin", type=float, default=m.DEFAULTS["margin"],
        help="success: test loss < margin x baseline")  # fmt: skip
    add("--workers", type=positive, default=2, help="processes (one thread each)")
    add("--out", metavar="DIR", help="write memory.png and memory.json here")
    add("--json", action="store_true", help="print one JSON object (a line per trial on stderr)")
    add_threads(memory, help="torch threads of this process (each worker uses one)")
    add_device(memory)
    from rnnkit.analysis import exploding as e

    exploding = kinds.add_parser("exploding", help="gradient spikes, clipping off / norm / value")
    add = exploding.add_argument
    add("--modes", nargs="+", choices=e.MODES, default=list(e.MODES), help="clipping modes")
    add("--steps", type=positive, default=500, help="training steps")
    add("--seed", type=int, default=0, help="random seed")
    add("--length", type=positive, default=e.DEFAULTS["T"], metavar="T",
        help="adding-problem sequence length")  # fmt: skip
    add("--hidden", type=positive, default=e.DEFAULTS["hidden"], help="tanh units")
    add("--gain", type=float, default=e.DEFAULTS["gain"],
        help="the recurrent matrix: orthogonal times this (its spectral radius)")  # fmt: skip
    add("--lr", type=float, default=e.DEFAULTS["lr"], help="SGD learning rate")
    add("--batch", type=positive, default=e.DEFAULTS["batch"], help="sequences per step")
    add("--max-norm", type=float, default=e.DEFAULTS["max_norm"], help="clip norm: the bound")
    add("--max-value", type=float, default=e.DEFAULTS["max_value"],
        help="clip value: the bound on each component")  # fmt: skip
    exploding.add_argument("--out", metavar="DIR", help="write exploding.png and .json here")
    exploding.add_argument("--json", action="store_true", help="print one JSON object")
    add_threads(exploding)
    add_device(exploding)


def run(args: argparse.Namespace) -> int:
    from rnnkit.analysis import experiment_plots

    use_threads(args)
    device = use_device(args)  # a missing device is refused before --out is made
    out = make_dir(args.out, "--out") if args.out else None
    if args.experiment == "memory":
        from rnnkit.analysis.memory import format_table, memory_experiment

        given = {k: getattr(args, k) for k in ("tasks", "cells", "lengths", "seeds", "steps")}
        given |= {"budget": args.budget, "batch": args.batch, "lr": args.lr, "margin": args.margin}
        if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
            raise UserError(f"--lr must be a positive number, got {args.lr}")
        if args.margin is not None and not 0 < args.margin <= 1:
            raise UserError(f"--margin must be in (0, 1], got {args.margin}")
        options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()}
        where = sys.stderr if args.json else sys.stdout  # --json: stdout is the JSON alone
        progress = lambda trial: print(_trial_line(trial), file=where, flush=True)  # noqa: E731
        result = memory_experiment(
            **{k: v for k, v in options.items() if v is not None},
            workers=args.workers,
            progress=progress,
            device=device,
        )
        payload = result.to_json()
        if out is not None:
            with writing(out / "memory.png"):
                experiment_plots.plot_memory(result, out / "memory.png")
            write_json(out / "memory.json", payload)
        print(json.dumps(payload) if args.json else format_table(result))
        return 0
    from rnnkit.analysis.exploding import exploding_experiment, summarize

    names = ("steps", "seed", "hidden", "gain", "lr", "batch", "max_norm", "max_value")
    given = {name: getattr(args, name) for name in names}
    runs = exploding_experiment(**given, modes=args.modes, T=args.length, device=device)
    payload = summarize(runs)
    if out is not None:
        with writing(out / "exploding.png"):
            experiment_plots.plot_exploding(runs, out / "exploding.png")
        write_json(out / "exploding.json", payload)
    if args.json:
        print(json.dumps(payload))
    else:
        for mode, numbers in payload.items():
            print(f"clip {mode}: " + ", ".join(f"{k} {fmt(v)}" for k, v in numbers.items()))
    return 0


def _trial_line(trial) -> str:
    mark = "solved" if trial.success else "failed"
    return (
        f"{trial.task:6s} {trial.cell:4s} T={trial.T:<4d} seed {trial.seed}: loss/baseline "
        f"{trial.ratio:.3f} {mark} ({trial.seconds:.0f} s)"
    )
