"""The long-range memory experiment: can a vanilla RNN, an LSTM and a GRU (or any registered
cell) of the same size carry information across T time steps?

What is here (torch + numpy only):

* two synthetic tasks, each a pure function ``(n, T, generator) -> TaskBatch``:

  - :func:`adding_problem` (Hochreiter & Schmidhuber 1997; the form of Le, Jaitly & Hinton 2015
    and Arjovsky, Shah & Bengio 2016): two input features per step, a value ~ U(0, 1) and a
    marker in {0, 1}; exactly two markers, the first at a uniform position in the first half
    ``[0, T//2)`` and the second in the second half ``[T//2, T)``; the target is the sum of the
    two marked values, read at the last step; loss MSE. Predicting 1.0 whatever the input gives
    MSE = Var(U1 + U2) = 1/6.
  - :func:`copy_task` (a recall variant of the copy task of Hochreiter & Schmidhuber 1997):
    ``symbols`` symbols drawn from an alphabet of ``alphabet`` are shown one-hot on the first
    steps, then blanks (all-zero inputs), then a "recall" flag (an extra feature) on the last
    step; at that last step the model outputs all the symbols at once through ``symbols`` heads
    of ``alphabet`` logits; loss cross-entropy per symbol. Guessing without memory gives
    ln(alphabet) per symbol. The memory must bridge about T steps, always: unlike the adding
    problem (whose second marker may lie near the end, a short-range foothold from which to
    learn), no example is easy, so it is the harder test at equal T.

  Each batch carries its trivial baseline measured on itself: the MSE of predicting 1.0
  (adding) and the cross-entropy of the symbol frequencies of the batch itself, per position
  (copy; the best input-free guess, slightly below ln(alphabet) by sampling).
* :class:`MemoryModel` -- a 1-layer rnnkit layer of a cell of :mod:`rnnkit.nn.registry` (by
  default RNN(tanh), LSTM and GRU) + a linear readout of the last step;
  :func:`hidden_for_budget` sizes each cell to the same parameter budget;
* :func:`run_trial` (one training run, Adam + clipping by global norm, at most a fixed number of
  steps shared by every cell, stopping early once solved) and :func:`memory_experiment` (the
  grid, optionally in worker processes);
* :func:`format_table`, the per-task table of success rates.

Devices: a trial trains on ``device`` (``rnnkit experiment memory --device``). Its batches are
drawn on the host by the seeded CPU generator -- the same data on every device -- and moved
once per batch (pinned, non-blocking); the weights are initialised on the host, then moved. The
training losses stay on the device and are read once per ``CHECK_EVERY`` steps (the early-stop
rule) and the held-out loss once at the end: no host sync per step.

A trial succeeds when its held-out loss is below ``margin * baseline`` (default margin 0.1: at
least 90% better than the trivial baseline; for the adding problem remembering only one of the
two values already leaves half the baseline, ratio 0.5). No setting is tuned per cell.

What is not here: the figure (:mod:`rnnkit.analysis.experiment_plots`) and the command line.
"""

from __future__ import annotations

import math
import multiprocessing
import time
import zlib
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.devices import describe_device, to_device
from rnnkit.errors import UserError
from rnnkit.nn.registry import get_cell, names

TASKS = ("adding", "copy")
CELLS = ("rnn", "lstm", "gru")  # the default grid; any registered cell may join it
CELL_CHOICES = names()
COPY_SYMBOLS, COPY_ALPHABET = 3, 8
TEST_SIZE = 1000
CHECK_EVERY = 100

#: The one shared setting (calibrated in benchmarks/memory_tasks.py's docstring).
DEFAULTS = {"steps": 1500, "budget": 5000, "batch": 32, "lr": 1e-2, "clip": 1.0, "margin": 0.1}
DEFAULT_LENGTHS = (10, 25, 50, 100, 200, 400)


class TaskBatch(NamedTuple):
    """Inputs (N, T, F) float32, targets ((N,) float32 or (N, S) int64) and the loss of the
    trivial, input-free predictor on this very batch."""

    inputs: Tensor
    targets: Tensor
    baseline: float


# ---- the tasks -------------------------------------------------------------------------------
def adding_problem(n: int, T: int, generator: torch.Generator) -> TaskBatch:
    """The adding problem: features (value ~ U(0,1), marker); one marker in ``[0, T//2)``, one in
    ``[T//2, T)``; target = the sum of the two marked values. Baseline: MSE of predicting 1.0."""
    if T < 2:
        raise UserError(f"adding problem: T must be >= 2, got {T}")
    values = torch.rand(n, T, generator=generator)  # (N, T)
    first = torch.randint(0, T // 2, (n,), generator=generator)
    second = torch.randint(T // 2, T, (n,), generator=generator)
    markers = torch.zeros(n, T)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = torch.stack([values, markers], dim=-1)  # (N, T, 2)
    targets = values[rows, first] + values[rows, second]  # (N,)
    baseline = float(((targets.double() - 1.0) ** 2).mean())
    return TaskBatch(inputs, targets, baseline)


def copy_task(
    n: int,
    T: int,
    generator: torch.Generator,
    *,
    symbols: int = COPY_SYMBOLS,
    alphabet: int = COPY_ALPHABET,
) -> TaskBatch:
    """The recall task: ``symbols`` one-hot symbols on steps 0..S-1, blanks, a recall flag
    (feature ``alphabet``) on step T-1; targets (N, S) are the symbols shown. Baseline: the
    cross-entropy of the batch's own symbol frequencies per position (about ln(alphabet))."""
    if T < symbols + 1:
        raise UserError(f"copy task: T must be >= symbols + 1 = {symbols + 1}, got {T}")
    targets = torch.randint(0, alphabet, (n, symbols), generator=generator)  # (N, S)
    inputs = torch.zeros(n, T, alphabet + 1)  # (N, T, A + 1)
    inputs[:, :symbols, :alphabet] = F.one_hot(targets, alphabet).float()
    inputs[:, -1, alphabet] = 1.0
    counts = F.one_hot(targets, alphabet).double().mean(dim=0)  # (S, A) frequencies
    logs = torch.where(counts > 0, counts.log(), torch.zeros_like(counts))
    baseline = float(-(counts * logs).sum(dim=1).mean())
    return TaskBatch(inputs, targets, baseline)


GENERATORS: dict[str, Callable[[int, int, torch.Generator], TaskBatch]] = {
    "adding": adding_problem,
    "copy": copy_task,
}


def task_sizes(task: str) -> tuple[int, int]:
    """(input features, readout outputs) of a task."""
    return {"adding": (2, 1), "copy": (COPY_ALPHABET + 1, COPY_SYMBOLS * COPY_ALPHABET)}[task]


def task_loss(task: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """MSE (adding) or mean cross-entropy per symbol (copy) of the readout ``outputs`` (N, O)."""
    if task == "adding":
        return F.mse_loss(outputs.squeeze(-1), targets)
    logits = outputs.view(-1, COPY_SYMBOLS, COPY_ALPHABET)  # (N, S, A)
    return F.cross_entropy(logits.reshape(-1, COPY_ALPHABET), targets.reshape(-1))


# ---- the model and its size ------------------------------------------------------------------
class MemoryModel(nn.Module):
    """A 1-layer rnnkit layer of a registered cell with its defaults (RNN: tanh), batch_first,
    and a linear readout of its last step: ``forward(inputs (N, T, F)) -> (N, O)``."""

    def __init__(
        self, cell: str, input_size: int, output_size: int, hidden: int, device=None
    ) -> None:
        super().__init__()
        layer = get_cell(cell).layer_class()
        self.rnn = layer(input_size, hidden, batch_first=True, device=device)
        self.readout = nn.Linear(hidden, output_size, device=device)

    def forward(self, inputs: Tensor) -> Tensor:
        outputs, _ = self.rnn(inputs)  # (N, T, H)
        return self.readout(outputs[:, -1])  # (N, O)


def parameter_count(cell: str, input_size: int, output_size: int, hidden: int) -> int:
    """Parameters of :class:`MemoryModel` (counted on the meta device: nothing is allocated);
    for RNN/LSTM/GRU gates x (H*F + H*H + 2H) + readout (H*O + O)."""
    model = MemoryModel(cell, input_size, output_size, hidden, device="meta")
    return sum(p.numel() for p in model.parameters())


def hidden_for_budget(cell: str, input_size: int, output_size: int, budget: int) -> int:
    """The largest hidden size whose :class:`MemoryModel` has at most ``budget`` parameters."""
    if cell not in names():
        raise UserError(f"cell must be one of {', '.join(names())}, got {cell!r}")
    if parameter_count(cell, input_size, output_size, 1) > budget:
        raise UserError(f"budget {budget} is too small for a {cell} with one hidden unit")
    hidden = 1
    while parameter_count(cell, input_size, output_size, hidden + 1) <= budget:
        hidden += 1
    return hidden


# ---- one trial -------------------------------------------------------------------------------
class Trial(NamedTuple):
    """One training run; ``loss`` is the final loss on the held-out batch, ``ratio`` =
    loss / baseline and ``success`` = ratio < margin."""

    task: str
    cell: str
    T: int
    seed: int
    hidden: int
    params: int
    loss: float
    baseline: float
    ratio: float
    success: bool
    steps_run: int
    seconds: float


def _seed(*parts: object) -> int:
    """A stable seed from the parts (Python's hash() of a str changes between processes)."""
    return zlib.crc32(repr(parts).encode())


def run_trial(
    task: str,
    cell: str,
    T: int,
    seed: int,
    *,
    steps: int = DEFAULTS["steps"],
    budget: int = DEFAULTS["budget"],
    batch: int = DEFAULTS["batch"],
    lr: float = DEFAULTS["lr"],
    clip: float = DEFAULTS["clip"],
    margin: float = DEFAULTS["margin"],
    stop_early: bool = True,
    device: torch.device | str = "cpu",
) -> Trial:
    """Train a fresh model for ``steps`` Adam steps on fresh batches, clipping the global gradient
    norm to ``clip``, then score it on a held-out batch of ``TEST_SIZE`` sequences. The data
    depend on (task, T, seed) only -- every cell sees the same batches -- and the initial
    weights on (task, cell, T, seed): the same arguments give the same Trial (but ``seconds``).

    With ``stop_early`` a trial ends once solved: when, at a multiple of ``CHECK_EVERY`` steps,
    the mean training loss of the last ``CHECK_EVERY`` batches (fresh data, never seen before) is
    below ``margin / 2`` times their mean baseline -- the same rule for every cell; it saves
    the time of runs that have nothing left to learn. ``steps_run`` says where it stopped.
    The model trains on ``device`` (see the module docstring)."""
    if task not in GENERATORS:
        raise UserError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    start = time.perf_counter()
    make = GENERATORS[task]
    input_size, output_size = task_sizes(task)
    hidden = hidden_for_budget(cell, input_size, output_size, budget)
    test = make(TEST_SIZE, T, torch.Generator().manual_seed(_seed("test", task, T, seed)))
    data = torch.Generator().manual_seed(_seed("train", task, T, seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed("init", task, cell, T, seed))
        model = MemoryModel(cell, input_size, output_size, hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    wide = torch.float32 if torch.device(device).type == "mps" else torch.float64  # MPS: no f64
    losses = torch.zeros(CHECK_EVERY, dtype=wide, device=device)  # recent training losses
    bases = np.zeros(CHECK_EVERY)  # and their batches' baselines (computed on the host)
    step = 0
    while step < steps:
        inputs, targets, base = make(batch, T, data)
        inputs, targets = to_device((inputs, targets), device)
        loss = task_loss(task, model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses[step % CHECK_EVERY], bases[step % CHECK_EVERY] = loss.detach(), base
        step += 1
        if stop_early and step % CHECK_EVERY == 0:  # the one host read per CHECK_EVERY steps
            if losses.mean().item() < 0.5 * margin * bases.mean():
                break
    test_inputs, test_targets = to_device((test.inputs, test.targets), device)
    with torch.no_grad():
        final = float(task_loss(task, model(test_inputs), test_targets))
    final = final if math.isfinite(final) else math.inf
    params = sum(p.numel() for p in model.parameters())
    ratio = final / test.baseline
    seconds = time.perf_counter() - start
    head = (task, cell, T, seed, hidden, params)
    return Trial(*head, final, test.baseline, ratio, ratio < margin, step, seconds)


# ---- the grid --------------------------------------------------------------------------------
@dataclass
class MemoryResult:
    """Every trial of :func:`memory_experiment` and the settings they shared."""

    trials: list[Trial]
    settings: dict = field(default_factory=dict)

    def select(self, task: str, cell: str, T: int) -> list[Trial]:
        return [t for t in self.trials if (t.task, t.cell, t.T) == (task, cell, T)]

    def success_rate(self, task: str, cell: str, T: int) -> float:
        """Fraction of the seeds that succeeded (nan if there is no such trial)."""
        chosen = self.select(task, cell, T)
        return sum(t.success for t in chosen) / len(chosen) if chosen else math.nan

    def mean_ratio(self, task: str, cell: str, T: int) -> float:
        chosen = self.select(task, cell, T)
        return float(np.mean([t.ratio for t in chosen])) if chosen else math.nan

    def axes(self) -> tuple[list[str], list[str], list[int]]:
        """The tasks, cells and lengths present, in the order first seen / ascending."""
        tasks = list(dict.fromkeys(t.task for t in self.trials))
        cells = list(dict.fromkeys(t.cell for t in self.trials))
        return tasks, cells, sorted({t.T for t in self.trials})

    def to_json(self) -> dict:
        tasks, cells, lengths = self.axes()
        rates = {
            task: {
                cell: {str(T): self.success_rate(task, cell, T) for T in lengths} for cell in cells
            }
            for task in tasks
        }
        return {
            "settings": self.settings,
            "success_rate": rates,
            "trials": [t._asdict() for t in self.trials],
        }


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run(args: tuple) -> Trial:
    task, cell, T, seed, options, device = args
    return run_trial(task, cell, T, seed, **options, device=device)


def _check_grid(tasks, cells, lengths, seeds, workers) -> None:
    for name, values, allowed in (("tasks", tasks, TASKS), ("cells", cells, names())):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise UserError(f"{name} must be among {', '.join(allowed)}, got {list(values)}")
    if not lengths or min(lengths) < COPY_SYMBOLS + 1:
        raise UserError(f"lengths must be >= {COPY_SYMBOLS + 1}, got {list(lengths)}")
    if seeds < 1 or workers < 1:
        raise UserError(f"seeds and workers must be >= 1, got seeds={seeds} workers={workers}")


def memory_experiment(
    tasks: Iterable[str] = TASKS,
    cells: Iterable[str] = CELLS,
    lengths: Iterable[int] = DEFAULT_LENGTHS,
    seeds: int = 3,
    *,
    steps: int = DEFAULTS["steps"],
    budget: int = DEFAULTS["budget"],
    batch: int = DEFAULTS["batch"],
    lr: float = DEFAULTS["lr"],
    clip: float = DEFAULTS["clip"],
    margin: float = DEFAULTS["margin"],
    stop_early: bool = True,
    workers: int = 1,
    progress: Callable[[Trial], None] | None = None,
    device: torch.device | str = "cpu",
) -> MemoryResult:
    """Run every (task, cell, T, seed) trial; ``workers > 1`` runs them in a spawn pool of that
    many single-threaded processes (longest first). ``progress(trial)`` is called as each one
    finishes. The trials come back sorted by (task, cell, T, seed) whatever the order run. Every
    trial trains on ``device`` (a spawn pool is safe with CUDA; the workers share the GPU)."""
    tasks, cells, lengths = list(tasks), list(cells), sorted(int(T) for T in lengths)
    _check_grid(tasks, cells, lengths, seeds, workers)
    options = dict(
        steps=steps,
        budget=budget,
        batch=batch,
        lr=lr,
        clip=clip,
        margin=margin,
        stop_early=stop_early,
    )
    grid = [(task, cell, T) for T in reversed(lengths) for task in tasks for cell in cells]
    device = torch.device(device)
    jobs = [(*key, seed, options, device) for key in grid for seed in range(seeds)]
    trials: list[Trial] = []
    spawn = multiprocessing.get_context("spawn")
    pool = spawn.Pool(workers, initializer=_init_worker) if workers > 1 else nullcontext()
    with pool:
        for trial in pool.imap_unordered(_run, jobs) if workers > 1 else map(_run, jobs):
            trials.append(trial)
            if progress:
                progress(trial)
    order = {name: i for i, name in enumerate(tasks + cells)}
    trials.sort(key=lambda t: (order[t.task], order[t.cell], t.T, t.seed))
    settings = dict(
        options,
        seeds=seeds,
        lengths=lengths,
        test_size=TEST_SIZE,
        copy_symbols=COPY_SYMBOLS,
        copy_alphabet=COPY_ALPHABET,
        device=describe_device(device),
    )
    return MemoryResult(trials, settings)


def format_table(result: MemoryResult) -> str:
    """Per task: rows = cells (hidden size, parameters), columns = T, each entry the successes
    over seeds and the mean loss / baseline ratio, e.g. ``3/3 0.02``."""
    tasks, cells, lengths = result.axes()
    margin = result.settings.get("margin", DEFAULTS["margin"])
    lines = []
    for task in tasks:
        loss = "MSE" if task == "adding" else "cross-entropy per symbol"
        lines.append(
            f"{task}: successes/seeds and mean loss/baseline ({loss}; success = "
            f"loss < {margin:g} x baseline)"
        )
        header = f"  {'cell':<5} {'hidden':>6} {'params':>6}" + "".join(
            f" {'T=' + str(T):>11}" for T in lengths
        )
        lines.append(header)
        for cell in cells:
            some = next(t for t in result.trials if (t.task, t.cell) == (task, cell))
            row = f"  {cell:<5} {some.hidden:>6} {some.params:>6}"
            for T in lengths:
                chosen = result.select(task, cell, T)
                wins = sum(t.success for t in chosen)
                entry = f"{wins}/{len(chosen)} {result.mean_ratio(task, cell, T):.2f}"
                row += f" {entry if chosen else '-':>11}"
            lines.append(row)
    return "\n".join(lines)
