"""Peak resident memory of ``rnnkit train`` on a large corpus.

A corpus of ``megabytes`` MB is written by repeating the bundled Tiny Shakespeare, then
``rnnkit train`` runs on it in a child process for a few steps of the canonical model (the first
run reads, checks and tokenises the whole corpus into the token cache: the memory-hungry part);
the child's peak RSS comes from ``os.wait4``. The corpus is streamed and memory-mapped, so the
peak should be torch's own footprint plus the model, not the corpus size. The child trains on
``--device`` (the host's memory is measured either way; on CUDA it includes the CUDA context).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rnnkit.benchmark.shapes import CANONICAL


def write_corpus(path: Path, megabytes: float) -> int:
    """Repeat the bundled text until the file holds ``megabytes`` MB; returns its size."""
    from rnnkit.data.corpus import BUNDLED

    text = Path(BUNDLED).read_bytes()
    target = int(megabytes * 10**6)
    with open(path, "wb") as f:
        written = 0
        while written < target:
            chunk = text[: target - written]
            f.write(chunk)
            written += len(chunk)
    return written


def peak_rss_mb(megabytes: float = 200, steps: int = 5, shape=None, device="cpu") -> float:
    """Peak RSS (MiB) of a child ``rnnkit train --device DEVICE`` on a ``megabytes`` MB corpus
    (``shape``: a smaller model for tests; default the canonical one)."""
    c = shape or CANONICAL
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "big.txt"
        write_corpus(corpus, megabytes)
        command = [
            sys.executable, "-m", "rnnkit", "train", str(corpus), "--out", f"{tmp}/run",
            "--embed", str(c["embed"]), "--hidden", str(c["hidden"]), "--layers", str(c["layers"]),
            "--seq-len", str(c["seq_len"]), "--batch-size", str(c["batch"]),
            "--max-steps", str(steps), "--eval-batches", "2", "--eval-every", str(steps),
            "--sample-every", "0", "--threads", "1", "--device", str(device),
        ]  # fmt: skip
        env = {**os.environ, "RNNKIT_CACHE": f"{tmp}/cache"}
        child = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(child.pid, 0)
        error = child.stderr.read().decode(errors="replace") if child.stderr else ""
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"rnnkit train failed ({child.returncode}): {error[-500:]}")
    return usage.ru_maxrss / 1024  # Linux reports KiB
