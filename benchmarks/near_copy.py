#!/usr/bin/env python3
"""What handing out a near-cache entry costs, per copy strategy: ``python benchmarks/near_copy.py``.

The near cache (``django_cacheaside.near``) keeps one model instance per entry and must give every
caller an instance it may change. Timed here on one ``benchapp.CachedRow`` (11 columns: id, two
chars, ~500 characters of text, two ints, an aware datetime, a Decimal, a bool, a foreign key id
and a UUID), built as a database read builds it (``Model.from_db``) and with its foreign key cache
filled, as a cached instance may have it:

* ``clone(instance, ())``: the library's copy (new ``_state``, shallow ``__dict__`` copy);
* ``clone(...)`` of the same row plus a JSONField holding a 10-key dict (deep-copied);
* ``copy.copy(instance)`` and ``copy.deepcopy(instance)``;
* ``Model.from_db(db, attnames, values)`` with the same values: building it anew.

Nothing touches the database or Redis (Django is configured as the other scripts do it, which
needs ``$REDIS_URL`` reachable or starts an embedded Redis). Prints microseconds per copy: the best
and the median of ``--repeats`` repeats of ``--calls`` calls each.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import statistics
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    common.configure_django()
    try:
        run(args.calls, args.repeats)
    finally:
        common.stop_embedded_redis()


def run(calls: int, repeats: int) -> None:
    import platform

    import django
    from django.db import models

    from benchapp.columns import RowColumns
    from benchapp.models import CachedRow, Owner
    from django_cacheaside.near import clone, mutable_attnames

    class JsonRow(RowColumns):
        data = models.JSONField()

        class Meta:
            app_label = "benchapp"
            db_table = f"{common.TABLE_PREFIX}_near_jsonrow"

    values: list[Any] = [
        48213,
        "Row number 48213: latency throughput",
        "row-48213-pipeline",
        ("Cache-aside reads go to Redis first and fall back to the database on a miss. " * 7)[:500],
        912_345,
        42,
        datetime.datetime(2024, 5, 17, 9, 30, 12, 345678, tzinfo=datetime.UTC),
        Decimal("1234.56"),
        True,
        7,
        uuid.UUID("6f1c2b1e-3a4d-4c5e-8f90-a1b2c3d4e5f6"),
    ]
    attnames = [f.attname for f in CachedRow._meta.concrete_fields]
    assert len(attnames) == len(values) == 11, attnames
    row = CachedRow.from_db("default", attnames, values)
    row.owner = Owner.from_db("default", ["id", "name"], [7, "owner 7"])  # fills the FK cache

    data = {f"key{i}": [i, f"value {i}", {"nested": i}] for i in range(10)}
    json_attnames = [f.attname for f in JsonRow._meta.concrete_fields]
    json_row = JsonRow.from_db("default", json_attnames, [*values, data])
    json_mutable = mutable_attnames(JsonRow)
    assert json_mutable == ("data",), json_mutable
    assert mutable_attnames(CachedRow) == ()

    rows: list[tuple[str, Callable[[], object]]] = [
        ("clone(instance, ())", lambda: clone(row, ())),
        ('clone(instance, ("data",)) + JSON', lambda: clone(json_row, json_mutable)),
        ("copy.copy(instance)", lambda: copy.copy(row)),
        ("copy.deepcopy(instance)", lambda: copy.deepcopy(row)),
        (
            "Model.from_db(db, fields, values)",
            lambda: CachedRow.from_db("default", attnames, values),
        ),
    ]
    results: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _repeat in range(repeats):  # interleaved: a slow moment spreads over every row
        for name, op in rows:
            results[name].append(_time(op, calls))

    print(
        f"near-cache copies: Python {platform.python_version()}, Django {django.get_version()}, "
        f"{calls} calls x {repeats} repeats"
    )
    print(f"  {'copy strategy':<40} {'best us':>8} {'median us':>10}")
    for name, _op in rows:
        times = results[name]
        print(f"  {name:<40} {min(times):>8.2f} {statistics.median(times):>10.2f}")


def _time(op: Callable[[], object], calls: int) -> float:
    """Microseconds per call of ``op`` over ``calls`` calls (garbage collector off meanwhile)."""
    loop = range(calls)
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in loop:
            op()
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        gc.enable()


if __name__ == "__main__":
    main()
