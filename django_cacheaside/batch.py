"""``get_many``: many objects in one Redis round trip, one query for the misses, one fill."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django_cacheaside import signals
from django_cacheaside.backend import Read, get_backend
from django_cacheaside.codec import NOT_FOUND

if TYPE_CHECKING:
    from django_cacheaside.managers import CacheAsideManager


def get_many(manager: CacheAsideManager[Any], pks: Iterable[Any]) -> dict[Any, Any]:
    """See ``CacheAsideManager.get_many``. No refill lease here (yet): concurrent misses of one
    batch each run their own ``pk__in`` query."""
    model = manager.model
    wanted = list(dict.fromkeys(manager._resolver.normalise_pk(pk) for pk in pks))
    db, fill = manager._policy()
    if fill is None:
        return manager._base(db).in_bulk(wanted)
    key_of = {pk: manager.key_for_pk(pk) for pk in wanted}
    backend = get_backend()
    if fill:
        reads = backend.read_or_begin_many(list(key_of.values()), manager._ttl_ms())
    else:
        reads = [Read(e, None) for e in backend.read_many(list(key_of.values()))]
    found: dict[Any, Any] = {}
    stamps: dict[Any, bytes | None] = {}
    unusable: list[Any] = []
    for pk, read in zip(wanted, reads, strict=True):
        obj = manager._decode(db, key_of[pk], read.entry)
        if obj is None:
            signals.cache_miss.send(sender=model, key=key_of[pk])
            stamps[pk] = read.stamp
            if read.entry is not None:
                unusable.append(pk)
        elif isinstance(obj, manager.model):  # type: ignore[arg-type]
            found[pk] = obj
    if fill and unusable:
        # Entries of another schema, or corrupt: take their stamps so the fill replaces them.
        again = backend.read_or_begin_many(
            [key_of[pk] for pk in unusable], manager._ttl_ms(), entry=False
        )
        stamps.update((pk, read.stamp) for pk, read in zip(unusable, again, strict=True))
    if stamps:
        started = time.perf_counter()
        loaded = manager._base(db).in_bulk(list(stamps))
        duration = time.perf_counter() - started
        fills = []
        for pk, stamp in stamps.items():
            obj = loaded.get(pk, NOT_FOUND)
            if obj is not NOT_FOUND:
                found[pk] = obj
            if stamp is not None:
                prepared = manager._prepare(obj, duration)
                if prepared is not None:
                    fills.append((key_of[pk], stamp, *prepared))
        written = backend.fill_many(fills)
        for (key, *_rest), ok in zip(fills, written, strict=True):
            signals.cache_fill.send(sender=model, key=key, written=ok, duration=duration)
    return {pk: found[pk] for pk in wanted if pk in found}
