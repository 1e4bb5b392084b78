"""Cached-query commands: read a result under the model's query generations, fill it by CAS.

The protocol these serve is described in :mod:`django_cacheaside.queries`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from django_cacheaside.backend import scripts
from django_cacheaside.backend.errors import fail_open
from django_cacheaside.backend.pipeline import Commands, as_bytes


class QueryRead(NamedTuple):
    """A cached result (``entry``), or else the generations a fill must match (``gens``).

    Both ``None`` when Redis could not be asked: run the query, do not fill.
    """

    entry: bytes | None
    gens: bytes | None


QUERY_UNAVAILABLE = QueryRead(None, None)


class QueryCommands(Commands):
    @fail_open(default=QUERY_UNAVAILABLE)
    def query_read(
        self, gens_key: str, key: str, fields: Sequence[str], gens_ttl_ms: int
    ) -> QueryRead:
        """One round trip: the result under ``key`` if filled under the current generations of
        ``fields``, else those generations (created where missing)."""
        sha = scripts.SHAS["query_read"]
        fresh = os.urandom(8).hex()
        (reply,) = self._run_pipeline(
            [("EVALSHA", sha, 2, gens_key, key, fresh, gens_ttl_ms, *fields)]
        )
        flag, value = reply
        if int(flag) == 1:
            return QueryRead(as_bytes(value), None)
        return QueryRead(None, as_bytes(value))

    @fail_open(default=False)
    def query_fill(
        self,
        gens_key: str,
        key: str,
        fields: Sequence[str],
        gens: bytes,
        entry: bytes,
        ttl_ms: int,
        gens_ttl_ms: int,
    ) -> bool:
        """Write ``entry`` only if the generations of ``fields`` are still ``gens``."""
        sha = scripts.SHAS["query_fill"]
        (written,) = self._run_pipeline(
            [("EVALSHA", sha, 2, gens_key, key, gens, entry, ttl_ms, gens_ttl_ms, *fields)]
        )
        return int(written) == 1
