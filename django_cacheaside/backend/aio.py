"""The async reads: ``HGET``s on a ``redis.asyncio`` client of the same server, one per event loop.

A hit from ``aget``/``aget_many`` is the same command as a sync hit, sent without blocking the
event loop. The client is built from the sync client's connection settings (address, database,
credentials, TLS, a Unix socket) with the app's own timeouts and no retries, once per event loop
(``redis.asyncio`` connections belong to the loop that opened them) and dropped with its loop.

Only a plain ``redis.Redis`` has an async twin here. For a Redis Cluster, a Sentinel-managed
primary or a client of unknown make, :meth:`AsyncCommands.for_client` answers ``None`` and the
backend runs its sync read in a worker thread instead (``asgiref.sync.sync_to_async``): the same
reads, without the event loop waiting on them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

# The sync connection classes with an async counterpart, and the settings that carry over.
_CONNECTIONS: dict[type, type] = {
    redis.Connection: aioredis.Connection,
    redis.SSLConnection: aioredis.SSLConnection,
    redis.UnixDomainSocketConnection: aioredis.UnixDomainSocketConnection,
}
_SETTINGS = (
    "host",
    "port",
    "path",
    "db",
    "username",
    "password",
    "credential_provider",
    "client_name",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
)


async def _closed_with_the_loop(client: aioredis.Redis) -> AsyncGenerator[None, None]:
    """Closes ``client`` when its loop finalizes its async generators: ``asyncio.run()`` and the
    ASGI servers do before closing the loop, so no connection is left to warn about it then."""
    try:
        yield
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()  # a pool given to Redis() is not closed with it


# Connections per event loop. A hit holds one for a round trip (well under a millisecond), so a
# few serve any number of tasks; 200 tasks missing at once must not open 200 connections, whose
# connects, all at the same moment, can outlast the connect timeout on a loaded machine.
MAX_CONNECTIONS = 16


class AsyncCommands:
    def __init__(
        self,
        connection_class: type,
        settings: dict[str, Any],
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._connection_class = connection_class
        self._settings = settings
        self._max_connections = max_connections
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    @classmethod
    def for_client(
        cls, client: Any, overrides: dict[str, Any] | None = None
    ) -> AsyncCommands | None:
        """The async twin of ``client``, or ``None`` where reads must run in a thread instead."""
        pool: Any = getattr(client, "connection_pool", None)
        if type(client) is not redis.Redis or type(pool) not in (
            redis.ConnectionPool,
            redis.BlockingConnectionPool,
        ):
            return None
        connection_class = _CONNECTIONS.get(pool.connection_class)
        if connection_class is None or getattr(pool, "cache", None) is not None:
            return None
        given = {**pool.connection_kwargs, **(overrides or {})}
        settings = {name: given[name] for name in _SETTINGS if name in given}
        return cls(connection_class, settings, min(pool.max_connections, MAX_CONNECTIONS))

    async def client(self) -> aioredis.Redis:
        """This event loop's client (made on first use)."""
        loop = asyncio.get_running_loop()
        made = self._clients.get(loop)
        if made is None:
            # At most MAX_CONNECTIONS; a task past that waits for one, up to a second (or four
            # socket timeouts), then its read fails open. A burst of tasks is not a slow Redis:
            # the wait is longer than a socket timeout.
            pool = aioredis.BlockingConnectionPool(
                max_connections=self._max_connections,
                timeout=max(1.0, 4 * float(self._settings.get("socket_timeout") or 0.25)),
                connection_class=self._connection_class,
                retry=AsyncRetry(NoBackoff(), 0),
                **self._settings,
            )
            client = aioredis.Redis(connection_pool=pool)
            closer = _closed_with_the_loop(client)
            await anext(closer)  # now the loop knows it, and finalizes it before it closes
            made = self._clients[loop] = (client, closer)
        return made[0]

    async def hget_entry(self, key: str) -> Any:
        return await (await self.client()).hget(key, "d")

    async def hget_entries(self, keys: Sequence[str]) -> list[Any]:
        """``HGET key d`` for each of ``keys``, pipelined: one round trip."""
        async with (await self.client()).pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, "d")
            return list(await pipe.execute(raise_on_error=True))

    async def aclose(self) -> None:
        """Close this event loop's connections (the loop's end drops them too)."""
        made = self._clients.pop(asyncio.get_running_loop(), None)
        if made is not None:
            await made[1].aclose()
