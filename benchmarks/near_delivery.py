#!/usr/bin/env python3
"""How soon a write reaches the near cache: ``python benchmarks/near_delivery.py [--subprocess]``.

One writer client writes tracked keys (``SET`` of a new key with a TTL, then ``DEL`` of it, and so on) and a
``Tracker`` discards each from its ``NearCache``. Measured per write: from the moment the write's
reply was read (the writer could tell someone "written") to the moment ``discard_many`` had
dropped the key, and from the moment the write was sent (an upper bound on the delivery itself). A
negative figure from the reply means the invalidation was applied before the writer had read its
reply: Redis queues the invalidation while it runs the write, before the reply goes out. Each write is sent only after the previous key was discarded, so no message waits
behind another.

* in-process (default): the tracker's thread in the writer's process, as the app would run it
  (both threads share the GIL);
* ``--subprocess``: the tracker in a child process, as another web worker would see the write;
  the child reports its discard times (``time.perf_counter()`` is ``CLOCK_MONOTONIC``, one clock for
  every process on Linux) through a pipe.

Uses ``$REDIS_URL`` (default ``redis://127.0.0.1:6379/0``, database 12 for the keys) and deletes its
keys at the end. Prints p50, p99 and max in microseconds over ``--writes`` writes, for both starting points.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from django_cacheaside.near import NearCache  # noqa: E402
from django_cacheaside.tracking import Tracker  # noqa: E402

WAIT = 5.0  # seconds a discard may take before the run gives up


class TimedNearCache(NearCache):
    """Records when each key was discarded and wakes whoever waits for it."""

    def __init__(self) -> None:
        super().__init__(max_entries=10_000)
        self.discards: list[tuple[str, float]] = []  # (key, when), in the order applied
        self.arrived = threading.Condition()

    def discard_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        super().discard_many(keys)
        now = time.perf_counter()
        with self.arrived:
            self.discards.extend((key, now) for key in keys)
            self.arrived.notify_all()


def client_from_env() -> redis.Redis:
    url = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379, db=12)


def write(client: redis.Redis, prefix: str, i: int) -> str:
    """Write ``i``: a SET of a new key (with a TTL, in the same command, so a run cut short leaves
    nothing that lives forever), or DEL of the key the write before created."""
    key = f"{prefix}{i // 2}"
    if i % 2:
        client.delete(key)
    else:
        client.set(key, b"x", px=60_000)
    return key


def in_process(client: redis.Redis, prefix: str, writes: int) -> list[tuple[float, float]]:
    near = TimedNearCache()
    tracker = Tracker.for_client(client, [prefix], near)
    tracker.start()
    try:
        if not tracker.wait_ready(WAIT):
            raise SystemExit("the tracker did not get ready")
        latencies = []
        for i in range(writes):
            sent = time.perf_counter()
            key = write(client, prefix, i)
            written = time.perf_counter()
            with near.arrived:
                if not near.arrived.wait_for(lambda i=i: len(near.discards) > i, WAIT):
                    raise SystemExit(f"no invalidation of {key} within {WAIT} s")
                discarded, at = near.discards[i]
            if discarded != key:
                raise SystemExit(f"expected {key} discarded, got {discarded}")
            latencies.append((at - sent, at - written))
        return latencies
    finally:
        tracker.stop()


def child(prefix: str) -> None:
    """The ``--child`` process: a tracker reporting ``<key> <discard time>`` lines on stdout."""
    near = TimedNearCache()
    tracker = Tracker.for_client(client_from_env(), [prefix], near)
    tracker.start()
    if not tracker.wait_ready(WAIT):
        raise SystemExit("the tracker did not get ready")
    print("ready", flush=True)
    reported = 0
    while True:
        with near.arrived:
            near.arrived.wait_for(lambda seen=reported: len(near.discards) > seen, 1.0)
            items = near.discards[reported:]
        for key, at in items:
            print(f"{key} {at!r}", flush=True)
        reported += len(items)


def in_subprocess(client: redis.Redis, prefix: str, writes: int) -> list[tuple[float, float]]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", prefix],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert process.stdout is not None
    try:
        if process.stdout.readline().strip() != "ready":
            raise SystemExit("the child tracker did not get ready")
        latencies = []
        for i in range(writes):
            sent = time.perf_counter()
            key = write(client, prefix, i)
            written = time.perf_counter()
            reported, at = process.stdout.readline().split()
            if reported != key:
                raise SystemExit(f"expected {key}, the child reported {reported}")
            latencies.append((float(at) - sent, float(at) - written))
        return latencies
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--subprocess", action="store_true", help="the tracker in a child process")
    parser.add_argument("--child", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    client = client_from_env()
    prefix = f"bench-near-{uuid.uuid4().hex[:8]}:"
    try:
        for _ in range(50):  # warm up the writer's connection
            client.ping()
        where = "a child process" if args.subprocess else "the writer's process"
        measure = in_subprocess if args.subprocess else in_process
        pairs = measure(client, prefix, args.writes)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    server = client.info("server")["redis_version"]
    print(
        f"near cache delivery, tracker in {where}: {len(pairs)} writes (SET/DEL), "
        f"Redis {server}, Python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"loadavg {os.getloadavg()[0]:.2f}"
    )
    print("  until the key was discarded, microseconds")
    for name, column in (("from the write sent", 0), ("from its reply read", 1)):
        latencies = sorted(pair[column] for pair in pairs)
        p99 = latencies[min(len(latencies) - 1, math.ceil(len(latencies) * 0.99) - 1)]
        print(
            f"  {name:<20} p50 {statistics.median(latencies) * 1e6:8.1f}   "
            f"p99 {p99 * 1e6:8.1f}   max {latencies[-1] * 1e6:8.1f}"
        )
    early = sum(1 for pair in pairs if pair[1] < 0)
    print(f"  discarded before the writer had read its reply: {early} of {len(pairs)}")


if __name__ == "__main__":
    main()
