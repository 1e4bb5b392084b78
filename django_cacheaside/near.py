"""An in-process "near cache" (L1) in front of Redis, kept fresh by server-pushed invalidation.

:class:`NearCache` is a thread-safe, bounded LRU map from Redis key (``str``) to an opaque value the
caller built from what it read there (typically a model instance). It knows nothing of Redis: the
invalidations come from :class:`django_cacheaside.tracking.Tracker`, which calls
:meth:`NearCache.discard_many` for every key another client (or this process) wrote, and
:meth:`NearCache.clear` when a database was flushed. While the tracker is not sure to see every
write (disconnected, heartbeat unanswered) it keeps the cache :meth:`~NearCache.disable`\\ d.

Public API::

    near = NearCache(max_entries=1000, max_bytes=8 * 1024 * 1024, ttl=2.0)
    ticket = near.ticket()             # BEFORE reading Redis
    value = read_from_redis(key)
    near.put(key, value, size, ticket) # False: refused (a discard/clear/enable raced the read)
    near.get(key)                      # the value, or None (missing, expired or disabled)
    near.discard(*keys); near.discard_many(keys); near.clear()
    near.disable(); near.enable(); near.enabled
    len(near); near.bytes; near.hits, near.misses, near.evictions, near.expired

    mutable = mutable_attnames(Model)  # once per model
    copy = clone(cached_instance, mutable)  # what a caller may mutate

Why tickets: a reader takes a ticket, reads Redis, then puts what it read. If a write's
invalidation is applied between the read and the put, a plain put would store the old value after
its invalidation and serve it until the TTL runs out. ``put()`` refuses when, after the ticket was
taken, that key was discarded, or the whole cache was cleared, disabled or (re-)enabled (entries
filled before tracking was in place cannot be trusted). Discarded keys are remembered in a bounded
FIFO (``remembered_discards``, default 4096 keys); when an older record had to be forgotten, every
ticket taken before that record is refused: conservative, never stale.

The TTL (at most 60 s) is the bound on staleness if invalidation messages are lost without the
tracker noticing; it counts from the put, so a value may be older by the time its fill took.

Copies, measured with ``python benchmarks/near_copy.py --repeats 9`` (CPython 3.11.7, Django
5.2.19, a 2-CPU VM at load average ~2; 20,000 calls per repeat; ``benchapp.CachedRow``: 11 columns
with ~500 characters of text and its foreign key cache filled; "+ JSON" is the same row with a
JSONField holding a 10-key dict of small lists and dicts), microseconds per copy::

    copy strategy                               best    median
    clone(instance, ())                         0.79      0.89
    clone(instance, ("data",)) + JSON          33.0      42.0
    copy.copy(instance)                         7.34     11.5
    copy.deepcopy(instance)                    76.5      95.2
    Model.from_db(db, fields, values)           4.54      4.78

``clone()`` is the cheapest way to hand out an instance that can be changed freely, by 6x over
building it anew: ``copy.copy`` goes through ``__reduce_ex__`` and ``Model.__getstate__`` (and
still shares the JSON dict), ``from_db`` runs ``__init__`` over every field, ``deepcopy`` copies
every value and the related instance. A JSON column costs what ``copy.deepcopy`` of its value costs
(here 40x the rest of the clone), which is why only the columns :func:`mutable_attnames` names are
deep-copied: a model with large JSON values may be better served by not near-caching it.

After ``os.fork()`` every instance in the child is emptied (the child has no listener thread; the
tracker's own fork hook disables the cache it serves until the child starts a tracker).
"""

from __future__ import annotations

import copy
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db import models
from django.db.models.base import ModelState
from django.db.models.fields.files import FieldFile

__all__ = ["MAX_TTL", "NearCache", "clone", "mutable_attnames"]

MAX_TTL = 60.0  # seconds

M = TypeVar("M", bound=models.Model)

_instances: weakref.WeakSet[NearCache] = weakref.WeakSet()


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"near cache {name} must be a positive int, got {value!r}")
    return value


class NearCache:
    """A bounded LRU of ``key -> (value, size, stored at)``; see the module docstring."""

    def __init__(
        self,
        max_entries: int = 1000,
        max_bytes: int = 8 * 1024 * 1024,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        remembered_discards: int = 4096,
    ) -> None:
        self.max_entries = _positive_int("max_entries", max_entries)
        self.max_bytes = _positive_int("max_bytes", max_bytes)
        self.remembered_discards = _positive_int("remembered_discards", remembered_discards)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise ValueError(f"near cache ttl must be a number of seconds above 0, got {ttl!r}")
        if ttl > MAX_TTL:
            raise ValueError(
                f"near cache ttl must be at most {MAX_TTL:g} s, got {ttl!r}: the TTL bounds how "
                "stale an entry can get when invalidation messages are lost, keep it short"
            )
        self.ttl = float(ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()
        self._enabled = True
        self.hits = self.misses = self.evictions = self.expired = 0
        _instances.add(self)

    def _reset(self) -> None:
        # Tickets and discard records share one sequence, so "after the ticket" is a comparison.
        self._seq = 0
        self._entries: OrderedDict[str, tuple[Any, int, float]] = OrderedDict()
        self._bytes = 0
        self._discarded: OrderedDict[str, int] = OrderedDict()  # key -> seq of its last discard
        self._forgotten = 0  # seq of the newest discard record dropped from _discarded
        self._epoch = 0  # seq of the last clear / disable / enable

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        state = "enabled" if self._enabled else "disabled"
        return f"<NearCache {len(self._entries)} entries, {self._bytes} bytes, {state}>"

    @property
    def bytes(self) -> int:
        """The sum of the sizes given to ``put()`` of the entries held."""
        return self._bytes

    @property
    def enabled(self) -> bool:
        return self._enabled

    def ticket(self) -> int:
        """An opaque int to take before reading Redis and pass to ``put()``."""
        with self._lock:
            self._seq += 1
            return self._seq

    def get(self, key: str) -> Any:
        """The value put for ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not self._enabled:
                self.misses += 1
                return None
            value, size, stored = entry
            if self._clock() - stored > self.ttl:
                del self._entries[key]
                self._bytes -= size
                self.expired += 1
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: Any, size: int, ticket: int) -> bool:
        """Store ``value`` (``size`` bytes) read after ``ticket`` was taken; False if refused.

        Refused when disabled, when ``key`` was discarded or the cache cleared, disabled or enabled
        since the ticket (or that can no longer be ruled out), or when ``size`` alone is over
        ``max_bytes``.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"near cache entry size must be an int >= 0, got {size!r}")
        with self._lock:
            if (
                not self._enabled
                or ticket <= self._epoch
                or ticket < self._forgotten
                or self._discarded.get(key, 0) > ticket
                or size > self.max_bytes
            ):
                return False
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size, self._clock())
            self._bytes += size
            entries = self._entries
            while len(entries) > self.max_entries or self._bytes > self.max_bytes:
                _key, (_value, evicted, _stored) = entries.popitem(last=False)
                self._bytes -= evicted
                self.evictions += 1
            return True

    def discard(self, *keys: str) -> None:
        """Drop ``keys`` and refuse puts of them with tickets taken before now."""
        self.discard_many(keys)

    def discard_many(self, keys: Iterable[str]) -> None:
        with self._lock:
            entries, discarded = self._entries, self._discarded
            for key in keys:
                self._seq += 1
                entry = entries.pop(key, None)
                if entry is not None:
                    self._bytes -= entry[1]
                if key in discarded:
                    discarded.move_to_end(key)
                discarded[key] = self._seq
            while len(discarded) > self.remembered_discards:
                _key, seq = discarded.popitem(last=False)
                self._forgotten = seq

    def _clear(self) -> None:
        # Under the lock. Every outstanding ticket is now refused, so no discard record matters.
        self._seq += 1
        self._epoch = self._seq
        self._entries.clear()
        self._bytes = 0
        self._discarded.clear()

    def clear(self) -> None:
        """Drop everything; puts with tickets taken before now are refused."""
        with self._lock:
            self._clear()

    def disable(self) -> None:
        """Clear, then refuse every put and answer every get with None until ``enable()``."""
        with self._lock:
            self._enabled = False
            self._clear()

    def enable(self) -> None:
        """Serve again, empty: tickets taken before now (while reads went unwatched) are refused."""
        with self._lock:
            self._clear()
            self._enabled = True

    def _after_fork_in_child(self) -> None:
        # The lock may have been held by a thread that does not exist in the child. The sequence
        # goes on: tickets taken in the parent must be refused like any from before a clear.
        self._lock = threading.Lock()
        seq = self._seq
        self._reset()
        self._seq = self._epoch = seq + 1


def _after_fork_in_child() -> None:
    for near in list(_instances):
        near._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- copies ------------------------------------------------------------------------------------

_MUTABLE_TYPES = frozenset({"JSONField", "ArrayField", "HStoreField", "BinaryField"})


def mutable_attnames(model: type[models.Model]) -> tuple[str, ...]:
    """The attnames of ``model``'s concrete fields whose values may be mutable objects.

    JSON (dicts, lists), arrays and hstore (lists, dicts), binary (``bytes``, or a ``memoryview``
    that may be writable) and files (a ``FieldFile`` once the attribute was read). Call it once
    per model and pass the result to every :func:`clone`; add any custom field of your own whose
    values are mutable.
    """
    names = []
    for field in model._meta.concrete_fields:
        if (
            isinstance(field, models.JSONField | models.BinaryField | models.FileField)
            or field.get_internal_type() in _MUTABLE_TYPES
            or hasattr(field, "base_field")
        ):
            names.append(field.attname)
    return tuple(names)


def _copy_value(value: Any) -> Any:
    if isinstance(value, FieldFile):
        # The descriptor wraps a name in a FieldFile bound to the instance it is read from.
        return value.name
    if isinstance(value, memoryview):  # deepcopy cannot copy one
        return memoryview(bytes(value)) if value.readonly else memoryview(bytearray(value))
    return copy.deepcopy(value)


def clone(instance: M, mutable_attnames: tuple[str, ...]) -> M:
    """A copy of ``instance`` the caller may change without changing ``instance``.

    Built without ``__init__``: the attribute dict is copied shallowly (field values are immutable
    but for ``mutable_attnames``, which are deep-copied), ``_state`` is new (same ``db``, not
    ``adding``, no related-object cache) and prefetched results are left out, since both hold
    objects the copies would otherwise share.
    """
    new = object.__new__(type(instance))
    attributes = instance.__dict__.copy()
    attributes.pop("_prefetched_objects_cache", None)
    state = ModelState()
    state.db = instance._state.db
    state.adding = False
    attributes["_state"] = state
    for name in mutable_attnames:
        if name in attributes:  # a deferred field is absent
            attributes[name] = _copy_value(attributes[name])
    new.__dict__ = attributes
    return new
