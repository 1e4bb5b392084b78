"""MkDocs hook: the Sphinx roles of the package's docstrings, as the API reference shows them.

The docstrings are written for ``help()`` and editors as much as for this site, with Sphinx roles
(``:class:`~pkg.Name```, ``:func:`snapshot```) and ``::`` before literal blocks. Rendered as
Markdown the role would stay in the text (``:class:`` in front of the name). This hook drops the
role and, as Sphinx does, shows ``~pkg.mod.Name`` as ``Name``; a paragraph ending in ``::`` ends in
one colon.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj):<code>(~?)([^<]*)</code>")


def _name(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    html = ROLE.sub(_name, html)
    return re.sub(r"::</p>", ":</p>", html)
