"""``rnnkit report``: an HTML report (or PNG figures) of a run (``rnnkit.analysis.report``).

rnnkit report runs/charlm -o report.html          # one self-contained page
rnnkit report runs/charlm --format png --out figures/
"""

from __future__ import annotations

import argparse
import sys

from rnnkit.commands.args import (
    add_device,
    add_threads,
    check_writable,
    make_dir,
    positive,
    use_device,
    use_threads,
)
from rnnkit.errors import UserError


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="an HTML report (or PNG figures) of a run")
    report.add_argument("run", metavar="RUN", help="run directory or checkpoint")
    report.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the HTML file to write (default: report.html); with --format png, the directory "
        "of the PNGs (default: report-figures)",
    )
    report.add_argument("--out", metavar="DIR", help="the directory of the PNGs (--format png)")
    report.add_argument(
        "--format", choices=("html", "png"), default="html", help="one page, or one PNG a figure"
    )
    report.add_argument("--text", metavar="FILE", help="text to trace (default: the run's val)")
    report.add_argument("--chars", type=positive, default=1000, help="characters to trace")
    report.add_argument("--length", type=positive, default=100, help="gradient-flow steps")
    report.add_argument(
        "--sample-length", type=positive, default=300, help="characters of the sample shown"
    )
    report.add_argument("--seed", type=int, default=0, help="random seed of the sample")
    add_threads(report)
    add_device(report, help="where the probes, the trace and the samples run: auto, cpu, cuda, "
               "cuda:N or mps (the figures are drawn on the host)")  # fmt: skip


def output(args: argparse.Namespace) -> str:
    """Where the report goes: ``-o/--output`` (the HTML file, or the PNGs' directory), or for
    ``--format png`` the results directory ``--out DIR``. ``--out FILE`` for the HTML page, its
    old spelling, keeps working for one release with a note."""
    if args.format == "html" and args.out is not None:
        print(
            "rnnkit: note: --out for the HTML file is deprecated, use -o/--output", file=sys.stderr
        )
        args.output, args.out = args.output or args.out, None
    if args.output and args.out:
        raise UserError("give -o/--output or --out DIR, not both")
    if args.format == "html":
        return args.output or "report.html"
    return args.output or args.out or "report-figures"


def run(args: argparse.Namespace) -> int:
    from rnnkit.analysis import report

    use_threads(args)
    device = use_device(args)  # a missing device is refused before anything is written
    out = output(args)
    if args.format == "html":
        check_writable(out, "-o")
    else:
        report.check_png_dir(out)
        make_dir(out, "--out")
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
        device=device,
        log=lambda message: print(message, file=sys.stderr),  # progress; stdout names the files
    )
    if args.format == "html":
        path = report.write_html(data, out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained)")
    else:
        for path in report.write_pngs(data, out):
            print(f"wrote {path}")
    return 0
