"""Run the executed code of one documentation page as `make docs` would, without building the
site: every ```python exec="on"``` block of the page, in order, each session in its own
namespace (markdown-exec's ``session=``), printing what each block prints.

    .venv/bin/python tools/run_page.py docs/tutorials/bptt.md

Exit status 1 (with the block's number and the traceback) when a block raises, 2 (one line)
when the page is not a file.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from pathlib import Path

BLOCK = re.compile(r"^(?P<indent> *)```python (?P<options>[^\n]*exec=\"(?:on|1|true)\"[^\n]*)\n"
                   r"(?P<code>.*?)^(?P=indent)```", re.S | re.M)  # fmt: skip


def main(path: str) -> int:
    if not Path(path).is_file():
        print(f"run_page.py: {path} is not a file", file=sys.stderr)
        return 2
    text = Path(path).read_text()
    sessions: dict[str, dict] = {}
    for number, match in enumerate(BLOCK.finditer(text), 1):
        session = re.search(r'session="([^"]+)"', match["options"])
        namespace = sessions.setdefault(session[1] if session else f"block{number}", {})
        code = "\n".join(line[len(match["indent"]) :] for line in match["code"].splitlines())
        start = time.perf_counter()
        print(f"---- block {number} ----", flush=True)
        try:
            exec(compile(code, f"{path}:block{number}", "exec"), namespace)  # noqa: S102
        except Exception:
            traceback.print_exc()
            return 1
        print(f"---- block {number}: {time.perf_counter() - start:.1f} s ----", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
