"""MkDocs hook: links from a page to repository files outside docs/ (``../benchmarks/README.md``).

On GitHub those links work; the built site has no copy of those files, and MkDocs (strict) rejects
them as not found. This hook rewrites each to the file's repository path in code, or to
``<repo_url>/blob/main/<path>`` when ``repo_url`` is set, and fails the build (a warning, under
``--strict``) when the file does not exist, so such a link cannot rot either.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.repo_links")

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    here = (docs / page.file.src_path).parent
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("/", "mailto:")):
            return match[0]
        resolved = (here / target).resolve()
        if resolved.is_relative_to(docs):
            return match[0]  # MkDocs checks links between pages itself
        if not resolved.is_relative_to(root) or not resolved.exists():
            log.warning(
                "%s links to %s, which is not a file of the repository", page.file.src_path, target
            )
            return match[0]
        path = resolved.relative_to(root).as_posix()
        if repo_url:
            return f"[{match['text']}]({repo_url}/blob/main/{path}{match['anchor'] or ''})"
        text = match["text"].strip("`")
        return f"`{path}`" if text == path else f"{match['text']} (`{path}` in the repository)"

    # Leave fenced code alone: split on fences and rewrite every other part.
    parts = re.split(
        r"(^(?:```|~~~).*?^(?:```|~~~)[^\n]*$)", markdown, flags=re.MULTILINE | re.DOTALL
    )
    return "".join(part if FENCE.match(part) else LINK.sub(rewrite, part) for part in parts)
