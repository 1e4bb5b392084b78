"""What every group of backend commands shares: the client, and one way to send a pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from django_cacheaside.backend import scripts
from django_cacheaside.backend.breaker import Breaker
from django_cacheaside.backend.direct import DirectCommands
from django_cacheaside.backend.errors import report_error
from django_cacheaside.conf import app_settings
from django_cacheaside.exceptions import BackendError

# What the backend talks through: one server's client, or a cluster's.
Client = redis.Redis | RedisCluster


class Commands:
    client: Client
    _direct: DirectCommands | None
    breaker: Breaker
    #: Whether ``client`` is a ``redis.cluster.RedisCluster``: commands never span two slots, and
    #: what must see every key (SCAN, INFO, DBSIZE) asks each primary.
    cluster: bool

    def _servers(self) -> list[redis.Redis]:
        """A client per server holding keys: every primary of a cluster, else the one server."""
        if not self.cluster:
            return [cast("redis.Redis", self.client)]
        cluster = cast("RedisCluster", self.client)
        primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
        return [cluster.get_redis_connection(node) for node in primaries]

    def _scan(self, server: redis.Redis, cursor: int, count: int, match: str | None = None) -> Any:
        """One ``SCAN`` step on ``server`` (one of :meth:`_servers`): ``(cursor, keys)``."""
        if self._direct is not None:
            args: tuple[Any, ...] = ("SCAN", cursor, "COUNT", count)
            if match is not None:
                args += ("MATCH", match)
            raw_cursor, found = self._direct.execute(*args)
            return int(raw_cursor), found
        return server.scan(cursor=cursor, match=match, count=count)

    # -- scripts -------------------------------------------------------------------------------

    def _load_scripts(self) -> None:
        for src in scripts.SCRIPTS.values():
            if self._direct is not None:
                self._direct.execute("SCRIPT", "LOAD", src)
            else:
                # On a cluster, redis-py loads it on every primary. Replicas get no scripts: one
                # promoted by a failover answers NOSCRIPT, and _run_pipeline loads them again.
                self.client.script_load(src)

    def _run_pipeline(
        self, commands: Sequence[tuple[Any, ...]], written: Sequence[str | bytes] = ()
    ) -> list[Any]:
        """Send ``commands`` in one round trip and return their replies.

        Scripts go as EVALSHA; if the server lost them (restart, ``SCRIPT FLUSH``) they are loaded
        and the commands sent once more. Every command the app sends is safe to repeat.

        ``written`` names keys the commands delete for an invalidation: with ``REPLICA_ACKS``, a
        ``WAIT`` follows them on the same connection of each server holding one, and a replica
        that does not confirm in time is reported (:meth:`_confirmed`).
        """
        waits = self._waits(written)
        for attempt in (1, 2):
            if self._direct is not None:
                replies = self._direct.execute_many([*commands, *(wait for wait, _ in waits)])
            else:
                pipe = self.client.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)
                for wait, options in waits:
                    pipe.execute_command(*wait, **options)
                replies = pipe.execute(raise_on_error=False)
            errors = [reply for reply in replies if isinstance(reply, RedisError)]
            if not errors:
                if waits:
                    self._confirmed(replies[len(commands) :])
                    replies = replies[: len(commands)]
                return replies
            if attempt == 1 and any(isinstance(e, NoScriptError) for e in errors):
                self._load_scripts()
                continue
            raise errors[0]
        raise AssertionError("unreachable")

    def _waits(
        self, written: Sequence[str | bytes]
    ) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The ``WAIT`` commands (with their pipeline options) that confirm ``written``."""
        acks = int(app_settings.REPLICA_ACKS)
        if not acks or not written:
            return []
        timeout = app_settings.SOCKET_TIMEOUT
        wait = ("WAIT", acks, max(1, int(float(timeout) * 500)) if timeout else 100)
        if not self.cluster:
            return [(wait, {})]
        cluster = cast("RedisCluster", self.client)
        nodes = {}
        for key in written:
            node = cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
            nodes[node.name] = node
        return [(wait, {"target_nodes": node}) for node in nodes.values()]

    def _confirmed(self, replies: Sequence[Any]) -> None:
        acks = int(app_settings.REPLICA_ACKS)
        confirmed = min(int(reply) for reply in replies)
        if confirmed < acks:
            report_error(
                "replicate",
                BackendError(
                    f"an invalidation reached {confirmed} of the {acks} replicas REPLICA_ACKS "
                    "asks for in time: a failover now could bring its entry back"
                ),
            )


def as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    raise BackendError(f"unexpected reply of type {type(value).__name__}")
