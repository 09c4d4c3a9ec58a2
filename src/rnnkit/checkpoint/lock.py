"""One trainer per run directory: an exclusive ``flock`` on ``RUN/.lock`` for the life of
``rnnkit train`` (and ``train --resume``).

    rnnkit train --out runs/x &  rnnkit train --resume runs/x
    rnnkit: error: --out runs/x is being trained by another process (pid 4242); ...

The lock is held by an open file, so the kernel drops it when the process ends however it ends
(SIGKILL included): a ``.lock`` file left behind by a killed run blocks nothing, only a live
holder does. The file holds the holder's pid, for the second process's message, and is removed
on release. Under torchrun only rank 0 takes it: rank 0 is the one that writes the run's files
(the other ranks write nothing, and may not even share its file system).

A fresh run's directory is created here, so that it can be locked before anything is checked
or written; ``release(abandon=True)`` (a run that failed before its first save) removes the
lock file and the directories this call created, leaving the disk as it was.

Not here: what the directory may hold (``runs.check_new_run_dir``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.io_errors import reason, writing

LOCK_NAME = ".lock"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class RunLock:
    """The lock on one run directory; ``release()`` gives it up (idempotent)."""

    def __init__(self, directory: Path, fd: int | None, created: list[Path]) -> None:
        self.directory, self._fd, self._created = directory, fd, created

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, *, abandon: bool = False) -> None:
        """Unlock (the file goes first, while still locked: see ``_lock_file``); with
        ``abandon``, also remove the directories ``lock_run_dir`` created, if still empty."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                (self.directory / LOCK_NAME).unlink()
            os.close(self._fd)
            self._fd = None
        if abandon:
            for folder in self._created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
            self._created = []

    def __del__(self) -> None:  # a Trainer dropped without run(): do not keep the run locked
        with contextlib.suppress(Exception):
            self.release()


def lock_run_dir(directory: str | Path, *, create: bool) -> RunLock:
    """Lock ``directory`` for this process (with ``create``, make it and its missing parents
    first). Raises UserError if another process holds it, or naming the path and the cause
    when it cannot be created or locked. Without ``create`` a missing directory is not locked
    (the caller reports it: there is no run to resume there)."""
    directory = Path(directory)
    refuse_root(directory)
    created = _make_dirs(directory) if create else []
    if not directory.is_dir():
        return RunLock(directory, None, [])
    try:
        fd = _lock_file(directory)
    except BaseException:
        RunLock(directory, None, created).release(abandon=True)
        raise
    return RunLock(directory, fd, created)


def refuse_root(directory: Path) -> None:
    """A run never goes into a file system root (``--out /``)."""
    if directory.resolve().parent == directory.resolve():
        raise UserError(f"--out {directory} is a file system root; name a directory for the run")


def check_unlocked(directory: str | Path) -> None:
    """Refuse, like ``lock_run_dir``, if a live process holds ``directory``; lock nothing."""
    path = Path(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return  # no lock file (or none we can open): the trainer itself will say
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            _try_flock(fd, Path(directory), fcntl.LOCK_SH)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created, deepest first."""
    if directory.is_symlink() and not directory.exists():
        raise UserError(
            f"--out {directory} is a symbolic link to {os.readlink(directory)}, which does not "
            "exist; remove the link or choose another --out"
        )
    if directory.is_dir():
        return []
    if directory.exists():
        raise UserError(f"--out {directory} exists and is not a directory")
    missing, folder = [], directory
    while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        directory.mkdir(parents=True)
    except FileExistsError:  # made by someone else just now: theirs, not ours to remove
        return []
    except OSError as error:
        raise UserError(f"cannot create --out {directory}: {reason(error)}") from None
    return missing


def _lock_file(directory: Path) -> int:
    """Open ``directory/.lock`` (a regular file, never through a link), lock it, write our pid."""
    path = directory / LOCK_NAME
    for _ in range(10):
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise UserError(f"{path} is not a regular file; remove it to train in {directory}")
        with writing(path, "create the lock file"):
            fd = os.open(path, _OPEN_FLAGS, 0o644)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise UserError(f"{path} is not a regular file; remove it to train in {directory}")
            _try_flock(fd, directory, fcntl.LOCK_EX)
            # A holder unlinks the file before unlocking, so the file we locked may be gone
            # (or replaced by a newer one): then the lock guards nothing, and we try again.
            try:
                now = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino):
                with writing(path):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise UserError(f"cannot lock {directory}: its lock file keeps being replaced")


def _try_flock(fd: int, directory: Path, kind: int) -> None:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(
            f"--out {directory} is being trained by another process (pid {_holder(fd)}); wait "
            "for it to finish or choose another --out"
        ) from None
    except OSError as error:  # e.g. a file system without locks
        raise UserError(f"cannot lock {directory / LOCK_NAME}: {reason(error)}") from None


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int(os.pread(fd, 32, 0).decode("ascii").strip()))
    return "unknown"
