"""What a test's worker thread calls when it ends."""

from __future__ import annotations

from typing import Any

from django.db import connections


def close_thread_connections() -> None:
    """Close this thread's database connections, in-memory SQLite ones included.

    Each thread has connections of its own. Django's ``close()`` leaves an in-memory SQLite
    connection open (closing the last one would drop the test database, but the main thread still
    holds one), so a worker's would be left to the garbage collector, which Python 3.13 reports as a
    ``ResourceWarning`` (an error in this suite) in whatever test is running when it collects.
    """
    for conn in connections.all(initialized_only=True):
        sqlite: Any = conn  # is_in_memory_db() is the SQLite backend's own
        if conn.vendor == "sqlite" and sqlite.is_in_memory_db() and conn.connection is not None:
            conn.connection.close()
            conn.connection = None
    connections.close_all()
