"""django-cacheops: automatic caching of ``peerapp.CachedRow``'s ORM queries (profile
``{"ops": "all", "timeout": TIMEOUT}``), so ``objects.get(pk=...)``, ``in_bulk()`` and a ``filter()``
list are answered from Redis; ``save()`` runs its ``pre_save`` read of the old row and the
invalidation scripts. Keys under the process's prefix (``CACHEOPS_PREFIX``)."""

from __future__ import annotations

from typing import Any

from measure import Bench
from peers.base import TIMEOUT, Peer, PeerContext, queryset_benches


class Cacheops(Peer):
    name = "cacheops"
    distribution = "django-cacheops"
    about = "automatic query cache, profile ops='all', timeout 3600"

    def installed_apps(self) -> list[str]:
        return ["peerapp", "cacheops"]

    def settings(self, redis_url: str, key_prefix: str, table_prefix: str) -> dict[str, Any]:
        prefix = f"{key_prefix}:"
        return {
            "CACHEOPS_REDIS": redis_url,
            "CACHEOPS_PREFIX": lambda query: prefix,
            "CACHEOPS": {"peerapp.cachedrow": {"ops": "all", "timeout": TIMEOUT}},
        }

    def benches(self, ctx: PeerContext) -> list[Bench]:
        return queryset_benches(ctx)


PEER = Cacheops()
