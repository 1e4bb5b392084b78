"""Dropping every cache entry of a key prefix, by ``SCAN`` (never ``KEYS``)."""

from __future__ import annotations

import re

from django_cacheaside.backend import get_backend
from django_cacheaside.conf import app_settings
from django_cacheaside.keys import namespace


def pattern(prefix: str | None = None) -> str:
    """The ``SCAN MATCH`` pattern of every key written under ``prefix`` (default: KEY_PREFIX)."""
    ns = namespace(app_settings.KEY_PREFIX if prefix is None else prefix)
    return re.sub(r"([*?\[\]\\])", r"\\\1", ns) + "*"


def delete_matching(match: str, batch: int = 500) -> int:
    """Delete the keys matching the glob ``match``; returns how many."""
    client = get_backend().client
    deleted = 0
    chunk: list[bytes] = []
    for key in client.scan_iter(match=match, count=1000):
        chunk.append(key)
        if len(chunk) >= batch:
            deleted += int(client.delete(*chunk))
            chunk = []
    if chunk:
        deleted += int(client.delete(*chunk))
    return deleted


def clear(prefix: str | None = None) -> int:
    """Delete the keys under ``prefix`` (default: KEY_PREFIX). Harmless in a cache-aside cache:
    the next reads are misses that fill again."""
    return delete_matching(pattern(prefix))
