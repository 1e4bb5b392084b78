"""Helpers for tests, yours and ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django_cacheaside.backend import RoundTripCounter, get_backend, scan_keys


@contextmanager
def count_round_trips() -> Iterator[RoundTripCounter]:
    """Count the Redis round trips made inside the block (a pipeline counts once).

    A hit is one::

        >>> article = Article.objects.first()
        >>> _ = Article.cached.get(pk=article.pk)  # a miss fills the entry
        >>> with count_round_trips() as trips:
        ...     _ = Article.cached.get(pk=article.pk)
        >>> trips.count
        1
    """
    counter = RoundTripCounter(get_backend())
    with counter:
        yield counter


def keys_without_ttl(pattern: str) -> list[bytes]:
    """Keys matching ``pattern`` that would never expire (found with ``SCAN``, never ``KEYS``)."""
    client = get_backend().client
    return [key for key in scan_keys(pattern) if client.pttl(key) == -1]
