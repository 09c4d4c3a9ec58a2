"""A run written by release 0.1.0 (before the nn/checkpoint/commands restructuring) still loads,
samples the same text for the same seed, evaluates to the same loss and resumes exactly.

The fixture (tests/fixtures/release-0.1.0-lm) was made with release 0.1.0 by
``rnnkit train --preset tiny --out run --max-steps 60 --seed 3``; the expected values below are
what that release printed for the commands these tests run (on the CPU: `--device cpu`, so a GPU
machine, whose generator draws other numbers, checks the same figures).
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from subprocess_cli import rnnkit as run_rnnkit

FIXTURE = Path(__file__).parent / "fixtures" / "release-0.1.0-lm"
SAMPLE = "ROMEO:\nCawos lhere the uagl, uthatme ony m ce hos winrsa vhardear \n"
EVAL_LOSS = 2.9094036000467467  # rnnkit eval RUN --json, the val split
RESUMED_VAL_LOSS = 2.79682  # metrics.csv after --resume to step 70


def rnnkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_rnnkit(*args, cwd=cwd)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "run")
    return tmp_path / "run"


def test_an_old_run_samples_the_same_text(run: Path) -> None:
    done = rnnkit(
        "sample", "run", "--seed", "1", "--length", "60", "--prime", "ROMEO:",
        "--temperature", "0.8", "--device", "cpu", cwd=run.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == SAMPLE


def test_an_old_run_evaluates_to_the_same_loss(run: Path) -> None:
    done = rnnkit("eval", "run", "--json", "--device", "cpu", cwd=run.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["loss"] == pytest.approx(EVAL_LOSS, rel=1e-6)


def test_an_old_run_resumes_where_it_stopped(run: Path) -> None:
    done = rnnkit(
        "train", "--resume", "run", "--max-steps", "70", "--device", "cpu", cwd=run.parent
    )
    assert done.returncode == 0, done.stderr
    rows = (run / "metrics.csv").read_text().splitlines()
    last = rows[-1].split(",")
    assert (last[0], last[2]) == ("70", "val")
    assert float(last[3]) == pytest.approx(RESUMED_VAL_LOSS, abs=2e-5)
