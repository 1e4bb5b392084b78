"""Transactions: the per-transaction invalidation queue and the read policy inside a transaction.

Invalidations queued inside ``atomic()`` live in one on-commit callback per savepoint level, so a
savepoint rollback drops its own (Django discards callbacks registered inside it) and a commit sends
each level's keys in one pipelined round trip. The same callbacks tell the read path which models
this transaction wrote: those reads bypass the cache, so a transaction sees its own writes and never
fills the cache with data nobody else can see yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper


class PendingInvalidation:
    """An on-commit callback: the keys one savepoint level of one transaction invalidated."""

    def __init__(self, send: Callable[[list[str]], object]) -> None:
        self.keys: dict[str, None] = {}  # insertion-ordered set
        self.labels: set[str] = set()
        self._send = send

    def add(self, labels: Iterable[str], keys: Iterable[str]) -> None:
        self.labels.update(labels)
        self.keys.update(dict.fromkeys(keys))

    def __call__(self) -> None:
        self._send(list(self.keys))


def _pending_callbacks(conn: BaseDatabaseWrapper) -> Iterable[tuple[set[str], Any]]:
    for entry in conn.run_on_commit:
        sids, func = entry[0], entry[1]
        if isinstance(func, PendingInvalidation):
            yield sids, func


def queue(
    using: str, labels: Iterable[str], keys: Iterable[str], send: Callable[[list[str]], object]
) -> bool:
    """Queue ``keys`` for the commit of the transaction open on ``using``; ``labels`` name the
    models written, whose reads bypass the cache until the transaction ends.

    Returns ``False`` (queuing nothing) outside ``atomic()``: then the write is already committed.
    """
    conn = connections[using]
    if not conn.in_atomic_block:
        return False
    level = set(conn.savepoint_ids)
    pending = next((func for sids, func in _pending_callbacks(conn) if sids == level), None)
    if pending is None:
        pending = PendingInvalidation(send)
        conn.on_commit(pending)
    pending.add(labels, keys)
    return True


def wrote(conn: BaseDatabaseWrapper, label: str) -> bool:
    """Whether the transaction open on ``conn`` has written (and not rolled back) model ``label``."""
    if not conn.in_atomic_block:
        return False
    return any(label in f.labels for _s, f in _pending_callbacks(conn))


def fill_is_safe(conn: BaseDatabaseWrapper) -> bool:
    """Whether a row read now on ``conn`` is at least as new as the last commit before the read.

    Outside a transaction every statement sees the latest commit. Inside one, that holds for
    PostgreSQL and MySQL at READ COMMITTED (a snapshot per statement) and for SQLite outside WAL mode
    (a reader's lock keeps writers from committing until it ends). Anything else reads a snapshot
    that may predate the stamp we saw, so the row is served but not cached.
    """
    if not conn.in_atomic_block:
        return True
    vendor = conn.vendor
    if vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        return getattr(conn, "isolation_level", None) == IsolationLevel.READ_COMMITTED
    if vendor == "mysql":
        level = conn.settings_dict.get("OPTIONS", {}).get("isolation_level")
        return bool(level == "read committed")
    if vendor == "sqlite":
        return not _sqlite_wal(conn)
    return False


def _sqlite_wal(conn: BaseDatabaseWrapper) -> bool:
    raw = conn.connection
    cached = getattr(conn, "_cacheaside_wal", None)
    if cached is not None and cached[0] is raw:
        return bool(cached[1])
    # The raw driver connection, so the probe is not one of the caller's counted queries.
    mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    wal = str(mode).lower() == "wal"
    conn._cacheaside_wal = (raw, wal)  # type: ignore[attr-defined]
    return wal
