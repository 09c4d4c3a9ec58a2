"""The GPU table of issue 17: rnnkit on one GPU against hand-written PyTorch, and a Tiny
Shakespeare run of the ``gpu`` preset, each figure with its target and PASS or MISS.

    PYTHONPATH=src python3 benchmarks/gpu_check.py --device cuda --out gpu_check_out
    PYTHONPATH=src python3 benchmarks/gpu_check.py --device cpu --quick --out /tmp/smoke

``benchmarks/gpu_check.sh`` runs it after the gpu-marked tests (whose log it reads with
``--tests-log``). The figures are ``rnnkit bench``'s sections (``rnnkit.benchmark``: the same
timing, interleaved, the device synchronised around each call), on the device's sizes
(``rnnkit.benchmark.suite.ACCELERATOR``: the gpu preset's model for training and precision,
1,024 generation streams, MinGRU at T = 2048); then ``rnnkit train --preset gpu --max-time 240``
and ``rnnkit eval RUN --json`` on the full validation split, in child processes. It prints ONE
table and writes it to OUT/gpu_check.md and OUT/gpu_check.json (every figure measured, the
run's log in OUT/train.log). Time caps keep the whole under 8 minutes on one GPU: the figures
stop starting new sections after --figures-budget seconds, the run is cut by --max-time, and
each child has a timeout. ``--quick``: tiny shapes and a few training steps, a smoke run of
every row on any device (the figures are real but say nothing of a GPU).

Only the standard library, torch and rnnkit are imported (the GPU machine has no network and
only torch, numpy, safetensors, tqdm, matplotlib, sacrebleu, onnx, onnxruntime, hypothesis and
pytest); ``tests/test_gpu_check.py`` runs it with every other installed package blocked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from rnnkit.benchmark.suite import measure
from rnnkit.devices import describe_device, resolve_device
from rnnkit.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src"
#: the sections measured, in groups (training divides by the machine's GEMM rate)
GROUPS = (("machine", "training"), ("precision",), ("generation",), ("minimal",), ("cells",))
TINY = {"vocab": 65, "embed": 8, "hidden": 16, "layers": 2, "seq_len": 12, "batch": 4}
#: --quick: every section on tiny shapes (1,024 streams stay: cheap when tiny; T = 64)
QUICK = {
    "machine": {"n": 128, "megabytes": 4},
    "training": {"rounds": 1, "steps_per_round": 1, "shape": TINY},
    "precision": {"rounds": 1, "shape": TINY, "steps": 2, "val_shape": TINY,
                  "precisions": ("bf16", "fp16")},
    "generation": {"rounds": 1, "length": 8, "batch": 1024, "batch_length": 2,
                   "copy_megabytes": 1, "shape": TINY},
    "minimal": {"rounds": 1, "seq_len": 64, "batch": 2, "input_size": 5, "hidden": 7},
    "cells": {"rounds": 1, "seq_len": 6, "batch": 3, "input_size": 5, "hidden": 7},
}  # fmt: skip
#: the gpu preset shrunk for --quick (the preset's schedule, precision and evaluation stand)
QUICK_RUN = ["--embed", "8", "--hidden", "16", "--layers", "1", "--seq-len", "16",
             "--batch-size", "8", "--max-steps", "4", "--eval-every", "4",
             "--sample-every", "0"]  # fmt: skip
TARGET_LOSS = 1.42  # nats/char on the validation split (nanoGPT's char transformer: 1.4697)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="where to measure (default: cuda)")
    parser.add_argument("--out", default="gpu_check_out", help="directory for the table and run")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run")
    parser.add_argument("--max-time", type=float, default=240.0, help="the gpu preset's run, s")
    parser.add_argument("--figures-budget", type=float, default=120.0,
                        help="no new section starts after this many seconds")  # fmt: skip
    parser.add_argument("--run-dir", help="the gpu preset's run directory (default: OUT/run)")
    parser.add_argument("--tests-log", help="the log of `pytest -m gpu` (a row of the table)")
    parser.add_argument("--tests-status", type=int, help="pytest's exit status")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        out = Path(args.out)
        run_dir = Path(args.run_dir) if args.run_dir else out / "run"
        if run_dir.exists():
            raise UserError(f"{run_dir} exists: give gpu_check a new --out (or --run-dir)")
        out.mkdir(parents=True, exist_ok=True)
    except UserError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    say = timed_say(started)
    say(f"gpu_check on {describe_device(device)}, torch {torch.__version__}")
    tests = read_tests(args.tests_log, args.tests_status)
    figures = measure_figures(device, args.quick, args.figures_budget, say)
    pending = {"error": "not finished: the run was still training when this was written"}
    write_table(out, figures, pending, tests, args.quick, started)  # kept if stopped later
    run = train_and_score(device, out, run_dir, args.quick, args.max_time, say)
    print(write_table(out, figures, run, tests, args.quick, started))
    say(f"wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'}")
    failed = figures.get("failed") or run.get("error")
    return 1 if failed else 0


def write_table(out: Path, figures: dict, run: dict, tests, quick: bool, started: float) -> str:
    """OUT/gpu_check.md and OUT/gpu_check.json (every figure, the run, the tests); returns the
    markdown table."""
    rows = table_rows(figures, run, tests, quick=quick)
    title = f"gpu_check: {figures['device']}, torch {torch.__version__}" + (
        " (--quick: tiny shapes, a smoke run)" if quick else ""
    )
    text = markdown(title, rows)
    (out / "gpu_check.md").write_text(text + "\n")
    payload = {"title": title, "rows": rows, "figures": figures, "run": run, "tests": tests,
               "seconds": time.monotonic() - started}  # fmt: skip
    (out / "gpu_check.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return text


def timed_say(started: float):
    """A progress printer that stamps each line with the seconds since ``started``."""

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)

    return say


def measure_figures(device: torch.device, quick: bool, budget: float, say) -> dict:
    """``rnnkit bench``'s sections on ``device``, group by group; a group that would start
    after ``budget`` seconds is skipped and named under ``failed``."""
    start = time.monotonic()
    figures: dict = {"device": describe_device(device)}
    failed: dict = {}
    for group in GROUPS:
        if time.monotonic() - start > budget:
            for name in group:
                failed[name] = f"skipped: the figures' time budget ({budget:.0f} s) was spent"
            continue
        sizes = {name: QUICK[name] for name in group} if quick else None
        part = measure(group, quick, say, device, sizes)
        failed |= part.pop("failed", {})
        figures |= {
            key: value for key, value in part.items() if value is not None or key not in figures
        }
    if failed:
        figures["failed"] = failed
    return figures


def child_env() -> dict:
    """The environment of the rnnkit children: this source tree first on PYTHONPATH."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(SRC) + (os.pathsep + path if path else "")}


def train_and_score(
    device: torch.device, out: Path, run_dir: Path, quick: bool, max_time: float, say
) -> dict:
    """``rnnkit train --preset gpu`` for ``max_time`` seconds, then ``rnnkit eval`` of its best
    checkpoint on the whole validation split: the loss, steps and seconds, or ``error``."""
    where = str(device)
    train = [
        sys.executable,
        "-m",
        "rnnkit",
        "train",
        "--preset",
        "gpu",
        "--device",
        where,
        "--max-time",
        f"{max_time:g}",
        "--out",
        str(run_dir),
        *(QUICK_RUN if quick else []),
    ]
    say(f"training: {' '.join(train[2:])} (log: {out / 'train.log'})")  # fmt: skip
    start = time.monotonic()
    result: dict = {"command": " ".join(["rnnkit", *train[3:]])}
    with open(out / "train.log", "w") as log:
        try:
            child = subprocess.run(train, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                   timeout=max_time + 180, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            return result | {"error": f"rnnkit train ran past {max_time + 180:.0f} s"}
    result["train_s"] = time.monotonic() - start
    log_text = (out / "train.log").read_text(errors="replace")
    if child.returncode != 0:
        return result | {"error": f"rnnkit train exited {child.returncode}: {last_line(log_text)}"}
    stopped = re.findall(r"stopped \((\w+)\) at step ([\d,]+)", log_text)
    if stopped:
        result["stopped"], result["steps"] = stopped[-1][0], int(stopped[-1][1].replace(",", ""))
    evaluate = [sys.executable, "-m", "rnnkit", "eval", str(run_dir), "--json", "--device", where]
    say(f"scoring: {' '.join(evaluate[2:])}")
    try:
        scored = subprocess.run(evaluate, capture_output=True, text=True, env=child_env(),
                                timeout=300, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return result | {"error": "rnnkit eval ran past 300 s"}
    if scored.returncode != 0:
        return result | {"error": f"rnnkit eval exited {scored.returncode}: "
                                  f"{last_line(scored.stderr)}"}  # fmt: skip
    result["eval"] = json.loads(scored.stdout.strip().splitlines()[-1])
    say(f"val loss {result['eval']['loss']:.4f} nats/char after {result.get('steps')} steps")
    return result


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def read_tests(log: str | None, status: int | None) -> dict | None:
    """pytest's summary line (``3 passed, 1 skipped in 9.1s``) and exit status, if given."""
    if log is None:
        return None
    text = Path(log).read_text(errors="replace") if Path(log).is_file() else ""
    summary = [line.strip("= ") for line in text.splitlines() if re.search(r"\d+ (passed|failed|"
               r"skipped|deselected|error)", line)]  # fmt: skip
    return {"summary": summary[-1] if summary else "(no summary: see the log)", "status": status}


def table_rows(figures: dict, run: dict, tests: dict | None, quick: bool) -> list[dict]:
    """One row per figure: label, measured value, the issue's target, PASS / MISS (or FAILED
    with the reason where it could not be measured, "-" where it has no target)."""
    rows = []
    if tests is not None:
        ok = tests["status"] == 0
        rows.append(row("gpu-marked tests (pytest -m gpu)", tests["summary"], "all pass",
                        "PASS" if ok else f"MISS (exit {tests['status']})"))  # fmt: skip
    streams = figures.get("gen_streams") or 1024
    seq_len = figures.get("minimal_seq_len") or 2048
    spec = (
        ("fp32 GEMM", "gemm_fp32_gflops", "{:,.1f} GFLOP/s", None, "machine"),
        ("bf16 GEMM", "gemm_bf16_gflops", "{:,.1f} GFLOP/s", None, "machine"),
        ("train: rnnkit (fused) chars/s", "train_chars_per_s", "{:,.0f}", None, "training"),
        ("train: hand-written torch.nn.LSTM chars/s", "torch_train_chars_per_s", "{:,.0f}", None,
         "training"),
        ("train: rnnkit / hand-written", "train_ratio_vs_torch", "{:.3f}x", (">=", 0.97),
         "training"),
        ("bf16 step speed-up over fp32", "bf16_speedup", "{:.2f}x", (">=", 1.5), "precision"),
        ("fp16 step speed-up over fp32", "fp16_speedup", "{:.2f}x", None, "precision"),
        ("bf16 - fp32 val loss, equal steps", "bf16_val_delta", "{:+.4f}", ("|x|<=", 0.02),
         "precision"),
        ("cells path (compiled) / fused time", "compiled_over_fused", "{:.2f}x", ("<=", 2.0),
         "cells"),
        ("cells path (plain) / fused time", "cells_over_fused", "{:.2f}x", None, "cells"),
        (f"MinGRU over cuDNN GRU, T = {seq_len:,}", "mingru_over_gru", "{:.2f}x", (">=", 3.0),
         "minimal"),
        ("generate: 1 stream chars/s", "gen_chars_per_s", "{:,.0f}", None, "generation"),
        (f"generate: {streams:,} streams chars/s", f"gen_batch{streams}_chars_per_s", "{:,.0f}",
         None, "generation"),
        (f"generate: {streams:,} streams / 1 stream", f"gen_batch{streams}_over_single",
         "{:,.0f}x", (">=", 200.0), "generation"),
    )  # fmt: skip
    for label, key, fmt, target, section in spec:
        value = figures.get(key)
        if value is None:
            why = why_missing(key, figures.get("failed", {}).get(section), figures)
            rows.append(row(label, "-", target_text(target), f"FAILED: {why}"))
        else:
            rows.append(row(label, fmt.format(value), target_text(target), verdict(value, target)))
    rows.extend(run_rows(run, quick))
    return rows


def why_missing(key: str, section_failure: str | None, figures: dict) -> str:
    """Why a figure is missing: its section failed, or the compiled path or a precision could
    not run here (their own reasons)."""
    if section_failure:
        return section_failure
    if key == "compiled_over_fused" and figures.get("compiled_error"):
        return figures["compiled_error"]
    refused = figures.get("precision_refused", {})
    name = key.split("_")[0]
    return refused.get(name) or "not measured"


def run_rows(run: dict, quick: bool) -> list[dict]:
    """The gpu preset's rows: its val loss by ``rnnkit eval``, and the steps it took."""
    label = "gpu preset: Tiny Shakespeare val loss (rnnkit eval, full split)"
    target = ("<=", TARGET_LOSS)
    if "eval" not in run:
        return [row(label, "-", target_text(target), f"FAILED: {run.get('error')}")]
    loss = run["eval"]["loss"]
    steps = f"{run.get('steps', '?'):,} steps, stopped by {run.get('stopped', '?')}, " \
            f"{run['train_s']:.0f} s with start-up"  # fmt: skip
    return [
        row(label, f"{loss:.4f} nats/char", target_text(target), verdict(loss, target)),
        row("gpu preset: the run (rnnkit train --preset gpu)", steps, "--max-time 240"
            if not quick else "-", "-"),
    ]  # fmt: skip


def row(label: str, value: str, target: str, verdict_text: str) -> dict:
    return {"figure": label, "measured": value, "target": target, "verdict": verdict_text}


def target_text(target) -> str:
    if target is None:
        return "-"
    op, bound = target
    return f"|x| <= {bound:g}" if op == "|x|<=" else f"{op} {bound:g}"


def verdict(value: float, target) -> str:
    if target is None:
        return "-"
    op, bound = target
    ok = {">=": value >= bound, "<=": value <= bound, "|x|<=": abs(value) <= bound}[op]
    return "PASS" if ok else "MISS"


def markdown(title: str, rows: list[dict]) -> str:
    """The table in markdown: its title, then one line per row."""
    lines = [
        f"### {title}",
        "",
        "| figure | measured | target | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:  # a "|" inside a cell (|x| <= 0.02) would end it: escaped
        cells = [
            str(r[key]).replace("|", "\\|") for key in ("figure", "measured", "target", "verdict")
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
