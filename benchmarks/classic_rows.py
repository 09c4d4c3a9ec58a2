"""The rows of benchmarks/classic.py's table: one reader per per-task benchmark.

Each benchmark writes ``OUT/results.json`` in its own layout; :data:`BENCHES` says, per
benchmark, how to turn that file into :class:`Row` objects (our figure beside the published or
same-run baseline, with its source) and the invocations a complete set of results takes
(:attr:`Bench.runs`: which rows each makes, with which flags). The published figures are the
benchmarks' own constants (``word_lm.PUBLISHED`` ...), imported, never copied here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import charlm_quality
import tagger_ewt
import ucr
import warpeace
import word_lm


@dataclass
class Row:
    """One line of the table: our figure and the baselines it is compared with.

    ``baselines`` holds ``(label, figure, source)``; ``figure`` is None for a row whose results
    are missing (``command`` then says how to make them)."""

    bench: str
    key: str
    task: str
    data: str
    figure: float | str | None
    unit: str
    budget: str = ""
    baselines: list[tuple[str, float | str, str]] = field(default_factory=list)
    note: str = ""
    command: str = ""
    source_file: str = ""
    kept: bool = False  # from the earlier table's classic.json: its results file is gone


@dataclass
class Run:
    """One invocation of a benchmark in a full run: the rows it makes (``keys``) and, for the
    "not run" line, what they are and the budget its defaults train for."""

    label: str  # its --out is RUNS/<bench>-<label>
    keys: tuple[str, ...]
    task: str
    data: str
    budget: str
    flags: list[str]
    published: list[tuple[str, float | str, str]] = field(default_factory=list)


@dataclass
class Bench:
    """A per-task benchmark: its script, how its results.json becomes rows, its full rows."""

    name: str  # the results live in RUNS/<name>*/results.json
    script: str
    rows: Callable[[object], list[Row]]
    runs: list[Run]  # the invocations a complete set of results takes
    quick: list[str]
    stdout_json: bool = False  # the script prints its JSON instead of writing a file

    def invocation(self, flags: list[str], out: str) -> list[str]:
        """The script, ``flags`` and the flag that puts results.json into ``out`` (none where
        the script prints its JSON: the caller saves stdout)."""
        if self.stdout_json:
            return [self.script, *flags]
        if self.name == "charlm_quality":
            return [self.script, *flags, "--json", f"{out}/results.json"]
        return [self.script, *flags, "--out", out]


def minutes(seconds: float) -> str:
    """``900`` -> ``15 min``; ``45`` -> ``45 s``."""
    return word_lm.budget(seconds)


def spent(seconds: float, figures: dict) -> str:
    """The budget, with ``--quick`` and the threads where the results record them."""
    parts = ["--quick" if figures.get("quick") else minutes(seconds)]
    if figures.get("threads") is not None:
        threads = int(figures["threads"])
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    return ", ".join(parts)


NANOGPT = "github.com/karpathy/nanoGPT README (shakespeare_char)"
CHARLM_SOURCES = {
    "nanoGPT char model, CPU recipe, ~2 min": NANOGPT + ", the CPU/MacBook recipe",
    "plain PyTorch LSTM script, ~2 min": "benchmarks/charlm_quality.py REFERENCES (no paper)",
    "nanoGPT 10M transformer, A100 GPU": NANOGPT + ", the A100 run",
}
SHAKESPEARE = "Tiny Shakespeare (bundled), contiguous 90/10, val"
CHARLM_PUBLISHED = [(name, value, CHARLM_SOURCES.get(name, "charlm_quality.py"))
                    for name, value in charlm_quality.REFERENCES]  # fmt: skip


def charlm_rows(results: list[dict]) -> list[Row]:
    """charlm_quality.py --json: ``[{preset, seconds, steps, loss, bpc, ...}]``."""
    return [
        Row(
            "charlm_quality",
            r["preset"],
            f"char LM, {r['preset']} preset",
            SHAKESPEARE,
            r["loss"],
            "val nats/char",
            spent(r["seconds"], r),
            CHARLM_PUBLISHED,
            f"{r['steps']:,} steps; target <= {charlm_quality.TARGETS[r['preset']][1]}",
        )  # fmt: skip
        for r in results
    ]


KARPATHY = "Karpathy, Johnson & Fei-Fei (2015), arXiv:1506.02078, Table 1"
WARPEACE_PUBLISHED = [(name, loss, KARPATHY) for name, loss in warpeace.PUBLISHED]


def warpeace_rows(results: list[dict]) -> list[Row]:
    """warpeace.py: ``[{preset, seconds, steps, val_loss, test_loss, test_bpc, ...}]``."""
    return [
        Row(
            "warpeace",
            f"{r['seconds']:g}",
            "char LM, warpeace preset",
            "War and Peace, contiguous 80/10/10, test",
            r["test_loss"],
            "test nats/char",
            spent(r["seconds"], r),
            WARPEACE_PUBLISHED,
            f"{r['steps']:,} steps; {r['test_bpc']:.3f} bits/char",
        )  # fmt: skip
        for r in results
    ]


def ptb_source(name: str) -> str:
    """Where each of word_lm.PUBLISHED's rows is published (its own printed note)."""
    if name.startswith("pytorch/examples"):
        return "github.com/pytorch/examples word_language_model README"
    if name.startswith("Zaremba"):
        return "Zaremba, Sutskever & Vinyals (2014), Table 1"
    return "github.com/salesforce/awd-lstm-lm README"


def ptb_published() -> tuple[list, list]:
    """word_lm.PUBLISHED's test perplexities without the cache, and with one (where given)."""
    plain = [(name, test, ptb_source(name)) for name, test, _ in word_lm.PUBLISHED]
    cached = [(n, c, ptb_source(n)) for n, _, c in word_lm.PUBLISHED if c is not None]
    return plain, cached


def word_lm_rows(results: list[dict]) -> list[Row]:
    """word_lm.py: ``[{seconds, steps, test_ppl, cache_ppl, cache_theta, ...}]``: a row
    without the cache and one with it."""
    rows = []
    for r in results:
        budget, data = spent(r["seconds"], r), "Penn Treebank (Mikolov), test"
        plain, cached = ptb_published()
        steps = f"{r['steps']:,} steps"
        rows += [
            Row("word_lm", f"{r['seconds']:g}", "word LM, ptb preset", data, r["test_ppl"],
                "test perplexity", budget, plain, steps),
            Row("word_lm", f"{r['seconds']:g}+cache", "word LM, ptb preset + neural cache",
                data, r["cache_ppl"], "test perplexity", budget, cached,
                f"{steps}; cache {r['cache_size']}, theta {r['cache_theta']:g}, "
                f"lambda {r['cache_lambda']:g} (tuned on valid)"),
        ]  # fmt: skip
    return rows


def ewt_published(published: list) -> list[tuple[str, float, str]]:
    """tagger_ewt.PUBLISHED's rows (or their JSON copy) as (system (treebank), UPOS %, where)."""
    return [(f"{s} ({tb})", upos, src) for s, tb, upos, src in published]


def tagger_rows(results: dict) -> list[Row]:
    """tagger_ewt.py: ``{"results": [{variant, max_time_s, quick, test_upos, ...}],
    "published": [[system, treebank, upos %, source]]}``."""
    published = ewt_published(results["published"])
    return [
        Row(
            "tagger_ewt",
            r["variant"],
            f"UPOS tagging, tag preset, {r['variant']}",
            "English-EWT (UD), official test",
            100 * r["test_upos"],
            "% test UPOS",
            spent(r["max_time_s"], r),
            published,
            f"dev {100 * r['dev_upos']:.2f}; {r['tag_sentences_per_s']:,.0f} sentences/s tagged",
        )  # fmt: skip
        for r in results["results"]
    ]


def ucr_rows(results: dict) -> list[Row]:
    """ucr.py: ``{"settings": {max_time, threads, quick}, "results": {set: {"rnnkit":
    {accuracy}, "dtw": {accuracy}, "published": [{method, accuracy, source}]}}}``."""
    settings = results["settings"]
    budget = spent(settings["max_time"], settings)
    rows = []
    for name, r in results["results"].items():
        here = ("1-NN DTW (w=100%), this run", r["dtw"]["accuracy"], "sktime's numba DTW")
        published = [(p["method"], p["accuracy"], p["source"]) for p in r["published"]]
        rows.append(
            Row(
                "ucr",
                name,
                "sequence classification, ucr preset",
                f"{name} (UCR/UEA), test",
                r["rnnkit"]["accuracy"],
                "test accuracy",
                budget,
                [here, *published],
            )  # fmt: skip
        )
    return rows


STATSFORECAST = "statsforecast, same windows, this run (forecast_real.py)"


def forecast_rows(results: dict) -> list[Row]:
    """forecast_real.py: ``{series: {steps, horizon, windows, season, models: {model: {mase,
    smape, quantile_loss, coverage80, crps?, train_seconds?}}}}``: MASE and 80% coverage."""
    rows = []
    settings = results.get("settings", {})  # max_time, threads, quick (files since 2026-12-07)
    for name, r in results.items():
        if name == "settings":
            continue
        models = r["models"]
        ours, others = models["rnnkit"], {k: v for k, v in models.items() if k != "rnnkit"}
        data = f"{name}, {r['windows']} windows x {r['horizon']} steps"
        budget = spent(ours["train_seconds"], settings) if "train_seconds" in ours else ""
        crps = f", CRPS {ours['crps']:.4g}" if "crps" in ours else ""
        rows += [
            Row("forecast_real", f"{name}-mase", "forecasting, Student-t, sampled paths", data,
                ours["mase"], "MASE", budget,
                [(k, v["mase"], STATSFORECAST) for k, v in others.items()],
                f"sMAPE {ours['smape']:.2f}{crps}"),
            Row("forecast_real", f"{name}-coverage", "forecasting, 80% interval", data,
                ours["coverage80"], "coverage (target 0.75-0.85)", budget,
                [(k, v["coverage80"], STATSFORECAST) for k, v in others.items()]),
        ]  # fmt: skip
    return rows


def horizon(rates: dict[str, float]) -> int | None:
    """The longest T that every seed solved (``rates``: ``{"T": success rate}``)."""
    solved = [int(T) for T, rate in rates.items() if rate == 1.0]
    return max(solved) if solved else None


def memory_rows(results: dict) -> list[Row]:
    """memory_tasks.py --json (``MemoryResult.to_json()``): ``{"settings", "success_rate":
    {task: {cell: {T: rate}}}, "trials"}``: per task and cell, the longest T solved, beside
    the plain tanh RNN of the same run (no published figure matches this budget)."""
    s = results["settings"]
    budget = f"{s.get('budget', '?')} params, <= {s.get('steps', '?')} steps"
    rows = []
    for task, cells in results["success_rate"].items():
        tried = sorted({int(T) for rates in cells.values() for T in rates})
        base = horizon(cells["rnn"]) if "rnn" in cells else None
        baseline = [("tanh RNN, same budget, this run", base or "none", "memory_tasks.py")]
        # "none": not even the shortest T tried was solved by every seed
        for cell, rates in cells.items():
            rows.append(
                Row("memory_tasks", f"{task}-{cell}", f"{task} problem, {cell}",
                    f"synthetic, T in {tried}", horizon(rates) or "none",
                    "longest T solved by every seed", budget, [] if cell == "rnn" else baseline)
            )  # fmt: skip
    return rows


BENCHES = [
    Bench(
        "charlm_quality", "benchmarks/charlm_quality.py", charlm_rows,
        [Run(p, (p,), f"char LM, {p} preset", SHAKESPEARE, minutes(t), ["--preset", p],
             CHARLM_PUBLISHED)
         for p, (t, _) in charlm_quality.TARGETS.items()],
        ["--max-time", "3", "--threads", "1"],
    ),
    Bench(
        "warpeace", "benchmarks/warpeace.py", warpeace_rows,
        [Run(f"{s}s", (f"{s}",), "char LM, warpeace preset", "War and Peace", minutes(s),
             ["--short-time", "0", "--max-time", f"{s}"], WARPEACE_PUBLISHED)
         for s in (900, 3600)],
        ["--quick", "--threads", "1"],
    ),
    Bench(
        "word_lm", "benchmarks/word_lm.py", word_lm_rows,
        [Run(f"{s}s", (f"{s}", f"{s}+cache"), "word LM, ptb preset, with and without the cache",
             "Penn Treebank", minutes(s), ["--short-time", "0", "--max-time", f"{s}"],
             ptb_published()[0] + [(f"{n} + cache", c, w) for n, c, w in ptb_published()[1]])
         for s in (900, 3600)],
        ["--quick", "--threads", "1"],
    ),
    Bench(
        "tagger_ewt", "benchmarks/tagger_ewt.py", tagger_rows,
        [Run(v, (v,), f"UPOS tagging, tag preset, {v}", "English-EWT", minutes(900),
             ["--variant", v], ewt_published(tagger_ewt.PUBLISHED))
         for v in tagger_ewt.VARIANTS],
        ["--quick", "--threads", "1"],
    ),
    Bench(
        "ucr", "benchmarks/ucr.py", ucr_rows,
        [Run(n, (n,), "sequence classification, ucr preset", f"{n} (UCR/UEA)", minutes(180),
             ["--sets", n], ucr.PUBLISHED[n]) for n in ucr.SETS],
        ["--quick", "--threads", "1"],
    ),
    Bench(
        "forecast_real", "benchmarks/forecast_real.py", forecast_rows,
        [Run(n, (f"{n}-mase", f"{n}-coverage"), "forecasting: MASE and 80% interval coverage",
             n, f"<= {minutes(900)}", ["--series", n]) for n in ("taylor", "co2")],
        ["--quick", "--threads", "1"],
    ),
    Bench(
        "memory_tasks", "benchmarks/memory_tasks.py", memory_rows,
        [Run(t, tuple(f"{t}-{c}" for c in ("rnn", "lstm", "gru")), f"{t} problem, rnn/lstm/gru",
             "synthetic", "about 10 min", ["--tasks", t, "--json"]) for t in ("adding", "copy")],
        ["--cells", "rnn", "lstm", "--lengths", "5", "10", "--seeds", "1", "--steps", "20",
         "--workers", "1", "--json"],
        stdout_json=True,
    ),
]  # fmt: skip
