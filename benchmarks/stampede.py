#!/usr/bin/env python3
"""Stampede benchmark for django-cacheaside: ``python benchmarks/stampede.py``.

One hot row has its cache entry dropped, then ``--threads`` threads read it at once (released by
one ``threading.Barrier``) while every SELECT on its table is slowed by ``--delay-ms`` (an
``execute_wrapper`` on each thread's connection sleeps before executing it). Two contenders:

* ``plain cache-aside``: the textbook helper on the library's own redis-py client: ``GET``; on a
  miss the ORM query, then ``SET key <pickled row> EX 300``; invalidation is ``DEL``;
* ``Model.cached``: ``CachedRow.cached.get(pk=...)``, with its refill lease and in-process
  coalescing; invalidation is ``django_cacheaside.invalidate(row)``.

Each trial counts the queries that reached the database (all threads) and the time from the
barrier's release until the last thread had its row, and checks that every thread got the row.
Trials are interleaved (the order of the contenders alternates from one trial to the next) after
``--warmup`` untimed trials each. ``--processes N`` (PostgreSQL only) runs the same stampede again
over N forked processes of ``threads / N`` threads, the lease's cross-process case.

Environment as in ``run.py``: ``DATABASE_URL`` (postgres://...) or a temporary SQLite file,
``REDIS_URL`` or an embedded Redis; keys under the run's ``KEY_PREFIX``, tables under its
``bench_<id>_`` prefix, both removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pickle
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from common import (
    KEY_PREFIX,
    RUN_ID,
    base_environment,
    clean_up,
    configure_django,
    create_tables,
    print_environment,
    progress,
)

TITLE = "hot row of the stampede"
BARRIER_TIMEOUT = 60.0  # seconds: a stuck trial fails instead of hanging the run
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for every thread and every forked process


# -- what every trial counts ---------------------------------------------------------------------


class QueryCounter:
    """The ``execute_wrapper`` of every reader thread: counts every statement, slows the SELECTs of
    the row's table (before executing them: no database lock is held while it sleeps)."""

    def __init__(self, table: str, delay: float) -> None:
        self.table = table
        self.delay = delay
        self._lock = threading.Lock()
        self.queries = 0
        self.row_selects = 0

    def reset(self) -> None:
        with self._lock:
            self.queries = self.row_selects = 0

    def __call__(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        slow = sql.lstrip()[:6].upper() == "SELECT" and self.table in sql
        with self._lock:
            self.queries += 1
            self.row_selects += slow
        if slow and self.delay:
            time.sleep(self.delay)
        return execute(sql, *args)


class LeaseOutcomes:
    """``cache_lease`` receiver: how the misses of a trial were resolved (``Model.cached`` only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: Counter[str] = Counter()

    def __call__(self, sender: Any, outcome: str, **kwargs: Any) -> None:
        with self._lock:
            self.seen[outcome] += 1

    def take(self) -> dict[str, int]:
        with self._lock:
            seen, self.seen = dict(self.seen), Counter()
        return seen


# -- contenders ----------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    read: Callable[[Any], Any]  # pk -> row
    drop: Callable[[Any], None]  # row -> None: what a save elsewhere does to the entry


def contenders() -> list[Contender]:
    import django_cacheaside
    from benchapp.models import CachedRow
    from django_cacheaside.backend import get_backend

    client = get_backend().client  # the library's own redis-py client
    objects = CachedRow.objects

    def plain_key(pk: Any) -> str:
        return f"{KEY_PREFIX}:plain:{CachedRow._meta.db_table}:{pk}"

    def plain_read(pk: Any) -> Any:
        """GET; on a miss the ORM query, then SET with a TTL. No lease, no coalescing."""
        key = plain_key(pk)
        raw = client.get(key)
        if raw is not None:
            return pickle.loads(raw)
        row = objects.get(pk=pk)
        client.set(key, pickle.dumps(row, pickle.HIGHEST_PROTOCOL), ex=300)
        return row

    def plain_drop(row: Any) -> None:
        client.delete(plain_key(row.pk))

    def cached_read(pk: Any) -> Any:
        return CachedRow.cached.get(pk=pk)

    return [
        Contender("plain cache-aside", plain_read, plain_drop),
        Contender("Model.cached", cached_read, django_cacheaside.invalidate),
    ]


# -- one process's readers -----------------------------------------------------------------------


@dataclass
class Part:
    """What the readers of one process did in one trial."""

    queries: int
    row_selects: int
    readers: int
    served: int  # readers that got the row (right pk and title)
    started: float  # clock() when the barrier released them
    last_served: float  # clock() when the last of them returned
    outcomes: dict[str, int]
    errors: list[str]


class Readers:
    """``count`` reader threads that live for the whole run, as an application's threads do: each
    keeps its database connection (the counting wrapper installed) and its Redis connections from
    one trial to the next, so a trial measures the stampede and not the connecting."""

    def __init__(self, count: int, counter: QueryCounter, outcomes: LeaseOutcomes) -> None:
        self.count, self.counter, self.outcomes = count, counter, outcomes
        self.task: Callable[[], Any] | None = None
        self.results: list[Any] = [None] * count
        self.ends = [0.0] * count
        self.started = 0.0
        self._ready = threading.Barrier(count + 1, timeout=BARRIER_TIMEOUT)
        self._start = threading.Barrier(count + 1, action=self._mark, timeout=BARRIER_TIMEOUT)
        self._done = threading.Barrier(count + 1, timeout=BARRIER_TIMEOUT)
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"reader-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()
        self._ready.wait()  # every reader is connected to the database

    def _mark(self) -> None:  # run by the last party to reach the start barrier, before release
        self.started = clock()

    def _work(self, index: int) -> None:
        from django.db import connection

        try:
            connection.ensure_connection()
            with connection.execute_wrapper(self.counter):
                self._ready.wait()
                while True:
                    self._start.wait()
                    task = self.task
                    if task is None:
                        return
                    try:
                        self.results[index] = task()
                    except Exception as error:
                        self.results[index] = error
                    self.ends[index] = clock()
                    self._done.wait()
        except threading.BrokenBarrierError:
            pass
        finally:
            connection.close()

    def trial(self, read: Callable[[Any], Any], pk: Any) -> Part:
        self.counter.reset()
        self.outcomes.take()
        self.results = [None] * self.count
        self.task = lambda: read(pk)
        self._start.wait()
        self._done.wait()
        served, errors = 0, []
        for result in self.results:
            if isinstance(result, BaseException):
                errors.append(f"{type(result).__name__}: {result}")
            elif getattr(result, "pk", None) == pk and getattr(result, "title", None) == TITLE:
                served += 1
            else:
                errors.append(f"wrong row: {result!r}")
        return Part(
            queries=self.counter.queries,
            row_selects=self.counter.row_selects,
            readers=self.count,
            served=served,
            started=self.started,
            last_served=max(self.ends),
            outcomes=self.outcomes.take(),
            errors=errors[:3],
        )

    def close(self) -> None:
        self.task = None
        with contextlib.suppress(threading.BrokenBarrierError):
            self._start.wait()
        for thread in self._threads:
            thread.join(BARRIER_TIMEOUT)


# -- stampedes -----------------------------------------------------------------------------------


@dataclass
class Trial:
    queries: int
    row_selects: int
    readers: int
    served: int
    ms: float  # barrier release until the last reader had its row
    outcomes: dict[str, int]
    errors: list[str]


@dataclass
class Result:
    contender: str
    mode: str  # "threads" or "processes"
    processes: int
    threads: int  # in all
    trials: list[Trial] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.mode == "threads":
            return str(self.threads)
        each = self.threads // self.processes
        return f"{self.processes}x{each}" + ("" if each * self.processes == self.threads else "+")

    def summary(self) -> dict[str, Any]:
        queries = [t.queries for t in self.trials]
        ms = [t.ms for t in self.trials]
        names = sorted({name for t in self.trials for name in t.outcomes})
        return {
            "contender": self.contender,
            "mode": self.mode,
            "processes": self.processes,
            "threads": self.threads,
            "trials": len(self.trials),
            "queries_median": statistics.median(queries),
            "queries_min": min(queries),
            "queries_max": max(queries),
            "ms_p50": statistics.median(ms),
            "ms_min": min(ms),
            "ms_max": max(ms),
            "all_served": all(t.served == t.readers for t in self.trials),
            "lease_outcomes_median": {
                name: statistics.median(t.outcomes.get(name, 0) for t in self.trials)
                for name in names
            },
            "per_trial": [vars(t) for t in self.trials],
        }


def combine(parts: Sequence[Part], started: float) -> Trial:
    outcomes: Counter[str] = Counter()
    for part in parts:
        outcomes.update(part.outcomes)
    return Trial(
        queries=sum(p.queries for p in parts),
        row_selects=sum(p.row_selects for p in parts),
        readers=sum(p.readers for p in parts),
        served=sum(p.served for p in parts),
        ms=(max(p.last_served for p in parts) - started) * 1000,
        outcomes=dict(outcomes),
        errors=[error for p in parts for error in p.errors][:3],
    )


def prepare(contender: Contender, row: Any) -> None:
    """Fill the entry (an untimed, uncounted read on this thread), then drop it."""
    contender.read(row.pk)
    contender.drop(row)


def interleaved(
    items: Sequence[Contender], trials: int, warmup: int
) -> list[tuple[int, Contender, bool]]:
    """(trial, contender, timed): warm-up trials first, then the order alternating per trial."""
    plan = [(-1, c, False) for _ in range(warmup) for c in items]
    for trial in range(trials):
        order = items if trial % 2 == 0 else list(reversed(items))
        plan += [(trial, c, True) for c in order]
    return plan


def run_threads(
    items: Sequence[Contender],
    row: Any,
    args: argparse.Namespace,
    counter: QueryCounter,
    outcomes: LeaseOutcomes,
) -> list[Result]:
    results = {c.name: Result(c.name, "threads", 0, args.threads) for c in items}
    readers = Readers(args.threads, counter, outcomes)
    try:
        for trial, contender, timed in interleaved(items, args.trials, args.warmup):
            progress(f"threads, trial {trial + 1}/{args.trials}: {contender.name}")
            prepare(contender, row)
            part = readers.trial(contender.read, row.pk)
            if timed:
                results[contender.name].trials.append(combine([part], part.started))
    finally:
        readers.close()
    return list(results.values())


# -- forked processes ----------------------------------------------------------------------------


@dataclass
class Child:
    pid: int
    commands: IO[str]
    replies: IO[str]

    def ask(self, command: str) -> None:
        self.commands.write(command + "\n")
        self.commands.flush()

    def reply(self) -> dict[str, Any]:
        line = self.replies.readline()
        if not line:
            raise RuntimeError(f"reader process {self.pid} exited")
        reply: dict[str, Any] = json.loads(line)
        if "fatal" in reply:
            raise RuntimeError(f"reader process {self.pid}: {reply['fatal']}")
        return reply


def child_main(
    commands: IO[str],
    replies: IO[str],
    threads: int,
    items: Sequence[Contender],
    pk: Any,
    counter: QueryCounter,
    outcomes: LeaseOutcomes,
) -> None:
    """A forked reader process: its own threads, its own count; answers each "go <contender>"."""

    def say(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        readers = Readers(threads, counter, outcomes)
    except BaseException as error:
        say({"fatal": f"{type(error).__name__}: {error}"})
        return
    try:
        say({"ready": threads})
        for line in commands:
            verb, _, which = line.strip().partition(" ")
            if verb != "go":
                break
            say(vars(readers.trial(items[int(which)].read, pk)))
    except BaseException as error:
        say({"fatal": f"{type(error).__name__}: {error}"})
    finally:
        readers.close()


def spawn(
    count: int,
    threads: int,
    items: Sequence[Contender],
    pk: Any,
    counter: QueryCounter,
    outcomes: LeaseOutcomes,
) -> list[Child]:
    from django.db import connections

    from django_cacheaside.backend import get_backend

    connections.close_all()  # no database socket is shared with a child
    get_backend().client.connection_pool.disconnect()  # nor a Redis one (redis-py checks too)
    children: list[Child] = []
    for index in range(count):
        each = threads // count + (index < threads % count)
        command_read, command_write = os.pipe()
        reply_read, reply_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.close(command_write)
                os.close(reply_read)
                for other in children:
                    other.commands.close()
                    other.replies.close()
                with (
                    os.fdopen(command_read, "r") as commands,
                    os.fdopen(reply_write, "w") as replies,
                ):
                    child_main(commands, replies, each, items, pk, counter, outcomes)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(command_read)
        os.close(reply_write)
        children.append(Child(pid, os.fdopen(command_write, "w"), os.fdopen(reply_read, "r")))
    for child in children:
        child.reply()  # {"ready": n}: its readers are connected
    return children


def stop(children: Sequence[Child]) -> None:
    for child in children:
        with contextlib.suppress(OSError, ValueError):
            child.ask("quit")
            child.commands.close()
    deadline = clock() + 10
    for child in children:
        while True:
            done, _status = os.waitpid(child.pid, os.WNOHANG)
            if done:
                break
            if clock() > deadline:
                os.kill(child.pid, signal.SIGKILL)  # only our own child, by its pid
                os.waitpid(child.pid, 0)
                break
            time.sleep(0.02)
        child.replies.close()


def run_processes(
    items: Sequence[Contender],
    row: Any,
    args: argparse.Namespace,
    counter: QueryCounter,
    outcomes: LeaseOutcomes,
) -> list[Result]:
    results = {c.name: Result(c.name, "processes", args.processes, args.threads) for c in items}
    index = {c.name: i for i, c in enumerate(items)}
    children = spawn(args.processes, args.threads, items, row.pk, counter, outcomes)
    try:
        for trial, contender, timed in interleaved(items, args.trials, args.warmup):
            progress(f"processes, trial {trial + 1}/{args.trials}: {contender.name}")
            prepare(contender, row)
            started = clock()
            for child in children:
                child.ask(f"go {index[contender.name]}")
            parts = [Part(**child.reply()) for child in children]
            if timed:
                results[contender.name].trials.append(combine(parts, started))
    finally:
        stop(children)
    return list(results.values())


# -- reporting -----------------------------------------------------------------------------------


def print_table(
    summaries: Sequence[dict[str, Any]], env: dict[str, Any], labels: list[str]
) -> None:
    print_environment("django-cacheaside stampede", env)
    processes = f"; then {env['processes']} forked processes" if env["processes"] else ""
    print(
        f"  method    one row's entry dropped, then {env['threads']} threads read it at once "
        f"(a Barrier){processes}; SELECTs on its table slowed by {env['delay_ms']:g} ms"
    )
    print(
        f"            {env['trials']} interleaved trials per row after {env['warmup']} untimed; "
        f"LOCK_WAIT {env['lock_wait']:g} s; time from the barrier's release to the last reader served"
    )
    if env.get("note"):
        print(f"  note      {env['note']}")
    print()
    headers = [
        "contender",
        "threads",
        "trials",
        "DB queries per stampede median [min-max]",
        "time until all served p50 / max ms",
    ]
    rows = []
    for summary, label in zip(summaries, labels, strict=True):
        low, high = summary["queries_min"], summary["queries_max"]
        rows.append(
            [
                summary["contender"],
                label,
                str(summary["trials"]),
                f"{summary['queries_median']:g} [{low}-{high}]",
                f"{summary['ms_p50']:.1f} / {summary['ms_max']:.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return " | ".join(
            [first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
        )

    print(line(headers))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    print()
    for summary, label in zip(summaries, labels, strict=True):
        if summary["lease_outcomes_median"]:
            seen = ", ".join(f"{k} {v:g}" for k, v in summary["lease_outcomes_median"].items())
            print(
                f"  lease outcomes per stampede, {summary['contender']} x {label} (median): {seen}"
            )
    failed = [s for s in summaries if not s["all_served"]]
    for summary in failed:
        bad = next(t for t in summary["per_trial"] if t["served"] != t["readers"])
        print(
            f"  CHECK FAILED: {summary['contender']} ({summary['mode']}): {bad['served']} of "
            f"{bad['readers']} readers got the row; {bad['errors']}"
        )
    if not failed:
        print("  every reader of every trial got the row (pk and title checked)")


# -- main ----------------------------------------------------------------------------------------


def create_row() -> Any:
    from benchapp.models import CachedRow, Owner

    owner = Owner.objects.create(name="owner")
    return CachedRow.objects.create(
        title=TITLE,
        slug="hot-row",
        body="hot " * 125,
        views=1,
        rank=1,
        created=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        price=Decimal("9.99"),
        active=True,
        owner=owner,
        uid=uuid.UUID(int=1, version=4),
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, default=64, help="readers per stampede (64)")
    parser.add_argument(
        "--delay-ms", type=float, default=100.0, help="added to each SELECT of the row (100)"
    )
    parser.add_argument("--trials", type=int, default=10, help="timed stampedes per row (10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed stampedes per row first (1)")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="also run it over N forked processes of threads/N threads (PostgreSQL only; 0: skip)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.trials < 1 or args.warmup < 0 or args.delay_ms < 0:
        parser.error("--threads and --trials must be at least 1, --warmup and --delay-ms >= 0")
    if args.processes < 0 or args.processes > args.threads:
        parser.error("--processes must be between 0 and --threads")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix=f"bench-{RUN_ID}-")  # SQLite file when no $DATABASE_URL
    redis_url = configure_django(sqlite_name=os.path.join(workdir, "stampede.sqlite3"))
    from django.db import connection

    from django_cacheaside import signals
    from django_cacheaside.conf import app_settings

    outcomes = LeaseOutcomes()
    signals.cache_lease.connect(outcomes, weak=False)
    try:
        create_tables()
        row = create_row()
        from benchapp.models import CachedRow

        counter = QueryCounter(CachedRow._meta.db_table, args.delay_ms / 1000)
        items = contenders()
        env = {
            **base_environment(redis_url),
            "threads": args.threads,
            "processes": args.processes,
            "delay_ms": args.delay_ms,
            "trials": args.trials,
            "warmup": args.warmup,
            "lock_wait": float(app_settings.LOCK_WAIT),
            "run_id": RUN_ID,
        }
        results = run_threads(items, row, args, counter, outcomes)
        if args.processes and connection.vendor != "postgresql":
            env["processes"] = 0
            env["note"] = f"--processes {args.processes} skipped: it needs PostgreSQL"
        elif args.processes and not hasattr(os, "fork"):
            env["processes"] = 0
            env["note"] = f"--processes {args.processes} skipped: no fork() here"
        elif args.processes:
            results += run_processes(items, row, args, counter, outcomes)
        summaries = [r.summary() for r in results]
        if args.json:
            print(json.dumps({"environment": env, "results": summaries}, indent=2))
        else:
            print_table(summaries, env, [r.label for r in results])
        return 0 if all(s["all_served"] for s in summaries) else 1
    finally:
        signals.cache_lease.disconnect(outcomes)
        try:
            clean_up()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
