"""``rnnkit bench``: measure speed against hand-written PyTorch (``rnnkit.benchmark``).

rnnkit bench                 # everything (~10 minutes on 2 cores)
rnnkit bench --quick         # fewer repeats, a 20 MB corpus, shorter sequences
rnnkit bench --only machine training rss --json
rnnkit bench --only generation minimal cells --threads 1
rnnkit bench --device cuda   # every section on the GPU: its GEMM rate, cuDNN, 1,024 streams
"""

from __future__ import annotations

import argparse
import json

from rnnkit.commands.args import add_device, add_threads, use_device, use_threads


def add_parser(commands) -> None:
    from rnnkit.benchmark.suite import SECTIONS

    bench = commands.add_parser("bench", help="measure speed against hand-written PyTorch")
    bench.add_argument("--only", nargs="+", choices=SECTIONS, help="sections to run (default: all)")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--seed", type=int, default=0, help="random seed of inputs and weights")
    add_device(
        bench,
        help="where every section measures: auto (CUDA if available, else MPS if available, "
        "else the CPU), cpu, cuda, cuda:N or mps",
    )
    add_threads(bench, help="torch threads (0: all cores)")


def run(args: argparse.Namespace) -> int:
    """Measure the chosen sections and print them; exit status 1 if a section failed."""
    import torch

    from rnnkit.benchmark.suite import SECTIONS, measure, table

    device = use_device(args)  # a missing device is refused before any measurement
    use_threads(args)
    torch.manual_seed(args.seed)
    say = (lambda *_: None) if args.json else print
    figures = measure(args.only or SECTIONS, args.quick, say, device)
    print(json.dumps(figures) if args.json else table(figures))
    return 1 if figures.get("failed") else 0
