"""Single commands on a connection of this thread's own, past redis-py's per-command machinery.

A hit is one ``HGET`` and a save one ``DEL``. Sent through ``redis.Redis.execute_command`` each pays
for a pool checkout and release, the retry wrapper and the observability hooks: about as much time
again as the round trip itself on a local network (measured in docs/benchmarks.md). Here each thread
keeps one connection, built with the pool's own connection class and settings (timeouts, TLS,
credentials, health checks), and sends on it directly.

Used only for a plain ``redis.Redis`` over a plain connection pool; Sentinel pools, client-side
caching and clusters go through the client as usual. A connection whose command failed in transit
is dropped (the next call makes a new one); one that went stale while idle is replaced and the
command sent once more. After ``fork()`` the child never touches its parent's socket.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

_POOLS = (redis.ConnectionPool, redis.BlockingConnectionPool)


class DirectCommands:
    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._local = threading.local()

    @classmethod
    def for_client(cls, client: Any) -> DirectCommands | None:
        """A ``DirectCommands`` for ``client``, or ``None`` where it must go through the client."""
        pool: Any = getattr(client, "connection_pool", None)
        if type(client) is not redis.Redis or type(pool) not in _POOLS:
            return None
        if getattr(pool, "cache", None) is not None:
            return None
        return cls(pool)

    def _connection(self) -> tuple[Any, bool]:
        """This thread's connection and whether it was used before."""
        local = self._local
        pid = os.getpid()
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == pid:
            return conn, True
        pool = self._pool
        conn = pool.connection_class(**pool.connection_kwargs)
        local.conn, local.pid = conn, pid
        return conn, False

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        conn.disconnect()

    def execute(self, *args: Any) -> Any:
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.send_command(*args)
                return conn.read_response()
            except ResponseError:
                raise  # the reply was read whole: the connection is still good
            except RedisConnectionError:
                self._drop(conn)
                # Only a connection left idle may have been closed by the server meanwhile: then
                # one more try on a new one.
                if not reused or attempt == 2:
                    raise
            except BaseException:
                self._drop(conn)  # a reply may be half read: never reuse this socket
                raise
        raise AssertionError("unreachable")
