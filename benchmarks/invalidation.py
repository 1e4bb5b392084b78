#!/usr/bin/env python3
"""Bulk invalidation benchmark: ``python benchmarks/invalidation.py``.

* ``invalidate_tags("owner:<id>")`` with 10k members (``--members``): the purge clock, one script
  per tag (mark, take the members, drop the set), then one ``DEL`` of the members. Baseline: one
  raw redis-py ``DEL`` of the same number of keys, in the same run.
* ``invalidate_model(CachedRow)`` with 100k keys of the model (``--model-keys``) among as many keys
  of another model: ``SCAN MATCH`` of the whole keyspace, ``DEL`` per batch found. Baseline: a raw
  ``SCAN`` of the same keyspace that deletes nothing.
* What tags add to misses (the clock read and the tag-set join): ``get_many`` of 1000 misses at a
  time over ``--members`` rows, tagged against untagged.

Entries for the purges are real fills (``get_many``); the keys for ``invalidate_model`` are
written directly (hashes with a TTL under the model's key pattern), since only their number
matters. Medians over ``--repeats``; keys and tables of the run are removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from common import (
    RUN_ID,
    base_environment,
    clean_up,
    configure_django,
    create_tables,
    print_environment,
)


def seed(model: Any, members: int) -> tuple[int, list[int]]:
    import datetime
    import uuid
    from decimal import Decimal

    from benchapp.models import Owner

    owner = Owner.objects.create(name="tagged")
    created = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    model.objects.bulk_create(
        (
            model(
                title=f"row {i}", slug=f"row-{i}", body="." * 500, created=created,
                price=Decimal("9.99"), owner=owner, uid=uuid.uuid4(),
            )
            for i in range(members)
        ),
        batch_size=1000,
    )  # fmt: skip
    return owner.pk, list(model.objects.values_list("pk", flat=True))


def timed(action: Callable[[], Any], prepare: Callable[[], Any], repeats: int) -> list[float]:
    result = []
    for _ in range(repeats):
        prepare()
        started = time.perf_counter()
        action()
        result.append(time.perf_counter() - started)
    return result


def fill_all(model: Any, pks: list[int]) -> None:
    for start in range(0, len(pks), 1000):
        model.cached.get_many(pks[start : start + 1000])


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=10_000, help="tag members (default 10k)")
    parser.add_argument("--model-keys", type=int, default=100_000, help="keys (default 100k)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per row (default 5)")
    args = parser.parse_args(argv)
    redis_url = configure_django()
    try:
        create_tables()
        import django_cacheaside
        from benchapp.models import CachedRow, TaggedRow
        from django_cacheaside.backend import get_backend

        client = get_backend().client
        owner, pks = seed(TaggedRow, args.members)
        _owner, plain_pks = seed(CachedRow, args.members)
        tag = f"owner:{owner}"
        rows: list[tuple[str, list[float], str]] = []

        untagged = timed(
            lambda: fill_all(CachedRow, plain_pks),
            lambda: django_cacheaside.invalidate_model(CachedRow),
            args.repeats,
        )
        tagged = timed(
            lambda: fill_all(TaggedRow, pks),
            lambda: django_cacheaside.invalidate_tags(tag),
            args.repeats,
        )
        rows.append((f"get_many misses, untagged ({args.members:,} rows)", untagged, ""))
        rows.append((f"get_many misses, tagged ({args.members:,} rows)", tagged, "untagged"))

        purge = timed(
            lambda: django_cacheaside.invalidate_tags(tag),
            lambda: fill_all(TaggedRow, pks),
            args.repeats,
        )
        deleted = django_cacheaside.invalidate_tags(tag)
        assert deleted == 0, deleted  # the last purge left nothing
        keys = [TaggedRow.cached.key_for_pk(pk) for pk in pks]

        def write_plain_keys() -> None:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hset(key, "d", b"x")
                pipe.pexpire(key, 300_000)
            pipe.execute()

        raw_del = timed(lambda: client.delete(*keys), write_plain_keys, args.repeats)
        rows.append((f"invalidate_tags, {args.members:,} members", purge, "raw DEL"))
        rows.append((f"raw DEL of {args.members:,} keys", raw_del, ""))

        # invalidate_model: the model's keys among as many keys of another model.
        other = [f"{TaggedRow.cached.key_for_pk(n)}" for n in range(10**7, 10**7 + args.model_keys)]
        mine = [CachedRow.cached.key_for_pk(n) for n in range(args.model_keys)]

        def write(keys_: list[str]) -> None:
            for start in range(0, len(keys_), 5000):
                pipe = client.pipeline(transaction=False)
                for key in keys_[start : start + 5000]:
                    pipe.hset(key, "d", b"x")
                    pipe.pexpire(key, 300_000)
                pipe.execute()

        write(other)
        scanned = timed(
            lambda: django_cacheaside.invalidate_model(CachedRow), lambda: write(mine), args.repeats
        )
        pattern = f"{CachedRow.cached._settings().namespace}{{benchapp.cachedrow:*"

        def raw_scan() -> None:
            for _key in client.scan_iter(match=pattern, count=1000):
                pass

        write(mine)
        raw = timed(raw_scan, lambda: None, args.repeats)
        dbsize = client.dbsize()
        rows.append((f"invalidate_model, {args.model_keys:,} keys", scanned, "raw SCAN"))
        rows.append((f"raw SCAN MATCH, nothing deleted ({dbsize:,} keys)", raw, ""))

        env = {**base_environment(redis_url), "repeats": args.repeats, "run_id": RUN_ID}
        print_environment("bulk invalidation (medians over repeats)", env)
        print(f"\n  {'operation':<52} {'median ms':>10} {'per key us':>11} {'vs':>16}")
        baselines = {
            "raw DEL": statistics.median(raw_del),
            "raw SCAN": statistics.median(raw),
            "untagged": statistics.median(untagged),
        }
        for name, samples, against in rows:
            median = statistics.median(samples)
            count = args.model_keys if "model" in name or "SCAN" in name else args.members
            versus = f"{median / baselines[against]:.2f}x {against}" if against else ""
            print(f"  {name:<52} {median * 1000:>10.1f} {median / count * 1e6:>11.2f} {versus:>16}")
        return 0
    finally:
        clean_up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
