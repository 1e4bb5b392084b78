"""The in-process side of stats: signal receivers that add to counters in memory.

Each counter is ``(model label, schema stamp, name) -> int``. Receivers do a dictionary update under
a lock and nothing else; :mod:`django_cacheaside.stats.flusher` moves the counts to Redis. With
``CACHEASIDE["STATS"] = False`` no receiver is connected, so the read path's signals have no
listener and cost what they cost without stats.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_cacheaside import registry, signals
from django_cacheaside.conf import app_settings

# Upper bounds (ms) of the database-load histogram; the last bucket is everything slower.
LOAD_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# A label for counts that belong to no single model (Redis errors, tag purges).
ANY_MODEL = "-"

Counts = dict[tuple[str, str, str], int]


class Buffer:
    """Counts since the last flush, per ``(label, schema, counter)``.

    A count of one (a hit, a miss) is ``next()`` of an ``itertools.count`` per field: one C call
    the GIL makes atomic, no lock. Amounts (load times) and counts given back by a failed flush go
    to a dict under a lock. :meth:`take` reads each tally and keeps where it stopped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._amounts: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._tallies: dict[tuple[str, str, str], itertools.count[int]] = {}
        self._taken: dict[tuple[str, str, str], int] = {}
        # Totals since this process started (or forked), for Prometheus: tallies never go back.
        self._base: dict[tuple[str, str, str], int] = {}
        self._amount_totals: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        # model -> counter -> its tally; rebuilt when the settings change (schema stamps may).
        self._by_model: dict[Any, dict[str, itertools.count[int]]] = {}
        self._generation = -1
        self.running = False  # whether this process's flusher was started

    def where(self, model: Any) -> tuple[str, str]:
        """``(label, schema)`` of a model (``("-", "")`` for none or an uncached one)."""
        manager = registry.manager_for(model) if model is not None else None
        if manager is None:
            return ANY_MODEL, ""
        return f"{model._meta.app_label}.{model._meta.object_name}", manager.schema

    def _tally(self, model: Any, name: str) -> itertools.count[int]:
        if self._generation != app_settings.generation:
            self._by_model = {}
            self._generation = app_settings.generation
        field = (*self.where(model), name)
        with self._lock:
            tally = self._tallies.setdefault(field, itertools.count(1))
        self._by_model.setdefault(model, {})[name] = tally
        return tally

    def count(self, model: Any, name: str) -> None:
        """Add one: the hot path (a comparison, two dict lookups and a C call)."""
        tally = None
        if self._generation == app_settings.generation:
            tally = self._by_model.get(model, {}).get(name)
        if tally is None:
            tally = self._tally(model, name)
        next(tally)
        if not self.running:
            self.started()

    def add(self, model: Any, name: str, amount: int = 1) -> None:
        field = (*self.where(model), name)
        with self._lock:
            self._amounts[field] += amount
            self._amount_totals[field] += amount
        if not self.running:
            self.started()

    def started(self) -> None:
        """The first count of this process: make sure its flusher runs."""
        from django_cacheaside.stats.flusher import ensure_running

        self.running = True
        ensure_running()

    def take(self) -> Counts:
        """The counts since the last ``take()``."""
        with self._lock:
            counts: Counts = dict(self._amounts)
            self._amounts = defaultdict(int)
            for field, tally in self._tallies.items():
                reached = _reached(tally)
                fresh = reached - self._taken.get(field, 0)
                if fresh:
                    self._taken[field] = reached
                    counts[field] = counts.get(field, 0) + fresh
        return counts

    def give_back(self, counts: Counts) -> None:
        """Counts a flush could not write: they go out with the next one."""
        with self._lock:
            for field, amount in counts.items():
                self._amounts[field] += amount

    def forget(self) -> None:
        """Drop every count (a forked child: its parent writes them) and the flusher flag."""
        with self._lock:
            self._amounts = defaultdict(int)
            self._amount_totals = defaultdict(int)
            self._taken = {f: _reached(t) for f, t in self._tallies.items()}
            self._base = dict(self._taken)
        self.running = False

    def totals(self) -> Counts:
        """Every count of this process since it started (or was forked), flushed or not."""
        with self._lock:
            totals: Counts = dict(self._amount_totals)
            for field, tally in self._tallies.items():
                total = _reached(tally) - self._base.get(field, 0)
                if total:
                    totals[field] = totals.get(field, 0) + total
        return totals


def _reached(tally: itertools.count[int]) -> int:
    """How many times ``next()`` was called on a tally started at 1 (its repr is "count(N)")."""
    return int(repr(tally)[6:-1]) - 1


buffer = Buffer()


def _query(key: str) -> bool:
    return ":=q}:" in key


def on_hit(sender: Any, key: str, negative: bool = False, **kwargs: Any) -> None:
    buffer.count(sender, "query_hits" if _query(key) else "negative_hits" if negative else "hits")


def on_hits(sender: Any, keys: list[str], negative: bool = False, **kwargs: Any) -> None:
    """``on_hit`` for a batch of keys (``CacheSignal.send_each``), counted as ``on_hit`` would."""
    name = "negative_hits" if negative else "hits"
    queries = sum(1 for key in keys if _query(key))
    if queries:
        buffer.add(sender, "query_hits", queries)
    if len(keys) > queries:
        buffer.add(sender, name, len(keys) - queries)


on_hit.many = on_hits  # type: ignore[attr-defined]  # see CacheSignal.send_each


def on_miss(sender: Any, key: str, **kwargs: Any) -> None:
    buffer.count(sender, "query_misses" if _query(key) else "misses")


def on_fill(sender: Any, written: bool, duration: float, **kwargs: Any) -> None:
    ms = duration * 1000
    bucket = next((f"load_le_{b}" for b in LOAD_BUCKETS_MS if ms <= b), "load_gt_5000")
    buffer.count(sender, "fills" if written else "fills_refused")
    buffer.count(sender, "load_count")
    buffer.add(sender, "load_us", int(duration * 1_000_000))
    buffer.count(sender, bucket)


_LEASE_COUNTERS = {"waited": "lock_waits", "timeout": "lock_timeouts", "coalesced": "coalesced"}


def on_lease(sender: Any, outcome: str, **kwargs: Any) -> None:
    name = _LEASE_COUNTERS.get(outcome)
    if name is not None:
        buffer.count(sender, name)


def on_refresh(sender: Any, reason: str, **kwargs: Any) -> None:
    buffer.count(sender, "early_refreshes" if reason == "early" else "stale_refreshes")


def on_stale(sender: Any, **kwargs: Any) -> None:
    buffer.count(sender, "stale_served")


def on_invalidate(sender: Any, cause: str, **kwargs: Any) -> None:
    buffer.count(sender, f"invalidations_{cause}")


def on_error(sender: Any, operation: str, **kwargs: Any) -> None:
    buffer.count(None, "errors")


def on_breaker(sender: Any, state: str, **kwargs: Any) -> None:
    if state == "open":
        buffer.count(None, "breaker_opens")


RECEIVERS = (
    (signals.cache_hit, on_hit),
    (signals.cache_miss, on_miss),
    (signals.cache_fill, on_fill),
    (signals.cache_lease, on_lease),
    (signals.cache_refresh, on_refresh),
    (signals.cache_stale, on_stale),
    (signals.cache_invalidate, on_invalidate),
    (signals.cache_error, on_error),
    (signals.cache_breaker, on_breaker),
)


def connect(enabled: bool | None = None) -> None:
    """Connect the receivers if ``enabled`` (default: the ``STATS`` setting), else disconnect them
    (idempotent)."""
    try:
        on = bool(app_settings.STATS) if enabled is None else enabled
    except ImproperlyConfigured:
        return  # the settings are broken: the checks report them, the receivers stay as they were
    for signal, receiver in RECEIVERS:
        uid = f"django_cacheaside.stats.{receiver.__name__}"
        if on:
            signal.connect(receiver, dispatch_uid=uid, weak=False)
        else:
            signal.disconnect(dispatch_uid=uid)
