"""The only module that imports ``redis``.

Every Redis call of the app goes through :class:`Backend`. Its methods never raise: a redis-py error
(refused, timed out, reset, a reply of the wrong shape) is translated into
:class:`~django_cacheaside.exceptions.BackendError`, logged at most once per ``ERROR_LOG_INTERVAL``,
announced with the ``cache_error`` signal, and answered with the method's *fail-open* value: a read
becomes "no entry and no stamp" (the caller loads from the database and does not fill), a fill
becomes "not written". That is the whole fail-open mechanism.

Each object is one Redis hash ``{s: stamp, d: entry}`` with a TTL:

* a *hit* is ``HGET key d``: one command, one round trip;
* a *miss* runs :data:`READ_OR_BEGIN`, which returns the entry if one appeared meanwhile, or the
  object's random stamp, creating it (with a TTL) when missing;
* a *fill* runs :data:`FILL`, which writes the entry only if the stamp is still the one seen before
  the database read (compare-and-set);
* an *invalidation* is ``DEL key``: the stamp is gone, so every fill that started earlier fails its
  compare-and-set, and the next miss creates a fresh random stamp that no old fill can match.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import redis
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from django_cacheaside.backend import scripts
from django_cacheaside.backend.aio import AsyncCommands
from django_cacheaside.backend.breaker import Breaker
from django_cacheaside.backend.counting import StatsCommands
from django_cacheaside.backend.direct import DirectCommands
from django_cacheaside.backend.errors import afail_open, fail_open, report_error
from django_cacheaside.backend.health import HealthCommands
from django_cacheaside.backend.instrument import RoundTripCounter, scan_keys
from django_cacheaside.backend.pipeline import Client, as_bytes
from django_cacheaside.backend.querying import QueryCommands, QueryRead
from django_cacheaside.backend.tagging import TagCommands
from django_cacheaside.conf import app_settings

__all__ = [
    "UNAVAILABLE",
    "Backend",
    "Fill",
    "Lease",
    "QueryRead",
    "Read",
    "RoundTripCounter",
    "fail_open",
    "get_backend",
    "report_error",
    "reset",
    "scan_keys",
]


class Lease(NamedTuple):
    """A refill lease: the lock key of one object and the random token of one fill."""

    key: str
    token: bytes
    ttl_ms: int


# (key, stamp, entry, ttl_ms, lease or None): one compare-and-set fill.
Fill = tuple[str, bytes, bytes, int, "Lease | None"]


class Read(NamedTuple):
    """What a miss-path read found: the entry, or else the stamp a fill must match.

    ``lease`` is set when this read holds the object's refill lease (and must fill or release it).
    Entry and stamp are both ``None`` when Redis could not be asked: load, do not fill.
    """

    entry: bytes | None
    stamp: bytes | None
    lease: Lease | None = None


UNAVAILABLE = Read(None, None)


def new_stamp() -> bytes:
    """A random 64-bit stamp: never a counter, so a stamp lost to eviction never comes back."""
    return os.urandom(8)


class Backend(TagCommands, QueryCommands, StatsCommands, HealthCommands):
    def __init__(self, client: Client, overrides: dict[str, Any] | None = None) -> None:
        """``overrides``: connection settings the app's own connections use instead of the
        client's (see :func:`connection_overrides`)."""
        self.cluster = isinstance(client, RedisCluster)
        if self.cluster:
            pool_kwargs = cast("RedisCluster", client).get_connection_kwargs()  # type: ignore[no-untyped-call]
        else:
            pool = getattr(client, "connection_pool", None)
            pool_kwargs = getattr(pool, "connection_kwargs", {})
        if pool_kwargs.get("decode_responses"):
            raise ImproperlyConfigured(
                "The Redis client used by django-cacheaside has decode_responses=True; entries are "
                "bytes. Give CACHEASIDE['REDIS'] a client without it."
            )
        self.client = client
        self._direct = None if self.cluster else DirectCommands.for_client(client, overrides)
        self._overrides = overrides
        # On a cluster, hits skip RedisCluster's per-command routing: one direct path per primary.
        self._node_directs: dict[str, DirectCommands | None] = {}
        self._async: AsyncCommands | None = None  # made on the first async read
        self._async_made = False
        self.breaker = Breaker(self.ping)

    @fail_open(default=False)
    def ping(self) -> bool:
        """Whether Redis answers (the circuit breaker's probe)."""
        if self._direct is not None:
            return bool(self._direct.execute("PING"))
        return bool(self.client.ping())

    # -- reads ---------------------------------------------------------------------------------

    def _node_direct(self, key: str) -> DirectCommands | None:
        """The direct path to the primary that redis-py's slot map names for ``key``."""
        cluster = cast("RedisCluster", self.client)
        node = cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
        try:
            return self._node_directs[node.name]
        except KeyError:
            direct = DirectCommands.for_client(cluster.get_redis_connection(node), self._overrides)
            self._node_directs[node.name] = direct
            return direct

    @fail_open(default=None)
    def read(self, key: str) -> bytes | None:
        """The entry under ``key``, or ``None`` (a miss, or Redis unavailable)."""
        if self._direct is not None:
            return as_bytes(self._direct.hget_entry(key))
        if self.cluster and (direct := self._node_direct(key)) is not None:
            try:
                return as_bytes(direct.hget_entry(key))
            except (ResponseError, RedisConnectionError):
                pass  # MOVED, ASK, a node gone: RedisCluster follows it and mends its slot map
        return as_bytes(self.client.hget(key, "d"))

    @fail_open(default=None)
    def _read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self._direct is not None:
            replies = self._direct.hget_entries(keys)
            for reply in replies:  # the usual replies checked inline, without a call each
                if reply is not None and type(reply) is not bytes:
                    if isinstance(reply, Exception):
                        raise reply
                    return [as_bytes(value) for value in replies]  # raises: not an entry
            return replies
        elif self.cluster:
            replies = self._read_many_on_cluster(keys)
        else:
            replies = self._run_pipeline([("HGET", key, "d") for key in keys])
        return [as_bytes(value) for value in replies]

    def _read_many_on_cluster(self, keys: Sequence[str]) -> list[Any]:
        """One direct round trip per primary (by redis-py's slot map); what a primary answers
        with an error (``MOVED``, ``ASK``) or cannot answer goes through RedisCluster."""
        replies: list[Any] = [None] * len(keys)
        by_node: dict[int, tuple[DirectCommands | None, list[int]]] = {}
        for at, key in enumerate(keys):
            direct = self._node_direct(key)
            by_node.setdefault(id(direct), (direct, []))[1].append(at)
        again: list[int] = []
        for direct, places in by_node.values():
            if direct is None:
                again += places
                continue
            try:
                answers = direct.hget_entries([keys[at] for at in places])
            except RedisConnectionError:
                again += places
                continue
            for at, answer in zip(places, answers, strict=True):
                if isinstance(answer, ResponseError):
                    again.append(at)
                else:
                    replies[at] = answer
        if again:
            pipeline = self._run_pipeline([("HGET", keys[at], "d") for at in again])
            for at, answer in zip(again, pipeline, strict=True):
                replies[at] = answer
        return replies

    def read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The entries under ``keys`` in one round trip (``None`` for misses)."""
        if not keys:
            return []
        return self._read_many(keys) or [None] * len(keys)

    # -- async reads (aget, aget_many): the same HGETs, see backend/aio.py ---------------------

    @afail_open(default=None)
    async def aread(self, key: str) -> bytes | None:
        """:meth:`read`, awaited."""
        commands = self._async_commands()
        if commands is None:
            return await sync_to_async(self.read, thread_sensitive=False)(key)
        return as_bytes(await commands.hget_entry(key))

    @afail_open(default=None)
    async def _aread_many(self, keys: Sequence[str]) -> list[bytes | None]:
        commands = self._async_commands()
        if commands is None:
            return await sync_to_async(self.read_many, thread_sensitive=False)(keys)
        return [as_bytes(value) for value in await commands.hget_entries(keys)]

    async def aread_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """:meth:`read_many`, awaited."""
        if not keys:
            return []
        return await self._aread_many(keys) or [None] * len(keys)

    def _async_commands(self) -> AsyncCommands | None:
        if not self._async_made:
            if not self.cluster:
                self._async = AsyncCommands.for_client(self.client, self._overrides)
            self._async_made = True
        return self._async

    def read_or_begin(
        self, key: str, ttl_ms: int, *, entry: bool = True, lease: Lease | None = None
    ) -> Read:
        """The entry under ``key`` or else its stamp (created if missing, with ``ttl_ms``).

        ``entry=False`` always answers the stamp: for replacing an entry the reader cannot use.
        With ``lease``, a miss also takes the object's refill lease unless another fill holds it.
        """
        leases = [lease] if lease is not None else None
        return self.read_or_begin_many([key], ttl_ms, entry=entry, leases=leases)[0]

    @fail_open(default=None)
    def _read_or_begin_many(
        self, keys: Sequence[str], ttl_ms: int, entry: bool, leases: Sequence[Lease] | None
    ) -> list[Read]:
        sha = scripts.SHAS["read_or_begin"]
        want = 1 if entry else 0
        commands: list[tuple[Any, ...]]
        if leases is None:
            commands = [("EVALSHA", sha, 1, key, new_stamp(), ttl_ms, want, "") for key in keys]
        else:
            commands = [
                ("EVALSHA", sha, 2, key, lease.key, new_stamp(), ttl_ms, want, lease.token,
                 lease.ttl_ms)
                for key, lease in zip(keys, leases, strict=True)
            ]  # fmt: skip
        reads = []
        replies = self._run_pipeline(commands)
        for i, (flag, value, leased) in enumerate(replies):
            if int(flag) == 1:
                reads.append(Read(as_bytes(value), None))
            else:
                held = leases[i] if leases is not None and int(leased) == 1 else None
                reads.append(Read(None, as_bytes(value), held))
        return reads

    def read_or_begin_many(
        self,
        keys: Sequence[str],
        ttl_ms: int,
        *,
        entry: bool = True,
        leases: Sequence[Lease] | None = None,
    ) -> list[Read]:
        """For each key in one round trip: its entry, or the stamp a fill must match (and, with
        ``leases``, one per key, the refill lease unless another fill holds it)."""
        if not keys:
            return []
        return self._read_or_begin_many(keys, ttl_ms, entry, leases) or [UNAVAILABLE] * len(keys)

    # -- writes --------------------------------------------------------------------------------

    @fail_open(default=None)
    def _fill_many(self, items: Sequence[Fill]) -> list[bool]:
        sha = scripts.SHAS["fill"]
        commands = [
            ("EVALSHA", sha, 1, key, stamp, entry, ttl, "")
            if lease is None
            else ("EVALSHA", sha, 2, key, lease.key, stamp, entry, ttl, lease.token)
            for key, stamp, entry, ttl, lease in items
        ]
        return [int(written) == 1 for written in self._run_pipeline(commands)]

    def fill_many(self, items: Sequence[Fill]) -> list[bool]:
        """Write each ``(key, stamp, entry, ttl_ms, lease)`` whose stamp is unchanged, releasing
        the lease (if any, and only if still ours); one round trip."""
        if not items:
            return []
        return self._fill_many(items) or [False] * len(items)

    def fill(
        self, key: str, stamp: bytes, entry: bytes, ttl_ms: int, lease: Lease | None = None
    ) -> bool:
        """Write ``entry`` if the stamp is unchanged, then release ``lease`` if it is still ours."""
        return self.fill_many([(key, stamp, entry, ttl_ms, lease)])[0]

    @fail_open(default=False)
    def release(self, lease: Lease) -> bool:
        """Give ``lease`` back, only if it is still ours (another fill may hold it after expiry)."""
        sha = scripts.SHAS["release"]
        (released,) = self._run_pipeline([("EVALSHA", sha, 1, lease.key, lease.token)])
        return int(released) == 1

    @fail_open(default=False, invalidation=True)
    def invalidate(self, operations: Sequence[tuple[str, ...]]) -> bool:
        """Run invalidation commands (``DEL``, ``HDEL``, ``ZREM``) in one round trip.

        ``ZREM`` goes first: an object leaves its tag sets before its entry is deleted, so a refill
        that joins a tag set after the ``ZREM`` fills under a new stamp and stays a member.
        ``False`` if Redis failed.
        """
        if not operations:
            return True
        leave = [op for op in operations if op[0] == "ZREM"]
        dropped = [op[1] for op in operations if op[0] == "DEL"]
        commands: list[tuple[Any, ...]] = list(leave)
        if self._direct is not None and dropped:
            commands.append(("DEL", *dropped))  # one server: any keys in one command
        else:
            commands += [("DEL", key) for key in dropped]  # one slot per command, as Cluster wants
        commands += [op for op in operations if op[0] == "HDEL"]
        self._run_pipeline(commands, written=[op[1] for op in operations])
        return True

    @fail_open(default=None, invalidation=True)
    def delete_matching(self, pattern: str, batch: int = 1000) -> int | None:
        """Delete every key matching ``pattern`` except refill leases, found by ``SCAN`` (never
        ``KEYS``) ``batch`` at a time; one ``DEL`` round trip per batch found. Answers the count,
        or ``None`` if Redis failed."""
        deleted = 0
        for server in self._servers():
            cursor = 0
            while True:
                cursor, found = self._scan(server, cursor, batch, pattern)
                doomed = [key for key in cast("list[bytes]", found) if not key.endswith(b":lock")]
                if doomed:
                    if self._direct is not None:  # one server: any keys in one command
                        self._run_pipeline([("DEL", *doomed)], written=doomed)
                    else:
                        self._run_pipeline([("DEL", key) for key in doomed], written=doomed)
                    deleted += len(doomed)
                if cursor == 0:
                    break
        return deleted

    @fail_open(default=False, invalidation=True)
    def delete(self, keys: Sequence[str]) -> bool:
        """Drop the entries and stamps under ``keys`` in one round trip. ``False`` if Redis failed."""
        if not keys:
            return True
        if self._direct is not None:
            for start in range(0, len(keys), 10000):  # one server, so any keys in one command
                batch = keys[start : start + 10000]
                self._run_pipeline([("DEL", *batch)], written=batch)
        else:
            # One DEL per key keeps every command on one slot, as Redis Cluster requires.
            self._run_pipeline([("DEL", key) for key in keys], written=keys)
        return True


# -- the process-wide backend ------------------------------------------------------------------

_backend: Backend | None = None
_backend_lock = threading.Lock()


def connection_overrides() -> dict[str, Any]:
    """What the app's own connections to Redis use instead of the client's settings.

    Short timeouts, and no retries: since redis-py 6 a refused connect is retried 10 times with
    backoff by default (about 4 s on a closed port). The app answers from the database instead
    and leaves retrying to its circuit breaker.
    """
    overrides: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "retry_on_timeout": False}
    for name, setting in (
        ("socket_timeout", app_settings.SOCKET_TIMEOUT),
        ("socket_connect_timeout", app_settings.SOCKET_CONNECT_TIMEOUT),
    ):
        if setting is not None:
            overrides[name] = float(setting)
    return overrides


# CACHEASIDE["REDIS"] URLs naming a Redis Cluster: any node's address, the rest is discovered.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


class LazyCluster(RedisCluster):
    """A ``RedisCluster`` that connects on first use, not when it is made.

    redis-py's constructor asks a node for the slot map at once and raises if none answers, which
    would make a cluster that is down when a process starts an exception in every read. This one
    runs that constructor when an attribute it sets is first needed, under the backend's
    ``fail_open`` like any other Redis call; until it succeeds every call tries again (the circuit
    breaker spaces the tries out).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.__dict__["_deferred"] = (url, kwargs)
        self.__dict__["_connecting"] = threading.Lock()

    def _connected(self) -> bool:
        return "nodes_manager" in self.__dict__

    def __getattr__(self, name: str) -> Any:
        # Only attributes the real constructor sets end up here, or its own internals.
        if name.startswith("__") or name in ("_deferred", "_connecting"):
            raise AttributeError(name)
        with self.__dict__["_connecting"]:
            if not self._connected():
                url, kwargs = self.__dict__["_deferred"]
                RedisCluster.__init__(self, url=url, **kwargs)
        return object.__getattribute__(self, name)

    def get_connection_kwargs(self) -> dict[str, Any]:
        if self._connected():
            kwargs: dict[str, Any] = super().get_connection_kwargs()  # type: ignore[no-untyped-call]
            return kwargs
        url, options = self.__dict__["_deferred"]
        parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        return {**options, **parsed}  # what the constructor will use, without connecting

    def close(self) -> None:
        if self._connected():
            super().close()


def _backend_from_settings() -> Backend:
    configured = app_settings.REDIS
    if isinstance(configured, str) and "://" in configured:
        scheme, rest = configured.split("://", 1)
        # Options in the URL's query string win over the app's defaults.
        if scheme in CLUSTER_SCHEMES:
            url = f"{CLUSTER_SCHEMES[scheme]}://{rest}"
            return Backend(LazyCluster(url, **connection_overrides()))
        if scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(
                f"CACHEASIDE['REDIS'] is a {scheme}:// URL. Use redis://, rediss:// or unix:// "
                "for one Redis, redis+cluster:// or rediss+cluster:// for a Redis Cluster."
            )
        return Backend(redis.Redis.from_url(configured, **connection_overrides()))
    return Backend(_configured_client(), connection_overrides())


def _configured_client() -> redis.Redis:
    configured = app_settings.REDIS
    if configured:
        if not isinstance(configured, str):
            raise ImproperlyConfigured(
                "CACHEASIDE['REDIS'] must be a redis:// URL or a dotted path."
            )
        client: redis.Redis = import_string(configured)()
        return client
    alias = app_settings.CACHE_ALIAS
    cache: Any = caches[alias]
    if hasattr(cache, "client") and hasattr(cache.client, "get_client"):  # django-redis
        django_redis_client: redis.Redis = cache.client.get_client(write=True)
        return django_redis_client
    if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):  # Django's RedisCache
        django_client: redis.Redis = cache._cache.get_client(write=True)
        return django_client
    raise ImproperlyConfigured(
        f"CACHES[{alias!r}] is not a Redis cache. Use django_redis.cache.RedisCache or "
        "django.core.cache.backends.redis.RedisCache, or set CACHEASIDE['REDIS'] to a redis:// URL."
    )


def get_backend() -> Backend:
    """The backend built from the current settings, created on first use."""
    global _backend
    backend = _backend
    if backend is None:
        with _backend_lock:
            if _backend is None:
                _backend = _backend_from_settings()
            backend = _backend
    return backend


def reset() -> None:
    """Forget the backend; the next :func:`get_backend` builds it again from settings."""
    global _backend
    with _backend_lock:
        if _backend is not None:
            _backend.breaker.close()
        _backend = None
