"""The one exception users see: ``UserError``, printed by the CLI as one line with exit status 2.

Raise it at a boundary (a loader, the CLI, a config) for anything the user can fix: a missing or
unreadable file, an impossible hyper-parameter, a corrupted checkpoint. The message names the
file or argument, what was expected and what came. ``short`` and ``describe`` quote a value in
such a message: a few dozen characters on one line, however large or nested the value (a
hostile file's), so a message stays one line.
"""

from __future__ import annotations

import reprlib

_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxlevel = 3
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = 6
_SHORT.maxdict = 4


class UserError(ValueError):
    """A problem with the user's input; the message is one line that says how to fix it."""


def short(value: object) -> str:
    """``repr(value)`` in at most ~70 characters, whatever ``value`` is (huge, deeply nested)."""
    text = " ".join(_SHORT.repr(value).split())
    return text if len(text) <= 70 else text[:67] + "..."


def describe(value: object) -> str:
    """``type repr`` in at most ~70 characters, whatever ``value`` is (huge, deeply nested)."""
    text = " ".join(_SHORT.repr(value).split())
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
