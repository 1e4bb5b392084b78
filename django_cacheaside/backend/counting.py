"""Stats commands: add a process's counts to a minute's bucket, read buckets back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django_cacheaside.backend.errors import fail_open
from django_cacheaside.backend.pipeline import Commands


class StatsCommands(Commands):
    @fail_open(default=False)
    def add_counts(self, key: str, counts: Mapping[str, int], ttl_ms: int) -> bool:
        """``HINCRBY`` each field of the bucket ``key``, then give it ``ttl_ms``; one round trip.
        ``False`` if Redis failed (the caller keeps the counts for the next try)."""
        commands: list[tuple[object, ...]] = [
            ("HINCRBY", key, field, amount) for field, amount in counts.items()
        ]
        commands.append(("PEXPIRE", key, ttl_ms))
        self._run_pipeline(commands)
        return True

    @fail_open(default=None)
    def read_counts(self, keys: Sequence[str]) -> list[dict[str, int]] | None:
        """Every field of each bucket in ``keys`` (``{}`` for a missing one); one round trip."""
        if not keys:
            return []
        replies = self._run_pipeline([("HGETALL", key) for key in keys])
        result = []
        for reply in replies:
            if isinstance(reply, dict):
                items = list(reply.items())
            else:  # the direct connection answers a flat list
                items = list(zip(reply[::2], reply[1::2], strict=True))
            result.append({bytes(f).decode(): int(v) for f, v in items})
        return result
