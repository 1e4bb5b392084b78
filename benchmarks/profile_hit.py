"""``run.py --profile``: where a ``Model.cached.get(pk=...)`` hit spends its time.

Each step of a hit looped on its own, then the same steps in situ (a replica of ``get()`` calling
the library's own pieces in order, alternating call by call with the real ``get()``), then cProfile
of ``cached.get`` and ``cached.get_many(100)`` hits. It reaches into the library's internals on
purpose: when they change, this is the file to follow them.
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from scenarios import RAW_KEY, Context, warm_all


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
    get_many_breakdown(ctx, batch_keys, repeats)
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


def get_many_breakdown(ctx: Context, batch_keys: list[list[str]], repeats: int) -> None:
    """A ``get_many(100)`` hit next to its parts, each looped over the same batches."""
    from benchapp.models import CachedRow
    from django_cacheaside import entries, signals
    from django_cacheaside.backend import get_backend

    manager = CachedRow.cached
    backend, codec = get_backend(), manager.codec
    key_to_pk = {manager.key_for_pk(pk): pk for pk in ctx.pks}
    batches = [[key_to_pk[k] for k in ks] for ks in batch_keys]
    found = [backend.read_many(ks) for ks in batch_keys]
    start = entries.HEADER_LEN
    payloads = [[e[start:] for e in fs if e is not None] for fs in found]
    loads = codec.row_serializer.loads
    triples = list(zip(found, batch_keys, batches, strict=True))
    print(f"get_many(100) hit, by part: mean µs per call of 100 pks, median of {repeats}")
    for label, fn, args in (
        ("cached.get_many(100), whole call", manager.get_many, batches),
        ("  backend.read_many (100 HGETs)", backend.read_many, batch_keys),
        ("  codec.decode_rows (100 entries)", lambda t: codec.decode_rows("default", *t), triples),
        ("    row_serializer.loads x 100", lambda ps: [loads(p) for p in ps], payloads),
        (
            "  keys for 100 pks (key_for_pk)",
            lambda b: [manager.key_for_pk(pk) for pk in b],
            batches,
        ),
        ("  _policy()", lambda _b: manager._policy(), batches),
        (
            "  cache_hit.send_each (100 hits counted)",
            lambda ks: signals.cache_hit.send_each(CachedRow, ks, negative=False),
            batch_keys,
        ),
    ):
        for arg in args[:20]:
            fn(arg)
        print(f"  {label:<66} {time_per_call(fn, args, repeats) / 1000:8.1f}")


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
