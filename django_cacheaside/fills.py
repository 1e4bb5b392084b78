"""The fill side of a miss: load the row, encode it, write it by compare-and-set.

Used by the manager's single reads and refreshes; ``get_many`` (:mod:`django_cacheaside.batch`)
encodes with :func:`prepare` and writes its fills in one pipeline.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django_cacheaside import coalescing, signals
from django_cacheaside.backend import Read, get_backend
from django_cacheaside.codec import NOT_FOUND
from django_cacheaside.exceptions import NotCacheable
from django_cacheaside.lookups import Lookup
from django_cacheaside.tags import fill_start

if TYPE_CHECKING:
    from django_cacheaside.managers import CacheAsideManager


def prepare(
    manager: CacheAsideManager[Any], obj: Any, duration: float, key: str, pointer: bool = False
) -> tuple[bytes, int] | None:
    """``(entry, key TTL in ms)`` for a loaded row (or ``NOT_FOUND``) to be written under ``key``;
    ``None`` if uncacheable.

    The entry is fresh for the jittered TTL; the key lives ``stale_ttl`` longer for rows.
    """
    missing = obj is NOT_FOUND
    ttl = manager._ttl_ms("NEGATIVE_TTL" if missing else "TTL")
    timing = (int(time.time() * 1000) + ttl, duration * 1000)
    codec = manager.codec
    try:
        if missing:
            entry = codec.encode_missing(timing, key)
        elif pointer:
            entry = codec.encode_pointer(obj.pk, timing, key)
        else:
            entry = codec.encode_row(obj, timing, key)
    except NotCacheable:
        signals.cache_bypass.send(sender=manager.model, reason="not_cacheable")
        return None
    return entry, ttl if missing else ttl + manager._refresh.stale_ms


def _other_pk(lookup: Lookup, found: Any) -> bool:
    """Whether the database answered a pk lookup with a row of another pk (a case-insensitive
    collation matching ``"ABC"`` to ``"abc"``): its entry would be refused under this key as one
    copied from elsewhere, so it is not written; the row is read from the database each time."""
    if not lookup.is_pk or found is NOT_FOUND:
        return False
    attname, pk = lookup.items[0]
    return bool(getattr(found, attname) != pk)


def load_and_fill(
    manager: CacheAsideManager[Any],
    db: str,
    lookup: Lookup,
    key: str,
    read: Read,
    pointer: bool = False,
) -> tuple[Any, bytes | None]:
    """Load, fill under ``read``'s stamp (and, if tagged, only if no tag of the row was purged
    since before the load), release its lease whatever happens.

    Answers ``(row or NOT_FOUND, its entry bytes or None if not cacheable)``.
    """
    backend = get_backend()
    start = None
    if not pointer and read.stamp is not None:
        start = fill_start(backend, manager._settings().namespace, manager._tags)
    try:
        found, duration = manager._load(db, lookup)
    except BaseException:
        if read.lease is not None:
            backend.release(read.lease)
        raise
    prepared = None if _other_pk(lookup, found) else prepare(manager, found, duration, key, pointer)
    written = False
    if prepared is not None and read.stamp is not None:
        entry, key_ttl = prepared
        if start is None or start.admits(backend, manager._tags, {key: found}, key_ttl):
            stamp, lease = read.stamp, read.lease
            written = coalescing.confirming(lambda: backend.fill(key, stamp, entry, key_ttl, lease))
        elif read.lease is not None:
            backend.release(read.lease)
        signals.cache_fill.send(sender=manager.model, key=key, written=written, duration=duration)
    elif read.lease is not None:
        backend.release(read.lease)
    return found, prepared[0] if prepared is not None else None
