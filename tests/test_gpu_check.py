"""``benchmarks/gpu_check.sh`` and ``gpu_check.py``, and the ``gpu`` preset, on the CPU.

The GPU machine runs the check once, with the system Python and no network: it must be right
the first time. So here: the script's whole path runs (``--device cpu --quick``: every row real,
on tiny shapes) with every package the GPU machine lacks blocked from import, in the script and
in the rnnkit children it starts; the shell script's steps run with a stand-in Python; the
preset validates and builds. No timing is asserted.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
#: what the GPU machine has besides the standard library (issue 17, item 8)
GPU_MACHINE = ("torch", "numpy", "safetensors", "tqdm", "matplotlib", "sacrebleu", "onnx",
               "onnxruntime", "hypothesis", "pytest")  # fmt: skip
ROWS = [
    "fp32 GEMM", "bf16 GEMM", "train: rnnkit (fused) chars/s",
    "train: hand-written torch.nn.LSTM chars/s", "train: rnnkit / hand-written",
    "bf16 step speed-up over fp32", "fp16 step speed-up over fp32",
    "bf16 - fp32 val loss, equal steps", "cells path (compiled) / fused time",
    "cells path (plain) / fused time", "MinGRU over cuDNN GRU, T = 64",
    "generate: 1 stream chars/s", "generate: 1,024 streams chars/s",
    "generate: 1,024 streams / 1 stream",
    "gpu preset: Tiny Shakespeare val loss (rnnkit eval, full split)",
    "gpu preset: the run (rnnkit train --preset gpu)",
]  # fmt: skip
#: imported first by every Python started with this directory on PYTHONPATH: hides the modules
#: named in $GPU_CHECK_BLOCKED as a machine without them would (``import`` raises
#: ModuleNotFoundError and ``importlib.util.find_spec`` gives None: torch._dynamo probes
#: optional packages such as pandas that way), and says it was here
BLOCKER = """
import importlib.machinery, json, os, sys

_BLOCKED = set(json.loads(os.environ["GPU_CHECK_BLOCKED"]))
with open(os.environ["GPU_CHECK_LOADED"], "a") as _f:
    _f.write(f"{os.getpid()}\\n")


class _PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [
    _PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
"""


def gpu_machine_distributions() -> set[str]:
    """The GPU machine's distributions and everything they require (extras left out), as
    installed here; names normalised."""
    seen, todo = set(), list(GPU_MACHINE)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def setuptools_vendored() -> set[str]:
    """The modules setuptools carries in its ``_vendor`` directory (jaraco, more_itertools...),
    which it puts on ``sys.path`` once imported: wherever setuptools is, they are too (and
    ``packages_distributions`` lists them only after some earlier code imported setuptools)."""
    spec = importlib.util.find_spec("setuptools")
    if spec is None or spec.origin is None:
        return set()
    vendor = Path(spec.origin).parent / "_vendor"
    return {p.name.removesuffix(".py") for p in vendor.iterdir()} if vendor.is_dir() else set()


def blocked_modules() -> list[str]:
    """Top-level modules installed here whose distribution the GPU machine does not have."""
    allowed = gpu_machine_distributions() | {"rnnkit", "pip", "setuptools"}
    vendored = setuptools_vendored()
    return sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if not {d.lower().replace("_", "-") for d in dists} & allowed and module not in vendored
    )


def blocked_env(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")]),
        "GPU_CHECK_BLOCKED": json.dumps(blocked_modules()),
        "GPU_CHECK_LOADED": str(tmp_path / "loaded.txt"),
    }


def test_the_blocker_refuses_what_the_gpu_machine_lacks(tmp_path):
    blocked = blocked_modules()
    assert {"fastapi", "uvicorn", "httpx"} <= set(blocked)  # installed here (the dev extra)
    assert not {"torch", "numpy", "matplotlib", "onnx", "pytest"} & set(blocked)
    env = blocked_env(tmp_path)
    probe = ("import importlib.util, numpy, torch\nprint(importlib.util.find_spec('fastapi'))\n"
             "try:\n import fastapi\nexcept ImportError as e:\n print(e)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.stdout.splitlines() == ["None", "No module named 'fastapi'"], result.stderr
    assert (tmp_path / "loaded.txt").read_text().split(), "the blocker did not run"


def test_the_gpu_tests_collect_with_only_the_gpu_machines_packages(tmp_path):
    """Step 1 of gpu_check.sh, collection only: every test module imports there (a module that
    needs a missing package skips itself with ``pytest.importorskip``), and gpu tests exist.
    (the pytest plugins installed here -- anyio, xdist -- and hypothesis's entry points are
    this machine's: off, as there.)"""
    env = blocked_env(tmp_path) | {
        "HYPOTHESIS_NO_PLUGINS": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
               "-p", "no:cacheprovider", "-p", "no:anyio", "tests"]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR ")]
    assert not errors, result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) >= 10  # the gpu-marked tests of the trainer, tasks, bench ...


def test_gpu_check_quick_runs_every_row_with_only_the_gpu_machines_packages(tmp_path):
    """The whole script on the CPU, tiny: figures, the gpu preset's run, its eval, the table."""
    env = blocked_env(tmp_path) | {"OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
               "--quick", "--out", str(out), "--max-time", "60"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len((tmp_path / "loaded.txt").read_text().split()) >= 3  # script, train and eval
    payload = json.loads((out / "gpu_check.json").read_text())
    assert payload["title"].startswith("gpu_check: cpu, torch ")
    rows = payload["rows"]
    assert [r["figure"] for r in rows] == ROWS
    for r in rows:  # every figure measured (none FAILED), its target judged
        assert r["measured"] != "-" and not r["verdict"].startswith("FAILED"), r
        assert r["verdict"] in ("PASS", "MISS", "-"), r
        assert (r["verdict"] == "-") == (r["target"] == "-"), r
    assert payload["run"]["eval"]["chars"] > 100_000  # the whole validation split
    assert payload["run"]["steps"] == 4 and (out / "run" / "best").is_dir()
    table = (out / "gpu_check.md").read_text()
    assert table.count("\n| ") == len(rows) + 2  # header, rule, rows
    cells = [line.replace("\\|", "").count("|") for line in table.splitlines()[2:]]
    assert set(cells) == {5}  # four cells a line: "|x| <= 0.02" escaped
    assert table.strip() in result.stdout  # printed, the one table


def test_the_table_says_why_a_figure_is_missing():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    figures = {"device": "cuda:0 (X)", "bf16_val_delta": -0.03, "train_ratio_vs_torch": 0.98,
               "compiled_error": "BackendCompilerFailed: no compiler",
               "precision_refused": {"fp16": "fp16 refused"},
               "failed": {"minimal": "RuntimeError: cuDNN"}}  # fmt: skip
    run = {"error": "rnnkit train exited 2: rnnkit: error: x"}
    rows = {r["figure"]: r for r in gpu_check.table_rows(figures, run, None, quick=False)}
    assert rows["train: rnnkit / hand-written"]["verdict"] == "PASS"
    assert rows["bf16 - fp32 val loss, equal steps"]["verdict"] == "MISS"  # |-0.03| > 0.02
    assert rows["cells path (compiled) / fused time"]["verdict"] == (
        "FAILED: BackendCompilerFailed: no compiler"
    )
    assert rows["fp16 step speed-up over fp32"]["verdict"] == "FAILED: fp16 refused"
    assert rows["MinGRU over cuDNN GRU, T = 2,048"]["verdict"] == "FAILED: RuntimeError: cuDNN"
    loss = rows["gpu preset: Tiny Shakespeare val loss (rnnkit eval, full split)"]
    assert loss["verdict"] == "FAILED: rnnkit train exited 2: rnnkit: error: x"
    tests = gpu_check.read_tests(str(ROOT / "nowhere.log"), 2)
    assert tests == {"summary": "(no summary: see the log)", "status": 2}


def test_no_section_starts_after_the_figures_budget(monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    measured = []
    monkeypatch.setattr(gpu_check, "measure", lambda group, *args: measured.append(group) or {})
    figures = gpu_check.measure_figures(torch.device("cpu"), True, -1.0, print)
    assert measured == [] and figures["device"] == "cpu"
    assert set(figures["failed"]) == {"machine", "training", "precision", "generation",
                                      "minimal", "cells"}  # fmt: skip
    assert figures["failed"]["cells"] == "skipped: the figures' time budget (-1 s) was spent"
    rows = gpu_check.table_rows(figures, {"error": "x"}, None, quick=True)
    assert all(r["verdict"].startswith("FAILED") for r in rows if r["target"] != "-")


FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in *"-m pytest"*) echo "1 failed, 2 passed in 1.0s"; exit 1;; esac
"""


@pytest.mark.parametrize("where", ["argument", "OUT", "both"])
def test_gpu_check_sh_runs_its_steps_in_order_into_one_directory(tmp_path, where):
    """The shell script with a stand-in Python: pytest -m gpu, then gpu_check.py on cuda with
    the tests' log and status, all under the output directory ($1, else $OUT); a failing test
    does not stop the figures."""
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out = tmp_path / "results"
    unset = ("OUT", "RUN_DIR", "GPU_CHECK_DEVICE", "GPU_CHECK_QUICK")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env |= {"PYTHON": str(fake), "FAKE_LOG": str(tmp_path / "calls.txt")}
    args = [] if where == "OUT" else [str(out)]
    if where != "argument":
        env["OUT"] = str(out) if where == "OUT" else str(tmp_path / "not-this-one")
    result = subprocess.run(["bash", str(script), *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 4 and calls[0].startswith("-c import sys, torch")  # (a 2-line -c)
    calls = calls[1:]
    assert calls[1].startswith("-m pytest -q -m gpu -p no:cacheprovider")
    assert calls[2].split()[:5] == [
        "benchmarks/gpu_check.py",
        "--device",
        "cuda",
        "--out",
        str(out),
    ]
    assert "--tests-status 1" in calls[2] and f"--tests-log {out}/gpu_tests.log" in calls[2]
    assert f"--run-dir {out}/run" in calls[2] and "--quick" not in calls[2]
    assert "1 failed, 2 passed" in (out / "gpu_tests.log").read_text()
    assert (out / "gpu_check.log").exists() and not (tmp_path / "not-this-one").exists()


# ---- the gpu preset ------------------------------------------------------------------------


def test_the_gpu_preset_validates_and_builds_on_the_meta_device():
    from rnnkit.benchmark.shapes import GPU_SHAPE
    from rnnkit.config import RunConfig, apply_overrides, load_preset, validate
    from rnnkit.models import LanguageModel

    config = RunConfig()
    apply_overrides(config, load_preset("gpu"), "preset gpu")
    validate(config)
    m, t = config.model, config.train
    assert (t.precision, t.max_time, t.schedule, t.eval_batches) == ("bf16", 240, "cosine", 0)
    shape = {"vocab": 65, "embed": m.embed, "hidden": m.hidden, "layers": m.layers,
             "seq_len": t.seq_len, "batch": t.batch_size}  # fmt: skip
    assert shape == GPU_SHAPE  # what rnnkit bench --device cuda trains
    m.vocab_size = 65
    with torch.device("meta"):
        model = LanguageModel(m)
    assert 20e6 < model.num_parameters() < 25e6  # 3 x 1024 LSTM: ~21 M parameters


def test_the_gpu_preset_trains_a_step_on_the_cpu_when_shrunk(tmp_path, capsys):
    from rnnkit.cli import main

    out = tmp_path / "run"
    run = ["train", "--preset", "gpu", "--device", "cpu", "--max-steps", "1", "--embed", "8",
           "--hidden", "16", "--layers", "1", "--seq-len", "8", "--batch-size", "4",
           "--eval-batches", "2", "--sample-every", "0", "--out", str(out)]  # fmt: skip
    assert main(run) == 0
    saved = json.loads((out / "last" / "config.json").read_text())["config"]
    assert saved["train"]["precision"] == "bf16" and saved["model"]["dropout"] == 0.3
