"""Tag-set commands: the purge clock, joining tag sets at fill time, purging them.

The protocol these serve is described in :mod:`django_cacheaside.tags`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django_cacheaside.backend import scripts
from django_cacheaside.backend.errors import fail_open
from django_cacheaside.backend.pipeline import Commands, as_bytes

# A purge marker must outlive every fill that began before the purge; fills slower than half of
# this are not written (see tags.MAX_FILL_SECONDS). The clock outlives the markers it orders.
MARKER_TTL_MS = 3600 * 1000
CLOCK_TTL_MS = 2 * MARKER_TTL_MS


class TagCommands(Commands):
    @fail_open(default=None)
    def read_clock(self, clock_key: str) -> int | None:
        """The purge clock now (``None`` if Redis failed): a fill's start, before it loads."""
        (value,) = self._run_pipeline(
            [("EVALSHA", scripts.SHAS["clock_read"], 1, clock_key, CLOCK_TTL_MS)]
        )
        return int(value)

    @fail_open(default=None)
    def join_tags(self, joins: Mapping[str, Sequence[str]], ttl_ms: int) -> dict[str, int] | None:
        """Add the object keys ``joins[tag_key]`` to each tag set for ``ttl_ms``; one round trip.

        Answers each tag's last purge (a clock value, 0 if never), or ``None`` if Redis failed.
        """
        sha = scripts.SHAS["tag_join"]
        tags = list(joins)
        commands = [("EVALSHA", sha, 2, tag, f"{tag}:p", ttl_ms, *joins[tag]) for tag in tags]
        replies = self._run_pipeline(commands)
        return {tag: int(reply) for tag, reply in zip(tags, replies, strict=True)}

    @fail_open(default=None, invalidation=True)
    def purge_tags(self, clock_key: str, tag_keys: Sequence[str]) -> list[str] | None:
        """Mark each tag purged at a new clock value, drop its set, answer its live members.

        Two round trips (the clock, then every tag); ``None`` if Redis failed. Deleting the members
        is the caller's next step: a fill that joined before the mark is among them, one that joins
        after it sees the mark.
        """
        if not tag_keys:
            return []
        tick = ("EVALSHA", scripts.SHAS["clock_tick"], 1, clock_key, CLOCK_TTL_MS)
        (clock,) = self._run_pipeline([tick])
        sha = scripts.SHAS["tag_purge"]
        commands = [("EVALSHA", sha, 2, tag, f"{tag}:p", clock, MARKER_TTL_MS) for tag in tag_keys]
        members: dict[str, None] = {}
        for reply in self._run_pipeline(commands):
            for member in reply:
                raw = as_bytes(member)
                if raw is not None:
                    members[raw.decode()] = None
        return list(members)
