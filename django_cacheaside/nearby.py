"""The managers' near caches (``CacheAsideManager(near_cache=...)``) and the tracker that feeds them.

Each manager with a near cache has a :class:`~django_cacheaside.near.NearCache` of its own; one
:class:`~django_cacheaside.tracking.Tracker` per process, on the app's Redis and its key namespace,
discards from all of them every key anyone writes (the :class:`_Group` below passes its calls on).
The tracker starts with the first near read and is replaced when the backend or ``KEY_PREFIX``
changes. Until it tracks, and whenever it loses track, every near cache is disabled (empty, never
served, never filled), so a near hit always had the tracker's invalidations behind it.

A near hit is served only while the tracker is not :meth:`~Tracker.behind`: nothing waits on its
socket and it is not applying messages. Redis sends a write's invalidation in the same pass as the
writer's reply, so a read that starts after another process's write returned does not serve the
old row from memory, however long the tracker thread waits for the GIL.

Two more things keep a process's own writes visible to itself at once, without waiting for the
tracker's message (a fraction of a millisecond later):

* every invalidation this process delivers (at the write and again at commit) also discards its
  keys from the near caches here, after Redis has them (:func:`discarded`); tag purges and model
  scans empty them;
* after a request's own write the rest of that request reads past the near caches
  (:func:`wrote`, reset by ``request_started``); inside a transaction that wrote, every read
  bypasses the cache altogether, as without a near cache.

Redis Cluster, Sentinel and other clients that are not a plain ``redis.Redis`` have no tracker
here: their near caches stay disabled (the reads go to Redis, correct and counted as usual).
"""

from __future__ import annotations

import contextvars
import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis

from django_cacheaside.near import MAX_TTL, NearCache
from django_cacheaside.tracking import Tracker

# (True, False) inside a request that has written; (False, ...) outside requests.
_request_wrote: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "cacheaside_request_wrote", default=None
)


class _Group:
    """Every near cache of this process, as one ``NearCache`` for the tracker to call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caches: weakref.WeakSet[NearCache] = weakref.WeakSet()
        self._enabled = False

    def add(self, near: NearCache) -> None:
        with self._lock:
            self._caches.add(near)
            if not self._enabled:
                near.disable()

    def _each(self) -> list[NearCache]:
        if not self._caches:  # no manager has a near cache: the usual case, and free
            return []
        with self._lock:
            return list(self._caches)

    def discard_many(self, keys_: Iterable[str]) -> None:
        written = list(keys_)
        for near in self._each():
            near.discard_many(written)

    def discard(self, *keys_: str) -> None:
        self.discard_many(keys_)

    def clear(self) -> None:
        for near in self._each():
            near.clear()

    def disable(self) -> None:
        with self._lock:
            self._enabled = False
        for near in self._each():
            near.disable()

    def enable(self) -> None:
        with self._lock:
            self._enabled = True
        for near in self._each():
            near.enable()


_group = _Group()
_lock = threading.Lock()
_tracker: Tracker | None = None
_tracked: tuple[Any, str] | None = None  # (backend, namespace) the tracker serves


def _forked() -> None:
    # The parent's tracker thread is not in the child: the next near read starts the child's own.
    global _tracker, _tracked, _lock
    _tracker, _tracked, _lock = None, None, threading.Lock()
    _group.disable()


os.register_at_fork(after_in_child=_forked)


def near_cache(option: bool | dict[str, Any]) -> NearCache | None:
    """The near cache a manager's ``near_cache`` option asks for (``None`` for ``False``)."""
    if option is False or option is None:
        return None
    if option is True:
        settings: dict[str, Any] = {}
    elif isinstance(option, dict):
        unknown = set(option) - {"max_entries", "max_bytes", "ttl"}
        if unknown:
            raise ValueError(
                f"near_cache takes max_entries, max_bytes and ttl, not {', '.join(sorted(unknown))}."
            )
        settings = dict(option)
    else:
        raise ValueError(
            f"near_cache must be True, False or a dict of max_entries, max_bytes and ttl, "
            f"not {option!r}."
        )
    if settings.get("ttl", 0) > MAX_TTL:
        raise ValueError(f"near_cache ttl is at most {MAX_TTL:g} seconds, got {settings['ttl']!r}.")
    near = NearCache(**settings)
    _group.add(near)
    return near


def ensure_tracking(backend: Any, namespace: str) -> None:
    """Make sure a tracker serves ``backend`` and ``namespace`` (two comparisons when it does)."""
    global _tracker, _tracked
    tracked = _tracked
    if tracked is not None and tracked[0] is backend and tracked[1] == namespace:
        return
    with _lock:
        tracked = _tracked
        if tracked is not None and tracked[0] is backend and tracked[1] == namespace:
            return
        if _tracker is not None:
            _tracker.stop(timeout=1.0)
            _tracker = None
        _group.disable()
        client = backend.client
        if not backend.cluster and type(client) is redis.Redis:
            _tracker = Tracker.for_client(client, [namespace], cast("NearCache", _group))
            _tracker.start()
        _tracked = (backend, namespace)


def stop_tracking() -> None:
    """Stop the tracker (tests, and a backend reset); the near caches stay disabled."""
    global _tracker, _tracked
    with _lock:
        if _tracker is not None:
            _tracker.stop(timeout=1.0)
        _tracker, _tracked = None, None
        _group.disable()


def tracker() -> Tracker | None:
    return _tracker


def behind() -> bool:
    """Whether the tracker may hold invalidations not yet applied (see ``Tracker.behind``)."""
    current = _tracker
    return current is None or current.behind()


def discarded(operations: Sequence[tuple[str, ...]], members: Iterable[str] = ()) -> None:
    """An invalidation this process delivered: its keys leave the near caches now."""
    written = [op[1] for op in operations if op[0] == "DEL"]
    written += members
    if any(op[0] in ("PURGE", "SCAN") for op in operations):
        _group.clear()
    elif written:
        _group.discard_many(written)


def wrote() -> None:
    """This context wrote a cached model: inside a request, its near reads stop for the rest of it."""
    if _request_wrote.get() is not None:
        _request_wrote.set(True)


def bypassed() -> bool:
    return _request_wrote.get() is True


def request_started(**kwargs: Any) -> None:
    _request_wrote.set(False)


def request_finished(**kwargs: Any) -> None:
    _request_wrote.set(None)
