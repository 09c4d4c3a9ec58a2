"""Steps `make run`'s training reaches in a fixed time, on a quiet and on a busy machine, at
three thread settings side by side.

    python benchmarks/threads.py                       # 120 s per run, the default preset
    python benchmarks/threads.py --seconds 30 --rounds 1

Settings: ``torch default`` (torch's threads, libgomp's own wait policy: idle OpenMP threads spin
300,000 times before they sleep), ``--threads 1``, and ``passive`` (torch's threads with
``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep at once; what ``rnnkit`` sets unless the
environment chooses, so this row runs with neither variable set). "busy" runs one CPU-bound
process (a Python busy loop) beside the training, as a user's other work does. Each run is
``rnnkit train --preset default --max-time S`` (its evaluations and samples included); the
figure is the step it stopped at, median over rounds. Never asserted in tests: the machines
are shared, so say what else was running.
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

SETTINGS = {  # name -> (extra flags, environment)
    "torch default": ([], {"GOMP_SPINCOUNT": "300000"}),  # libgomp's default, made explicit
    "--threads 1": (["--threads", "1"], {"GOMP_SPINCOUNT": "300000"}),
    "passive": ([], {}),  # rnnkit's own default: OMP_WAIT_POLICY=PASSIVE (rnnkit/__init__.py)
}
_OURS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def steps_reached(out: Path, setting: str, args: argparse.Namespace) -> int:
    """The step one time-limited run of the preset stopped at."""
    flags, extra_env = SETTINGS[setting]
    command = [sys.executable, "-m", "rnnkit", "train", "--preset", args.preset]
    command += ["--max-time", str(args.seconds), "--out", str(out), *flags]
    env = {k: v for k, v in os.environ.items() if k not in _OURS} | extra_env
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed: {done.stderr.strip()[-2000:]}")
    with open(out / "metrics.csv", newline="") as f:  # the last row: the final evaluation
        return max(int(row["step"]) for row in csv.DictReader(f))


def busy_process() -> subprocess.Popen:
    """One CPU-bound competitor: a Python busy loop."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seconds", type=float, default=120.0, help="--max-time of each run")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r} (known: {', '.join(SETTINGS)})")
    steps: dict[tuple[str, str], list[int]] = {}
    print(f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for load in ("quiet", "busy"):
                for setting in settings:  # interleaved, so a drift in load hits all alike
                    competitor = busy_process() if load == "busy" else None
                    try:
                        out = Path(tmp) / f"{r}-{load}-{settings.index(setting)}"
                        step = steps_reached(out, setting, args)
                    finally:
                        if competitor is not None:
                            competitor.kill()
                            competitor.wait()
                    steps.setdefault((setting, load), []).append(step)
                    print(f"round {r + 1}, {load}, {setting}: step {step}", flush=True)
    print(f"\nsteps of --preset {args.preset} in {args.seconds:g} s (median of {args.rounds})")
    print(f"{'setting':<16}{'quiet':>8}{'busy':>8}{'busy/quiet':>12}")
    table = {}
    for setting in settings:
        quiet = statistics.median(steps[(setting, "quiet")])
        busy = statistics.median(steps[(setting, "busy")])
        table[setting] = {"quiet": quiet, "busy": busy}
        print(f"{setting:<16}{quiet:>8g}{busy:>8g}{busy / max(quiet, 1):>12.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": args.seconds, "steps": table}, indent=1))


if __name__ == "__main__":
    main()
