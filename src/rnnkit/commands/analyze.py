"""``rnnkit analyze``: probe a model -- gradient flow through time (``rnnkit.analysis``).

rnnkit analyze gradients RUN [RUN...] [-o gradient_flow.png] [--json]
rnnkit analyze gradients --fresh rnn lstm gru          # -o gradient_flow_fresh.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnkit.commands.args import (
    add_device,
    add_threads,
    check_writable,
    deprecated,
    positive,
    run_name,
    use_device,
    use_threads,
)
from rnnkit.errors import UserError
from rnnkit.nn.registry import where


def add_parser(commands) -> None:
    analyze = commands.add_parser("analyze", help="probe a model: gradient flow through time")
    probes = analyze.add_subparsers(dest="probe", required=True, parser_class=type(analyze))
    grads = probes.add_parser("gradients", help="||dL/dh_k|| and step-Jacobian spectra")
    grads.add_argument("runs", nargs="*", metavar="RUN", help="run directories or checkpoints")
    grads.add_argument(
        "--fresh", nargs="+", choices=where(probes=True), help="untrained models of these cells"
    )
    grads.add_argument("--hidden", type=positive, default=128, help="(--fresh) hidden units")
    grads.add_argument(
        "--forget-bias", type=float, default=0.0, help="(--fresh) LSTM forget-gate bias at init"
    )
    grads.add_argument("--text", metavar="FILE", help="text to read (default: the run's val text)")
    grads.add_argument("--length", type=positive, default=100, help="steps back from the loss")
    grads.add_argument("--batch", type=positive, default=16, help="windows averaged over")
    grads.add_argument("--loss", choices=("last", "sum"), default="last", help="loss position(s)")
    grads.add_argument("--seed", type=int, default=0, help="windows and fresh weights")
    grads.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the plot to write (default: gradient_flow.png, with --fresh gradient_flow_fresh.png)",
    )
    deprecated(grads, "--out", "--output", metavar="FILE")
    grads.add_argument("--jacobian", metavar="PNG", help="also plot the step-Jacobian spectra")
    grads.add_argument("--json", action="store_true", help="print one JSON object")
    add_threads(grads)
    add_device(grads)


def run(args: argparse.Namespace) -> int:
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.analysis import gradient_plots

    use_threads(args)
    device = use_device(args)  # a missing device is refused before any model is read
    if bool(args.runs) == bool(args.fresh):
        raise UserError("give run directories, or --fresh CELL... for untrained models (not both)")
    args.output = args.output or ("gradient_flow_fresh.png" if args.fresh else "gradient_flow.png")
    check_writable(args.output, "-o")
    if args.jacobian:
        check_writable(args.jacobian, "--jacobian")
    replaced = [p for p in (args.output, args.jacobian) if p and Path(p).exists()]
    if args.fresh and args.text:
        raise UserError("--text is for runs; --fresh models read random token sequences")
    text = None
    if args.text:
        from rnnkit.analysis.runs import read_text_file

        text = read_text_file(args.text, 10**7)
    flows: dict[str, dict] = {}
    options = {"length": args.length, "batch": args.batch, "loss": args.loss, "seed": args.seed}
    options["device"] = device
    for run in args.runs:
        name = run_name(run)
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
    gradient_plots.plot_gradient_flow(shown, Path(args.output))
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
                figures = ", ".join(f"{k} {fmt(v)}" for k, v in numbers.items())
                print(f"{name} ({when}): {figures}")
        print(f"wrote {args.output}" + (f" and {args.jacobian}" if args.jacobian else ""))
    if replaced:  # never silently: the trained model's figure may have been one of them
        print(f"replaced the previous {' and '.join(replaced)}", file=sys.stderr)
    return 0


def fmt(value) -> str:
    """A figure in a printed line: 4 significant digits for a float."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
