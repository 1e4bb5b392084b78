"""Per-page cache statistics: the footer of every page and an ``X-Cache-Aside`` response header.

They make the point of the example visible: reload a profile page and its database queries drop
to 0 while the cache hits go up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse

from saas import reads
from saas.environment import describe_database, describe_redis
from saas.stats import CacheCounter


class PageStats(CacheCounter):
    """A ``CacheCounter`` for this request's thread that also counts its database queries."""

    def __init__(self) -> None:
        super().__init__(this_thread_only=True)
        self.queries = 0

    def count_query(self, execute: Callable[..., Any], *args: Any) -> Any:
        self.queries += 1
        return execute(*args)


class CacheStatsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        stats = PageStats()
        request.cache_stats = stats  # type: ignore[attr-defined]
        with stats, connection.execute_wrapper(stats.count_query):
            response = self.get_response(request)
        response["X-Cache-Aside"] = (
            f"hits={stats.hits} misses={stats.misses} db-queries={stats.queries}"
        )
        return response


def cache_stats(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the live ``PageStats`` of the request (read when the footer renders, so
    after the view's reads) and what the project runs on."""
    return {
        "cache_stats": getattr(request, "cache_stats", None),
        "cache_on": reads.cache_on(),
        "database_in_use": describe_database(),
        "redis_in_use": describe_redis(),
    }
