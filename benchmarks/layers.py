"""Forward+backward throughput of rnnkit.LSTM/GRU (fused and cells paths) against torch.nn.

Each measurement is one forward pass over a (length, batch, 64) float32 seq-first input plus the
backward pass of ``out.sum()``, with every gradient reset to None first. Three contenders per
shape -- torch.nn, rnnkit ``impl="fused"`` and rnnkit ``impl="cells"``, all holding the same
weights -- are timed side by side in one run: within every repeat each runs once, in an order
that rotates from repeat to repeat, and the table reports medians over the repeats as chars/s
(batch * length / seconds) with the ratios fused/torch and cells/fused.

Run it with ``python benchmarks/layers.py`` (``--quick`` for a smoke run, ``--help`` for the
options) or ``make bench``. It is never asserted in the tests: the machines are shared and noisy,
so absolute numbers mean little and only ratios measured side by side in one run mean anything.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time

import torch
from torch import nn

import rnnkit
from rnnkit.benchmark.machine import cpu_model

INPUT_SIZE, LENGTH = 64, 100
CELLS = {"lstm": (nn.LSTM, rnnkit.LSTM), "gru": (nn.GRU, rnnkit.GRU)}
CONTENDERS = ("torch", "fused", "cells")
TARGET_FUSED, TARGET_CELLS = 0.97, 0.33  # fused/torch at every shape; cells/fused at hidden 512


def make_contenders(cell: str, hidden: int) -> dict[str, nn.Module]:
    """torch.nn's layer and two rnnkit layers (fused, cells) holding the same weights."""
    torch_cls, ours_cls = CELLS[cell]
    theirs = torch_cls(INPUT_SIZE, hidden)
    modules = {"torch": theirs}
    for impl in ("fused", "cells"):
        ours = ours_cls(INPUT_SIZE, hidden, impl=impl)
        ours.load_state_dict(theirs.state_dict())
        assert ours.use_fused == (impl == "fused")
        modules[impl] = ours
    return modules


def step_seconds(module: nn.Module, x: torch.Tensor) -> float:
    """Seconds for one forward + backward of ``out.sum()``, gradients reset first."""
    for p in module.parameters():
        p.grad = None
    start = time.perf_counter()
    out, _ = module(x)
    out.sum().backward()
    return time.perf_counter() - start


def measure(cell: str, hidden: int, batch: int, repeats: int, warmup: int) -> dict:
    """Median chars/s of each contender at one shape, interleaved with a rotating order."""
    torch.manual_seed(0)
    modules = make_contenders(cell, hidden)
    x = torch.randn(LENGTH, batch, INPUT_SIZE)
    for name, _ in itertools.product(CONTENDERS, range(warmup)):
        step_seconds(modules[name], x)
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for r in range(repeats):
        k = r % len(CONTENDERS)
        for name in CONTENDERS[k:] + CONTENDERS[:k]:
            times[name].append(step_seconds(modules[name], x))
    rate = {name: batch * LENGTH / statistics.median(ts) for name, ts in times.items()}
    return {
        "cell": cell,
        "hidden": hidden,
        "batch": batch,
        "length": LENGTH,
        "repeats": repeats,
        **{f"{name}_chars_per_s": rate[name] for name in CONTENDERS},
        "fused/torch": rate["fused"] / rate["torch"],
        "cells/fused": rate["cells"] / rate["fused"],
    }


def print_row(row: dict | None) -> None:
    if row is None:
        heads = ("cell", "hidden", "batch", "torch c/s", "fused c/s", "cells c/s")
        print(f"{heads[0]:<5}{heads[1]:>7}{heads[2]:>6}", end="")
        print("".join(f"{h:>12}" for h in heads[3:]) + f"{'fused/torch':>13}{'cells/fused':>13}")
        return
    print(f"{row['cell']:<5}{row['hidden']:>7}{row['batch']:>6}", end="")
    print("".join(f"{row[f'{n}_chars_per_s']:>12,.0f}" for n in CONTENDERS), end="")
    print(f"{row['fused/torch']:>13.3f}{row['cells/fused']:>13.3f}", flush=True)


def summarize(rows: list[dict]) -> dict:
    """Minimum and median fused/torch; cells/fused at hidden 512; a verdict for each."""
    fused = [r["fused/torch"] for r in rows]
    cells = [r["cells/fused"] for r in rows if r["hidden"] == 512]
    summary = {"fused/torch min": min(fused), "fused/torch median": statistics.median(fused)}
    if cells:
        summary["cells/fused@512 min"] = min(cells)
        summary["cells/fused@512 median"] = statistics.median(cells)
    print("\nsummary")
    for key, value in summary.items():
        target = TARGET_FUSED if key.startswith("fused") else TARGET_CELLS
        verdict = "target met" if value >= target else "target missed"
        print(f"  {key:<24}{value:7.3f}   (target >= {target:.2f}: {verdict})")
        summary[key] = {"value": value, "target": target, "met": value >= target}
    if not cells:
        print("  cells/fused@512         (no hidden-512 shape in this run: not judged)")
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per shape")
    parser.add_argument("--quick", action="store_true", help="one shape per cell, few repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        shapes, repeats, warmup = [(c, 128, 32) for c in CELLS], args.repeats or 9, 2
    else:
        shapes = list(itertools.product(CELLS, (128, 512), (32, 64)))
        repeats, warmup = args.repeats or 30, 3
    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }
    print(" | ".join(f"{k} {v}" for k, v in machine.items()))
    print(
        f"input {INPUT_SIZE}, length {LENGTH}, float32, seq-first, 1 layer, "
        f"fwd+bwd of out.sum(); median of {repeats} interleaved repeats, {warmup} warm-up\n"
    )
    print_row(None)
    rows = []
    for cell, hidden, batch in shapes:
        rows.append(measure(cell, hidden, batch, repeats, warmup))
        print_row(rows[-1])
    summary = summarize(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": rows, "summary": summary}, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
