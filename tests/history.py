"""A history checker: concurrent writers and cached readers of ``Ledger`` rows, then a check that
no read returned a version older than a write committed before the read began, nor one that was
not yet (or never) committed.

Writers bump a row's ``version`` by one inside ``transaction.atomic()`` after ``select_for_update()``
(so a row's committed versions are 1, 2, 3, ... in commit order), through ``save()``,
``save(update_fields=...)`` or ``QuerySet.update()``; now and then a write is rolled back instead,
with a version no commit ever writes. Readers read through the cache: ``get(pk=...)``,
``get(code=...)`` (pointer, then object), ``get_many()`` and ``filter(pk__in=...)``. Every
operation is timed with ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for every process of
the machine on Linux), so forked workers' records are checked together.

The check (see :func:`check` and docs/consistency.md):

- **stale**: a read that started after a write's commit had ended (``atomic()`` returned, its
  on-commit invalidation included) returned an older version than that write's;
- **uncommitted**: a read returned a version whose commit had not started before the read ended,
  or that no commit wrote (a rolled-back write).
"""

from __future__ import annotations

import bisect
import itertools
import os
import pickle
import random
import select
import signal
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest
from django.db import connections, transaction

from tests.testapp.models import Ledger
from tests.threads import close_thread_connections

# (row pk, version, commit start ns, commit end ns): commit start is taken as the last statement
# inside atomic(), just before COMMIT is sent; commit end once atomic() has returned.
Write = tuple[int, int, int, int]
# (row pk, start ns, end ns, version seen)
Read = tuple[int, int, int, int]

# Rolled-back writes set versions from here on (unique per process and write): no commit writes
# them, so a read that returns one saw uncommitted data.
ROLLBACK_BASE = 1_000_000_000
WRITE_SHARE = 0.2  # at most this share of the operations are writes
# How readers read: the share of each kind of read call.
READ_MIX: dict[str, float] = {"get": 0.6, "get_code": 0.1, "get_many": 0.2, "filter": 0.1}
READ_KINDS = ("get", "get_code", "get_many", "filter")
ROLLBACK_EVERY = 0.03  # the share of writes that roll back
READ_YOUR_WRITES_EVERY = 0.1  # writes that read their row through the cache before committing
ZIPF_EXPONENT = 1.1  # weight of the i-th row: 1 / (i + 1) ** s; rows 0-4 get ~50% of the traffic
MAX_ERROR_MESSAGES = 50  # kept per worker thread, with tracebacks; the rest only counted


@dataclass
class Report:
    reads: int
    writes: int
    errors: list[str]
    violations: list[str]
    seconds: float
    rollbacks: int = 0
    rows: int = 0
    layout: str = ""
    seed: int = 0
    reads_by_kind: dict[str, int] = field(default_factory=dict)
    writes_by_path: dict[str, int] = field(default_factory=dict)

    @property
    def stale(self) -> int:
        return sum(1 for v in self.violations if v.startswith("stale"))

    @property
    def uncommitted(self) -> int:
        return sum(1 for v in self.violations if v.startswith("uncommitted"))

    @property
    def operations(self) -> int:
        """Read calls (a ``get_many`` or ``filter`` is one), commits and rollbacks."""
        return sum(self.reads_by_kind.values()) + self.writes + self.rollbacks

    def summary(self) -> str:
        """One line: what ran, the operation counts, errors and violations, the time taken."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.reads_by_kind.items()))
        paths = ", ".join(f"{k} {n}" for k, n in sorted(self.writes_by_path.items()))
        rate = self.operations / self.seconds if self.seconds else 0.0
        return (
            f"history [{self.layout}, {self.rows} rows, seed {self.seed}]: "
            f"{self.operations} operations: {sum(self.reads_by_kind.values())} read calls "
            f"({kinds}) returning {self.reads} rows, {self.writes} commits ({paths}), "
            f"{self.rollbacks} rollbacks; {len(self.errors)} errors, "
            f"{len(self.violations)} violations ({self.stale} stale, "
            f"{self.uncommitted} uncommitted); {self.seconds:.1f} s, {rate:.0f} operations/s"
        )


def show(capsys: pytest.CaptureFixture[str], report: Report, extra: str) -> None:
    """Print the report's summary line and ``extra``, past pytest's capture."""
    with capsys.disabled():
        print(f"\n{report.summary()}; {extra}")


def check(writes: Iterable[Write], reads: Iterable[Read]) -> tuple[list[str], list[str]]:
    """``(violations, errors)`` of a history; ``writes`` must include each row's initial version.

    Per row, the commits are sorted by end time with a running maximum of their versions, so the
    newest version committed before a read started is one bisection away; each version's commit
    start is looked up by version (a row's versions are unique: its writes are serialized).
    O((W + R) log W).
    """
    errors: list[str] = []
    by_row: dict[int, list[Write]] = defaultdict(list)
    for write in writes:
        by_row[write[0]].append(write)
    ends: dict[int, list[int]] = {}
    newest: dict[int, list[int]] = {}  # newest[row][i]: max version of the first i+1 by end
    started: dict[int, dict[int, int]] = {}  # row -> version -> commit start
    ended: dict[int, dict[int, int]] = {}  # row -> version -> commit end
    for row, row_writes in by_row.items():
        row_writes.sort(key=lambda w: w[3])
        ends[row] = [w[3] for w in row_writes]
        newest[row] = list(itertools.accumulate((w[1] for w in row_writes), max))
        started[row], ended[row] = {}, {}
        for _row, version, commit_start, commit_end in row_writes:
            if version in started[row]:
                errors.append(f"row {row}: two commits wrote version {version}")
            started[row][version] = commit_start
            ended[row][version] = commit_end
    violations: list[str] = []
    for row, start, end, version in reads:
        if row not in ends:
            errors.append(f"a read of row {row}, which no write or setup created")
            continue
        before = bisect.bisect_left(ends[row], start)  # commits that ended before the read began
        if before and version < newest[row][before - 1]:
            missed = newest[row][before - 1]
            violations.append(
                f"stale: row {row} read version {version} in [{start}, {end}] ns, though version "
                f"{missed} had committed {(start - ended[row][missed]) / 1000:.0f} us before "
                f"the read began"
            )
        began = started[row].get(version)
        if began is None:
            violations.append(
                f"uncommitted: row {row} read version {version} in [{start}, {end}] ns, "
                f"which no commit wrote"
            )
        elif began >= end:
            violations.append(
                f"uncommitted: row {row} read version {version} in [{start}, {end}] ns, before "
                f"its commit started at {began} ns"
            )
    return violations, errors


def zipf_weights(count: int, exponent: float = ZIPF_EXPONENT) -> list[float]:
    """Cumulative weights for ``random.choices``: row i is drawn with weight 1 / (i + 1) ** s."""
    return list(itertools.accumulate(1 / (i + 1) ** exponent for i in range(count)))


class _Rollback(Exception):
    """Raised inside atomic() to roll a write back."""


class _Budget:
    """The operations left to a process; with ``until`` (is ``during`` finished?), work goes on
    until it returns true too.

    Writers take at most ``write_share`` of the operations taken so far (a writer ahead of that
    waits a millisecond), so writes are spread over the whole run instead of crowding the readers
    out: a write costs a transaction, a hit a single ``HGET``.
    """

    def __init__(
        self,
        total: int,
        deadline: float,
        until: Callable[[], bool] | None,
        write_share: float,
    ) -> None:
        self._taken = itertools.count()
        self._writes = itertools.count()
        self._writes_taken = 0
        self._total = total
        self._deadline = deadline
        self._until = until
        self._write_share = write_share
        self.timed_out = False
        self.taken = 0

    def _more(self) -> bool:
        if time.monotonic() > self._deadline:
            self.timed_out = True
            return False
        self.taken = next(self._taken) + 1
        if self.taken <= self._total:
            return True
        return self._until is not None and not self._until()

    def take(self, write: bool) -> bool:
        if not write:
            return self._more()
        while self._writes_taken >= self._write_share * self.taken:
            if time.monotonic() > self._deadline or (
                self.taken >= self._total and (self._until is None or self._until())
            ):
                return self._more()
            time.sleep(0.001)
        self._writes_taken = next(self._writes) + 1
        return self._more()


@dataclass
class _Results:
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    rollbacks: int = 0
    reads_by_kind: dict[str, int] = field(default_factory=dict)
    writes_by_path: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False

    def merge(self, other: _Results) -> None:
        self.writes += other.writes
        self.reads += other.reads
        self.errors += other.errors
        self.error_count += other.error_count
        self.rollbacks += other.rollbacks
        for mine, theirs in (
            (self.reads_by_kind, other.reads_by_kind),
            (self.writes_by_path, other.writes_by_path),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.timed_out = self.timed_out or other.timed_out


class _Worker:
    """One thread's operations; records go to its own lists (merged after the join)."""

    def __init__(
        self,
        name: str,
        codes: dict[int, str],
        seed: int,
        rollback_base: int,
        read_mix: dict[str, float],
    ) -> None:
        self.name = name
        self.kinds = list(read_mix)
        self.kind_weights = list(itertools.accumulate(read_mix.values()))
        self.codes = codes
        self.pks = list(codes)
        self.cumulative = zipf_weights(len(self.pks))
        self.rng = random.Random(seed)
        self.results = _Results()
        self._rollback_versions = itertools.count(rollback_base)

    def pick(self, count: int = 1) -> list[int]:
        return self.rng.choices(self.pks, cum_weights=self.cumulative, k=count)

    def fail(self, what: str, error: BaseException) -> None:
        self.results.error_count += 1
        if len(self.results.errors) < MAX_ERROR_MESSAGES:
            trace = "".join(traceback.format_exception(error)).rstrip()
            self.results.errors.append(f"{self.name} {what}: {error!r}\n{trace}")

    def problem(self, message: str) -> None:
        self.results.error_count += 1
        if len(self.results.errors) < MAX_ERROR_MESSAGES:
            self.results.errors.append(f"{self.name}: {message}")

    def _count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    # -- writers ---------------------------------------------------------------------------------

    def write_once(self) -> None:
        pk = self.pick()[0]
        roll = self.rng.random()
        path = self.rng.choice(("save", "update_fields", "queryset_update"))
        payload = f"{self.name}-{self.rng.getrandbits(32):08x}"
        rollback = roll < ROLLBACK_EVERY
        try:
            with transaction.atomic():
                row = Ledger.objects.select_for_update().get(pk=pk)
                version = next(self._rollback_versions) if rollback else row.version + 1
                if path == "save":
                    row.version, row.payload = version, payload
                    row.save()
                elif path == "update_fields":
                    row.version, row.payload = version, payload
                    row.save(update_fields=["version", "payload"])
                else:
                    Ledger.objects.filter(pk=pk).update(version=version)
                if rollback or roll < ROLLBACK_EVERY + READ_YOUR_WRITES_EVERY:
                    # Reads inside a transaction that wrote the model bypass the cache.
                    seen = Ledger.cached.get(pk=pk).version
                    if seen != version:
                        self.problem(f"read its own write of row {pk} as {seen}, not {version}")
                if rollback:
                    raise _Rollback
                commit_start = time.monotonic_ns()
            commit_end = time.monotonic_ns()
        except _Rollback:
            self.results.rollbacks += 1
            return
        self.results.writes.append((pk, version, commit_start, commit_end))
        self._count(self.results.writes_by_path, path)

    # -- readers ---------------------------------------------------------------------------------

    def read_once(self) -> None:
        kind = self.rng.choices(self.kinds, cum_weights=self.kind_weights)[0]
        if kind in ("get", "get_code"):
            pks = self.pick()
        elif kind == "get_many":
            pks = sorted(set(self.pick(self.rng.randint(2, 8))))
        else:
            pks = sorted(set(self.pick(self.rng.randint(2, 5))))
        start = time.monotonic_ns()
        if kind == "get":
            found = {pks[0]: Ledger.cached.get(pk=pks[0])}
        elif kind == "get_code":
            found = {pks[0]: Ledger.cached.get(code=self.codes[pks[0]])}
        elif kind == "get_many":
            found = Ledger.cached.get_many(pks)
        else:
            found = {obj.pk: obj for obj in Ledger.cached.filter(pk__in=pks)}
        end = time.monotonic_ns()
        if sorted(found) != pks or any(obj.pk != pk for pk, obj in found.items()):
            self.problem(f"{kind}({pks}) answered the rows {sorted(found)}")
        for pk, obj in found.items():
            self.results.reads.append((pk, start, end, obj.version))
        self._count(self.results.reads_by_kind, kind)

    def run(self, budget: _Budget, operation: Callable[[], None], write: bool) -> None:
        try:
            while budget.take(write):
                try:
                    operation()
                except Exception as error:
                    self.fail(operation.__name__, error)
        except BaseException as error:  # pragma: no cover - reported, never swallowed
            self.fail("worker", error)
        finally:
            close_thread_connections()


def create_rows(count: int) -> dict[int, str]:
    """``count`` new Ledger rows at version 0: ``{pk: code}``."""
    run = os.urandom(4).hex()
    rows = Ledger.objects.bulk_create(
        [Ledger(code=f"{run}-{i}") for i in range(count)], batch_size=5000
    )
    connections.close_all()
    return {row.pk: row.code for row in rows}


def _run_threads(
    codes: dict[int, str],
    writers: int,
    readers: int,
    budget: _Budget,
    seed: int,
    process: int,
    read_mix: dict[str, float],
) -> _Results:
    workers: list[tuple[_Worker, Callable[[], None]]] = []
    for i in range(writers + readers):
        role = "writer" if i < writers else "reader"
        worker = _Worker(
            f"p{process}-{role}{i}",
            codes,
            seed * 1_000_003 + process * 1009 + i,
            ROLLBACK_BASE + (process * 64 + i) * 1_000_000,
            read_mix,
        )
        workers.append((worker, worker.write_once if i < writers else worker.read_once))
    threads = [
        threading.Thread(
            target=w.run, args=(budget, op, op.__name__ == "write_once"), name=w.name, daemon=True
        )
        for w, op in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = _Results(timed_out=budget.timed_out)
    for worker, _op in workers:
        results.merge(worker.results)
    return results


def _fork_processes(
    processes: int,
    codes: dict[int, str],
    writers: int,
    readers: int,
    operations: int,
    deadline: float,
    seed: int,
    during_done: int | None,
    close_in_child: int,
    write_share: float,
    read_mix: dict[str, float],
) -> list[tuple[int, int]]:
    """Fork the workers; their ``(pid, read end of the results pipe)``."""
    connections.close_all()  # a child must not share the parent's database connection
    children = []
    for process in range(processes):
        share = operations // processes + (1 if process < operations % processes else 0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: run, send the results, exit
            status = 1
            try:
                os.close(read_end)
                os.close(close_in_child)  # the parent's end of the `during` pipe

                def during_finished() -> bool:  # the parent closed its end of the pipe
                    assert during_done is not None
                    return bool(select.select([during_done], [], [], 0)[0])

                budget = _Budget(
                    share,
                    deadline,
                    during_finished if during_done is not None else None,
                    write_share,
                )
                try:
                    results = _run_threads(
                        codes, writers, readers, budget, seed, process + 1, read_mix
                    )
                except BaseException as error:
                    results = _Results(error_count=1, errors=[f"process {process + 1}: {error!r}"])
                data = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(data)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
    return children


def _collect(children: list[tuple[int, int]], deadline: float) -> _Results:
    """Read every child's results (concurrently: a child blocks on a full pipe) and reap it."""
    results = _Results()
    buffers: dict[int, bytearray] = {fd: bytearray() for _pid, fd in children}
    pid_of = {fd: pid for pid, fd in children}
    open_fds = set(buffers)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for fd in open_fds:
                os.kill(pid_of[fd], signal.SIGKILL)
                results.error_count += 1
                results.errors.append(f"process {pid_of[fd]} did not finish in time: killed")
                os.close(fd)
            break
        ready, _w, _x = select.select(list(open_fds), [], [], min(remaining, 1.0))
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                buffers[fd] += chunk
            else:
                os.close(fd)
                open_fds.discard(fd)
    for pid, fd in children:
        _pid, status = os.waitpid(pid, 0)
        if fd in open_fds:
            continue  # killed above
        if status != 0 or not buffers[fd]:
            results.error_count += 1
            results.errors.append(f"process {pid} exited with status {status}")
            continue
        results.merge(pickle.loads(bytes(buffers[fd])))
    return results


def run_history(
    *,
    rows: int = 100,
    writers: int = 8,
    readers: int = 32,
    operations: int = 10_000,
    processes: int = 0,
    during: Callable[[], None] | None = None,
    max_seconds: float = 120,
    seed: int | None = None,
    write_share: float = WRITE_SHARE,
    read_mix: dict[str, float] | None = None,
) -> Report:
    """Run the workload on ``rows`` new Ledger rows and check its history.

    ``operations`` (reads and writes, each ``get_many``/``filter`` one operation) are shared by
    ``writers`` writer and ``readers`` reader threads; with ``processes=N`` the same threads and
    operations are spread over N forked processes (each at least one writer and one reader).
    ``during`` runs in a thread of its own meanwhile; the workers go on until it has returned too,
    so whatever it does happens under load, and it is joined before the check. Past ``max_seconds``
    the workers stop and that is an error. ``write_share`` bounds the share of writes;
    ``read_mix`` gives the share of each kind of read call (:data:`READ_MIX` by default). Call it
    from a ``transaction=True`` test: every worker has its own connection and must see the rows.
    """
    seed = random.randrange(1 << 30) if seed is None else seed
    mix = dict(READ_MIX if read_mix is None else read_mix)
    if not mix or set(mix) - set(READ_KINDS) or min(mix.values()) < 0:
        raise ValueError(f"read_mix: shares of {READ_KINDS}, not {mix!r}")
    codes = create_rows(rows)
    started = time.monotonic()
    deadline = started + max_seconds
    during_errors: list[str] = []
    during_finished = threading.Event()
    done_read, done_write = os.pipe()  # closed when `during` returns: tells forked workers
    closed: list[int] = []
    closing = threading.Lock()

    def close_done() -> None:
        with closing:
            if not closed:
                closed.append(done_write)
                os.close(done_write)

    def run_during() -> None:
        try:
            if during is not None:
                during()
        except BaseException as error:
            during_errors.append("during: " + "".join(traceback.format_exception(error)))
        finally:
            during_finished.set()
            close_done()
            close_thread_connections()

    until = during_finished.is_set if during is not None else None
    try:
        if processes:
            children = _fork_processes(
                processes,
                codes,
                max(1, writers // processes),
                max(1, readers // processes),
                operations,
                deadline,
                seed,
                done_read if during is not None else None,
                done_write,
                write_share,
                mix,
            )
            side = threading.Thread(target=run_during, name="during", daemon=True)
            side.start()
            results = _collect(children, deadline + 30)
            layout = f"{processes} processes x ({max(1, writers // processes)} writers + {max(1, readers // processes)} readers)"
        else:
            side = threading.Thread(target=run_during, name="during", daemon=True)
            side.start()
            budget = _Budget(operations, deadline, until, write_share)
            results = _run_threads(codes, writers, readers, budget, seed, 0, mix)
            layout = f"{writers} writers + {readers} readers"
        side.join(max(1.0, deadline + 30 - time.monotonic()))
        if side.is_alive():
            during_errors.append("during: still running after the workload's deadline")
    finally:
        close_done()
        os.close(done_read)
    seconds = time.monotonic() - started
    errors = list(results.errors) + during_errors
    if results.error_count > len(results.errors):
        errors.append(f"... and {results.error_count - len(results.errors)} more errors")
    if results.timed_out:
        errors.append(f"the workload did not finish within max_seconds={max_seconds}")
    initial = [(pk, 0, 0, 0) for pk in codes]  # committed before any worker started
    violations, check_errors = check(initial + results.writes, results.reads)
    return Report(
        reads=len(results.reads),
        writes=len(results.writes),
        errors=errors + check_errors,
        violations=violations,
        seconds=seconds,
        rollbacks=results.rollbacks,
        rows=rows,
        layout=layout,
        seed=seed,
        reads_by_kind=results.reads_by_kind,
        writes_by_path=results.writes_by_path,
    )
