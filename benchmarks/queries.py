#!/usr/bin/env python3
"""Cached-query benchmark: ``python benchmarks/queries.py``.

``CachedRow.cached.filter(owner_id=...).order_by("pk")`` returning 100 rows (1000 rows seeded over
10 owners), every result and object warm, against the same ORM query; likewise ``count()`` and
``exists()``. A hit is two round trips (the pk list, then ``get_many``'s pipelined lookups) and
100 decodes; the ORM row is one query and 100 instances.

Same environment and method as ``run.py`` (the same seeding, timing and interleaving, from
``common.py`` and ``measure.py``):
``DATABASE_URL`` (postgres://...) or SQLite in memory, ``REDIS_URL`` or an embedded Redis; keys
under the run's ``KEY_PREFIX`` and tables under its ``bench_<id>_`` prefix, removed at the end.
Prints ops/s, p50 and p99 per call (medians over ``--repeats``) and throughput ratios against the
ORM (medians of per-repeat ratios, with their min-max).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from common import (
    RUN_ID,
    base_environment,
    clean_up,
    configure_django,
    create_tables,
    print_environment,
    seed,
)
from measure import Bench, per_repeat_ratios, run_benches


def build_benches(owners: list[Any], ops: int, rng: random.Random) -> list[Bench]:
    """The rows in pairs (ORM, then cached): a 100-row list, ``count()``, ``exists()``; ``run.py``
    takes the first pair."""
    from benchapp.models import CachedRow

    order = [rng.choice(owners) for _ in range(ops)]
    objects, cached = CachedRow.objects, CachedRow.cached
    expected = {o: list(objects.filter(owner_id=o).order_by("pk")) for o in owners}
    sizes = {len(rows) for rows in expected.values()}

    def warm() -> None:
        """Fill every result and object, then check a second read is a hit of the same rows."""
        from django_cacheaside import signals

        misses: list[str] = []

        def miss(sender: Any, key: str, **kwargs: Any) -> None:
            misses.append(key)

        for owner in owners:
            list(cached.filter(owner_id=owner).order_by("pk"))
            cached.filter(owner_id=owner).count()
            cached.filter(owner_id=owner).exists()
        signals.cache_miss.connect(miss)
        try:
            for owner in owners:
                rows = list(cached.filter(owner_id=owner).order_by("pk"))
                if [r.pk for r in rows] != [r.pk for r in expected[owner]]:
                    raise RuntimeError(f"cached.filter(owner_id={owner}) differs from the ORM")
                cached.filter(owner_id=owner).count()
                cached.filter(owner_id=owner).exists()
        finally:
            signals.cache_miss.disconnect(miss)
        if misses:
            raise RuntimeError(f"{len(misses)} misses after warming, e.g. {misses[0]}")

    def orm_list(i: int) -> object:
        return list(objects.filter(owner_id=order[i]).order_by("pk"))

    def cached_list(i: int) -> object:
        return list(cached.filter(owner_id=order[i]).order_by("pk"))

    def orm_count(i: int) -> object:
        return objects.filter(owner_id=order[i]).count()

    def cached_count(i: int) -> object:
        return cached.filter(owner_id=order[i]).count()

    def orm_exists(i: int) -> object:
        return objects.filter(owner_id=order[i]).exists()

    def cached_exists(i: int) -> object:
        return cached.filter(owner_id=order[i]).exists()

    n = "/".join(str(s) for s in sorted(sizes))
    return [
        Bench(f"orm filter() {n} rows", orm_list, ops),
        Bench(
            f"cached.filter() {n} rows hit",
            cached_list,
            ops,
            setup=warm,
            baseline=f"orm filter() {n} rows",
        ),
        Bench("orm count()", orm_count, ops),
        Bench("cached count() hit", cached_count, ops, setup=warm, baseline="orm count()"),
        Bench("orm exists()", orm_exists, ops),
        Bench("cached exists() hit", cached_exists, ops, setup=warm, baseline="orm exists()"),
    ]


def print_table(benches: Sequence[Bench], env: dict[str, Any]) -> None:
    print_environment("django-cacheaside cached-query benchmark", env)
    print(
        f"  method    {env['rows']} rows over 10 owners; {env['ops']} calls per repeat, median of "
        f"{env['repeats']} interleaved repeats; figures per call"
    )
    print()
    by_name = {b.name: b for b in benches}
    headers = ["benchmark", "ops/s", "p50 µs", "p99 µs", "vs ORM (min-max)"]
    rows = []
    for b in benches:
        ratio = ""
        base = by_name.get(b.baseline or "")
        if base is not None:
            each = per_repeat_ratios(b, base)
            ratio = f"{statistics.median(each):.2f}x ({min(each):.2f}-{max(each):.2f})"
        rows.append(
            [
                b.name,
                f"{b.median('ops_per_s'):,.0f}",
                f"{b.median('p50_us'):,.1f}",
                f"{b.median('p99_us'):,.1f}",
                ratio,
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        middle = [c.rjust(w) for c, w in zip(cells[1:4], widths[1:4], strict=True)]
        return " | ".join([first, *middle, cells[4]]).rstrip()

    print(line(headers))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=1000, help="calls per repeat (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per row (default 5)")
    parser.add_argument("--rows", type=int, default=1000, help="rows seeded (default 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per row first")
    parser.add_argument("--seed", type=int, default=42, help="random seed for data and order")
    args = parser.parse_args(argv)
    if args.ops < 1 or args.repeats < 1 or args.rows < 10:
        parser.error("--ops and --repeats must be at least 1, --rows at least 10")
    redis_url = configure_django()
    rng = random.Random(args.seed)
    try:
        create_tables()
        seed(args.rows, rng)
        from benchapp.models import Owner

        owners = list(Owner.objects.order_by("pk").values_list("pk", flat=True))
        benches = build_benches(owners, args.ops, rng)
        env = {
            **base_environment(redis_url),
            "rows": args.rows,
            "ops": args.ops,
            "repeats": args.repeats,
            "run_id": RUN_ID,
        }
        run_benches(benches, args.repeats, args.warmup)
        print_table(benches, env)
        return 0
    finally:
        clean_up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
