"""Training speed of the minimal RNNs: MinGRU vs torch.nn.GRU and MinLSTM vs torch.nn.LSTM,
forward + backward, interleaved -- the ``minimal`` section of ``rnnkit bench``
(:mod:`rnnkit.benchmark.minimal` describes the measurement) with every size and the minimal
layers' path as options.

    python benchmarks/minimal.py                         # L 2048, N 16, H 256, impl auto
    python benchmarks/minimal.py --impl scan --seq-len 512 --threads 1 --json min.json

Timings are never asserted: the machines are shared and noisy; only ratios measured side by
side mean anything.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from rnnkit.benchmark.minimal import SHAPE, measure_minimal

TARGET = 3.0  # mingru_over_gru


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in SHAPE.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--impl", choices=("auto", "fused", "scan", "sequential"), default="auto",
                        help="the minimal layers' path")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shape = {name: getattr(args, name) for name in SHAPE}
    print(f"torch {torch.__version__} | python {platform.python_version()} | "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(", ".join(f"{k} {v}" for k, v in shape.items()) + f", impl {args.impl}, float32, "
          f"fwd+bwd of out.sum(); median of {args.rounds} interleaved rounds")  # fmt: skip
    speed = measure_minimal(args.rounds, impl=args.impl, **shape)
    for name, seconds in speed._asdict().items():
        print(f"  {name.removesuffix('_s'):<10}{seconds:10.4f} s")
    verdict = "met" if speed.mingru_over_gru >= TARGET else "missed"
    print(f"  mingru_over_gru    {speed.mingru_over_gru:6.2f}x  (target >= {TARGET:g}: {verdict})")
    print(f"  minlstm_over_lstm  {speed.minlstm_over_lstm:6.2f}x")
    out = {**shape, "impl": args.impl, "rounds": args.rounds, "threads": torch.get_num_threads(),
           **speed._asdict(), "mingru_over_gru": speed.mingru_over_gru,
           "minlstm_over_lstm": speed.minlstm_over_lstm}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
