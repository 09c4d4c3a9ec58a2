"""Time saved by packing ("variable depth") on batches with skewed lengths.

A batch of B sequences whose lengths follow a long tail (most short, a few as long as L) is run
forward + backward four ways over the same weights, side by side, interleaved, medians over the
repeats:

    padded    the whole (L, B) block, every sequence for L steps (what code that ignores the
              lengths computes; its results past each end are wrong and its final state too)
    packed    rnnkit fused path with ``lengths=``: packed, the kernel stops at each end
    torch     torch.nn with pack_padded_sequence (what a careful user writes by hand)
    cells     rnnkit cells path with ``lengths=``: at step t only the sequences still running
    cells-padded  the cells path over the whole block

Printed: the fraction of the block that is padding, times, and the ratios packed/padded and
cells/cells-padded (the share of the padded time packing keeps) and packed/torch.

    python benchmarks/padding.py            # LSTM, hidden 256, B 64, L 200
    python benchmarks/padding.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit

INPUT = 64


def skewed_lengths(batch: int, max_len: int, seed: int = 0) -> torch.Tensor:
    """Long-tailed lengths in [5, max_len]: length = max_len * u**3 (mean about max_len / 4),
    with one sequence at max_len so the padded block is (max_len, batch)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, generator=g)
    lengths = (max_len * u**3).long().clamp(5, max_len)
    lengths[0] = max_len
    return lengths


def contenders(cell: str, hidden: int, lengths: torch.Tensor):
    torch.manual_seed(0)
    theirs = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](INPUT, hidden)
    ours_cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[cell]
    fused, cells = ours_cls(INPUT, hidden, impl="fused"), ours_cls(INPUT, hidden, impl="cells")
    fused.load_state_dict(theirs.state_dict())
    cells.load_state_dict(theirs.state_dict())

    def torch_packed(x):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, _ = theirs(packed)
        return pad_packed_sequence(out, total_length=x.size(0))[0]

    return {
        "padded": (fused, lambda x: fused(x)[0]),
        "packed": (fused, lambda x: fused(x, lengths=lengths)[0]),
        "torch": (theirs, torch_packed),
        "cells": (cells, lambda x: cells(x, lengths=lengths)[0]),
        "cells-padded": (cells, lambda x: cells(x)[0]),
    }


def seconds(module: nn.Module, run, x: torch.Tensor) -> float:
    for p in module.parameters():
        p.grad = None
    start = time.perf_counter()
    run(x).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.hidden, args.batch, args.max_len, args.repeats = 32, 8, 30, 2
    torch.set_num_threads(args.threads)
    lengths = skewed_lengths(args.batch, args.max_len)
    runs = contenders(args.cell, args.hidden, lengths)
    x = torch.randn(args.max_len, args.batch, INPUT)
    names = list(runs)
    for name in names:  # warm-up
        seconds(*runs[name], x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(seconds(*runs[name], x))
    median = {name: statistics.median(t) for name, t in times.items()}
    padding = 1 - lengths.sum().item() / (args.batch * args.max_len)
    result = {
        "cell": args.cell,
        "hidden": args.hidden,
        "batch": args.batch,
        "max_len": args.max_len,
        "padding_fraction": padding,
        **{f"{name}_ms": 1000 * t for name, t in median.items()},
        "packed_over_padded": median["packed"] / median["padded"],
        "cells_over_cells_padded": median["cells"] / median["cells-padded"],
        "packed_over_torch": median["packed"] / median["torch"],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.cell.upper()} hidden {args.hidden}, batch {args.batch}, lengths 5..{args.max_len}"
        f" (mean {lengths.float().mean():.0f}); padding is {padding:.0%} of the block; "
        f"{args.threads} threads, {args.repeats} repeats, forward + backward"
    )
    for name in names:
        print(f"  {name:<13} {1000 * median[name]:9.1f} ms")
    print(
        f"packed/padded {result['packed_over_padded']:.3f} (fused: packing keeps this share of "
        f"the time) | cells/cells-padded {result['cells_over_cells_padded']:.3f} | "
        f"packed/torch {result['packed_over_torch']:.3f}"
    )


if __name__ == "__main__":
    main()
