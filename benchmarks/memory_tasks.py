"""Long-range memory: RNN vs LSTM vs GRU at the same parameter budget on the adding problem and
the copy/recall task, as the sequence length T grows (rnnkit.analysis.memory).

    python benchmarks/memory_tasks.py          # the full grid: 108 trials, ~20 min, 2 workers
    python benchmarks/memory_tasks.py --tasks adding --cells lstm --lengths 10 100 --seeds 1
    python benchmarks/memory_tasks.py --plot docs/memory.png --json

Every trial trains a fresh 1-layer model (hidden size chosen so that recurrent layer + readout
stay within --budget parameters) for at most --steps Adam steps on fresh batches and scores it on
a held-out batch of 1000 sequences; success = test loss < margin x the trivial baseline (1/6 for
adding, about ln 8 for copy). The same setting for every cell. Each trial is printed as it ends,
then the table: per task, successes/seeds and the mean loss/baseline ratio at each T.

Calibration of the defaults (budget 5000, <= 1500 steps of batch 32, Adam lr 0.01, clip 1.0),
on the 2-core machine, one thread per worker, two workers busy. Milliseconds per training step:

    T      RNN   LSTM   GRU     (torch's CPU GRU kernel is the slow one)
    100     13     6     21
    400     37    21    100

so a trial that runs all 1500 steps takes ~20 s (RNN), ~8 s (LSTM), ~33 s (GRU) at T=100 and
~56 s, ~32 s, ~150 s at T=400; solved trials stop early (most GRU and short-T LSTM ones).
Measured with --seeds 1: the adding grid took 136 s and the copy grid 382 s (the latter with
another process competing for the cores), so the full default run is ~18 min on an idle
machine and ~25 min on a busy one. Seed 0 solved: adding -- RNN T=10 only, LSTM up to T=100,
GRU up to T=400; copy -- RNN and LSTM T=10 only, GRU up to T=50.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rnnkit.analysis.memory import (
    CELLS,
    DEFAULT_LENGTHS,
    DEFAULTS,
    TASKS,
    Trial,
    format_table,
    memory_experiment,
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--lengths", nargs="+", type=int, default=list(DEFAULT_LENGTHS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="at most, per trial")
    parser.add_argument("--budget", type=int, default=DEFAULTS["budget"], help="parameters")
    parser.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--margin", type=float, default=DEFAULTS["margin"])
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--plot", metavar="PATH", help="write the success-rate figure here")
    return parser.parse_args(argv)


def trial_line(trial: Trial) -> str:
    verdict = "solved" if trial.success else "failed"
    return (
        f"  {trial.task:<6} {trial.cell:<4} T={trial.T:<4} seed {trial.seed}: loss/baseline "
        f"{trial.ratio:.3f} {verdict} after {trial.steps_run} steps, {trial.seconds:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(1)
    settings = (
        f"budget {args.budget} params, at most {args.steps} Adam steps of batch {args.batch}, "
        f"lr {args.lr}, clip {DEFAULTS['clip']}, success = loss < {args.margin} x baseline; "
        f"{args.seeds} seeds, {args.workers} workers"
    )
    if not args.json:
        print(settings, flush=True)

    def progress(trial: Trial) -> None:
        if not args.json:
            print(trial_line(trial), flush=True)

    start = time.perf_counter()
    result = memory_experiment(
        args.tasks,
        args.cells,
        args.lengths,
        args.seeds,
        steps=args.steps,
        budget=args.budget,
        batch=args.batch,
        lr=args.lr,
        margin=args.margin,
        workers=args.workers,
        progress=progress,
    )
    wall = time.perf_counter() - start
    if args.plot:
        from rnnkit.analysis.experiment_plots import plot_memory

        plot_memory(result, args.plot)
    if args.json:
        print(json.dumps({**result.to_json(), "wall_seconds": round(wall, 1)}))
        return
    print(format_table(result))
    figure = f"; figure {args.plot}" if args.plot else ""
    print(f"{len(result.trials)} trials in {wall:.0f} s{figure}")


if __name__ == "__main__":
    main()
