"""The one exception users see: ``UserError``, printed by the CLI as one line with exit status 2.

Raise it at a boundary (a loader, the CLI, a config) for anything the user can fix: a missing or
unreadable file, an impossible hyper-parameter, a corrupted checkpoint. The message names the
file or argument, what was expected and what came.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input; the message is one line that says how to fix it."""
