#!/usr/bin/env python3
"""The client side of one Redis round trip, path by path: ``python benchmarks/roundtrip.py``.

Times a hit's ``HGET`` (and ``get_many``'s 100 pipelined ``HGET``s) through each way the app can
send it, interleaved round by round so machine noise hits every path alike, and prints the median
per call:

* ``wire``: the app's direct path as it runs (hiredis reader of its own, kernel-enforced timeout);
* ``wire, Python timeout``: the same with the socket's timeout left to Python, which calls
  ``poll()`` before every send and receive;
* ``redis-py connection``: the direct path without the wire (redis-py's parser, hiredis if
  installed), as before it existed;
* ``pure-Python parser``: the same with redis-py's own RESP parser (no hiredis);
* ``client.hget``: redis-py's ``Redis.hget``, pool checkout and retry wrapper included.

``--spin`` keeps one core busy with a child process for the run: on a VM whose idle vCPUs halt
(cpuidle ``haltpoll``) that removes the wake-up from each round trip (docs/benchmarks.md).
Uses ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); its keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import redis
from redis._parsers import _RESP2Parser

from django_cacheaside.backend import direct

TIMEOUTS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


def paths(client: redis.Redis) -> dict[str, direct.DirectCommands | None]:
    pool = client.connection_pool
    wire = direct.DirectCommands(pool, TIMEOUTS)
    python_timeout = direct.DirectCommands(pool, TIMEOUTS)
    kernel = direct._kernel_timeouts
    direct._kernel_timeouts = lambda sock, timeout: None  # type: ignore[assignment]
    try:
        python_timeout.execute("PING")  # its connection is made without the kernel timeout
    finally:
        direct._kernel_timeouts = kernel
    plain = direct.DirectCommands(pool, TIMEOUTS)
    plain._wired = False
    pure = direct.DirectCommands(pool, {**TIMEOUTS, "parser_class": _RESP2Parser})
    pure._wired = False
    return {
        "wire": wire,
        "wire, Python timeout": python_timeout,
        "redis-py connection": plain,
        "pure-Python parser": pure,
        "client.hget": None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--calls", type=int, default=2000, help="HGETs per path per round")
    parser.add_argument("--spin", action="store_true", help="keep one core busy during the run")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    run = uuid.uuid4().hex[:8]
    keys = [f"roundtrip-{run}:{{{i}}}" for i in range(100)]
    for key in keys:
        client.hset(key, "d", os.urandom(600))
        client.pexpire(key, 600_000)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.spin else None
    try:
        chosen = paths(client)
        measured: dict[tuple[str, str], list[float]] = {}
        for _round in range(args.rounds):
            for name, commands in chosen.items():
                calls: list[tuple[str, Callable[[], object], int]]
                if commands is None:
                    calls = [("HGET", lambda: client.hget(keys[0], "d"), args.calls)]
                else:
                    calls = [
                        ("HGET", lambda c=commands: c.hget_entry(keys[0]), args.calls),
                        ("100 HGETs", lambda c=commands: c.hget_entries(keys), args.calls // 10),
                    ]
                for what, call, count in calls:
                    call()
                    started = time.perf_counter()
                    for _ in range(count):
                        call()
                    elapsed = (time.perf_counter() - started) / count * 1e6
                    measured.setdefault((name, what), []).append(elapsed)
        spinning = ", one core spinning" if args.spin else ""
        print(f"{args.rounds} interleaved rounds, load {os.getloadavg()[0]:.2f}{spinning}")
        print(f"  {'path':24} {'HGET µs':>9} {'100 HGETs µs':>13}")
        for name in chosen:
            single = statistics.median(measured[(name, "HGET")])
            batch = measured.get((name, "100 HGETs"))
            batch_text = f"{statistics.median(batch):13.1f}" if batch else ""
            print(f"  {name:24} {single:9.1f} {batch_text}")
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        client.delete(*keys)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
