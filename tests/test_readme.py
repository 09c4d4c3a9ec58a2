"""Every Python example in the README and the documentation pages runs as written (each block
in a fresh interpreter). The tutorials' executed blocks (```python exec="on"```) are not these:
they run when the site builds (`make docs`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), block)
    for page in PAGES
    for block in re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
]


def test_readme_has_examples():
    assert sum(page == "README.md" for page, _ in BLOCKS) >= 1
    assert len(BLOCKS) >= 3


IDS = [f"{page}-{index}" for index, (page, _) in enumerate(BLOCKS)]


@pytest.mark.parametrize(("page", "code"), BLOCKS, ids=IDS)
def test_example_runs(page, code):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, f"{page}:\n{result.stderr}"
