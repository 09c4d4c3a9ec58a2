"""English-EWT UPOS accuracy of the `tag` preset on the official splits, with and without --crf.

    python benchmarks/tagger_ewt.py --out runs/tagger_ewt          # 2 x 15 minutes, 2 threads
    python benchmarks/tagger_ewt.py --max-time 1800 --out runs/tagger_ewt30
    python benchmarks/tagger_ewt.py --data DIR --out runs/tagger_ewt   # DIR/en_ewt-ud-*.conllu
    python benchmarks/tagger_ewt.py --variant crf --out runs/tagger_ewt_crf   # one variant
    python benchmarks/tagger_ewt.py --quick --data DIR --out /tmp/ewt  # seconds: a smoke run

Trains the ``tag`` preset twice from scratch on ``en_ewt-ud-train.conllu`` (12,544 sentences)
with ``--val en_ewt-ud-dev.conllu``: a softmax per position, then ``--crf`` (a linear-chain
CRF, Viterbi decoding), each for ``--max-time`` seconds (the preset's cosine schedule follows
the clock). ``best/`` is the evaluation on the dev file with the highest UPOS accuracy; the test
file is scored once, by ``rnnkit eval RUN/best en_ewt-ud-test.conllu``. Speed: training words/s
(the mean of the training log's intervals, metrics.csv) and tagging sentences/s (``rnnkit
eval``'s work on the test file in this process: reading, encoding, the model, decoding, the
counts; after one warm-up pass). Printed beside published UPOS figures on English-EWT with
gold tokenization (:data:`PUBLISHED`: Plank et al.'s bilty BiLSTM on UD 1.3, whose English
treebank is EWT; UDPipe 1.2 and UDPipe 2 on UD 2.3 / 2.6) and the issue's target; never
asserted in tests.

``--quick``: the first sentences of each file and the preset shrunk, a few steps each.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

SPLITS = ("train", "dev", "test")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: (system, treebank and setting, test UPOS %, where the figure is published)
PUBLISHED = [
    (
        "bilty BiLSTM, words + chars (Plank et al. 2016)",
        "UD 1.3 English (EWT), gold tokenization",
        94.60,
        "github.com/bplank/bilstm-aux README, Results on UD1.3 (en, i20-h1: 20 epochs, 1 layer)",
    ),
    (
        "bilty BiLSTM, + polyglot embeddings",
        "UD 1.3 English (EWT), gold tokenization",
        95.04,
        "github.com/bplank/bilstm-aux README, Results on UD1.3 (en, +poly)",
    ),
    (
        "UDPipe 1.2 (averaged-perceptron tagger)",
        "UD 2.3 English-EWT, gold tokenization",
        94.4,
        "UDPipe UD 2.3 models README, Model Performance (hdl.handle.net/11234/1-2898)",
    ),
    (
        "UDPipe 2 (BiLSTM, pretrained embeddings, mBERT)",
        "UD 2.6 English-EWT, gold tokenization",
        97.29,
        "UDPipe 2 UD 2.6 models docs, Model Performance (ufal.mff.cuni.cz/udpipe/2/models)",
    ),
]
TARGET = 0.95  # issue 19: EWT test UPOS >= 0.95 (BiLSTM-CNN-CRF taggers report about 95)
#: --quick: sentences kept of each file, and the preset shrunk (flags after --preset win)
QUICK_SENTENCES = {"train": 60, "dev": 20, "test": 20}
QUICK_FLAGS = [
    *("--hidden", "16", "--embed", "16", "--char-hidden", "8", "--batch-size", "8"),
    *("--max-steps", "6", "--eval-every", "3", "--log-every", "2"),
]
VARIANTS = {"softmax": [], "crf": ["--crf"]}


def rnnkit(*args: str) -> subprocess.CompletedProcess:
    """``python -m rnnkit ARGS``; a failure ends the benchmark with its last line."""
    done = subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise SystemExit(f"tagger_ewt: rnnkit {args[0]} failed: {lines[-1]}")
    return done


def data_files(data: Path, out: Path, quick: bool) -> dict[str, Path]:
    """``{split: path}`` of DATA's en_ewt-ud-*.conllu; with ``quick``, the first
    :data:`QUICK_SENTENCES` sentences of each, written to OUT/data-quick."""
    paths = {split: data / f"en_ewt-ud-{split}.conllu" for split in SPLITS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"tagger_ewt: --data {data}: no {', '.join(missing)}")
    if not quick:
        return paths
    sliced = out / "data-quick"
    sliced.mkdir(parents=True, exist_ok=True)
    for split, path in paths.items():
        blocks = path.read_text(encoding="utf-8").split("\n\n")
        kept = [b.strip("\n") for b in blocks if b.strip()][: QUICK_SENTENCES[split]]
        paths[split] = sliced / path.name
        paths[split].write_text("\n\n".join(kept) + "\n\n", encoding="utf-8")
    return paths


def train_words_per_s(run: Path) -> float:
    """The mean training tokens/s over the intervals metrics.csv logged."""
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        rates = [float(r["tokens_per_s"]) for r in csv.DictReader(f) if r["kind"] == "train"]
    if not rates:
        raise SystemExit(f"tagger_ewt: {run}/metrics.csv has no training rows")
    return sum(rates) / len(rates)


def stopped_at(stdout: str) -> tuple[int, float]:
    """The step and the best dev accuracy of the trainer's final line, ``stopped (...) at step
    N: best val token_accuracy A; run saved in ...`` (the tag task selects on accuracy)."""
    line = [line for line in stdout.splitlines() if line.startswith("stopped")][-1]
    step = int(line.split(" at step ")[1].split(":")[0].replace(",", ""))
    metric, value = line.split(" best val ")[1].split(";")[0].split()
    if metric != "token_accuracy":
        raise SystemExit(f"tagger_ewt: the run selected on {metric}, not token_accuracy: {line}")
    return step, float(value)


def tagging_speed(run: Path, test: Path, threads: int) -> dict:
    """Sentences/s and words/s of ``rnnkit eval``'s work on ``test``, in this process."""
    import torch

    from rnnkit.data.conllu import read_tagged
    from rnnkit.tasks.saved import load_task

    torch.set_num_threads(threads)
    task, model, _ = load_task(str(run), torch.device("cpu"))
    sentences = read_tagged([str(test)])
    task.evaluate_paths(model, [str(test)])  # warm-up: allocations, kernels
    start = time.perf_counter()
    task.evaluate_paths(model, [str(test)])
    seconds = time.perf_counter() - start
    words = sum(len(words) for words, _ in sentences)
    return {"tag_sentences_per_s": len(sentences) / seconds, "tag_words_per_s": words / seconds}


def run_variant(name: str, data: dict[str, Path], out: Path, args, extra: list[str]) -> dict:
    """Train one variant, score its best checkpoint on the test file once, time it."""
    run = out / f"run-{name}"
    print(f"training the tag preset ({name}) for {args.max_time:g} s -> {run} ...", flush=True)
    start = time.perf_counter()
    done = rnnkit(
        *("train", "--preset", "tag", str(data["train"]), "--val", str(data["dev"])),
        *VARIANTS[name], *extra, *("--max-time", f"{args.max_time:g}", "--out", str(run)),
    )  # fmt: skip
    wall = time.perf_counter() - start
    steps, dev_upos = stopped_at(done.stdout)  # best/: the best evaluation on the dev file
    test = json.loads(rnnkit("eval", str(run / "best"), str(data["test"]), "--json",
                             "--threads", str(args.threads)).stdout.splitlines()[-1])  # fmt: skip
    figures = {
        "variant": name,
        "run": str(run),
        "max_time_s": args.max_time,
        "quick": args.quick,
        "threads": args.threads,
        "wall_s": round(wall),
        "steps": steps,
        "dev_upos": dev_upos,
        "test_upos": test["token_accuracy"],
        "test_macro_f1": test["macro_f1"],
        "train_words_per_s": train_words_per_s(run),
        **tagging_speed(run / "best", data["test"], args.threads),
    }
    print(
        f"  {figures['steps']:,} steps, dev UPOS {figures['dev_upos']:.4f}, test UPOS "
        f"{figures['test_upos']:.4f}, {figures['tag_sentences_per_s']:,.0f} sentences/s",
        flush=True,
    )
    return figures


def table(results: list[dict], threads: int) -> str:
    """Our rows, then the published ones, as aligned text (UPOS in %)."""
    head = (
        f"{'English-EWT test UPOS (%)':<50}{'dev':>7}{'test':>7}{'train w/s':>11}{'tag sent/s':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        budget = (
            f"{r['max_time_s'] / 60:g} min" if r["max_time_s"] >= 60 else f"{r['max_time_s']:g} s"
        )
        budget = "--quick" if r.get("quick") else budget
        name = f"rnnkit tag preset, {r['variant']}, {budget}, {threads} thread"
        name += "s" if threads != 1 else ""
        lines.append(
            f"{name:<50}{100 * r['dev_upos']:>7.2f}{100 * r['test_upos']:>7.2f}"
            f"{r['train_words_per_s']:>11,.0f}{r['tag_sentences_per_s']:>12,.0f}"
        )
    for system, _, upos, _ in PUBLISHED:
        lines.append(f"{system:<50}{'':>7}{upos:>7.2f}")
    lines.append(f"{'issue 19 target':<50}{'':>7}{100 * TARGET:>7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/tagger_ewt", help="runs and results.json here")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="en_ewt-ud-*.conllu here")
    parser.add_argument("--max-time", type=float, default=900, help="seconds of each training")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each command")
    parser.add_argument("--quick", action="store_true", help="a smoke run of the whole pipeline")
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="train only this variant (repeatable; default: softmax and crf)",
    )
    args = parser.parse_args(argv)
    if args.max_time <= 0 or args.threads < 1:
        raise SystemExit("tagger_ewt: --max-time must be > 0 and --threads >= 1")
    out = Path(args.out)
    if (out / "results.json").exists():
        raise SystemExit(f"tagger_ewt: --out {out} already holds results.json")
    data = data_files(args.data, out, args.quick)
    extra = ["--threads", str(args.threads), *(QUICK_FLAGS if args.quick else [])]
    variants = [name for name in VARIANTS if name in (args.variant or VARIANTS)]
    results = [run_variant(name, data, out, args, extra) for name in variants]
    print()
    print(table(results, args.threads))
    for r in results:
        verdict = "met" if r["test_upos"] >= TARGET else "MISSED"
        print(f"target: {r['variant']} test UPOS >= {TARGET}: {r['test_upos']:.4f} ({verdict})")
    print("\npublished (test UPOS, gold tokenization):")
    for system, treebank, upos, source in PUBLISHED:
        print(f"  {system}: {upos} on {treebank}; {source}")
    (out / "results.json").write_text(
        json.dumps({"results": results, "published": PUBLISHED}, indent=2) + "\n",
        encoding="utf-8",
    )
    return results


if __name__ == "__main__":
    main()
