"""Stopping a run cleanly: Ctrl-C (SIGINT) and SIGTERM become a flag the loop reads between steps.

The loop finishes the step it is in, saves ``last`` and returns ``"interrupted"``; the command
exits with status 130. Nothing is lost: the checkpoint is written atomically
(``rnnkit.checkpoint.files``). Python delivers signals to the main thread only, so a run in
another thread (a notebook's background thread, a web server's worker) installs no handler and
leaves the process's own in place; ``Trainer.stop()`` stops it from anywhere.
"""

from __future__ import annotations

import signal
import threading


class StopSignal:
    """SIGINT/SIGTERM set a flag the loop checks between steps; a second Ctrl-C aborts (alone:
    under torchrun the launcher's SIGTERM follows the terminal's SIGINT, and rank 0 must be
    left to finish its save)."""

    def __init__(self, abort_on_second: bool = True) -> None:
        self.received: int | None = None
        self.abort_on_second = abort_on_second
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal.signal would raise: only the main thread may install handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and self.abort_on_second:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
