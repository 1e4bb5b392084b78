"""``get_many``: many objects in one Redis round trip, one query for the misses, one fill.

The lookups are plain pipelined ``HGET``s; misses then take their stamps and refill leases in one
more round trip (one token for the batch, one lease per object). The misses leased to this batch
are loaded and filled first; then the objects whose lease another caller holds are waited for
together, with the same backoff and bound as single reads. What is still missing when the wait
runs out is read from the database (one more query) and not filled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django_cacheaside import keys, locks, signals
from django_cacheaside.backend import Backend, Fill, Lease, Read, get_backend
from django_cacheaside.backend.errors import report_error
from django_cacheaside.codec import NOT_FOUND
from django_cacheaside.exceptions import CorruptEntry
from django_cacheaside.fills import prepare
from django_cacheaside.tags import fill_start

if TYPE_CHECKING:
    from django_cacheaside.managers import CacheAsideManager


def _wait(
    manager: CacheAsideManager[Any],
    backend: Backend,
    db: str,
    waiting: dict[Any, str],
    leases: dict[Any, Lease],
    found: dict[Any, Any],
    reads: dict[Any, Read],
) -> None:
    """Re-read the objects in ``waiting`` until each is filled, leased to us, or time runs out."""
    started = time.monotonic()
    deadline = started + float(manager.option("LOCK_WAIT"))
    delay = locks.FIRST_DELAY
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for pk in waiting:  # read from the database with the other misses, not filled
                reads[pk] = Read(None, None)
                signals.cache_lease.send(
                    sender=manager.model,
                    key=waiting[pk],
                    outcome="timeout",
                    waited=time.monotonic() - started,
                )
            return
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, locks.MAX_DELAY)
        pks = list(waiting)
        again = backend.read_or_begin_many(
            [waiting[pk] for pk in pks], manager._ttl_ms(), leases=[leases[pk] for pk in pks]
        )
        for pk, read in zip(pks, again, strict=True):
            obj = manager._decode(db, waiting[pk], read.entry, pk)
            if obj is not None:
                if obj is not NOT_FOUND:
                    found[pk] = obj
                del waiting[pk]
            elif read.lease is not None or read.stamp is None:
                reads[pk] = read
                del waiting[pk]


def sort_replies(
    manager: CacheAsideManager[Any],
    db: str,
    wanted: list[Any],
    keys_wanted: list[str],
    entries: list[bytes | None],
) -> tuple[dict[Any, Any], list[Any], list[Any]]:
    """``get_many``'s ``HGET`` replies sorted out: ``(found, absent, unusable)``, the instances
    of the hits by pk, the pks without an entry and those whose entry could not be used.

    Hits and negative hits are counted (``cache_hit``) and corrupt entries reported; misses are
    left to the caller to count (``aget_many`` has the sync path load them, which counts them).
    """
    model = manager.model
    decoded = manager.codec.decode_rows(db, entries, keys_wanted, wanted)
    if all(type(obj) is model for obj in decoded):  # every pk a hit: nothing else to sort out
        signals.cache_hit.send_each(model, keys_wanted, negative=False)
        return dict(zip(wanted, decoded, strict=True)), [], []
    found: dict[Any, Any] = {}
    absent: list[Any] = []
    unusable: list[Any] = []
    hits: list[str] = []
    negative: list[str] = []
    for pk, key, entry, obj in zip(wanted, keys_wanted, entries, decoded, strict=True):
        if entry is not None:
            if isinstance(obj, CorruptEntry):
                report_error("decode", obj)
                obj = None
            if obj is not None:
                if obj is NOT_FOUND:
                    negative.append(key)
                else:
                    hits.append(key)
                    if isinstance(obj, model):  # type: ignore[arg-type]
                        found[pk] = obj
                continue
        (unusable if entry is not None else absent).append(pk)
    signals.cache_hit.send_each(model, hits, negative=False)
    signals.cache_hit.send_each(model, negative, negative=True)
    return found, absent, unusable


def wanted_keys(manager: CacheAsideManager[Any], pks: Iterable[Any]) -> tuple[list[Any], list[str]]:
    """The distinct normalised pks of ``pks``, in order, and their keys."""
    resolver = manager._resolver
    if resolver._int_pk:  # the common case, without a call per pk
        normalise = resolver.normalise_pk
        wanted = list(dict.fromkeys(pk if type(pk) is int else normalise(pk) for pk in pks))
    else:
        wanted = list(dict.fromkeys(map(resolver.normalise_pk, pks)))
    head, part = manager._settings().key_head, keys.key_part  # as key_for_pk() builds them
    return wanted, [f"{head}{pk}}}" if type(pk) is int else f"{head}{part(pk)}}}" for pk in wanted]


def get_many(manager: CacheAsideManager[Any], pks: Iterable[Any]) -> dict[Any, Any]:
    """See ``CacheAsideManager.get_many``."""
    model = manager.model
    wanted, keys_wanted = wanted_keys(manager, pks)
    db, fill = manager._policy()
    if fill is None:
        return manager._base(db).in_bulk(wanted)
    backend = get_backend()
    # Plain HGETs first: the common case is all hits, and an HGET costs a fraction of the lease
    # script. Only the misses then take their stamps and leases, in one more round trip.
    entries = backend.read_many(keys_wanted)
    found, absent, unusable = sort_replies(manager, db, wanted, keys_wanted, entries)
    if not absent and not unusable:
        return found
    key_of = dict(zip(wanted, keys_wanted, strict=True))
    for pk in [*absent, *unusable]:
        signals.cache_miss.send(sender=model, key=key_of[pk])
    misses: dict[Any, Read] = {}  # what each miss may fill with
    waiting: dict[Any, str] = {}
    if not fill:
        misses.update((pk, Read(None, None)) for pk in [*absent, *unusable])
        absent = unusable = []
    leases: dict[Any, Lease] = {}
    if absent or unusable:
        token = os.urandom(16)  # one for the batch, one lease per missed object
        lock_ms = max(1, int(float(manager.option("LOCK_TTL")) * 1000))
        leases = {pk: Lease(keys.lock_key(key_of[pk]), token, lock_ms) for pk in absent + unusable}
    if absent:
        begun = backend.read_or_begin_many(
            [key_of[pk] for pk in absent], manager._ttl_ms(), leases=[leases[pk] for pk in absent]
        )
        for pk, read in zip(absent, begun, strict=True):
            obj = manager._decode(db, key_of[pk], read.entry, pk)  # filled meanwhile
            if obj is not None:
                if isinstance(obj, model):  # type: ignore[arg-type]
                    found[pk] = obj
            elif read.entry is not None:
                unusable.append(pk)
            elif read.stamp is not None and read.lease is None:
                waiting[pk] = key_of[pk]  # another caller is loading it
            else:
                misses[pk] = read
    if unusable:
        # Entries of another schema, or corrupt: take their stamps so the fill replaces them.
        again = backend.read_or_begin_many(
            [key_of[pk] for pk in unusable],
            manager._ttl_ms(),
            entry=False,
            leases=[leases[pk] for pk in unusable],
        )
        misses.update(zip(unusable, again, strict=True))
    # Our own misses first: a batch never holds leases while it waits for another caller's (two
    # overlapping batches would each wait LOCK_WAIT for the other).
    if misses:
        _load_and_fill(manager, backend, db, misses, key_of, found)
    if waiting:
        late: dict[Any, Read] = {}
        _wait(manager, backend, db, waiting, leases, found, late)
        if late:
            _load_and_fill(manager, backend, db, late, key_of, found)
    return {pk: found[pk] for pk in wanted if pk in found}


def _load_and_fill(
    manager: CacheAsideManager[Any],
    backend: Backend,
    db: str,
    misses: dict[Any, Read],
    key_of: dict[Any, str],
    found: dict[Any, Any],
) -> None:
    start = None
    if any(read.stamp is not None for read in misses.values()):
        start = fill_start(backend, manager._settings().namespace, manager._tags)
    try:
        started = time.perf_counter()
        loaded = manager._base(db).in_bulk(list(misses))
        duration = time.perf_counter() - started
    except BaseException:
        for read in misses.values():
            if read.lease is not None:
                backend.release(read.lease)
        raise
    fills: list[Fill] = []
    objects: dict[str, Any] = {}
    for pk, read in misses.items():
        obj = loaded.get(pk, NOT_FOUND)
        if obj is not NOT_FOUND:
            found[pk] = obj
        prepared = prepare(manager, obj, duration, key_of[pk]) if read.stamp is not None else None
        if prepared is not None and read.stamp is not None:
            fills.append((key_of[pk], read.stamp, prepared[0], prepared[1], read.lease))
            objects[key_of[pk]] = obj
        elif read.lease is not None:
            backend.release(read.lease)
    if start is not None and fills:
        # Tagged: only fills none of whose tags was purged since before the load may write.
        admitted = start.admits(backend, manager._tags, objects, max(f[3] for f in fills))
        for key, _stamp, _entry, _ttl, lease in fills:
            if key not in admitted:
                signals.cache_fill.send(
                    sender=manager.model, key=key, written=False, duration=duration
                )
                if lease is not None:
                    backend.release(lease)
        fills = [fill for fill in fills if fill[0] in admitted]
    written = backend.fill_many(fills)
    for (key, *_rest), ok in zip(fills, written, strict=True):
        signals.cache_fill.send(sender=manager.model, key=key, written=ok, duration=duration)
