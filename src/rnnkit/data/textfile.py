"""Reading a whole data file as text, with the errors every task reader shares.

    text = read_text(path, empty_hint="add pairs to it or remove it from the inputs")

Strict UTF-8 (a leading byte-order mark is dropped). Every failure is one UserError line naming
the file: missing (``no such file: PATH``), unreadable, not UTF-8 (``PATH:LINE: invalid UTF-8 at
byte offset N (0xNN); save it as UTF-8``), or empty / blank (``PATH is empty (HINT)``). The
char-level corpus (``corpus.py``) streams instead, since it may be far larger than memory.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import UserError


def read_text(path: str | Path, *, empty_hint: str | None = None) -> str:
    """The text of ``path``; ``empty_hint=None`` lets an empty or blank file through."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise UserError(
            f"{path}:{line}: invalid UTF-8 at byte offset {error.start} "
            f"({raw[error.start]:#04x}); save it as UTF-8"
        ) from None
    if empty_hint is not None and not text.strip():
        raise UserError(f"{path} is empty ({empty_hint})")
    return text
