"""Invariant 1 under concurrency: after a write commits, no read that starts later returns the old
row, and no read returns a version that was not committed. Checked on the history of concurrent
writers and cached readers (tests/history.py, docs/consistency.md).

``CACHEASIDE_HISTORY_OPS`` sets the operations of each run (default 10,000); the long run is
``CACHEASIDE_HISTORY_OPS=100000``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest
from django.db import connection

from django_cacheaside import invalidation
from tests.history import Read, Report, Write, check, run_history

OPERATIONS = int(os.environ.get("CACHEASIDE_HISTORY_OPS", "10000"))
# ~1,000 operations a second on 2 cores; the bound only catches a workload that hangs.
MAX_SECONDS = max(120.0, OPERATIONS / 100)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need a database shared by threads and processes: PostgreSQL "
    "(an in-memory SQLite test database is one connection's)",
)


# Readers wait at most this long for another caller's fill (LOCK_WAIT, 2 s by default), then read
# the database without filling. Two get_many() calls that each hold the lease of a row the other
# waits for stall each other for the whole LOCK_WAIT (see docs/consistency.md); with the default,
# that makes the process run take ~80 s on 2 cores. The wait's length changes how often a read
# waits, not what it may return.
LOCK_WAIT = float(os.environ.get("CACHEASIDE_HISTORY_LOCK_WAIT", "0.25"))


@pytest.fixture(autouse=True)
def short_lock_wait(settings: Any) -> None:
    settings.CACHEASIDE = {**settings.CACHEASIDE, "LOCK_WAIT": LOCK_WAIT}


def show(capsys: pytest.CaptureFixture[str], report: Report) -> None:
    with capsys.disabled():
        print(f"\n{report.summary()}")


def assert_consistent(report: Report) -> None:
    assert not report.errors, "\n".join(report.errors[:10])
    assert not report.violations, "\n".join(report.violations[:10])
    assert report.writes > 0 and report.reads > 0
    assert report.reads_by_kind.keys() == {"get", "get_code", "get_many", "filter"}
    assert report.writes_by_path.keys() == {"save", "update_fields", "queryset_update"}


# -- the checker itself, on histories written by hand ---------------------------------------------

# One row (pk 1): version 0 from the setup, version 1 committed over [100, 200] ns.
WRITES: list[Write] = [(1, 0, 0, 0), (1, 1, 100, 200)]


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        ((1, 150, 180, 0), []),  # concurrent with the commit: either version is right
        ((1, 150, 180, 1), []),
        ((1, 50, 120, 1), []),  # began before the commit started, ended after: may see it
        ((1, 201, 300, 1), []),
        ((1, 201, 300, 0), ["stale"]),  # began after the commit ended: must see version 1
        ((1, 200, 300, 0), []),  # began at the very end: not strictly after
        ((1, 10, 100, 1), ["uncommitted"]),  # ended as the commit started: could not see it
        ((1, 150, 180, 2), ["uncommitted"]),  # a version no commit wrote
        ((1, 300, 400, 2), ["uncommitted"]),
    ],
)
def test_the_checker_classifies_reads(read: Read, expected: list[str]) -> None:
    violations, errors = check(WRITES, [read])
    assert [v.split(":")[0] for v in violations] == expected
    assert errors == []


def test_the_checker_uses_the_newest_commit_that_ended_before_the_read() -> None:
    # Commits may end out of version order (version 1's on-commit invalidation still running when
    # version 2's commit has returned); a read that begins after version 2's end must see it.
    writes: Sequence[Write] = [(7, 0, 0, 0), (7, 1, 10, 500), (7, 2, 300, 400)]
    assert check(writes, [(7, 350, 460, 1)])[0] == []  # began while both were committing
    assert [v.split(":")[0] for v in check(writes, [(7, 450, 460, 1)])[0]] == ["stale"]
    assert [v.split(":")[0] for v in check(writes, [(7, 450, 460, 0)])[0]] == ["stale"]
    assert check(writes, [(7, 450, 460, 2)])[0] == []
    assert [v.split(":")[0] for v in check(writes, [(7, 501, 600, 1)])[0]] == ["stale"]


def test_the_checker_reports_impossible_histories_as_errors() -> None:
    assert check([(1, 0, 0, 0), (1, 1, 5, 6), (1, 1, 7, 8)], [])[1] == [
        "row 1: two commits wrote version 1"
    ]
    assert check([(1, 0, 0, 0)], [(2, 0, 1, 0)])[1] == [
        "a read of row 2, which no write or setup created"
    ]


# -- the workload ---------------------------------------------------------------------------------


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_threads_never_read_a_stale_or_uncommitted_row(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_history(
        rows=100, writers=8, readers=32, operations=OPERATIONS, max_seconds=MAX_SECONDS
    )
    show(capsys, report)
    assert_consistent(report)


@postgresql_only
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.django_db(transaction=True)
def test_processes_never_read_a_stale_or_uncommitted_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = run_history(
        rows=100,
        writers=8,
        readers=32,
        operations=OPERATIONS,
        processes=4,
        max_seconds=MAX_SECONDS,
    )
    show(capsys, report)
    assert_consistent(report)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_single_gets_of_hot_rows_never_read_a_stale_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only ``get(pk=...)``: many threads of one process miss the same hot keys at once, which
    is where in-process coalescing decides what a caller that arrives after a commit is given."""
    report = run_history(
        rows=100,
        writers=8,
        readers=32,
        operations=min(OPERATIONS, 5000),
        read_mix={"get": 1.0},
        max_seconds=MAX_SECONDS,
    )
    show(capsys, report)
    assert not report.errors, "\n".join(report.errors[:10])
    assert not report.violations, "\n".join(report.violations[:10])
    assert report.reads_by_kind.keys() == {"get"}


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_without_invalidation_the_checker_finds_stale_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checker is not vacuous: with the Ledger's invalidations dropped, reads go stale."""
    delivered = invalidation.deliver

    def deliver_all_but_ledger(operations: Sequence[Any], *args: Any, **kwargs: Any) -> int:
        kept = [op for op in operations if not any("testapp.ledger" in part for part in op)]
        return delivered(kept, *args, **kwargs)

    monkeypatch.setattr(invalidation, "deliver", deliver_all_but_ledger)
    report = run_history(rows=100, writers=4, readers=16, operations=min(OPERATIONS, 5000))
    show(capsys, report)
    assert not report.errors, "\n".join(report.errors[:10])
    assert report.stale > 0
    assert report.uncommitted == 0  # stale, but every version it returned was committed


# -- with a near cache ---------------------------------------------------------------------------

# A near hit is served only when no invalidation is pending on the listener's socket, and Redis
# sends the invalidation in the same pass as the writer's reply: no stale read is expected. The
# check allows 5 ms, for a Redis that flushed the writer's reply before the listener's message
NEAR_BOUND_US = 5_000


@pytest.fixture
def near_ledger(monkeypatch: pytest.MonkeyPatch) -> Any:
    from django_cacheaside import nearby
    from tests.testapp.models import Ledger

    monkeypatch.setattr(Ledger.cached, "_near", nearby.near_cache({"max_entries": 1000}))
    yield Ledger.cached._near
    nearby.stop_tracking()


def _stale_by_us(violation: str) -> float:
    """How long before the read the missed version had committed, from a "stale" violation."""
    return float(violation.split(" had committed ")[1].split(" us ")[0])


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_threads_with_a_near_cache_never_read_a_stale_row(
    near_ledger: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """One process: its own invalidations leave its near cache before the commit returns."""
    report = run_history(
        rows=100,
        writers=8,
        readers=32,
        operations=min(OPERATIONS, 5000),
        read_mix={"get": 1.0},
        max_seconds=MAX_SECONDS,
    )
    show(capsys, report)
    print(f"near cache: {near_ledger.hits} hits, {near_ledger.misses} misses")
    assert not report.errors, "\n".join(report.errors[:10])
    assert not report.violations, "\n".join(report.violations[:10])
    assert near_ledger.hits > 0  # it was used


@postgresql_only
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.django_db(transaction=True)
def test_processes_with_a_near_cache_read_stale_only_within_the_delivery_bound(
    near_ledger: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_history(
        rows=100,
        writers=8,
        readers=32,
        operations=min(OPERATIONS, 5000),
        read_mix={"get": 1.0},
        processes=4,
        max_seconds=MAX_SECONDS,
    )
    show(capsys, report)
    assert not report.errors, "\n".join(report.errors[:10])
    stale = [v for v in report.violations if v.startswith("stale:")]
    other = [v for v in report.violations if not v.startswith("stale:")]
    late = sorted(_stale_by_us(v) for v in stale)
    with capsys.disabled():
        print(
            f"near cache, 4 processes: {len(stale)} reads within the delivery window, worst {max(late, default=0):.0f} us"
        )
    assert not other, "\n".join(other[:10])  # never an uncommitted version
    assert all(us <= NEAR_BOUND_US for us in late), late[-5:]
