"""Health commands for operators: ``INFO``, a bounded ``SCAN``, ``MEMORY USAGE``, ``DBSIZE``.

Used by :mod:`django_cacheaside.stats.health` (``manage.py cachestats``), never by the read path.
Each answers ``None`` when Redis failed (reported like every backend failure); the caller raises.
Everything here works on Redis 6.2 and later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from redis.exceptions import ResponseError

from django_cacheaside.backend.errors import fail_open
from django_cacheaside.backend.pipeline import Commands


class ScanSample(NamedTuple):
    """What a bounded ``SCAN`` saw: ``examined`` distinct keys, of which ``matched`` (per prefix)
    start with one of the prefixes asked for; ``complete`` when the cursor came back to 0."""

    examined: int
    matched: dict[bytes, list[bytes]]
    complete: bool


class HealthCommands(Commands):
    @fail_open(default=None)
    def server_info(self) -> dict[str, dict[str, Any]] | None:
        """``INFO`` (the default sections, parsed by redis-py) of each server holding keys (every
        primary of a cluster), by its ``"host:port"`` (or socket path)."""
        infos: dict[str, dict[str, Any]] = {}
        for server in self._servers():
            kwargs = server.get_connection_kwargs()
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            infos[str(where)] = server.info()
        return infos

    @fail_open(default=None)
    def swap_marker(self, key: str, value: str, ttl_ms: int) -> str | None:
        """The value under ``key`` (``""`` if there was none), replaced by ``value`` with a TTL.

        ``GET`` then ``SET ... PX`` in one round trip (not atomic: two callers at once both read the
        older value, which is harmless for a figure compared between two calls).
        """
        old, _ok = self._run_pipeline([("GET", key), ("SET", key, value, "PX", ttl_ms)])
        return bytes(old).decode() if old is not None else ""

    @fail_open(default=None)
    def dbsize(self) -> int | None:
        """Keys in the database (on a cluster, summed over the primaries)."""
        return sum(int(server.dbsize()) for server in self._servers())

    @fail_open(default=None)
    def scan_sample(
        self, prefixes: Sequence[bytes], budget: int, count: int = 1000
    ) -> ScanSample | None:
        """``SCAN`` (no ``MATCH``, so the keys examined are known) until about ``budget`` distinct
        keys were seen or the cursor ends; keys are sorted by prefix here, not by the server.

        Every key is returned to us, so this moves about ``budget`` key names; ``MATCH`` would move
        fewer but hide how many keys the server examined, which the extrapolation needs.
        """
        seen: set[bytes] = set()  # SCAN may return a key twice (the table was resized meanwhile)
        matched: dict[bytes, list[bytes]] = {prefix: [] for prefix in prefixes}
        servers = self._servers()  # a cluster's primaries one after the other, same budget
        for server in servers:
            cursor = 0
            while True:
                cursor, found = self._scan(server, cursor, count)
                for key in cast("list[bytes]", found):
                    if key in seen:
                        continue
                    seen.add(key)
                    for prefix in prefixes:
                        if key.startswith(prefix):
                            matched[prefix].append(key)
                            break
                if cursor == 0:
                    break
                if len(seen) >= budget:
                    return ScanSample(len(seen), matched, False)
        return ScanSample(len(seen), matched, True)

    @fail_open(default=None)
    def memory_usage(self, keys: Sequence[bytes]) -> list[int | None] | None:
        """``MEMORY USAGE`` of each key in one round trip: bytes, or ``None`` for a key gone since
        it was seen. A server that refuses the command (renamed or disabled) answers all ``None``."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("MEMORY USAGE", key)
        replies = pipe.execute(raise_on_error=False)
        if any(isinstance(reply, ResponseError) for reply in replies):
            return [None] * len(keys)
        return [None if reply is None else int(reply) for reply in replies]
