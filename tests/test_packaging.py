"""`python -m build` makes an sdist and a wheel (the wheel built from the sdist, as build does)
that install into a clean virtual environment, where the installed `rnnkit` console script
answers `--version` with rnnkit.__version__ and runs `rnnkit demo`; the wheel carries the data,
the presets, the report template and the `py.typed` marker.

The clean environment gets rnnkit from the wheel (and from the sdist) with `--no-deps`; its
dependencies (torch and the rest, hundreds of MB) are made visible from this test's environment
by a path file, so the test needs no download beyond the build backend, yet what it imports and
runs as `rnnkit` is the installed package, not the source tree."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import rnnkit

ROOT = Path(__file__).parents[1]
pytest.importorskip("build", reason="the docs extra is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def clean_env(where: Path) -> Path:
    """A new virtual environment whose only extra path is this environment's site-packages
    (for the dependencies): returns its python."""
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_wheel_holds_the_package_data(dist):
    wheel = next(dist.glob("rnnkit-*.whl"))
    assert wheel.name.startswith(f"rnnkit-{rnnkit.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("rnnkit/py.typed", "rnnkit/data/tinyshakespeare.txt",
                 "rnnkit/configs/default.toml", "rnnkit/analysis/report.html"):  # fmt: skip
        assert name in names
    assert next(dist.glob(f"rnnkit-{rnnkit.__version__}.tar.gz"))


@pytest.mark.parametrize("kind", ["whl", "tar.gz"])
def test_it_installs_and_runs_in_a_clean_environment(dist, tmp_path, kind):
    python = clean_env(tmp_path / "env")
    package = next(dist.glob(f"rnnkit-*.{kind}"))
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(package)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    script = tmp_path / "env" / "bin" / "rnnkit"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and rnnkit.__version__ in version.stdout, version
    where = subprocess.run(
        [python, "-c", "import rnnkit; print(rnnkit.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    ).stdout  # fmt: skip
    assert str(tmp_path / "env") in where, where  # the installed copy, not the source tree
    demo = subprocess.run([script, "demo"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)  # fmt: skip
    assert demo.returncode == 0 and "Traceback" not in demo.stderr, demo.stderr[-2000:]
