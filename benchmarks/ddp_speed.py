"""Training speed in one process against N processes (torchrun + DDP) on this machine.

    python benchmarks/ddp_speed.py                         # default preset, 1 vs 2 processes
    python benchmarks/ddp_speed.py --nproc 2 --batch-size 64 --steps 120 --rounds 3

Both contenders train the same model on the same global batch with all of the machine's cores:
one process with ``cores`` threads, and ``rnnkit train --nproc N`` with ``cores // N`` threads
per process. Rounds alternate the two; the figure of a run is the median chars/s of its logged
windows after the first (``metrics.csv``; under torchrun chars/s counts every rank's), and the
median over rounds is printed with the ratio. Never asserted in tests (the machines are shared).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def train(out: Path, nproc: int, threads: int, args: argparse.Namespace) -> float:
    """Median chars/s of one run (``--nproc 1`` is a plain one-process run)."""
    command = [sys.executable, "-m", "rnnkit", "train", "--preset", args.preset]
    command += ["--batch-size", str(args.batch_size), "--max-steps", str(args.steps)]
    command += ["--eval-every", str(args.steps), "--sample-every", "0", "--log-every", "10"]
    command += ["--threads", str(threads), "--nproc", str(nproc), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed: {done.stderr.strip()[-2000:]}")
    with open(out / "metrics.csv", newline="") as f:
        speeds = [float(r["chars_per_s"]) for r in csv.DictReader(f) if r["kind"] == "train"]
    return statistics.median(speeds[1:] or speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    threads = max(1, args.cores // args.nproc)
    one, many = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one.append(train(Path(tmp) / f"one-{r}", 1, args.cores, args))
            many.append(train(Path(tmp) / f"many-{r}", args.nproc, threads, args))
            print(f"round {r + 1}: 1 process {one[-1]:,.0f} chars/s, {args.nproc} processes "
                  f"{many[-1]:,.0f} chars/s", flush=True)  # fmt: skip
    result = {
        "preset": args.preset,
        "global_batch": args.batch_size,
        "one_process_chars_per_s": statistics.median(one),
        "one_process_threads": args.cores,
        "nproc": args.nproc,
        "threads_per_process": threads,
        "nproc_chars_per_s": statistics.median(many),
    }
    result["nproc_over_one"] = result["nproc_chars_per_s"] / result["one_process_chars_per_s"]
    one_speed = result["one_process_chars_per_s"]
    print(f"\n1 process x {args.cores} threads : {one_speed:>10,.0f} chars/s")
    print(f"{args.nproc} processes x {threads} thread(s): {result['nproc_chars_per_s']:>10,.0f} "
          f"chars/s  ({result['nproc_over_one']:.2f}x)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
