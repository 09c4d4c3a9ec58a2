"""The analysis subcommands of the CLI: ``rnnkit analyze``, ``rnnkit experiment`` and
``rnnkit report``. Each parses its flags and calls one library function of ``rnnkit.analysis``;
``rnnkit.cli`` registers them with :func:`add_commands`.

    rnnkit analyze gradients RUN [RUN...] [-o gradient_flow.png] [--json]
    rnnkit analyze gradients --fresh rnn lstm gru          # -o gradient_flow_fresh.png
    rnnkit experiment memory [--tasks adding copy] [--lengths 10 25 50 100 200 400] [--out DIR]
    rnnkit experiment exploding [--out DIR]
    rnnkit report RUN -o report.html                        # or --format png -o DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io_errors import writing


def add_commands(commands) -> dict:
    """Add the subparsers to ``commands`` and return {name: runner}."""
    from rnnkit.cli import _positive  # the CLI's own argument type (cli.py imports this module)

    analyze = commands.add_parser("analyze", help="probe a model: gradient flow through time")
    probes = analyze.add_subparsers(dest="probe", required=True, parser_class=type(analyze))
    grads = probes.add_parser("gradients", help="||dL/dh_k|| and step-Jacobian spectra")
    grads.add_argument("runs", nargs="*", metavar="RUN", help="run directories or checkpoints")
    grads.add_argument(
        "--fresh", nargs="+", choices=("rnn", "lstm", "gru"), help="untrained models of these cells"
    )
    grads.add_argument("--hidden", type=_positive, default=128, help="(--fresh) hidden units")
    grads.add_argument(
        "--forget-bias", type=float, default=0.0, help="(--fresh) LSTM forget-gate bias at init"
    )
    grads.add_argument("--text", metavar="FILE", help="text to read (default: the run's val text)")
    grads.add_argument("--length", type=_positive, default=100, help="steps back from the loss")
    grads.add_argument("--batch", type=_positive, default=16, help="windows averaged over")
    grads.add_argument("--loss", choices=("last", "sum"), default="last", help="loss position(s)")
    grads.add_argument("--seed", type=int, default=0, help="windows and fresh weights")
    grads.add_argument(
        "-o",
        "--out",
        help="the plot to write (default: gradient_flow.png, with --fresh gradient_flow_fresh.png)",
    )
    grads.add_argument("--jacobian", metavar="PNG", help="also plot the step-Jacobian spectra")
    grads.add_argument("--json", action="store_true", help="print one JSON object")

    experiment = commands.add_parser("experiment", help="the lecture's experiments, reproduced")
    kinds = experiment.add_subparsers(dest="experiment", required=True, parser_class=type(analyze))
    memory = kinds.add_parser("memory", help="adding and copy tasks at growing lengths")
    memory.add_argument("--tasks", nargs="+", choices=("adding", "copy"), default=None)
    memory.add_argument("--cells", nargs="+", choices=("rnn", "lstm", "gru"), default=None)
    memory.add_argument("--lengths", nargs="+", type=_positive, default=None, metavar="T")
    memory.add_argument("--seeds", type=_positive, default=None, help="seeds per setting")
    memory.add_argument("--steps", type=_positive, default=None, help="training steps per trial")
    memory.add_argument("--budget", type=_positive, default=None, help="parameters per model")
    memory.add_argument("--batch", type=_positive, default=None, help="sequences per step")
    memory.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    memory.add_argument(
        "--margin", type=float, default=None, help="success: test loss < margin x baseline"
    )
    memory.add_argument("--workers", type=_positive, default=2, help="processes")
    memory.add_argument("--out", metavar="DIR", help="write memory.png and memory.json here")
    memory.add_argument("--json", action="store_true", help="print one JSON object")
    exploding = kinds.add_parser("exploding", help="gradient spikes, clipping off / norm / value")
    exploding.add_argument("--steps", type=_positive, default=None, help="training steps")
    exploding.add_argument("--seed", type=int, default=0)
    exploding.add_argument("--out", metavar="DIR", help="write exploding.png and .json here")
    exploding.add_argument("--json", action="store_true", help="print one JSON object")

    report = commands.add_parser("report", help="an HTML report (or PNG figures) of a run")
    report.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    report.add_argument("-o", "--out", help="report.html (or a directory with --format png)")
    report.add_argument("--format", choices=("html", "png"), default="html")
    report.add_argument("--text", metavar="FILE", help="text to trace (default: the run's val)")
    report.add_argument("--chars", type=_positive, default=1000, help="characters to trace")
    report.add_argument("--length", type=_positive, default=100, help="gradient-flow steps")
    report.add_argument("--sample-length", type=_positive, default=300)
    report.add_argument("--seed", type=int, default=0)
    return {"analyze": run_analyze, "experiment": run_experiment, "report": run_report}


def run_analyze(args: argparse.Namespace) -> int:
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.analysis import gradient_plots

    if bool(args.runs) == bool(args.fresh):
        raise UserError("give run directories, or --fresh CELL... for untrained models (not both)")
    args.out = args.out or ("gradient_flow_fresh.png" if args.fresh else "gradient_flow.png")
    _check_writable(args.out, "-o")
    if args.jacobian:
        _check_writable(args.jacobian, "--jacobian")
    replaced = [p for p in (args.out, args.jacobian) if p and Path(p).exists()]
    if args.fresh and args.text:
        raise UserError("--text is for runs; --fresh models read random token sequences")
    text = None
    if args.text:
        from rnnkit.analysis.runs import read_text_file

        text = read_text_file(args.text, 10**7)
    flows: dict[str, dict] = {}
    options = {"length": args.length, "batch": args.batch, "loss": args.loss, "seed": args.seed}
    for run in args.runs:
        name = _run_name(run)
        flows[name] = gf.run_gradient_flow(run, text=text, **options)
    for cell in args.fresh or ():
        flows[cell.upper()] = {
            "fresh": gf.fresh_gradient_flow(
                cell,
                hidden=args.hidden,
                forget_bias=args.forget_bias if cell == "lstm" else 0.0,
                **options,
            )
        }
    # the pictures and the lines name the forget-gate bias the fresh LSTM had
    bias = f" (forget-gate bias {args.forget_bias:g})" if "lstm" in (args.fresh or ()) else ""
    shown = {name + (bias if name == "LSTM" else ""): pair for name, pair in flows.items()}
    gradient_plots.plot_gradient_flow(shown, Path(args.out))
    if args.jacobian:
        gradient_plots.plot_jacobian_spectrum(shown, Path(args.jacobian))
    summary = {
        name: {when: gf.summary(flow) for when, flow in pair.items()}
        for name, pair in flows.items()
    }
    if bias:
        summary["LSTM"]["fresh"]["forget_bias"] = args.forget_bias
    if args.json:
        print(json.dumps(summary))
    else:
        for name, pair in summary.items():
            for when, numbers in pair.items():
                figures = ", ".join(f"{k} {_fmt(v)}" for k, v in numbers.items())
                print(f"{name} ({when}): {figures}")
        print(f"wrote {args.out}" + (f" and {args.jacobian}" if args.jacobian else ""))
    if replaced:  # never silently: the trained model's figure may have been one of them
        print(f"replaced the previous {' and '.join(replaced)}", file=sys.stderr)
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    from rnnkit.analysis import experiment_plots

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
        progress = None if args.json else (lambda trial: print(_trial_line(trial), flush=True))
        result = memory_experiment(
            **{k: v for k, v in options.items() if v is not None},
            workers=args.workers,
            progress=progress,
        )
        payload = result.to_json()
        if out is not None:
            with writing(out / "memory.png"):
                experiment_plots.plot_memory(result, out / "memory.png")
            _write_json(out / "memory.json", payload)
        print(json.dumps(payload) if args.json else format_table(result))
        return 0
    from rnnkit.analysis.exploding import exploding_experiment, summarize

    kwargs = {"seed": args.seed} | ({"steps": args.steps} if args.steps else {})
    runs = exploding_experiment(**kwargs)
    payload = summarize(runs)
    if out is not None:
        with writing(out / "exploding.png"):
            experiment_plots.plot_exploding(runs, out / "exploding.png")
        _write_json(out / "exploding.json", payload)
    if args.json:
        print(json.dumps(payload))
    else:
        for mode, numbers in payload.items():
            print(f"clip {mode}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in numbers.items()))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from rnnkit.analysis import report

    out = args.out or ("report.html" if args.format == "html" else "report-figures")
    if args.format == "html":
        _check_writable(out, "-o")
    else:
        report.check_png_dir(out)
        make_dir(out, "-o")
    text = None
    if args.text:
        from rnnkit.analysis.runs import read_text_file

        text = read_text_file(args.text, max(args.chars, 20000))
    data = report.collect(
        args.run,
        text=text,
        chars=args.chars,
        gradient_length=args.length,
        sample_length=args.sample_length,
        seed=args.seed,
        log=lambda message: print(message, file=sys.stderr),  # progress; stdout names the files
    )
    if args.format == "html":
        path = report.write_html(data, out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained)")
    else:
        for path in report.write_pngs(data, out):
            print(f"wrote {path}")
    return 0


def make_dir(path: str | Path, flag: str) -> Path:
    """Create the output directory ``path`` (and its parents) before any work is done."""
    target = Path(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot create the directory ({error.strerror})") from None
    return target


def _write_json(path: Path, payload: dict) -> None:
    """Atomically (a temp file, then rename): a failed write leaves no half JSON behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path):
        try:
            tmp.write_text(json.dumps(payload, indent=1))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _check_writable(path: str, flag: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    if not target.parent.is_dir():
        raise UserError(f"{flag} {path}: the directory {target.parent} does not exist")


def _run_name(run: str) -> str:
    path = Path(run)
    return path.parent.name if path.name in ("best", "last") else path.name


def _trial_line(trial) -> str:
    mark = "solved" if trial.success else "failed"
    return (
        f"{trial.task:6s} {trial.cell:4s} T={trial.T:<4d} seed {trial.seed}: loss/baseline "
        f"{trial.ratio:.3f} {mark} ({trial.seconds:.0f} s)"
    )


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
