"""The documentation site builds with --strict (no broken link, no missing API reference, no
formula that cannot render) and holds what it promises: an API page for every public name, the
cells' equations as MathML, a front-page README. The tutorials' code is not run here (it runs
in `make docs`, minutes): their blocks are built as code that is shown, not executed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rnnkit

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parents[1]
EXECUTED = re.compile(r'^( *)```python [^\n]*exec="on"[^\n]*$', re.M)  # markdown-exec's blocks
pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from a copy of docs/ in which the tutorials' executed blocks are plain
    code blocks: shown, not run (`make docs` runs them)."""
    work = tmp_path_factory.mktemp("docs")
    docs, out = work / "docs", work / "site"
    shutil.copytree(ROOT / "docs", docs)
    for page in docs.rglob("*.md"):
        page.write_text(EXECUTED.sub(r"\1```python", page.read_text()))
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}")
    hooks = ROOT / "tools" / "mkdocs_hooks.py"
    config = config.replace("  - tools/mkdocs_hooks.py", f"  - {hooks}")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "-", "-d", str(out)],
        input=config, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_public_name_has_an_api_entry(site):
    pages = "".join(p.read_text() for p in (site / "reference").rglob("*.html"))
    missing = [name for name in rnnkit.__all__ if f'id="rnnkit.{name}"' not in pages]
    assert missing == []


def test_equations_render_as_mathml(site):
    layers = (site / "reference" / "layers" / "index.html").read_text()
    assert layers.count("<math") >= 10
    assert 'class="arithmatex"' not in layers  # every formula was converted
    assert "<mi>tanh</mi>" in layers


def test_the_site_works_offline(site):
    """No font, script or stylesheet from another host: the site works without a network."""
    index = (site / "index.html").read_text()
    remote = re.findall(r'<(?:link|script)[^>]+(?:href|src)="(https?://[^"]+)"', index)
    assert remote == []


def test_every_page_is_in_the_navigation(site):
    built = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    assert "reference/modern/index.html" in built and "tutorials/bptt/index.html" in built
    assert len(built) >= 25


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "rnnkit.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", rnnkit.__version__)
    assert f"## {rnnkit.__version__} - " in (ROOT / "CHANGELOG.md").read_text()
