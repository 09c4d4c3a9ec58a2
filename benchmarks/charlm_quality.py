"""Validation loss of the char-level presets on Tiny Shakespeare, as `make run` trains them.

    python benchmarks/charlm_quality.py                 # default preset, --max-time 120
    python benchmarks/charlm_quality.py --preset quality --max-time 900
    python benchmarks/charlm_quality.py --preset default --preset quality   # both, one run

Each preset trains from scratch on the bundled corpus (contiguous 90/10 split, 2 threads), then
`rnnkit eval` scores the whole validation split. Printed beside the issue's targets and the
reference figures we compete with; never asserted in tests (timed runs on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"default": (120, 1.50), "quality": (900, 1.45)}  # preset: (seconds, nats/char)
REFERENCES = [
    ("nanoGPT char model, CPU recipe, ~2 min", 1.886),
    ("plain PyTorch LSTM script, ~2 min", 1.54),
    ("nanoGPT 10M transformer, A100 GPU", 1.47),
]


def rnnkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True)


def measure(preset: str, seconds: float, threads: int, workdir: Path) -> dict:
    out = workdir / preset
    start = time.perf_counter()
    trained = rnnkit(
        "train",
        "--preset",
        preset,
        "--max-time",
        str(seconds),
        "--threads",
        str(threads),
        "--sample-every",
        "0",
        "--out",
        str(out),
    )
    wall = time.perf_counter() - start
    if trained.returncode != 0:
        raise SystemExit(f"training {preset} failed: {trained.stderr.strip()}")
    scored = rnnkit("eval", str(out / "best"), "--json")
    if scored.returncode != 0:
        raise SystemExit(f"eval failed: {scored.stderr.strip()}")
    last_line = [line for line in trained.stdout.splitlines() if line.startswith("stopped")][-1]
    step = int(last_line.split("at step ")[1].split(":")[0].replace(",", ""))
    return {
        "preset": preset,
        "seconds": seconds,
        "threads": threads,
        "wall_s": round(wall, 1),
        "steps": step,
        **json.loads(scored.stdout),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=sorted(TARGETS))
    parser.add_argument("--max-time", type=float, help="override the preset's time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for preset in args.preset or ["default"]:
            seconds = args.max_time or TARGETS[preset][0]
            print(f"training preset {preset!r} for {seconds:.0f} s ...", flush=True)
            results.append(measure(preset, seconds, args.threads, Path(workdir)))
    print(f"\n{'preset':<9}{'budget':>8}{'steps':>7}{'val nats/char':>15}{'bits/char':>11}  target")
    for r in results:
        target = TARGETS[r["preset"]][1]
        verdict = "met" if r["loss"] <= target else "MISSED"
        print(
            f"{r['preset']:<9}{r['seconds']:>7.0f}s{r['steps']:>7}{r['loss']:>15.4f}"
            f"{r['bpc']:>11.4f}  <= {target} ({verdict})"
        )
    print("\nfor scale (published figures, val nats/char):")
    for name, value in REFERENCES:
        print(f"  {name:<42}{value:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
