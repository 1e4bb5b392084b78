"""django-cachalot: its automatic query cache on a django-redis cache (the same Redis, the
process's ``KEY_PREFIX``, timeout ``TIMEOUT``). ``peerapp.PlainRow``'s table is uncachable, so the
baselines are plain queries (through cachalot's patched compiler); every write to
``peerapp.CachedRow``'s table invalidates every cached query on it."""

from __future__ import annotations

from typing import Any

from measure import Bench
from peers.base import TIMEOUT, Peer, PeerContext, django_redis_caches, queryset_benches


class Cachalot(Peer):
    name = "cachalot"
    distribution = "django-cachalot"
    about = "automatic query cache on django-redis, CACHALOT_TIMEOUT 3600"

    def installed_apps(self) -> list[str]:
        return ["peerapp", "cachalot"]

    def settings(self, redis_url: str, key_prefix: str, table_prefix: str) -> dict[str, Any]:
        return {
            "CACHES": django_redis_caches(redis_url, key_prefix),
            "CACHALOT_TIMEOUT": TIMEOUT,
            "CACHALOT_UNCACHABLE_TABLES": ("django_migrations", f"{table_prefix}_plainrow"),
        }

    def benches(self, ctx: PeerContext) -> list[Bench]:
        return queryset_benches(ctx)


PEER = Cachalot()
