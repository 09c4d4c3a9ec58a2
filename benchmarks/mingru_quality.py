"""MinGRU against the LSTM on Tiny Shakespeare for the same wall-clock budget.

    python benchmarks/mingru_quality.py                      # 900 s each, side by side
    python benchmarks/mingru_quality.py --max-time 120 --cells lstm mingru minlstm
    python benchmarks/mingru_quality.py --hidden mingru=928     # MinGRU of the LSTM's size

Each cell trains the `quality` preset (2 layers of 384, embedding 64, dropout 0.25, chunks of 64
x 32 streams, Adam with a cosine schedule) from scratch with ``--cell CELL``, all cells at once,
one thread each, so they share the machine's state. The cosine schedule must end when the time
does: a short probe (``--probe-steps`` steps of each cell, also side by side) measures each
cell's steps/s, and each run gets ``max_steps = 0.93 x steps/s x budget`` (the margin covers
evaluations). Then ``rnnkit eval`` scores the best checkpoint on the whole validation split.
Printed, never asserted (timed runs on a shared machine).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rnnkit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def train_all(cells: list[str], workdir: Path, tag: str, extra: dict[str, list[str]]) -> dict:
    """Train every cell at once; {cell: (wall seconds, stdout)}."""
    runs, start = {}, time.perf_counter()
    for cell in cells:
        runs[cell] = rnnkit(
            "train",
            "--preset",
            "quality",
            "--cell",
            cell,
            "--threads",
            "1",
            "--sample-every",
            "0",
            "--out",
            str(workdir / f"{tag}-{cell}"),
            *extra[cell],
        )
    done = {}
    for cell, process in runs.items():
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"training --cell {cell} failed: {stderr.strip()}")
        done[cell] = (time.perf_counter() - start, stdout)
    return done


def stopped_step(stdout: str) -> int:
    line = [line for line in stdout.splitlines() if line.startswith("stopped")][-1]
    return int(line.split("at step ")[1].split(":")[0].replace(",", ""))


def main(argv: list[str] | None = None, cells=("lstm", "mingru"), doc: str = __doc__) -> None:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(cells))
    parser.add_argument("--max-time", type=float, default=900.0, help="seconds per cell")
    parser.add_argument("--probe-steps", type=int, default=60)
    parser.add_argument(
        "--hidden",
        action="append",
        default=[],
        metavar="CELL=H",
        help="another width for one cell (e.g. mingru=928: the LSTM's parameter count)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    widths = dict(item.split("=") for item in args.hidden)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        probe = ["--max-steps", str(args.probe_steps), "--eval-every", "100000", "--log-every", "5"]
        sized = {c: ["--hidden", widths[c]] if c in widths else [] for c in args.cells}
        probed = train_all(args.cells, workdir, "probe", {c: probe + sized[c] for c in args.cells})
        rates = {}
        for cell in probed:
            with open(workdir / f"probe-{cell}" / "metrics.csv", newline="") as f:
                rows = [r for r in csv.DictReader(f) if r["kind"] == "train"]
            elapsed = [float(r["elapsed_s"]) for r in rows]
            steps = [int(r["step"]) for r in rows]
            rates[cell] = (steps[-1] - steps[0]) / (elapsed[-1] - elapsed[0])
        extra = {}
        for cell in args.cells:
            steps = max(100, int(0.93 * rates[cell] * args.max_time))
            print(f"--cell {cell}: {rates[cell]:.2f} steps/s in the probe -> {steps} steps")
            every = str(max(50, steps // 5))
            extra[cell] = ["--max-steps", str(steps), "--max-time", str(args.max_time)]
            extra[cell] += ["--eval-every", every, *sized[cell]]
        print(f"training {', '.join(args.cells)} side by side for {args.max_time:.0f} s ...")
        trained = train_all(args.cells, workdir, "run", extra)
        for cell, (wall, stdout) in trained.items():
            scored = subprocess.run(
                [sys.executable, "-m", "rnnkit", "eval", str(workdir / f"run-{cell}"), "--json"],
                capture_output=True,
                text=True,
            )
            if scored.returncode != 0:
                raise SystemExit(f"eval failed: {scored.stderr.strip()}")
            params = [line for line in stdout.splitlines() if "parameters" in line][0]
            results.append(
                {
                    "cell": cell,
                    "model": params.split(": ", 1)[1].split(",")[0],  # e.g. "LSTM 2x384"
                    "steps": stopped_step(stdout),
                    "wall_s": round(wall, 1),
                    "parameters": params.split(" parameters")[0].split(", ")[-1],
                    **json.loads(scored.stdout),
                }
            )
    head = f"{'model':<14}{'parameters':>12}{'steps':>8}{'wall':>8}{'val nats/char':>15}"
    print(f"\n{head}{'bits':>8}")
    for r in results:
        print(
            f"{r['model']:<14}{r['parameters']:>12}{r['steps']:>8}{r['wall_s']:>7.0f}s"
            f"{r['loss']:>15.4f}{r['bpc']:>8.4f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
