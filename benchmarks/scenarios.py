"""The rows ``run.py`` measures in its own process: the library against the ORM and raw Redis.

Every row is a :class:`measure.Bench`; the read rows' ``setup`` warms (and checks) the cache before
each repeat, untimed. The raw floor rows talk RESP on a socket of their own (:class:`RawRedis`): the
cheapest round trip Python can make here, hence the ceiling of any one-round-trip cache.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from common import KEY_PREFIX
from measure import Bench

RAW_KEY = f"{KEY_PREFIX}:raw:1k"
MISSING_PKS = 1000  # distinct absent pks of the negative rows
FRESH_MS = 120_000  # an entry warmed for a repeat has at least this long to live


@dataclass
class Context:
    pks: list[Any]
    owners: list[Any]
    rng: random.Random
    client: Any


def warm_all(pks: list[Any]) -> None:
    """Fill every entry, then check every key holds one (a cold key would turn hits into misses).

    A run outlasts the TTL (300 s): entries with less than ``FRESH_MS`` to live are dropped and
    filled again first, so that none expires during the repeat that follows."""
    import django_cacheaside
    from benchapp.models import CachedRow
    from django_cacheaside.backend import get_backend

    manager = CachedRow.cached
    client = get_backend().client
    pipe = client.pipeline(transaction=False)
    for pk in pks:
        pipe.pttl(manager.key_for_pk(pk))
    for pk, ttl in zip(pks, pipe.execute(), strict=True):
        if 0 <= ttl < FRESH_MS:
            django_cacheaside.invalidate(CachedRow, pk=pk)
    manager.get_many(pks)
    pipe = client.pipeline(transaction=False)
    for pk in pks:
        pipe.hexists(manager.key_for_pk(pk), "d")
    cold = sum(1 for present in pipe.execute() if not present)
    if cold:
        raise RuntimeError(f"{cold} of {len(pks)} entries are not warm after get_many()")


@contextmanager
def misses_counted() -> Iterator[list[str]]:
    """The keys of the ``cache_miss`` signals sent inside the block."""
    from django_cacheaside import signals

    seen: list[str] = []

    def miss(sender: Any, key: str, **kwargs: Any) -> None:
        seen.append(key)

    signals.cache_miss.connect(miss, weak=False)
    try:
        yield seen
    finally:
        signals.cache_miss.disconnect(miss)


# -- the raw floor ---------------------------------------------------------------------------


def resp(*args: str | bytes) -> bytes:
    """One command in RESP, encoded once (the floor rows send pre-encoded bytes)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RawRedis:
    """A socket held for the whole run, pre-encoded commands, replies parsed by ``hiredis.Reader``:
    no pool, no retry, no command packing. What one round trip costs from Python on this host."""

    def __init__(self, connection_kwargs: dict[str, Any]) -> None:
        import hiredis

        if connection_kwargs.get("path"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(connection_kwargs["path"])
        else:
            host = connection_kwargs.get("host", "127.0.0.1")
            self.sock = socket.create_connection((host, connection_kwargs.get("port", 6379)))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        if connection_kwargs.get("password"):
            user = connection_kwargs.get("username")
            password = connection_kwargs["password"]
            self.call(resp("AUTH", user, password) if user else resp("AUTH", password))
        if connection_kwargs.get("db"):
            self.call(resp("SELECT", str(connection_kwargs["db"])))

    def call(self, command: bytes) -> Any:
        self.sock.sendall(command)
        reader = self.reader
        reader.feed(self.sock.recv(65536))
        reply = reader.gets()
        while reply is False:
            reader.feed(self.sock.recv(65536))
            reply = reader.gets()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self) -> None:
        self.sock.close()


def floor_benches(ctx: Context, order: Sequence[Any], ops: int) -> list[Bench]:
    """``PING`` and the ``HGET`` of a hit on a :class:`RawRedis`; empty without hiredis."""
    try:
        raw = RawRedis(ctx.client.connection_pool.connection_kwargs)
    except ImportError:
        return []
    from benchapp.models import CachedRow

    ping = resp("PING")
    hgets = [resp("HGET", CachedRow.cached.key_for_pk(pk), "d") for pk in order]
    call = raw.call

    def floor_ping(i: int) -> object:
        return call(ping)

    def floor_hget(i: int) -> object:
        return call(hgets[i])

    def warm_checked() -> None:
        warm_all(ctx.pks)
        if call(hgets[0]) is None:
            raise RuntimeError("the raw HGET of a warm entry found nothing")

    return [
        Bench("raw floor: PING", floor_ping, ops),
        Bench("raw floor: HGET entry", floor_hget, ops, setup=warm_checked),
    ]


# -- the library's rows ----------------------------------------------------------------------


def build_benches(ctx: Context, ops: int, batch_ops: int, batch: int) -> list[Bench]:
    from django.conf import settings

    import django_cacheaside
    import queries
    from benchapp.models import CachedRow, PlainRow
    from django_cacheaside.conf import app_settings
    from django_cacheaside.stats import counters

    pks, rng, client = ctx.pks, ctx.rng, ctx.client
    order = [rng.choice(pks) for _ in range(ops)]
    batches = [rng.sample(pks, batch) for _ in range(batch_ops)]
    client.set(RAW_KEY, os.urandom(1024))
    objects, cached = CachedRow.objects, CachedRow.cached
    top = max(pks)
    missing = [top + 1 + i for i in range(min(MISSING_PKS, ops))]
    absent = [rng.choice(missing) for _ in range(ops)]
    not_found = CachedRow.DoesNotExist

    def orm_get(i: int) -> object:
        return objects.get(pk=order[i])

    get = client.get

    def redis_get(i: int) -> object:
        return get(RAW_KEY)

    def cached_get(i: int) -> object:
        return cached.get(pk=order[i])

    def orm_get_absent(i: int) -> object:
        try:
            return objects.get(pk=absent[i])
        except not_found:
            return None

    def cached_get_absent(i: int) -> object:
        try:
            return cached.get(pk=absent[i])
        except not_found:
            return None

    def drop(i: int) -> None:  # untimed, before each miss+fill call
        django_cacheaside.invalidate(CachedRow, pk=order[i])

    def cached_get_many(i: int) -> object:
        found = cached.get_many(batches[i])
        if len(found) != batch:
            raise RuntimeError(f"get_many returned {len(found)} of {batch}")
        return found

    def orm_in_bulk(i: int) -> object:
        return objects.in_bulk(batches[i])

    plain_rows = {row.pk: row for row in PlainRow.objects.all()}
    cached_rows = {row.pk: row for row in CachedRow.objects.all()}
    plain_order = [rng.choice(list(plain_rows)) for _ in range(ops)]

    def save_plain(i: int) -> None:
        row = plain_rows[plain_order[i]]
        row.views += 1
        row.save()

    def save_cached(i: int) -> None:
        row = cached_rows[order[i]]
        row.views += 1
        row.save()

    def sign_entries(on: bool) -> None:
        if settings.CACHEASIDE.get("SIGN_ENTRIES", False) != on:
            settings.CACHEASIDE = {**settings.CACHEASIDE, "SIGN_ENTRIES": on}
            app_settings.reload()  # the managers derive their codecs again

    def defaults() -> None:
        counters.connect(True)  # stats on (the default) for every row but one
        sign_entries(False)  # unsigned (the default) for every row but one

    def warm() -> None:
        defaults()
        warm_all(pks)  # refills whatever the signed row left: its entries are misses here

    def warm_without_stats() -> None:
        sign_entries(False)
        warm_all(pks)
        counters.connect(False)

    def warm_signed() -> None:
        counters.connect(True)
        sign_entries(True)
        warm_all(pks)

    def warm_absent() -> None:
        """Every absent pk dropped and read (a fresh negative entry: they live 30 s, a run much
        longer), then checked: a second read is a hit."""
        defaults()
        for pk in missing:
            django_cacheaside.invalidate(CachedRow, pk=pk)
            cached_get_absent_pk(pk)
        with misses_counted() as seen:
            for pk in missing:
                cached_get_absent_pk(pk)
        if seen:
            raise RuntimeError(f"{len(seen)} negative reads missed after warming")

    def cached_get_absent_pk(pk: Any) -> None:
        try:
            cached.get(pk=pk)
        except not_found:
            return
        raise RuntimeError(f"pk {pk} exists")

    def check_miss_fill() -> None:
        """A dropped entry's read must miss (and fill), the next one hit."""
        defaults()
        drop(0)
        with misses_counted() as seen:
            cached_get(0)
        with misses_counted() as again:
            cached_get(0)
        if len(seen) != 1 or again:
            raise RuntimeError(
                f"miss+fill: {len(seen)} misses after a drop (1 expected), {len(again)} after it"
            )

    filter_orm, filter_cached = queries.build_benches(ctx.owners, batch_ops, rng)[:2]
    filter_cached.name = filter_cached.name.replace("cached.filter()", "cached.filter(owner_id)")
    filter_orm.name = filter_orm.name.replace("orm filter()", "orm filter(owner_id)")
    filter_cached.baseline = filter_orm.name
    filter_warm = filter_cached.setup

    def warm_filter() -> None:
        """Every cached result and entry of the model dropped, then filled again: a result warmed
        near the end of its TTL could expire during the repeat."""
        defaults()
        django_cacheaside.invalidate_model(CachedRow)
        if filter_warm is not None:
            filter_warm()

    filter_cached.setup = warm_filter

    return [
        Bench("orm get(pk)", orm_get, ops),
        Bench("redis GET 1KB", redis_get, ops),
        *floor_benches(ctx, order, ops),
        Bench("cached.get hit", cached_get, ops, setup=warm, baseline="orm get(pk)"),
        Bench(
            "cached.get hit, stats off",
            cached_get,
            ops,
            setup=warm_without_stats,
            baseline="cached.get hit",
        ),
        Bench(
            "cached.get hit, signed", cached_get, ops, setup=warm_signed, baseline="cached.get hit"
        ),
        Bench("orm get(pk) DoesNotExist", orm_get_absent, ops),
        Bench(
            "cached.get negative hit",
            cached_get_absent,
            ops,
            setup=warm_absent,
            baseline="orm get(pk) DoesNotExist",
        ),
        Bench(
            "cached.get miss+fill",
            cached_get,
            ops,
            setup=check_miss_fill,
            baseline="orm get(pk)",
            before=drop,
        ),
        Bench(
            f"cached.get_many({batch}) hit",
            cached_get_many,
            batch_ops,
            setup=warm,
            baseline=f"orm in_bulk({batch})",
        ),
        Bench(f"orm in_bulk({batch})", orm_in_bulk, batch_ops),
        filter_orm,
        filter_cached,
        Bench("save() plain", save_plain, ops),
        Bench("save() cached", save_cached, ops, setup=warm, baseline="save() plain"),
    ]


def only(benches: list[Bench], text: str | None) -> list[Bench]:
    """The rows whose name contains ``text`` (case-insensitive), plus the baselines they need."""
    if not text:
        return benches
    chosen = {b.name for b in benches if text.lower() in b.name.lower()}
    by_name = {b.name: b for b in benches}
    for name in list(chosen):
        base = by_name[name].baseline
        if base in by_name:
            chosen.add(base)
    return [b for b in benches if b.name in chosen]
