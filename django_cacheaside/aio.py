"""The async read API: ``aget``, ``aget_many``, ``afilter`` and the async invalidation helpers.

A hit never leaves the event loop: its ``HGET`` goes out on a ``redis.asyncio`` client
(``backend.aio``) and the entry is decoded, checked and counted by the very code a sync hit runs
(keys, codec, ``_decode``, the ``cache_hit`` signal). Everything else (a miss and its lease, the
database load, the compare-and-set fill, a refresh, a read inside a transaction that wrote) is the
sync path itself, run in a worker thread with ``asgiref.sync.sync_to_async``, which is also how
Django's own async ORM methods reach the database. So there is one implementation of the refill
protocol, and the sync and async paths cannot drift apart.

Concurrent misses of one key by tasks of one event loop share one load: the first task leads (it
runs the sync path, which fills the entry, then reads the entry once more for the others); the
others wait for it (up to ``LOCK_WAIT``) and each decodes an instance of its own from that entry,
which was read after they joined, so it is as fresh as their own read would have been. A follower
left without an entry (the fill was refused, the row is not cacheable) runs the sync path itself,
which coalesces with the threads and processes loading the same key as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import models

from django_cacheaside import batch
from django_cacheaside.backend import get_backend
from django_cacheaside.codec import NOT_FOUND
from django_cacheaside.lookups import Lookup

if TYPE_CHECKING:
    from django_cacheaside.managers import CacheAsideManager

T = TypeVar("T")


class _Flight:
    __slots__ = ("done", "followers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[Any] = loop.create_future()
        self.followers = 0


class AsyncFlights:
    """One leader per key per event loop; the other tasks wait for it (see the module docstring)."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, _Flight]] = (
            weakref.WeakKeyDictionary()
        )

    async def run(
        self,
        key: Any,
        leader: Callable[[], Awaitable[T]],
        shared: Callable[[], Awaitable[Any]],
        wait_seconds: float,
    ) -> tuple[bool, Any]:
        """``(True, await leader())`` for the first task of ``key``; for the tasks that arrive
        while it runs, ``(False, what await shared() gave)``, which the leader runs once after
        ``leader()`` succeeded if anyone waits, or ``(False, None)`` if it failed or
        ``wait_seconds`` ran out."""
        loop = asyncio.get_running_loop()
        flights = self._loops.setdefault(loop, {})
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = _Flight(loop)
            value = None
            try:
                result = await leader()
                if flight.followers:
                    value = await shared()
                return True, result
            finally:
                del flights[key]
                flight.done.set_result(value)
        flight.followers += 1
        # Past the wait, read for ourselves: the sync path's own wait is bounded too.
        with contextlib.suppress(TimeoutError):
            return False, await asyncio.wait_for(asyncio.shield(flight.done), wait_seconds)
        return False, None


def _pk_lookup(manager: CacheAsideManager[Any], lookups: dict[str, Any]) -> Lookup:
    if len(lookups) == 1 and "pk" in lookups:
        resolver = manager._resolver
        return Lookup(((resolver.pk_attname, resolver.normalise_pk(lookups["pk"])),), True)
    return manager._resolver.resolve(lookups)


async def _hit(
    manager: CacheAsideManager[Any], db: str, lookup: Lookup, key: str, fill: bool
) -> Any:
    """The decoded entry under ``key`` (counted like a sync hit), or ``None`` for a miss; with a
    near cache, as ``get()`` uses it."""
    backend = get_backend()
    ticket = None
    if manager._near is not None:
        kept, ticket = manager._near_hit(backend, key, fill)
        if kept is not None:
            return kept
    entry = await backend.aread(key)
    found = manager._decode(db, key, entry, lookup.items[0][1])
    if found is not None and fill and manager._refresh.enabled:
        assert entry is not None
        reason = manager._refresh.due(entry)
        if reason is not None:
            found = await sync_to_async(manager._refreshed)(db, lookup, key, reason, found)
            ticket = None  # a refreshed row: the next read keeps it
    if ticket is not None:
        manager._near_keep(key, ticket, entry, found)
    return found


async def aget(manager: CacheAsideManager[Any], lookups: dict[str, Any]) -> Any:
    """See ``CacheAsideManager.aget``."""
    lookup = _pk_lookup(manager, lookups)  # a bad lookup raises here, as get() would
    db, fill = manager._policy()
    if fill is None:  # a transaction that wrote the model: the sync path (the database)
        return await sync_to_async(manager.get)(**lookups)
    if not lookup.is_pk:
        return await _aget_unique(manager, db, lookup, lookups)
    key = manager.key_for_pk(lookup.items[0][1])
    found = await _hit(manager, db, lookup, key, fill)
    if found is None:
        backend = get_backend()
        leading, result = await manager._aflights.run(
            (db, key),
            lambda: sync_to_async(manager.get)(**lookups),
            lambda: backend.aread(key),  # the entry the leader filled, for the followers
            float(manager.option("LOCK_WAIT")),
        )
        if leading:
            return result
        # Read after this task joined: as fresh as its own read would be. Each follower
        # decodes an instance of its own from it.
        found = manager._decode(db, key, result, lookup.items[0][1])
        if found is None:
            return await sync_to_async(manager.get)(**lookups)
    if found is NOT_FOUND or not isinstance(found, manager.model):  # type: ignore[arg-type]
        raise manager._does_not_exist()
    return found


async def _aget_unique(
    manager: CacheAsideManager[Any], db: str, lookup: Lookup, lookups: dict[str, Any]
) -> Any:
    """A unique-field lookup: its pointer, then the object's own entry, as ``get()`` reads them."""
    key = manager.key_for_lookup(lookup)
    found = manager._decode(db, key, await get_backend().aread(key))
    if found is NOT_FOUND:
        raise manager._does_not_exist()
    if isinstance(found, tuple):
        try:
            obj = await aget(manager, {"pk": found[0]})
        except manager.model.DoesNotExist:  # type: ignore[union-attr]
            obj = None
        # A pointer is a hint: the object must still carry the looked-up values.
        if obj is not None and all(getattr(obj, a) == v for a, v in lookup.items):
            return obj
    # A miss, or a stale pointer: the sync path loads (and mends the pointer).
    return await sync_to_async(manager.get)(**lookups)


async def aget_many(manager: CacheAsideManager[Any], pks: Iterable[Any]) -> dict[Any, Any]:
    """See ``CacheAsideManager.aget_many``."""
    wanted, keys_wanted = batch.wanted_keys(manager, pks)
    db, fill = manager._policy()
    if fill is None or not wanted:
        return await sync_to_async(manager.get_many)(wanted)
    entries = await get_backend().aread_many(keys_wanted)
    found, absent, unusable = batch.sort_replies(manager, db, wanted, keys_wanted, entries)
    if absent or unusable:
        found.update(await sync_to_async(manager.get_many)([*absent, *unusable]))
        return {pk: found[pk] for pk in wanted if pk in found}
    return found


async def afilter(manager: CacheAsideManager[Any], *q: Any, **lookups: Any) -> list[Any]:
    """See ``CacheAsideManager.afilter``."""
    query = manager.filter(*q, **lookups)  # an uncacheable filter raises here, in the caller
    return await sync_to_async(query._fetch_all)()


async def ainvalidate(obj: models.Model | type[models.Model], *, pk: Any = None) -> None:
    """:func:`~django_cacheaside.invalidate`, awaited (in a worker thread)."""
    from django_cacheaside.invalidation import invalidate

    await sync_to_async(invalidate)(obj, pk=pk)


async def ainvalidate_tags(*tags: str, **kwargs: Any) -> int:
    """:func:`~django_cacheaside.invalidate_tags`, awaited (in a worker thread)."""
    from django_cacheaside.invalidation import invalidate_tags

    return int(await sync_to_async(invalidate_tags)(*tags, **kwargs))


async def ainvalidate_model(model: type[models.Model], **kwargs: Any) -> int:
    """:func:`~django_cacheaside.invalidate_model`, awaited (in a worker thread)."""
    from django_cacheaside.invalidation import invalidate_model

    return int(await sync_to_async(invalidate_model)(model, **kwargs))
