"""Generation speed: rnnkit ``generate()`` against the loops a user writes by hand, 1 and 64
streams, and against the memory-bandwidth bound -- the ``generation`` section of ``rnnkit bench``
(:mod:`rnnkit.benchmark.generation` describes the contenders and the figures) for several
thread counts, optionally by CPU time.

    python benchmarks/generation.py                      # threads 1 and 2, wall clock
    python benchmarks/generation.py --threads 1 --clock cpu --json gen.json
    python benchmarks/generation.py --quick              # a smoke run

Timings are never asserted: the machines are shared and noisy; only ratios measured side by
side mean anything.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from rnnkit.benchmark.generation import measure_generation

TARGETS = {"gen_ratio_vs_loop": 2.0, "gen_bandwidth_fraction": 0.6, "gen_batch64_over_single": 20.0}


def measure(threads: int, clock: str = "wall", **sizes) -> dict:
    """The ``gen_*`` figures with ``torch.set_num_threads(threads)``; ``sizes`` go to
    :func:`measure_generation`."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        speed = measure_generation(clock=clock, **sizes)
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "clock": clock, **sizes, **speed.figures()}


def print_result(r: dict) -> None:
    print(f"\nthreads {r['threads']}, {r['clock']} clock, median of {r['rounds']} rounds")
    for label, key in (("rnnkit generate()", "gen_chars_per_s"),
                       ("nn.LSTM loop", "gen_loop_chars_per_s"),
                       ("nn.LSTMCell loop", "gen_loop_cell_chars_per_s"),
                       ("rnnkit x64 streams", "gen_batch64_chars_per_s")):  # fmt: skip
        print(f"  {label:<22}{r[key]:>12,.0f} chars/s")
    print(
        f"  {r['gen_weight_mb_per_step']:.1f} MB of weights per step; copy 256 MB "
        f"{r['gen_copy_gbps']:.1f} GB/s -> bound {r['gen_bound_chars_per_s']:,.0f} chars/s; "
        f"weights-sized {r['gen_cache_copy_gbps']:.1f} GB/s -> "
        f"{r['gen_cache_bound_chars_per_s']:,.0f} chars/s"
    )
    print(f"  64 streams compute {r['gen_batch64_gflops']:.1f} GFLOP/s (2 FLOPs per weight)")
    print(f"  the loops and generate() draw the same text: {r['gen_text_equals_loop']}")
    for key, target in TARGETS.items():
        verdict = "met" if r[key] >= target else "missed"
        print(f"  {key:<30}{r[key]:8.2f}   (target >= {target:g}: {verdict})")
    print(f"  {'gen_ratio_vs_loop_cell':<30}{r['gen_ratio_vs_loop_cell']:8.2f}")
    print(f"  {'gen_cache_bandwidth_fraction':<30}{r['gen_cache_bandwidth_fraction']:8.2f}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved timed rounds")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the process's CPU time (one thread only)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: short texts, 1 round")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and max(args.threads) > 1:
        parser.error("--clock cpu counts every thread's time: use it with --threads 1")
    sizes = {"rounds": 1, "length": 8, "batch_length": 4} if args.quick else {
        "rounds": args.repeats, "length": 200, "batch_length": 50}  # fmt: skip
    print(f"torch {torch.__version__} | python {platform.python_version()} | {platform.machine()}")
    print("model: vocabulary 65, embedding 64, 2-layer LSTM 512, float32, random weights")
    out = {"results": []}
    for threads in args.threads:
        out["results"].append(measure(threads, args.clock, **sizes))
        print_result(out["results"][-1])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()
