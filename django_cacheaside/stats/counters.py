"""The in-process side of stats: signal receivers that add to counters in memory.

Each counter is ``(model label, schema stamp, name) -> int``. Receivers do a dictionary update under
a lock and nothing else; :mod:`django_cacheaside.stats.flusher` moves the counts to Redis. With
``CACHEASIDE["STATS"] = False`` no receiver is connected, so the read path's signals have no
listener and cost what they cost without stats.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from django_cacheaside import registry, signals
from django_cacheaside.conf import app_settings

# Upper bounds (ms) of the database-load histogram; the last bucket is everything slower.
LOAD_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# A label for counts that belong to no single model (Redis errors, tag purges).
ANY_MODEL = "-"

Counts = dict[tuple[str, str, str], int]


class Buffer:
    """Counts since the last flush, per ``(label, schema, counter)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._models: dict[type[models.Model], tuple[str, str, int]] = {}

    def where(self, model: Any) -> tuple[str, str]:
        """``(label, schema)`` of a model, remembered until the settings change."""
        known = self._models.get(model)
        if known is not None and known[2] == app_settings.generation:
            return known[0], known[1]
        manager = registry.manager_for(model) if model is not None else None
        if manager is None:
            return ANY_MODEL, ""
        label = f"{model._meta.app_label}.{model._meta.object_name}"
        self._models[model] = (label, manager.schema, app_settings.generation)
        return label, manager.schema

    def add(self, model: Any, name: str, amount: int = 1) -> None:
        label, schema = self.where(model)
        with self._lock:
            first = not self._counts
            self._counts[(label, schema, name)] += amount
        if first:
            self.started()

    def started(self) -> None:
        """Called when counts arrive in an empty buffer: the flusher makes sure it runs."""
        from django_cacheaside.stats.flusher import ensure_running

        ensure_running()

    def take(self) -> Counts:
        """The counts so far, and start again from zero."""
        with self._lock:
            counts, self._counts = self._counts, defaultdict(int)
        return dict(counts)

    def give_back(self, counts: Counts) -> None:
        """Counts a flush could not write: they go out with the next one."""
        with self._lock:
            for field, amount in counts.items():
                self._counts[field] += amount


buffer = Buffer()


def _query(key: str) -> bool:
    return ":=q}:" in key


def on_hit(sender: Any, key: str, negative: bool = False, **kwargs: Any) -> None:
    buffer.add(sender, "query_hits" if _query(key) else "negative_hits" if negative else "hits")


def on_miss(sender: Any, key: str, **kwargs: Any) -> None:
    buffer.add(sender, "query_misses" if _query(key) else "misses")


def on_fill(sender: Any, written: bool, duration: float, **kwargs: Any) -> None:
    label, schema = buffer.where(sender)
    ms = duration * 1000
    bucket = next((f"load_le_{b}" for b in LOAD_BUCKETS_MS if ms <= b), "load_gt_5000")
    with buffer._lock:
        counts = buffer._counts
        first = not counts
        counts[(label, schema, "fills" if written else "fills_refused")] += 1
        counts[(label, schema, "load_count")] += 1
        counts[(label, schema, "load_us")] += int(duration * 1_000_000)
        counts[(label, schema, bucket)] += 1
    if first:
        buffer.started()


_LEASE_COUNTERS = {"waited": "lock_waits", "timeout": "lock_timeouts", "coalesced": "coalesced"}


def on_lease(sender: Any, outcome: str, **kwargs: Any) -> None:
    name = _LEASE_COUNTERS.get(outcome)
    if name is not None:
        buffer.add(sender, name)


def on_refresh(sender: Any, reason: str, **kwargs: Any) -> None:
    buffer.add(sender, "early_refreshes" if reason == "early" else "stale_refreshes")


def on_stale(sender: Any, **kwargs: Any) -> None:
    buffer.add(sender, "stale_served")


def on_invalidate(sender: Any, cause: str, **kwargs: Any) -> None:
    buffer.add(sender, f"invalidations_{cause}")


def on_error(sender: Any, operation: str, **kwargs: Any) -> None:
    buffer.add(None, "errors")


RECEIVERS = (
    (signals.cache_hit, on_hit),
    (signals.cache_miss, on_miss),
    (signals.cache_fill, on_fill),
    (signals.cache_lease, on_lease),
    (signals.cache_refresh, on_refresh),
    (signals.cache_stale, on_stale),
    (signals.cache_invalidate, on_invalidate),
    (signals.cache_error, on_error),
)


def connect() -> None:
    """Connect the receivers if ``STATS`` is on, disconnect them if it is off (idempotent)."""
    try:
        on = bool(app_settings.STATS)
    except ImproperlyConfigured:
        return  # the settings are broken: the checks report them, the receivers stay as they were
    for signal, receiver in RECEIVERS:
        uid = f"django_cacheaside.stats.{receiver.__name__}"
        if on:
            signal.connect(receiver, dispatch_uid=uid)
        else:
            signal.disconnect(dispatch_uid=uid)
