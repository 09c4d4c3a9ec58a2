"""The tests' one way to run ``rnnkit`` as a user does: ``python -m rnnkit ARGS`` in a
subprocess, in ``cwd``, with its own encoded-text cache (``cwd/cache``), output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def rnnkit(*args, cwd, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    """``python -m rnnkit *args`` in ``cwd``; ``env_extra`` adds to the environment."""
    env = {**os.environ, "RNNKIT_CACHE": str(Path(cwd) / "cache"), **(env_extra or {})}
    argv = [sys.executable, "-m", "rnnkit", *map(str, args)]
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )  # fmt: skip
