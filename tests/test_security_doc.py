"""SECURITY.md names the test behind each promise: every test it names exists.

A reference is `` `tests/FILE.py::test_name` `` or, after one, `` `::test_name` `` (same file);
a file named alone (`` `tests/FILE.py` ``, `` `benchmarks/FILE.py` ``) must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
REFERENCE = re.compile(r"`((?:tests|benchmarks)/[\w/]+\.py)?(?:::(\w+))?[^`]*`")


def references(text: str) -> list[tuple[str, str | None]]:
    found, current = [], None
    for match in REFERENCE.finditer(text):
        path, name = match.groups()
        if path:
            current = path
        if path or name:
            found.append((path or current, name))
    return found


def test_every_test_security_md_names_exists():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    found = references(text)
    assert len(found) > 40  # the promises name their tests
    missing = []
    for path, name in found:
        assert path is not None, f"::{name} before any file"
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", file.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, missing


def test_the_reference_reader_follows_the_file():
    text = "`tests/a.py::test_x`, `::test_y` and `benchmarks/b.py` then `::test_z`"
    assert references(text) == [
        ("tests/a.py", "test_x"),
        ("tests/a.py", "test_y"),
        ("benchmarks/b.py", None),
        ("benchmarks/b.py", "test_z"),
    ]
