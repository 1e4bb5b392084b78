"""The textbook pattern on django-redis, written by hand: ``cache.get(key)``, on a miss the ORM
and ``cache.set(key, obj, TIMEOUT)`` (django-redis pickles the instance); ``cache.get_many(keys)``
for a batch (one ``MGET``); ``save()`` then ``cache.delete(key)``. No negative caching, no
stampede protection, no transaction awareness: what most projects start with."""

from __future__ import annotations

from typing import Any

from measure import Bench
from peers.base import TIMEOUT, Peer, PeerContext, django_redis_caches, queries_counted


class DjangoRedis(Peer):
    name = "django-redis"
    distribution = "django-redis"
    about = "hand-written cache.get/set/delete of pickled instances"

    def settings(self, redis_url: str, key_prefix: str, table_prefix: str) -> dict[str, Any]:
        return {"CACHES": django_redis_caches(redis_url, key_prefix)}

    def benches(self, ctx: PeerContext) -> list[Bench]:
        from django.core.cache import cache

        from peerapp.models import CachedRow

        objects = CachedRow.objects
        rows = {row.pk: row for row in objects.all()}
        order, batches = ctx.order, ctx.batches

        def key(pk: Any) -> str:
            return f"row:{pk}"

        def read(pk: Any) -> Any:
            obj = cache.get(key(pk))
            if obj is None:
                obj = objects.get(pk=pk)
                cache.set(key(pk), obj, TIMEOUT)
            return obj

        def read_many(pks: list[Any]) -> dict[Any, Any]:
            found = cache.get_many([key(pk) for pk in pks])
            result = {pk: found[key(pk)] for pk in pks if key(pk) in found}
            missing = [pk for pk in pks if pk not in result]
            if missing:
                loaded = objects.in_bulk(missing)
                cache.set_many({key(pk): obj for pk, obj in loaded.items()}, TIMEOUT)
                result.update(loaded)
            return result

        def get(i: int) -> object:
            return read(order[i])

        def get_many(i: int) -> object:
            found = read_many(batches[i])
            if len(found) != ctx.batch:
                raise RuntimeError(f"get_many returned {len(found)} of {ctx.batch}")
            return found

        def save(i: int) -> None:
            row = rows[order[i]]
            row.views += 1
            row.save()
            cache.delete(key(row.pk))

        def warm() -> None:
            read_many(ctx.pks)
            with queries_counted() as seen:
                read_many(ctx.pks)
            if seen:
                raise RuntimeError(f"django-redis: {len(seen)} queries after warming")

        n = ctx.batch
        return [
            Bench("get(pk) hit", get, ctx.ops, setup=warm, baseline="orm get(pk)"),
            Bench(
                f"get_many({n}) hit",
                get_many,
                ctx.batch_ops,
                setup=warm,
                baseline=f"orm in_bulk({n})",
            ),
            Bench("save()", save, ctx.ops, setup=warm, baseline="save() plain"),
        ]


PEER = DjangoRedis()
