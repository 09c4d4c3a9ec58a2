"""How rnnkit words what it prints: counts with their nouns and the one banner around samples.

    plural(1, "seed")                     -> "1 seed"
    plural(5111, "step")                  -> "5,111 steps"
    plural(2, "child", "children")        -> "2 children"
    sample_banner("sample at step 20", "To be", note="temperature 0.8")
        -> "---- sample at step 20 (temperature 0.8) ----\\nTo be\\n----"

What is not here: the numbers themselves (each command computes its own) and where they go
(the commands print; the trainer logs).
"""

from __future__ import annotations


def plural(count: int | float, noun: str, many: str | None = None) -> str:
    """``count`` (thousands separated) and ``noun``, in the plural unless ``count`` is 1."""
    if isinstance(count, bool) or not isinstance(count, int | float):
        return f"{count} {many or noun + 's'}"  # None, "?": as it comes
    number = f"{count:,}" if isinstance(count, int) else f"{count:,g}"
    return f"{number} {noun if count == 1 else (many or noun + 's')}"


def sample_banner(title: str, text: str, note: str = "") -> str:
    """A sample between two rules: ``---- TITLE (NOTE) ----``, the text from its own first
    line (leading and trailing line breaks dropped), then ``----``. Every task's progress
    samples and ``rnnkit sample --num-samples`` print through this, so they look alike."""
    head = f"---- {title}{f' ({note})' if note else ''} ----"
    return f"{head}\n{text.strip(chr(10))}\n----"
