"""One table of every real-data result rnnkit has, each beside its published or baseline figure.

    python benchmarks/classic.py                  # read runs/*/results.json, print, write docs/
    python benchmarks/classic.py --run-missing    # first run what has no results (hours)
    python benchmarks/classic.py --fresh          # retrain every row (hours: the full budgets)
    python benchmarks/classic.py --quick          # every benchmark's --quick (minutes)
    python benchmarks/classic.py --runs /tmp/bench18 --doc docs/benchmarks.md

It REUSES the per-task benchmarks (charlm_quality, warpeace, word_lm, tagger_ewt, ucr,
forecast_real, memory_tasks): each writes ``OUT/results.json`` in its own layout, and
benchmarks/classic_rows.py turns each layout into rows. Under ``--runs`` (default ``runs/``)
every ``<name>*/results.json`` is read; where two files hold the same row, the newer one wins.
A row no file holds keeps its figure from the earlier table (``classic.json`` beside
``--doc``: a fresh clone has no ``runs/``), listed apart; where that has none either
(or with ``--forget-earlier``) it prints "not run" and the command that makes it; with
``--run-missing`` that command runs first (a subprocess, its own flags, into
``RUNS/<name>-<label>``), with ``--fresh`` every row's command runs (into a new directory, so
nothing is overwritten). Each
run classic makes leaves ``classic_run.json`` beside the results: the command, the threads
and the machine, shown in the budget column.

Writes the table as Markdown (``--doc``, default docs/benchmarks.md; with ``--quick``,
runs/classic-quick/benchmarks.md, so smoke figures never replace the real table) and
``classic.json`` beside it (every row's fields), and prints it as aligned text. Never a
made-up figure: every number comes from a results file or the benchmarks' PUBLISHED constants.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the per-task benchmarks, imported by name
from classic_rows import BENCHES, Bench, Row, Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIDECAR = "classic_run.json"
DOC = ROOT / "docs" / "benchmarks.md"


class UsageError(Exception):
    """Bad input (a flag, a results file): one line on stderr, exit status 2."""


def machine() -> str:
    """``x86_64, 2 cores, <CPU model>`` (the model from /proc/cpuinfo where Linux has one)."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [x for x in cpuinfo.read_text().splitlines() if x.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else ""
    return ", ".join(x for x in (platform.machine(), f"{os.cpu_count()} cores", model) if x)


def result_files(runs: Path, bench: Bench) -> list[Path]:
    """``RUNS/<name>*/results.json``, newest first."""
    found = [p for p in runs.glob(f"{bench.name}*/results.json") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def budget_note(path: Path, budget: str) -> str:
    """``budget`` with the threads and machine of classic's sidecar, where classic made the
    run (and "--quick" where that run was a smoke run the results file does not say was)."""
    sidecar = path.parent / SIDECAR
    if not sidecar.is_file():
        parts = [budget, "machine not recorded" if "thread" in budget else "threads not recorded"]
    else:
        run = json.loads(sidecar.read_text())
        quick = "--quick" if run.get("quick") and "--quick" not in budget else ""
        threads = "" if "thread" in budget else run["threads"]
        parts = [budget, quick, threads, run["machine"]]
    return ", ".join(part for part in parts if part)


def collect(runs: Path, bench: Bench) -> dict[str, Row]:
    """Every row the files hold, by key; a row of a newer file replaces an older one's."""
    rows: dict[str, Row] = {}
    for path in result_files(runs, bench):
        try:
            found = bench.rows(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise UsageError(f"{path}: not a {bench.name} results file ({error!r})") from None
        for row in found:
            if row.key not in rows:
                row.budget = budget_note(path, row.budget)
                row.source_file = str(path)
                rows[row.key] = row
    return rows


def load_earlier(path: Path) -> dict[tuple[str, str], Row]:
    """The rows with a figure in an earlier table's ``classic.json``, by ``(bench, key)``: a
    row whose results file is gone (a fresh clone, a cleaned ``runs/``) keeps its figure."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        rows = [Row(**{**fields, "baselines": [tuple(b) for b in fields["baselines"]]})
                for fields in saved]  # fmt: skip
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{path}: not a classic.json table ({error!r}); "
                         "--forget-earlier to rebuild without it") from None  # fmt: skip
    return {(row.bench, row.key): row for row in rows if row.figure is not None}


def keep_earlier(rows: dict[str, Row], bench: Bench, earlier: dict[tuple[str, str], Row]):
    """Add to ``rows`` the earlier table's rows of ``bench`` that no results file holds."""
    for (name, key), row in earlier.items():
        if name == bench.name and key not in rows:
            row.kept = True
            rows[key] = row


def out_dir(runs: Path, bench: Bench, run: Run) -> Path:
    """``RUNS/<name>-<label>``, or a new ``...-<time>`` beside it if that one holds results."""
    base = runs / f"{bench.name}-{run.label}"
    if not (base / "results.json").exists():
        return base
    return base.with_name(f"{base.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")


def shell_command(bench: Bench, flags: list[str], out: Path) -> str:
    """The command that makes a run's results, as one types it in the repository root."""
    args = " ".join(bench.invocation(flags, str(out)))
    if bench.stdout_json:
        return f"mkdir -p {out} && python {args} > {out}/results.json"
    if bench.name == "charlm_quality":
        return f"mkdir -p {out} && python {args}"
    return f"python {args}"


def run_bench(args: list[str], out: Path, bench: Bench, quick: bool) -> str:
    """Run one benchmark (``python ARGS`` from the repository root) into ``out``; its
    sidecar records the command, threads and machine. Returns "" or the failure's last line."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *args]
    print(f"classic: running {' '.join(args)}", flush=True)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    if bench.stdout_json:
        (out / "results.json").write_text(done.stdout.strip().splitlines()[-1] + "\n")
    threads = args[args.index("--threads") + 1] if "--threads" in args else "2"
    threads = f"{threads} thread{'s' if threads != '1' else ''}"
    if bench.name == "memory_tasks":
        threads = "1 thread per worker"
    sidecar = {
        "command": args,
        "threads": threads,
        "machine": machine(),
        "quick": quick,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return ""


def build(
    runs: Path,
    *,
    run_missing: bool,
    fresh: bool,
    quick: bool,
    only: list[str] | None = None,
    earlier: dict[tuple[str, str], Row] | None = None,
) -> list[Row]:
    """Every benchmark's rows (running what is asked first), in :data:`BENCHES` order; a row
    no file holds is taken from ``earlier`` (the last table's rows) where that has it, else
    a run whose rows are missing gives one "not run" row with its command."""
    earlier = {} if fresh or quick else earlier or {}
    table: list[Row] = []
    for bench in BENCHES:
        if only and bench.name not in only:
            continue
        if quick:
            out = runs / bench.name
            failed = run_bench(bench.invocation(bench.quick, str(out)), out, bench, quick=True)
            rows = collect(runs, bench)
            table += rows.values()
            if not rows:
                command = "python " + " ".join(bench.invocation(bench.quick, "OUT"))
                table.append(Row(bench.name, "quick", bench.runs[0].task, "", None, "",
                                 note=failed, command=command))  # fmt: skip
            continue
        have = {} if fresh else collect(runs, bench)
        keep_earlier(have, bench, earlier)
        failures: dict[str, str] = {}
        for run in bench.runs:
            if (fresh or run_missing) and not set(run.keys) <= have.keys():
                out = out_dir(runs, bench, run)
                args = bench.invocation(run.flags, str(out))
                failures[run.label] = run_bench(args, out, bench, quick=False)
        rows = collect(runs, bench)
        keep_earlier(rows, bench, earlier)
        found = list(rows.values())
        for run in bench.runs:
            if not set(run.keys) <= rows.keys():
                command = shell_command(bench, run.flags, out_dir(runs, bench, run))
                found.append(Row(bench.name, run.label, run.task, run.data, None, "", run.budget,
                                 run.published, failures.get(run.label, ""), command))  # fmt: skip
        table += sorted(found, key=lambda row: order(bench, row.key))
    return table


def order(bench: Bench, key: str) -> tuple[int, int]:
    """A row's place: its run's place in ``bench.runs``, then its place in that run (a
    "not run" row, keyed by its run's label, after that run's rows)."""
    for i, run in enumerate(bench.runs):
        if key in run.keys:
            return i, run.keys.index(key)
        if key == run.label:
            return i, len(run.keys)
    return len(bench.runs), 0


def figure(value: float | str | None) -> str:
    if value is None:
        return "not run"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:g}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def baseline_lines(row: Row) -> list[tuple[str, str]]:
    """``(label figure, source)`` per baseline (a missing row: its published ones, if any)."""
    lines = [(f"{label} {figure(value)}", source) for label, value, source in row.baselines]
    if row.figure is None and not lines:
        return [("(the baselines run beside ours)", "")]
    return lines or [("-", "")]


def how_to_run(row: Row) -> str:
    """A missing row's command (and why the run classic made failed, if it did)."""
    return f"run: {row.command}" + (f" (failed: {row.note})" if row.note else "")


def text_table(rows: list[Row]) -> str:
    """Aligned text: one line per row, further baselines on the lines below it."""
    head = ("task", "data", "ours", "unit", "budget", "baseline / published", "source")
    body = []
    for row in rows:
        lines = baseline_lines(row)
        first = (row.task, row.data, figure(row.figure), row.unit, row.budget, *lines[0])
        body.append(first)
        body += [("", "", "", "", "", *more) for more in lines[1:]]
        if row.figure is None:
            body.append(("", "", "", "", "", how_to_run(row), ""))
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    fmt = lambda r: "  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), "-" * (sum(widths) + 2 * len(widths) - 2), *map(fmt, body)])


def markdown(rows: list[Row], runs: str, stated: str) -> str:
    """The table as Markdown, with where its figures come from."""
    cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = [
        "# rnnkit on real data, beside published and baseline figures",
        "",
        f"Generated by `python benchmarks/classic.py` from the result files under `{runs}` "
        f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {stated}".rstrip(),
        "A row marked *not run* has no result file yet: its command makes one.",
        "",
        "| task | data | ours | unit | budget | baseline / published | source | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines = baseline_lines(row)
        base = "<br>".join(cell(label) for label, _ in lines)
        sources = "<br>".join(cell(source) for _, source in lines)
        ours = f"**{figure(row.figure)}**" if row.figure is not None else "*not run*"
        note = cell(row.note)
        if row.figure is None:  # the command, as code
            note = f"run `{cell(row.command)}`" + (f" (failed: {note})" if note else "")
        out.append(
            f"| {cell(row.task)} | {cell(row.data)} | {ours} | {cell(row.unit)} | "
            f"{cell(row.budget)} | {base} | {sources} | {note} |"
        )
    files = sorted({row.source_file for row in rows if row.source_file and not row.kept})
    out += ["", "Result files read:", "", *[f"- `{f}`" for f in files or ["none"]], ""]
    kept = sorted({row.source_file or "?" for row in rows if row.kept})
    if kept:
        out += ["Rows kept from the earlier table (`classic.json`), their result files no "
                "longer here:", "", *[f"- `{f}`" for f in kept], ""]  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="<name>*/results.json")
    parser.add_argument(
        "--doc",
        type=Path,
        help="the Markdown (default docs/benchmarks.md; --quick: runs/classic-quick/benchmarks.md)",
    )
    parser.add_argument("--run-missing", action="store_true", help="run what has no results")
    parser.add_argument("--fresh", action="store_true", help="retrain every row")
    parser.add_argument("--quick", action="store_true", help="every --quick, a temporary dir")
    parser.add_argument("--note", default="", help="a sentence for the Markdown's header")
    parser.add_argument(
        "--only", action="append", choices=[b.name for b in BENCHES], help="these rows only"
    )
    parser.add_argument(
        "--forget-earlier",
        action="store_true",
        help="rows no results file holds say 'not run' (default: kept from --doc's classic.json)",
    )
    args = parser.parse_args(argv)
    if args.quick and (args.fresh or args.run_missing):
        parser.error("--quick runs into a temporary directory: not with --fresh/--run-missing")
    if not args.quick and not args.runs.is_dir() and not (args.fresh or args.run_missing):
        print(f"classic: --runs {args.runs}: no such directory; every row is 'not run'")
    if args.doc is None:  # smoke figures never replace the real table
        args.doc = Path("runs/classic-quick/benchmarks.md") if args.quick else DOC
    if args.doc.suffix != ".md":
        parser.error(f"--doc {args.doc}: a Markdown path ending in .md")
    with tempfile.TemporaryDirectory(prefix="classic-") as scratch:
        runs = Path(scratch) if args.quick else args.runs
        if args.fresh or args.run_missing:  # the runs start in the repository root
            runs = runs.resolve()
        try:
            saved = args.doc.with_name("classic.json")
            earlier = {} if args.forget_earlier else load_earlier(saved)
            rows = build(runs, run_missing=args.run_missing, fresh=args.fresh, quick=args.quick,
                         only=args.only, earlier=earlier)  # fmt: skip
        except UsageError as error:
            print(f"classic: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    print(text_table(rows))
    stated = args.note or ("--quick smoke runs: the figures only prove the pipeline." * args.quick)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(
        markdown(rows, "a temporary --quick dir" if args.quick else str(args.runs), stated)
    )
    data = [asdict(row) for row in rows]
    args.doc.with_name("classic.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.doc} and {args.doc.with_name('classic.json')}")
    failed = [row for row in rows if row.figure is None and row.note]
    if failed:  # a benchmark classic ran ended with an error: the table says which
        raise SystemExit(f"classic: {len(failed)} benchmark run(s) failed: {failed[0].note}")
    return rows


if __name__ == "__main__":
    main()
