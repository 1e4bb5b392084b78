#!/usr/bin/env python3
"""Entry encodings for one realistic row: ``python benchmarks/serializers.py``.

The row is what ``Model.from_db`` receives for the benchmark model (``benchapp.CachedRow``): id,
title, slug, ~500 characters of text, two ints, an aware datetime (UTC, as Django's database
backends return it), a Decimal, a bool, a foreign key id and a UUID.

Every encoding is timed as a *type-faithful round trip*: ``loads`` must give back values equal to
the originals and of the same types (an aware datetime with the same tzinfo, a Decimal, a UUID).
orjson alone returns strings for those, so its ``loads`` includes the per-column conversions a
schema-aware decoder would run (``datetime.fromisoformat``, ``Decimal``, ``UUID``).

Rows marked *prototype* are not in the library: they show what a different msgpack layout would
cost, to inform changes to ``MsgpackSerializer``.

Prints a markdown table (dumps µs, loads µs, size bytes: medians over ``--repeats``; ratios vs
pickle measured in the same run).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import pickle
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import orjson  # noqa: E402

from django_cacheaside.serializers.msgpack import MsgpackSerializer  # noqa: E402
from django_cacheaside.serializers.pickle import PickleSerializer  # noqa: E402

UTC = datetime.UTC
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = datetime.timedelta(microseconds=1)


def sample_row() -> list[Any]:
    """One row in ``from_db`` order, with values shaped as the database backends return them."""
    body = "Cache-aside reads go to Redis first and fall back to the database on a miss. " * 7
    return [
        48213,  # id
        "Row number 48213: latency throughput",  # title
        "row-48213-pipeline",  # slug
        body[:500],  # body
        731_402,  # views
        17,  # rank
        datetime.datetime(2024, 7, 3, 14, 25, 36, 123456, tzinfo=UTC),  # created
        Decimal("1234.56"),  # price
        True,  # active
        7,  # owner_id
        uuid.UUID("6f1c2b7e-4a0d-4c55-9d3e-8b1f2a7c9e01"),  # uid
    ]


COLUMNS = ("int", "str", "str", "str", "int", "int", "datetime", "decimal", "bool", "int", "uuid")


# -- orjson, type-faithful ---------------------------------------------------------------------


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.datetime.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
}
_JSON_FIXUPS = tuple((i, _FROM_JSON[kind]) for i, kind in enumerate(COLUMNS) if kind in _FROM_JSON)


class OrjsonCodec:
    """orjson plus the per-column conversions that make its output type-faithful."""

    def dumps(self, values: Sequence[Any]) -> bytes:
        data: bytes = orjson.dumps(list(values), default=_orjson_default)
        return data

    def loads(self, data: bytes) -> list[Any]:
        values: list[Any] = orjson.loads(data)
        for i, convert in _JSON_FIXUPS:
            value = values[i]
            if value is not None:
                values[i] = convert(value)
        return values


# -- prototypes --------------------------------------------------------------------------------

_TO_PLAIN: dict[str, Callable[[Any], Any]] = {
    "datetime": lambda v: (v - EPOCH) // ONE_US,  # aware UTC only in this prototype
    "decimal": str,
    "uuid": lambda v: v.bytes,
}
_FROM_PLAIN: dict[str, Callable[[Any], Any]] = {
    "datetime": lambda us: EPOCH + datetime.timedelta(microseconds=us),
    "decimal": Decimal,
    "uuid": lambda raw: uuid.UUID(bytes=raw),
}
_PLAIN_OUT = tuple((i, _TO_PLAIN[kind]) for i, kind in enumerate(COLUMNS) if kind in _TO_PLAIN)
_PLAIN_IN = tuple((i, _FROM_PLAIN[kind]) for i, kind in enumerate(COLUMNS) if kind in _FROM_PLAIN)


class SchemaMsgpack:
    """Prototype: per-column converters chosen from the model's fields once (as ``_Codec`` could),
    plain msgpack types on the wire, no ``default``/``ext_hook`` callbacks."""

    def dumps(self, values: Sequence[Any]) -> bytes:
        plain = list(values)
        for i, convert in _PLAIN_OUT:
            if plain[i] is not None:
                plain[i] = convert(plain[i])
        data: bytes = msgpack.packb(plain, use_bin_type=True)
        return data

    def loads(self, data: bytes) -> list[Any]:
        values: list[Any] = msgpack.unpackb(data, raw=False)
        for i, convert in _PLAIN_IN:
            value = values[i]
            if value is not None:
                values[i] = convert(value)
        return values


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    dumps_us: float
    loads_us: float
    size: int
    dumps_runs: list[float]
    loads_runs: list[float]


def check_faithful(name: str, row: list[Any], back: list[Any]) -> None:
    for i, (a, b) in enumerate(zip(row, back, strict=True)):
        same_tz = not isinstance(a, datetime.datetime) or a.tzinfo is b.tzinfo
        if type(a) is not type(b) or a != b or not same_tz:
            raise AssertionError(f"{name}: column {i} came back as {b!r}, not {a!r}")
    if len(row) != len(back):
        raise AssertionError(f"{name}: {len(back)} values, not {len(row)}")


def per_call_us(fn: Callable[[], object], number: int) -> float:
    gc.collect()
    started = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - started) / number / 1000


def run(codecs: dict[str, Any], number: int, repeats: int) -> list[Result]:
    row = sample_row()
    payloads = {}
    for name, codec in codecs.items():
        payloads[name] = codec.dumps(row)
        check_faithful(name, row, codec.loads(payloads[name]))
    dumps_runs: dict[str, list[float]] = {name: [] for name in codecs}
    loads_runs: dict[str, list[float]] = {name: [] for name in codecs}
    for _ in range(repeats):  # interleaved: every codec in every repeat
        for name, codec in codecs.items():
            data = payloads[name]
            dumps_runs[name].append(per_call_us(functools.partial(codec.dumps, row), number))
            loads_runs[name].append(per_call_us(functools.partial(codec.loads, data), number))
    return [
        Result(
            name,
            statistics.median(dumps_runs[name]),
            statistics.median(loads_runs[name]),
            len(payloads[name]),
            dumps_runs[name],
            loads_runs[name],
        )
        for name in codecs
    ]


def ratio_vs(results: list[Result], name: str, attr: str) -> float:
    """Median over repeats of this codec's time divided by pickle's time in the same repeat."""
    by_name = {r.name: r for r in results}
    mine, base = getattr(by_name[name], attr), getattr(by_name["PickleSerializer"], attr)
    return float(statistics.median(a / b for a, b in zip(mine, base, strict=True)))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Compare entry encodings for one realistic row.")
    parser.add_argument(
        "--number", type=int, default=20000, help="calls per timing (default 20000)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="repeats (default 7)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    codecs: dict[str, Any] = {
        "MsgpackSerializer": MsgpackSerializer(),
        "PickleSerializer": PickleSerializer(),
        "orjson + typed decode": OrjsonCodec(),
        "msgpack, schema-aware, no ext (prototype)": SchemaMsgpack(),
    }
    results = run(codecs, args.number, args.repeats)
    env = {
        "date": datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "msgpack": ".".join(map(str, msgpack.version)),
        "orjson": orjson.__version__,
        "pickle_protocol": pickle.HIGHEST_PROTOCOL,
        "number": args.number,
        "repeats": args.repeats,
    }
    if args.json:
        report = {
            "environment": env,
            "results": [
                {
                    **vars(r),
                    "dumps_vs_pickle": ratio_vs(results, r.name, "dumps_runs"),
                    "loads_vs_pickle": ratio_vs(results, r.name, "loads_runs"),
                }
                for r in results
            ],
        }
        print(json.dumps(report, indent=2))
        return 0
    pickle_size = next(r.size for r in results if r.name == "PickleSerializer")
    print(
        f"Entry encodings, one {len(COLUMNS)}-column row ({env['date']}; {env['python']}, "
        f"msgpack {env['msgpack']}, orjson {env['orjson']}, pickle protocol "
        f"{env['pickle_protocol']})."
    )
    print(
        f"Medians of {args.repeats} interleaved repeats of {args.number} calls; "
        "ratios are time (or size) relative to pickle in the same repeat, lower is better."
    )
    print()
    headers = [
        "encoding",
        "dumps µs",
        "loads µs",
        "size B",
        "dumps vs pickle",
        "loads vs pickle",
        "size vs pickle",
    ]
    rows = [
        [
            r.name,
            f"{r.dumps_us:.2f}",
            f"{r.loads_us:.2f}",
            str(r.size),
            f"{ratio_vs(results, r.name, 'dumps_runs'):.2f}x",
            f"{ratio_vs(results, r.name, 'loads_runs'):.2f}x",
            f"{r.size / pickle_size:.2f}x",
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [cells[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(padded) + " |"

    print(line(headers))
    print("|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|")
    for row in rows:
        print(line(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
