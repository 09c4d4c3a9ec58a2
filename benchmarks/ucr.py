"""UCR/UEA sequence classification: the `ucr` preset against 1-NN DTW on three archive sets.

    pip install 'rnnkit[bench]'                        # sktime: the sets ship in its wheel
    python benchmarks/ucr.py --out runs/ucr            # 3 sets x --max-time 180 s of training
    python benchmarks/ucr.py --sets ItalyPowerDemand --max-time 60 --out runs/ucr_ipd
    python benchmarks/ucr.py --quick --out /tmp/ucr_quick     # seconds: a smoke run

For each of JapaneseVowels (UEA: 12 channels, lengths 7-29, 9 speakers), ArrowHead (UCR: 251
steps, 3 classes, 36 training cases) and ItalyPowerDemand (UCR: 24 steps, 2 classes): the
official ``<Name>_TRAIN.ts`` / ``<Name>_TEST.ts`` files are read where the installed sktime
wheel keeps them (``sktime/datasets/data/<Name>/``, found with importlib, nothing of sktime
imported to find them); ``rnnkit train --preset ucr TRAIN.ts --max-time T`` trains on the
official train split (20% of it held out to pick ``best/``); ``rnnkit eval RUN TEST.ts``
scores the official test split once. Beside it, in the same run: 1-NN with full-window DTW
(``w = 100%``, the archive's "DTW (w=100)"; for JapaneseVowels the dependent, multivariate
DTW_D) on the same files, with sktime's numba DTW (its public KNeighborsTimeSeriesClassifier
refuses unequal lengths, so the 1-NN argmin is taken here over sktime's distances); and the
archives' published error rates (``PUBLISHED``, with where each comes from). Prints a table and
writes ``OUT/results.json``; figures are never asserted in tests (timed runs on a shared
machine).

``--quick``: the first few cases of each split and the preset shrunk to a 1x8 GRU for a few
steps, so the whole pipeline (files, train, eval, DTW, table) runs in seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETS = ("JapaneseVowels", "ArrowHead", "ItalyPowerDemand")
UCR_SUMMARY = (
    "the UCR archive's DataSummary.csv (Dau et al. 2018, The UCR Time Series Archive, "
    "arXiv:1810.07758; https://www.cs.ucr.edu/~eamonn/time_series_data_2018/), columns "
    "ED (w=0), DTW (learned_w), DTW (w=100): 1-NN test error rates"
)
UEA_TABLE = (
    "Bagnall et al. 2018, The UEA multivariate time series classification archive "
    "(arXiv:1811.00075), its benchmark accuracies as Sun et al., TEST (ICLR 2024) Table 13 "
    "reproduce them (columns EDI, DTWI, DTWD); the 2018 archive padded every set to equal "
    "length, the sktime file keeps JapaneseVowels' own lengths"
)
#: published test accuracies (1 - error) of 1-NN baselines, per set: (label, accuracy, source)
PUBLISHED: dict[str, list[tuple[str, float, str]]] = {
    "ArrowHead": [
        ("1-NN ED", 1 - 0.2000, UCR_SUMMARY),
        ("1-NN DTW (learned w)", 1 - 0.2000, UCR_SUMMARY),
        ("1-NN DTW (w=100%)", 1 - 0.2971, UCR_SUMMARY),
    ],
    "ItalyPowerDemand": [
        ("1-NN ED", 1 - 0.0447, UCR_SUMMARY),
        ("1-NN DTW (learned w)", 1 - 0.0447, UCR_SUMMARY),
        ("1-NN DTW (w=100%)", 1 - 0.0496, UCR_SUMMARY),
    ],
    "JapaneseVowels": [
        ("1-NN ED_I", 0.924, UEA_TABLE),
        ("1-NN DTW_I", 0.959, UEA_TABLE),
        ("1-NN DTW_D", 0.949, UEA_TABLE),
    ],
}
#: --quick: cases kept of each split (at least two classes) and the preset shrunk
QUICK_CASES = 12
QUICK_FLAGS = [
    *("--layers", "1", "--hidden", "8", "--batch-size", "4"),
    *("--max-steps", "6", "--eval-every", "3", "--warmup", "0"),
]


def data_dir() -> Path:
    """Where the installed sktime wheel keeps its archive sets (found, not imported)."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sktime is not installed: pip install 'rnnkit[bench]'")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def set_files(name: str, out: Path, quick: bool) -> tuple[Path, Path]:
    """The official train and test files (in quick mode: copies of their first cases)."""
    folder = data_dir() / name
    files = (folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts")
    for path in files:
        if not path.is_file():
            raise SystemExit(f"{path} is missing: this sktime wheel does not ship {name}")
    if not quick:
        return files
    kept = []
    for path in files:
        target = out / "data" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_first_cases(path.read_text(encoding="utf-8"), QUICK_CASES))
        kept.append(target)
    return kept[0], kept[1]


def _first_cases(text: str, n: int) -> str:
    """The headers and the first ``n`` cases of a .ts file, at least two labels among them."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    cases = [line for line in lines[start:] if line.strip()]
    chosen = cases[:n]
    if len({c.rsplit(":", 1)[-1] for c in chosen}) < 2:
        chosen.append(next(c for c in cases if c.rsplit(":", 1)[-1] != chosen[0].rsplit(":")[-1]))
    return "\n".join(lines[:start] + chosen) + "\n"


def rnnkit(*args: str) -> subprocess.CompletedProcess:
    """``python -m rnnkit ARGS`` in a subprocess; a failure ends the benchmark with its message."""
    done = subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise SystemExit(f"rnnkit {args[0]} failed: {lines[-1]}")
    return done


def train_and_test(name: str, train: Path, test: Path, args) -> dict:
    """``rnnkit train --preset ucr`` on the train file, then its best/ scored on the test file."""
    run = args.out / "runs" / name
    flags = ["--threads", str(args.threads), "--max-time", str(args.max_time)]
    start = time.perf_counter()
    rnnkit("train", "--preset", "ucr", str(train), "--out", str(run), "--seed", str(args.seed),
           *flags, *(QUICK_FLAGS if args.quick else []))  # fmt: skip
    seconds = time.perf_counter() - start
    scored = rnnkit("eval", str(run), str(test), "--json", "--threads", str(args.threads))
    figures = json.loads(scored.stdout)
    return {"accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"], "seconds": seconds}


def nn_dtw(train: Path, test: Path) -> dict:
    """1-NN under full-window DTW (multivariate: dependent, the squared Euclidean distance of
    whole steps) on the raw series, by sktime's numba DTW; ties go to the first train case."""
    from sktime.dists_kernels._numba_distances import distance_factory

    from rnnkit.data.numeric import read_series

    start = time.perf_counter()
    tr, te = read_series([str(train)]), read_series([str(test)])
    xs = [np.ascontiguousarray(v.T, dtype=np.float64) for v in tr.values]  # (C, T) each
    ys = [np.ascontiguousarray(v.T, dtype=np.float64) for v in te.values]
    dtw = distance_factory(xs[0], ys[0], metric="dtw")  # window None: w = 100%
    right = 0
    for y, label in zip(ys, te.labels, strict=True):
        distances = [dtw(x, y) for x in xs]
        right += tr.labels[int(np.argmin(distances))] == label
    return {"accuracy": right / len(ys), "seconds": time.perf_counter() - start}


def table(results: dict) -> str:
    head = f"{'set':<18} {'rnnkit ucr':>10} {'1-NN DTW here':>13}  published (test accuracy)"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        published = "; ".join(f"{label} {acc:.3f}" for label, acc, _ in PUBLISHED[name])
        ours, dtw = r["rnnkit"]["accuracy"], r["dtw"]["accuracy"]
        lines.append(f"{name:<18} {ours:>10.3f} {dtw:>13.3f}  {published}")
    wins = sum(r["rnnkit"]["accuracy"] > r["dtw"]["accuracy"] for r in results.values())
    lines.append(f"rnnkit beats 1-NN DTW (w=100%, this run) on {wins} of {len(results)} sets")
    lines += ["sources:", f"  UCR: {UCR_SUMMARY}", f"  UEA: {UEA_TABLE}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--max-time", type=float, default=180.0, help="training seconds per set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, default=Path("runs/ucr"))
    parser.add_argument("--quick", action="store_true", help="a few cases, a few steps")
    args = parser.parse_args(argv)
    if args.max_time <= 0 or args.threads < 1:
        parser.error("--max-time must be > 0 and --threads >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.sets:
        train, test = set_files(name, args.out, args.quick)
        budget = "a few steps (--quick)" if args.quick else f"{args.max_time:g} s"
        print(f"{name}: training the ucr preset ({budget}) ...", flush=True)
        ours = train_and_test(name, train, test, args)
        print(f"{name}: 1-NN DTW ...", flush=True)
        results[name] = {"rnnkit": ours, "dtw": nn_dtw(train, test)}
        results[name]["published"] = [
            {"method": label, "accuracy": acc, "source": source}
            for label, acc, source in PUBLISHED[name]
        ]
    report = table(results)
    print(report)
    settings = {"max_time": args.max_time, "threads": args.threads, "quick": args.quick}
    (args.out / "results.json").write_text(
        json.dumps({"settings": settings, "results": results}, indent=2) + "\n"
    )
    print(f"wrote {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
