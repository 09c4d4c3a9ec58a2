"""War and Peace test loss (nats/char) of the `warpeace` preset on the CPU, beside the 2015 paper.

    python benchmarks/warpeace.py --out runs/warpeace     # 15 + 60 minutes of training, 2 threads
    python benchmarks/warpeace.py --text /work/shared/data/warpeace.txt --out runs/warpeace
    python benchmarks/warpeace.py --short-time 0 --max-time 1800 --out runs/warpeace30
    python benchmarks/warpeace.py --quick --text some.txt --out /tmp/warpeace_quick   # seconds

Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks"
(arXiv:1506.02078), split War and Peace 80/10/10 into train, validation and test. Here the split
is contiguous, by characters (the first 80 %, the next 10 %, the last 10 %, as char-rnn's loader
cuts its batches), written to ``OUT/data/warpeace.{train,valid,test}.txt``. The preset trains
twice from scratch, ``--max-time 900`` and ``--max-time 3600`` (``--short-time``, ``--max-time``;
each run's cosine schedule follows its own clock), on the train and validation files given as one
text with ``--val-fraction`` equal to the validation split's share, so rnnkit validates on
exactly that split and the vocabulary covers both (the validation split has characters the
training split lacks, ``/`` and ``=``; char-rnn builds its vocabulary from the whole file).
``rnnkit eval`` then scores the best checkpoint on the test file: nats per character, the
paper's unit (the validation figure is the trainer's, on the whole validation split). Printed
beside the paper's figure; never asserted in tests.

``--quick``: the preset shrunk to a 1x32 LSTM for a few steps on whatever ``--text`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # word_lm: the shared runner
from word_lm import budget, eval_json, train  # noqa: E402

DEFAULT_TEXT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "warpeace.txt"
FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
#: (model, test nats/char) from Karpathy, Johnson & Fei-Fei (2015), Table 1 (War and Peace)
PUBLISHED = [("LSTM 3 x 512, Karpathy et al. (2015), GPU", 1.077)]
QUICK_FLAGS = [
    *("--layers", "1", "--hidden", "32", "--embed", "16", "--seq-len", "20"),
    *("--batch-size", "4", "--max-steps", "10", "--eval-every", "5"),
]


def split_text(text: str) -> dict[str, str]:
    """The first 80 % of the characters, the next 10 % and the rest (contiguous; the sizes are
    ``round(0.8 n)`` and ``round(0.1 n)``, so the three add up to ``n``)."""
    n = len(text)
    a = round(n * FRACTIONS["train"])
    b = a + round(n * FRACTIONS["valid"])
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}


def write_splits(text_path: Path, out: Path) -> dict[str, Path]:
    """Split ``text_path`` (UTF-8) and write ``warpeace.{train,valid,test}.txt`` into ``out``."""
    if not text_path.is_file():
        raise SystemExit(f"warpeace: --text {text_path}: no such file (War and Peace, ~3.2 MB)")
    try:
        text = text_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SystemExit(f"warpeace: --text {text_path}: not UTF-8 ({error.reason})") from None
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, part in split_text(text).items():
        if not part:
            raise SystemExit(f"warpeace: --text {text_path}: too short for an 80/10/10 split")
        paths[split] = out / f"warpeace.{split}.txt"
        paths[split].write_text(part, encoding="utf-8", newline="")
    return paths


def table(results: list[dict], threads: str) -> str:
    """The measured rows (one per budget), then the paper's, as aligned text."""
    head = f"{'War and Peace, test loss':<48}{'steps':>7}{'valid':>9}{'test':>9}{'bits/char':>11}"
    lines = [head, "-" * len(head)]
    for r in results:
        name = f"rnnkit warpeace preset, {budget(r['seconds'])}, {threads} CPU threads"
        lines.append(
            f"{name:<48}{r['steps']:>7,}{r['val_loss']:>9.3f}{r['test_loss']:>9.3f}"
            f"{r['test_bpc']:>11.3f}"
        )
    for name, loss in PUBLISHED:
        lines.append(f"{name:<48}{'':>7}{'':>9}{loss:>9.3f}{loss / 0.6931471805599453:>11.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="War and Peace (UTF-8)")
    parser.add_argument("--out", default="runs/warpeace", help="data, runs and results.json here")
    parser.add_argument("--preset", default="warpeace", help="the recipe to train")
    parser.add_argument("--max-time", type=float, default=3600, help="the long run's seconds")
    parser.add_argument("--short-time", type=float, default=900, help="the short run (0: none)")
    parser.add_argument("--threads", default="2", help="torch threads of each command")
    parser.add_argument("--quick", action="store_true", help="a smoke run of the whole pipeline")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if (out / "results.json").exists():
        raise SystemExit(f"warpeace: --out {out} already holds results.json")
    paths = write_splits(args.text, out / "data")
    sizes = {split: len(path.read_text(encoding="utf-8")) for split, path in paths.items()}
    print("characters: " + ", ".join(f"{s} {n:,}" for s, n in sizes.items()), flush=True)
    share = sizes["valid"] / (sizes["train"] + sizes["valid"])  # rnnkit's last val_fraction
    texts = [str(paths["train"]), str(paths["valid"]), "--val-fraction", repr(share)]
    extra = ["--tokenizer", "char", "--threads", args.threads, *(QUICK_FLAGS if args.quick else [])]
    budgets = [60] if args.quick else [s for s in (args.short_time, args.max_time) if s > 0]
    results = []
    for seconds in budgets:
        run = out / f"run-{seconds:g}s"
        print(f"training preset {args.preset!r} for {budget(seconds)} -> {run} ...", flush=True)
        figures = train(args.preset, [*texts, *extra], seconds, run)
        test = eval_json(str(run / "best"), str(paths["test"]), "--threads", args.threads)
        figures |= {"test_loss": test["loss"], "test_bpc": test["bpc"], "test_chars": test["chars"]}
        print(f"  {figures['steps']:,} steps, test {test['loss']:.3f} nats/char", flush=True)
        results.append({"preset": args.preset, "run": str(run), "threads": int(args.threads),
                        "quick": args.quick, **figures})  # fmt: skip
    print()
    print(table(results, args.threads))
    print(
        "\npublished: Karpathy, Johnson & Fei-Fei (2015), Table 1, War and Peace test "
        "cross-entropy (nats/char), 80/10/10 split, GPU."
    )
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
