"""Crash safety, measured by killing: SIGKILL ``rnnkit train`` N times, resume, check everything.

Each trial kills a training subprocess (tiny LSTM, one thread, a checkpoint every 2 steps) at a
random time, a moment after a random step, or inside a checkpoint write (once its folder holds a
chosen number of files, or as the replaced copy is removed), checks that every checkpoint on
disk loads and that --resume continues from the newest one, and resumes it.
Each training run (``--kills-per-run`` trials) is then left to finish and compared with one
uninterrupted run of the same command: final step, weights, optimiser/RNG state, best weights
and metrics.csv rows must be equal, bit for bit. The logic is ``killtest/`` beside it.

    python benchmarks/chaos.py --trials 20 --seed 0
    python benchmarks/chaos.py --trials 3 --steps 10 --json     # a smoke run

Printed: one row per kill (the plan, when it landed, the step logged, the step resumed from,
where in the program it landed), then the summary figures. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from killtest.episodes import ChaosReport, ChaosSettings, run_chaos


def figures(report: ChaosReport) -> dict:
    """The summary: what the kills hit, what was checked, whether every run ended exact."""
    kills, runs = report.kills, report.episodes
    phase = lambda prefix: sum(k.phase.startswith(prefix) for k in kills)  # noqa: E731
    every = lambda key: bool(runs) and all(run[key] for run in runs)  # noqa: E731
    return {
        "trials (kills)": len(kills),
        "kills during a checkpoint write": sum(k.in_write for k in kills),
        "  leaving a half-written copy": phase("writing"),
        "  between its two renames": phase("between"),
        "  removing the replaced copy": phase("removing"),
        "kills before the first checkpoint": sum(k.resume_step is None for k in kills),
        "checkpoints verified": sum(k.checkpoints for k in kills),
        "resumes": report.resumes,
        "fresh starts": report.fresh_starts,
        "fresh starts blocked by metrics.csv": report.blocked_starts,
        "max steps redone after a kill": max((k.redone for k in kills), default=0),
        "training runs": len(runs),
        "final step = max steps": every("final_step_ok"),
        "final weights equal": every("weights_equal"),
        "final training state equal": every("state_equal"),
        "best weights equal": every("best_equal"),
        "metrics.csv rows equal": every("metrics_equal"),
        "stale copies left": sum(len(run["stale"]) for run in runs),
        "failures": len(report.failures),
        "reference run (s)": round(report.reference_s, 2),
        "wall time (s)": round(report.wall_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="kills in all")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill moments")
    parser.add_argument("--kills-per-run", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="--max-steps of each run")
    parser.add_argument("--eval-every", type=int, default=2, help="a checkpoint every K steps")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="rnnkit-chaos-"))
    settings = ChaosSettings(steps=args.steps, eval_every=args.eval_every)
    try:
        report = run_chaos(
            root, trials=args.trials, seed=args.seed, kills_per_run=args.kills_per_run,
            settings=settings,
        )  # fmt: skip
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    summary = figures(report)
    if args.json:
        kills = [{**asdict(k), "redone": k.redone} for k in report.kills]
        runs, failures = report.episodes, report.failures
        out = {"summary": summary, "kills": kills, "runs": runs, "failures": failures}
        print(json.dumps(out, indent=2))
        return 1 if report.failures else 0
    print(f"{'#':>3} {'run':>3}  {'plan':<22} {'at s':>6} {'logged':>6} {'resume':>6} "
          f"{'redone':>6}  {'ckpts':>5}  where the kill landed")  # fmt: skip
    for i, k in enumerate(report.kills, 1):
        resume = "-" if k.resume_step is None else k.resume_step
        print(f"{i:>3} {k.episode:>3}  {k.plan:<22} {k.at_s:>6.2f} {k.logged_step:>6} "
              f"{resume:>6} {k.redone:>6}  {k.checkpoints:>5}  {k.phase}")  # fmt: skip
    print()
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {'yes' if value is True else 'no' if value is False else value}")
    for failure in report.failures:
        print(f"FAILED: {failure}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
