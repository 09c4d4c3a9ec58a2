"""The one-way house is enforced: pyproject's import-linter contracts exist, name every layer of
docs/STYLE.md, and hold (``lint-imports``, the command ``make lint`` and ``make test`` run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = {c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
             ["importlinter"]["contracts"]}  # fmt: skip


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="the dev extra installs import-linter")
    command = "from importlinter.cli import lint_imports_command as c; raise SystemExit(c())"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_are_declared():
    assert set(CONTRACTS) == {"layers", "oracle", "acyclic"}
    layers = [set(layer.replace(" ", "").split("|")) for layer in CONTRACTS["layers"]["layers"]]
    order = ["commands", "trainer", "tasks", "models", "nn"]  # the flow, top down
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    assert [rank[name] for name in order] == sorted(rank[name] for name in order)
    assert len({rank[name] for name in order}) == len(order)  # each its own layer
    # checkpoint I/O, data and config sit beside the flow: below the tasks, above nothing of it
    for beside in ("checkpoint", "data", "config", "training"):
        assert rank["tasks"] < rank[beside]
    assert CONTRACTS["layers"]["exhaustive"] is True
    assert set(CONTRACTS["oracle"]["forbidden_modules"]) == {"torch", "rnnkit.*"}


def test_every_package_module_is_placed():
    """A new module of rnnkit is given a layer (the exhaustive contract would fail otherwise)."""
    named = {n.strip() for layer in CONTRACTS["layers"]["layers"] for n in layer.split("|")}
    named |= set(CONTRACTS["layers"]["exhaustive_ignores"])
    package = ROOT / "src" / "rnnkit"
    children = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    children |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert children <= named, sorted(children - named)


def test_lint_imports_keeps_every_contract():
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout
