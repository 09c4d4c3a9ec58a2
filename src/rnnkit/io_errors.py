"""I/O failures as one line: ``rnnkit: error: cannot write runs/x/last: No space left on device``.

A full disk (ENOSPC), a file-size limit (EFBIG; ``rnnkit.cli.main`` ignores SIGXFSZ so that
``write`` fails instead of the process dying), a read-only file system (EROFS), a path through
a regular file (ENOTDIR), a dangling link or a missing permission is the user's to fix, not a
bug: ``writing(path)`` turns the OSError raised while writing ``path`` into a UserError naming
it, and ``cli.main`` prints any other OSError that reaches it with ``os_error_line`` (the file
the error names, and the cause), exit status 2. Whoever writes leaves what was there before
intact (atomic writes: see ``rnnkit/checkpoint/files.py``); this module only words the failure.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rnnkit.errors import UserError


def reason(error: OSError) -> str:
    """The cause in words ("No space left on device"), without the errno and file name."""
    if error.strerror:
        return error.strerror
    if error.errno in errno.errorcode:  # e.g. a library's OSError(errno) without text
        return os.strerror(error.errno)
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def writing(path: str | Path, what: str = "write") -> Iterator[None]:
    """Inside, an OSError becomes ``UserError("cannot {what} {path}: {cause}")``."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot {what} {path}: {reason(error)}") from None


def os_error_line(error: OSError) -> str:
    """One line for an OSError nothing closer to it explained: the path(s) it names, the cause."""
    names = [str(n) for n in (error.filename, error.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason(error)}" if names else reason(error)
