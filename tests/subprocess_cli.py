"""The tests' one way to run ``rnnkit`` as a user does: ``python -m rnnkit ARGS`` in ``cwd``, in
its own process, with its own encoded-text cache (``cwd/cache``), output captured.

A fresh ``python -m rnnkit`` spends about two seconds importing torch, numpy, matplotlib and
rnnkit before it reads its first flag, and the suite runs several hundred. So a call is a
process forked from a warm server instead: :mod:`multiprocessing`'s forkserver (one per test
process, started on the first call) imports those modules once and runs nothing else; each call
forks it, and the child sets its argv, working directory and environment, sends stdout and
stderr to files, runs ``rnnkit/__main__.py`` as ``python -m rnnkit`` does (``runpy``), runs the
exit handlers, and exits with the command's status. Arguments, files, output and exit status
are the command's own, as in a fresh interpreter.

What a fork cannot change is what torch, OpenMP and Python read when they load. A call starts a
fresh interpreter as before where that matters: it gives stdin (``input``), or its environment
differs from the server's in a variable read at start (:data:`READ_AT_START`; the thread count
``OMP_NUM_THREADS`` is applied with ``torch.set_num_threads`` instead), or it asks
(``fresh=True``). ``RNNKIT_TEST_FRESH=1`` makes every call fresh, to check that both agree.
"""

from __future__ import annotations

import atexit
import locale
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

#: environment variables read when the interpreter, torch or OpenMP start (prefixes)
READ_AT_START = ("PYTHON", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "TORCH",
                 "PYTORCH", "LD_", "MPL", "NUMBA", "RNNKIT_TEST")  # fmt: skip
#: what the server imports once: what most commands load before their first flag
PRELOAD = ["rnnkit", "torch", "numpy", "matplotlib", "rnnkit.cli", "rnnkit.trainer.loop",
           "rnnkit.tasks.lm", "rnnkit.checkpoint.files"]  # fmt: skip

_server: dict = {}  # "context": the forkserver context, "env": the environment it started with


def rnnkit(
    *args, cwd, env_extra=None, timeout=300, input=None, fresh=False
) -> subprocess.CompletedProcess:
    """``python -m rnnkit *args`` in ``cwd``; ``env_extra`` adds to the environment; ``input``
    is its stdin (then, and with ``fresh``, a fresh interpreter). Raises
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds, as ``subprocess.run`` does."""
    env = {**os.environ, "RNNKIT_CACHE": str(Path(cwd) / "cache"), **(env_extra or {})}
    argv = [sys.executable, "-m", "rnnkit", *map(str, args)]
    if input is not None or fresh or os.environ.get("RNNKIT_TEST_FRESH") or _starts_apart(env):
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env,
                              timeout=timeout, input=input)  # fmt: skip
    return _forked(argv, cwd, env, timeout)


def _starts_apart(env: dict[str, str]) -> bool:
    """Whether ``env`` differs from the server's in a variable read at start (the server starts
    on the first call, with the environment of that moment)."""
    start = _server.get("env", os.environ)
    keys = {k for k in (*env, *start) if k.startswith(READ_AT_START) and k != "OMP_NUM_THREADS"}
    return any(env.get(k) != start.get(k) for k in keys)


def _context():
    if "context" not in _server:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        _server.update(context=context, env=dict(os.environ))
    return _server["context"]


def _forked(argv: list[str], cwd, env: dict, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="rnnkit-cli-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        child = _context().Process(target=_run, args=(argv[3:], str(cwd), env, str(out), str(err)))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(argv, timeout, _read(out), _read(err))
        return subprocess.CompletedProcess(argv, child.exitcode, _read(out), _read(err))


def _read(path: Path) -> str:
    """As ``subprocess.run(text=True)`` decodes: the locale's encoding, universal newlines."""
    if not path.exists():
        return ""
    with open(path, encoding=locale.getpreferredencoding(False)) as file:
        return file.read()


def _run(args: list[str], cwd: str, env: dict, out: str, err: str) -> None:
    """In the forked child: become ``python -m rnnkit ARGS`` and run it (its SystemExit is the
    process's exit status)."""
    encoding = sys.stdout.encoding if sys.stdout else locale.getpreferredencoding(False)
    for fd, path in ((1, out), (2, err)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(file, fd)
        os.close(file)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding=encoding, closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", encoding=encoding, errors="backslashreplace", buffering=1, closefd=False
    )
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:  # read by OpenMP when it loaded: set the count itself
        import torch

        torch.set_num_threads(max(1, int(env["OMP_NUM_THREADS"])))
    sys.argv = ["rnnkit", *args]
    try:
        runpy.run_module("rnnkit", run_name="__main__", alter_sys=True)
    finally:
        atexit._run_exitfuncs()  # what the interpreter runs at exit; the fork's exit skips it
        sys.stdout.flush()
        sys.stderr.flush()
