"""MkDocs hooks of the rnnkit site (mkdocs.yml ``hooks:``).

Math: pymdownx.arithmatex (generic mode) marks ``$...$`` and ``$$...$$`` in the pages and in the
docstrings mkdocstrings renders; this hook turns each into MathML with latex2mathml at build
time, so browsers draw it natively -- no MathJax or KaTeX script to fetch, the site works
offline. A formula latex2mathml cannot read fails the build with the page and the formula.
"""

from __future__ import annotations

import html
import os
import re

# The tutorials run torch inside this process (markdown-exec). rnnkit lets torch's idle OpenMP
# threads sleep rather than spin only when it is imported before torch; whichever page imports
# torch first would decide for all of them, so it is set here, before any page runs (a spinning
# pool made a training step ~10x slower on a busy 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*\\(?P<open>[(\[])(?P<tex>.*?)\\[)\]]\s*</(?P=tag)>',
    re.S,
)


# Docstrings are written with Sphinx roles (``:math:`...```, ``:func:`~a.b```); rendered as
# Markdown they come out as ``:math:<code>...</code>``. The formula becomes MathML, the other
# roles their code span (``~`` keeps the last name only, as Sphinx shows it).
MATH_ROLE = re.compile(r":math:<code>(?P<tex>.*?)</code>", re.S)
ROLE = re.compile(
    r":(?:func|class|meth|attr|data|mod|obj|exc):<code>(?P<tilde>~)?(?P<name>[^<]*)</code>"
)


def _role(match: re.Match) -> str:
    name = match["name"].rsplit(".", 1)[-1] if match["tilde"] else match["name"]
    return f"<code>{name}</code>"


def on_page_content(content: str, page, config, files) -> str:  # noqa: ARG001
    def mathml(tex: str, display: str) -> str:
        tex = html.unescape(tex).strip()
        try:
            return convert(tex, display=display)
        except Exception as error:  # latex2mathml raises many kinds
            raise PluginError(f"{page.file.src_path}: cannot render ${tex}$: {error}") from error

    content = MATH.sub(
        lambda m: mathml(m["tex"], "block" if m["open"] == "[" else "inline"), content
    )
    content = MATH_ROLE.sub(lambda m: mathml(m["tex"], "inline"), content)
    return ROLE.sub(_role, content)
