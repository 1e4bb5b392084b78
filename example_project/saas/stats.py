"""Counting what the cache did, from django-cacheaside's signals (used by the demo and every page)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Self

from django_cacheaside import signals


@dataclass
class CacheCounter:
    """Counts ``cache_hit``, ``cache_miss``, ``cache_fill`` and ``cache_lease`` signals while the block
    runs.

    ``this_thread_only`` counts only the signals sent by the thread that entered the block (a page
    served by a threaded server); otherwise every thread's (the demo's stampede). Hits and misses are
    Redis lookups: a ``get()`` by a unique field other than the pk looks up a pointer, then the row.
    """

    this_thread_only: bool = False
    hits: int = 0
    misses: int = 0
    fills: int = 0
    fills_lost: int = 0
    coalesced: int = 0  # waited for another thread of this process to load it
    lock_timeouts: int = 0  # LOCK_WAIT ran out: read from the database without filling
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: int = field(default=0, repr=False)

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None

    def _counts(self) -> bool:
        return not self.this_thread_only or threading.get_ident() == self._thread

    def _on_hit(self, sender: Any, **kwargs: Any) -> None:
        if self._counts():
            with self._lock:
                self.hits += 1

    def _on_miss(self, sender: Any, **kwargs: Any) -> None:
        if self._counts():
            with self._lock:
                self.misses += 1

    def _on_fill(self, sender: Any, written: bool, **kwargs: Any) -> None:
        if self._counts():
            with self._lock:
                if written:
                    self.fills += 1
                else:
                    self.fills_lost += 1

    def _on_lease(self, sender: Any, outcome: str, **kwargs: Any) -> None:
        if self._counts() and outcome in ("coalesced", "timeout"):
            with self._lock:
                if outcome == "coalesced":
                    self.coalesced += 1
                else:
                    self.lock_timeouts += 1

    def _receivers(self) -> list[tuple[Any, Any]]:
        return [
            (signals.cache_hit, self._on_hit),
            (signals.cache_miss, self._on_miss),
            (signals.cache_fill, self._on_fill),
            (signals.cache_lease, self._on_lease),
        ]

    def __enter__(self) -> Self:
        self._thread = threading.get_ident()
        for signal, receiver in self._receivers():
            signal.connect(receiver, dispatch_uid=(id(self), receiver.__name__))
        return self

    def __exit__(self, *exc: object) -> None:
        for signal, receiver in self._receivers():
            signal.disconnect(dispatch_uid=(id(self), receiver.__name__))
