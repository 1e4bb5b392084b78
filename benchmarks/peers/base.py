"""What every comparison process measures besides its library: the same ORM baselines on the
uncached ``peerapp.PlainRow`` (``get(pk)``, ``DoesNotExist``, ``in_bulk``, a 100-row ``filter``,
``save()``), so each library's rows have a baseline measured in its own process, with its patches
of the ORM in place."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from measure import Bench

MISSING_PKS = 1000
# Seconds the compared libraries keep what they cache: longer than a whole run, so that nothing
# warmed for a repeat expires during it (run.py's own rows refill entries close to their TTL).
TIMEOUT = 3600


def django_redis_caches(redis_url: str, key_prefix: str) -> dict[str, Any]:
    """``CACHES`` with one django-redis cache on ``redis_url``, keys under ``key_prefix``."""
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": key_prefix,
        }
    }


@dataclass
class PeerContext:
    pks: list[Any]
    owners: list[Any]
    rng: random.Random
    ops: int
    batch_ops: int
    batch: int
    redis_url: str
    key_prefix: str
    table_prefix: str

    def __post_init__(self) -> None:
        rng = self.rng
        top = max(self.pks)
        self.order = [rng.choice(self.pks) for _ in range(self.ops)]
        self.batches = [rng.sample(self.pks, self.batch) for _ in range(self.batch_ops)]
        self.missing = [top + 1 + i for i in range(min(MISSING_PKS, self.ops))]
        self.used = sorted(set(self.order))  # the pks the get rows read
        self.absent = [rng.choice(self.missing) for _ in range(self.ops)]
        self.owner_order = [rng.choice(self.owners) for _ in range(self.batch_ops)]
        self.per_owner = len(self.pks) // len(self.owners)  # rows a filter(owner_id) returns


@contextmanager
def queries_counted() -> Iterator[list[str]]:
    """The SQL statements run on the default connection inside the block."""
    from django.db import connection

    seen: list[str] = []

    def count(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        seen.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        yield seen


def warm_and_check(name: str, calls: int, op: Callable[[int], object]) -> None:
    """Every call once (filling the cache), then every call again with no query allowed."""
    for i in range(calls):
        op(i)
    with queries_counted() as seen:
        for i in range(calls):
            op(i)
    if seen:
        raise RuntimeError(f"{name}: {len(seen)} queries after warming, e.g. {seen[0][:120]}")


class Peer:
    """One compared library: its settings, its rows. Names of rows are unprefixed here; ``run.py``
    prefixes them with the peer's name."""

    name = ""
    distribution = ""  # for the version
    about = ""  # what its rows measure, one line

    def version(self) -> str:
        return f"{self.distribution} {metadata.version(self.distribution)}"

    def installed_apps(self) -> list[str]:
        return ["peerapp"]

    def settings(self, redis_url: str, key_prefix: str, table_prefix: str) -> dict[str, Any]:
        """Settings for ``settings.configure`` besides the database and ``INSTALLED_APPS``: the
        same Redis, the process's key prefix (``run.py`` deletes nothing else), its table names."""
        return {}

    def benches(self, ctx: PeerContext) -> list[Bench]:
        raise NotImplementedError

    def clean_up(self, ctx: PeerContext) -> None:
        """Delete the process's keys (its prefix); a library's own prefix scheme may override."""


def baseline_benches(ctx: PeerContext) -> list[Bench]:
    """The ORM on the uncached table, in this process."""
    from peerapp.models import PlainRow

    objects = PlainRow.objects
    not_found = PlainRow.DoesNotExist
    rows = {row.pk: row for row in objects.all()}
    order, absent, batches, owners = ctx.order, ctx.absent, ctx.batches, ctx.owner_order

    def orm_get(i: int) -> object:
        return objects.get(pk=order[i])

    def orm_absent(i: int) -> object:
        try:
            return objects.get(pk=absent[i])
        except not_found:
            return None

    def orm_in_bulk(i: int) -> object:
        return objects.in_bulk(batches[i])

    def orm_filter(i: int) -> object:
        return list(objects.filter(owner_id=owners[i]).order_by("pk"))

    def save_plain(i: int) -> None:
        row = rows[order[i]]
        row.views += 1
        row.save()

    return [
        Bench("orm get(pk)", orm_get, ctx.ops),
        Bench("orm get(pk) DoesNotExist", orm_absent, ctx.ops),
        Bench(f"orm in_bulk({ctx.batch})", orm_in_bulk, ctx.batch_ops),
        Bench(f"orm filter(owner_id) {ctx.per_owner} rows", orm_filter, ctx.batch_ops),
        Bench("save() plain", save_plain, ctx.ops),
    ]


def queryset_benches(ctx: PeerContext) -> list[Bench]:
    """The rows of a library that caches ORM queries by itself (cacheops, cachalot): the ORM calls
    of :func:`baseline_benches` on ``peerapp.CachedRow``, warmed and checked to run no query."""
    from peerapp.models import CachedRow

    objects = CachedRow.objects
    not_found = CachedRow.DoesNotExist
    rows = {row.pk: row for row in objects.all()}
    order, absent, batches, owners = ctx.order, ctx.absent, ctx.batches, ctx.owner_order
    missing = ctx.missing

    def get(i: int) -> object:
        return objects.get(pk=order[i])

    def get_absent(i: int) -> object:
        try:
            return objects.get(pk=absent[i])
        except not_found:
            return None

    def get_missing(i: int) -> object:
        try:
            return objects.get(pk=missing[i])
        except not_found:
            return None

    def in_bulk(i: int) -> object:
        found = objects.in_bulk(batches[i])
        if len(found) != ctx.batch:
            raise RuntimeError(f"in_bulk returned {len(found)} of {ctx.batch}")
        return found

    def filter_list(i: int) -> object:
        return list(objects.filter(owner_id=owners[i]).order_by("pk"))

    def save(i: int) -> None:
        row = rows[order[i]]
        row.views += 1
        row.save()

    def warm(name: str, calls: int, op: Callable[[int], object]) -> Callable[[], None]:
        def setup() -> None:
            warm_and_check(name, calls, op)

        return setup

    def warm_gets() -> None:  # the save row invalidated entries: every pk read, again
        warm_and_check("get", len(ctx.used), lambda i: objects.get(pk=ctx.used[i]))

    n = ctx.batch
    return [
        Bench("get(pk) hit", get, ctx.ops, setup=warm_gets, baseline="orm get(pk)"),
        Bench(
            "get(pk) negative hit",
            get_absent,
            ctx.ops,
            setup=warm("negative", len(missing), get_missing),
            baseline="orm get(pk) DoesNotExist",
        ),
        Bench(
            f"in_bulk({n}) hit",
            in_bulk,
            ctx.batch_ops,
            setup=warm("in_bulk", ctx.batch_ops, in_bulk),
            baseline=f"orm in_bulk({n})",
        ),
        Bench(
            f"filter(owner_id) {ctx.per_owner} rows hit",
            filter_list,
            ctx.batch_ops,
            setup=warm("filter", ctx.batch_ops, filter_list),
            baseline=f"orm filter(owner_id) {ctx.per_owner} rows",
        ),
        Bench("save()", save, ctx.ops, setup=warm_gets, baseline="save() plain"),
    ]
