"""Transactions: the per-transaction invalidation queue and the read policy inside a transaction.

Invalidations queued inside ``atomic()`` live in one on-commit callback per savepoint level, so a
savepoint rollback drops its own (Django discards callbacks registered inside it) and a commit sends
each level's operations in one pipelined round trip. The same callbacks tell the read path which models
this transaction wrote: those reads bypass the cache, so a transaction sees its own writes and never
fills the cache with data nobody else can see yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

Operation = tuple[str, ...]


class PendingInvalidation:
    """An on-commit callback: the invalidation operations of one savepoint level of one
    transaction (see :mod:`django_cacheaside.invalidation`)."""

    def __init__(self, send: Callable[[list[Operation]], object]) -> None:
        self.operations: dict[Operation, None] = {}  # insertion-ordered set
        self.labels: set[str] = set()
        self._send = send

    def add(self, labels: Iterable[str], operations: Iterable[Operation]) -> None:
        self.labels.update(labels)
        self.operations.update(dict.fromkeys(operations))

    def __call__(self) -> None:
        self._send(list(self.operations))


def _pending_callbacks(conn: BaseDatabaseWrapper) -> Iterable[tuple[set[str], Any]]:
    for entry in conn.run_on_commit:
        sids, func = entry[0], entry[1]
        if isinstance(func, PendingInvalidation):
            yield sids, func


def queue(
    using: str,
    labels: Iterable[str],
    operations: Iterable[Operation],
    send: Callable[[list[Operation]], object],
) -> bool:
    """Queue ``operations`` for the commit of the transaction open on ``using``; ``labels`` name the
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
    pending.add(labels, operations)
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
