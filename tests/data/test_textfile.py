"""The one reader every task's data format goes through: one-line errors naming the file."""

from __future__ import annotations

import pytest

from rnnkit.data.textfile import read_text
from rnnkit.errors import UserError


def test_reads_utf8_and_drops_a_bom(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffcafé\n".encode())
    assert read_text(tmp_path / "a.txt", empty_hint="x") == "café\n"


def test_errors_name_the_file_the_line_and_the_byte(tmp_path):
    with pytest.raises(UserError, match=r"^no such file: .*nope\.txt$"):
        read_text(tmp_path / "nope.txt")
    (tmp_path / "b.txt").write_bytes(b"ok\nfine\nbad \xe9\n")
    with pytest.raises(UserError, match=r"b\.txt:3: invalid UTF-8 at byte offset 12 \(0xe9\)"):
        read_text(tmp_path / "b.txt")
    (tmp_path / "c.txt").write_text(" \n\n")
    with pytest.raises(UserError, match=r"c\.txt is empty \(add lines\)$"):
        read_text(tmp_path / "c.txt", empty_hint="add lines")
    assert read_text(tmp_path / "c.txt") == " \n\n"  # no hint: blank is the caller's business
    with pytest.raises(UserError, match="cannot read"):
        read_text(tmp_path)  # a directory
