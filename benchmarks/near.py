"""The near cache: a hit from process memory against a Redis hit, the ORM and a raw ``HGET``.

``benchmarks/near.py [--ops N] [--repeats R] [--markdown FILE]`` seeds the benchmark rows, reads
them through ``CachedRow.cached`` (Redis) and through a second manager of the same model with a
near cache (``register(CachedRow, name="near", near_cache=...)``, the same keys), and prints per
call p50 and the ratios, medians over interleaved repeats (each repeat runs every row in turn).
The near rows wait for the tracker first: a near cache serves nothing until Redis tracks for it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import clean_up, configure_django, create_tables, seed


def timed(fn: Callable[[Any], object], args: Sequence[Any]) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for arg in args:
        started = clock()
        fn(arg)
        out.append((clock() - started) / 1000)
    return out


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="calls per row per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    args = parser.parse_args(argv)
    configure_django()
    from benchapp.models import CachedRow
    from django_cacheaside import nearby, register
    from django_cacheaside.backend import get_backend

    try:
        create_tables()
        seed(args.rows, random.Random(7))
        near_manager = register(CachedRow, name="near", near_cache={"max_entries": args.rows})
        pks = list(CachedRow.objects.values_list("pk", flat=True))
        rng = random.Random(8)
        order = [rng.choice(pks) for _ in range(args.ops)]
        CachedRow.cached.get_many(pks)
        near_manager.get(pk=pks[0])
        tracker = nearby.tracker()
        if tracker is None or not tracker.wait_ready(10):
            print("the near cache's tracker did not start", file=sys.stderr)
            return 1
        for pk in pks:
            near_manager.get(pk=pk)  # Redis hits, now kept near
        client = get_backend().client
        key = CachedRow.cached.key_for_pk(pks[0])
        rows: dict[str, Callable[[Any], object]] = {
            "orm get(pk)": lambda pk: CachedRow.objects.get(pk=pk),
            "raw HGET (redis-py)": lambda _pk: client.hget(key, "d"),
            "cached.get hit (Redis)": lambda pk: CachedRow.cached.get(pk=pk),
            "near cache hit": lambda pk: near_manager.get(pk=pk),
        }
        p50s: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.repeats):
            for name, fn in rows.items():
                sample = order if name != "orm get(pk)" else order[: max(200, args.ops // 10)]
                p50s[name].append(statistics.median(timed(fn, sample)))
        near = near_manager._near
        assert near is not None
        ratios = [
            r / n
            for r, n in zip(p50s["cached.get hit (Redis)"], p50s["near cache hit"], strict=True)
        ]
        orm = [o / n for o, n in zip(p50s["orm get(pk)"], p50s["near cache hit"], strict=True)]
        lines = [
            "| row | p50 µs (median of repeats) | per repeat |",
            "|---|---:|---|",
            *(
                f"| {name} | {statistics.median(v):.2f} | {', '.join(f'{x:.1f}' for x in v)} |"
                for name, v in p50s.items()
            ),
            "",
            f"near cache hit vs Redis hit: {statistics.median(ratios):.1f}x faster "
            f"(per repeat {', '.join(f'{r:.1f}' for r in ratios)}); target >= 20x: "
            f"{'PASS' if statistics.median(ratios) >= 20 else 'MISS'}",
            f"near cache hit vs ORM get(pk): {statistics.median(orm):.0f}x faster",
            f"near cache: {near.hits} hits, {near.misses} misses, {len(near)} entries, "
            f"{near.bytes} bytes",
        ]
        print("\n".join(lines))
        if args.markdown:
            Path(args.markdown).write_text("\n".join(lines) + "\n")
        return 0
    finally:
        nearby.stop_tracking()
        clean_up()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
