"""Invariant 1 when Redis crashes or runs out of memory, checked by the history checker.

- **Restart**: a private Redis is killed with SIGKILL in the middle of the workload of
  tests/history.py and started again on the same port, without persistence (every key lost) and
  with an append-only file synced on every write (every key kept). Reads must go on without an
  exception (answered from the database while Redis is down) and none may be stale, before, during
  or after the outage.
- **Eviction**: a private Redis with a few megabytes of ``maxmemory`` and ``allkeys-lru``, while
  100,000 other rows are read once each through the cache (every fill evicts something: entries,
  stamps, leases), under the same workload.

Sizes: ``CACHEASIDE_RESTART_OPS`` (operations of each restart run, default 2,500; the workload also
lasts as long as the outage and the recovery), ``CACHEASIDE_EVICTION_ROWS`` (rows churned, default
100,000) and ``CACHEASIDE_EVICTION_OPS`` (default 6,000). The long run (docs/consistency.md)::

    CACHEASIDE_RESTART_OPS=20000 CACHEASIDE_EVICTION_ROWS=300000 CACHEASIDE_EVICTION_OPS=30000 \\
        pytest tests/test_restart.py
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from django.db import connection

from django_cacheaside import backend, coalescing
from tests.history import create_rows, run_history, show
from tests.servers import RedisServer, ServerFactory, private_redis  # noqa: F401 - the fixture
from tests.testapp.models import Ledger
from tests.threads import close_thread_connections

RESTART_OPS = int(os.environ.get("CACHEASIDE_RESTART_OPS", "2500"))
EVICTION_ROWS = int(os.environ.get("CACHEASIDE_EVICTION_ROWS", "100000"))
EVICTION_OPS = int(os.environ.get("CACHEASIDE_EVICTION_OPS", "6000"))
CHURN_BATCH = 1000  # rows per get_many() of the churn, which sets how long the eviction run lasts
MAXMEMORY = "4mb"  # ~1 MB of it is the empty server's own; Redis takes any byte count
WARM = 1.0  # seconds of workload before the kill
OUTAGE = 1.0  # seconds Redis is down
AFTER = 1.5  # seconds of workload once the app uses Redis again after the restart
MARKER = "test_restart:marker"  # written just before the kill: does it survive the restart?
RECOVERY = 15.0  # seconds the app may take to use Redis again (the breaker's probe, the replay)

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="concurrent writers need a database shared by threads and processes: PostgreSQL",
    ),
    pytest.mark.django_db(transaction=True),
]


def use(settings: Any, server: RedisServer) -> None:
    settings.CACHEASIDE = {
        **settings.CACHEASIDE,
        "REDIS": server.url,
        "LOCK_WAIT": 0.25,  # see tests/test_history.py: get_many() calls stall each other
        "BREAKER_COOLDOWN": 0.5,  # probe soon after the restart, so the recovery is under load
    }


def hits(client: Any) -> int:
    return int(client.info("stats")["keyspace_hits"])


@pytest.mark.parametrize("processes", [0, 2], ids=["threads", "2-processes"])
@pytest.mark.parametrize("persistence", [False, True], ids=["keys-lost", "keys-kept"])
def test_a_redis_killed_and_restarted_mid_workload_serves_no_stale_row(
    private_redis: ServerFactory,  # noqa: F811
    settings: Any,
    capsys: pytest.CaptureFixture[str],
    cache_errors: list[str],
    persistence: bool,
    processes: int,
) -> None:
    server = private_redis(persistence=persistence)
    use(settings, server)
    timeline: dict[str, float] = {}

    def crash_and_restart() -> None:
        time.sleep(WARM)
        before = server.client()  # a client per life of the server
        before.set(MARKER, "1", ex=300)
        timeline["keys before"] = before.dbsize()
        server.kill()
        timeline["killed"] = time.monotonic()
        time.sleep(OUTAGE)
        server.start()
        timeline["restarted"] = time.monotonic()
        probe = server.client()
        timeline["marker kept"] = probe.exists(MARKER)
        timeline["keys after restart"] = probe.dbsize()
        # Go on until the app hits Redis again (its breaker closed, its lost invalidations
        # replayed), then for AFTER seconds more: those are the reads that could find an entry
        # the outage made stale.
        deadline = time.monotonic() + RECOVERY
        while hits(probe) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        timeline["hits again"] = time.monotonic()
        time.sleep(AFTER)
        timeline["hits after restart"] = hits(probe)

    report = run_history(
        rows=100,
        writers=8,
        readers=32,
        operations=RESTART_OPS,
        processes=processes,
        during=crash_and_restart,
        max_seconds=90 + RESTART_OPS / 100,
    )
    recovered = timeline["hits again"] - timeline["restarted"]
    show(
        capsys,
        report,
        f"persistence {persistence}: {timeline['keys before']:.0f} keys before the kill, "
        f"{timeline['keys after restart']:.0f} after the restart, hits again after "
        f"{recovered:.2f} s, {timeline['hits after restart']:.0f} hits since the restart, "
        f"{len(cache_errors)} cache errors in the parent",
    )
    assert not report.errors, "\n".join(report.errors[:10])
    assert not report.violations, "\n".join(report.violations[:10])
    # The test really crashed a Redis the app was using, and the app used it again afterwards.
    # (100 hot rows, skewed: most but not always all of them are cached by then, plus the marker.)
    assert timeline["keys before"] > 50
    assert timeline["marker kept"] == persistence  # kept on disk, or lost with the process
    assert timeline["hits after restart"] >= 100
    if processes == 0:
        assert cache_errors  # the workers' reads saw the outage (and were answered anyway)


def test_eviction_pressure_serves_no_stale_row(
    private_redis: ServerFactory,  # noqa: F811
    settings: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = private_redis(maxmemory=MAXMEMORY, policy="allkeys-lru")
    use(settings, server)
    started = time.monotonic()
    churn = create_rows(EVICTION_ROWS)
    created = time.monotonic() - started
    churned: list[int] = []

    def read_every_row_once() -> None:
        pks = list(churn)
        try:
            for i in range(0, len(pks), CHURN_BATCH):
                batch = pks[i : i + CHURN_BATCH]
                found = Ledger.cached.get_many(batch)
                if sorted(found) != batch or any(obj.version != 0 for obj in found.values()):
                    raise AssertionError(f"get_many of churn rows {batch[0]}.. answered wrong rows")
                churned.extend(batch)
        finally:
            close_thread_connections()

    report = run_history(
        rows=100,
        writers=8,
        readers=32,
        operations=EVICTION_OPS,
        during=read_every_row_once,
        max_seconds=120 + EVICTION_ROWS / 500 + EVICTION_OPS / 100,
    )
    info = server.client().info()
    show(
        capsys,
        report,
        f"{len(churned)} other rows read once each ({created:.1f} s to create them); "
        f"maxmemory {MAXMEMORY}: evicted_keys {info['evicted_keys']}, used_memory_peak "
        f"{info['used_memory_peak_human']}, keys at the end {server.client().dbsize()}",
    )
    assert not report.errors, "\n".join(report.errors[:10])
    assert not report.violations, "\n".join(report.violations[:10])
    assert len(churned) == EVICTION_ROWS
    assert int(info["evicted_keys"]) > EVICTION_ROWS // 2  # the fills really evicted


def test_a_stamp_that_starts_over_when_its_key_is_gone_serves_stale_rows(
    monkeypatch: pytest.MonkeyPatch, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Why the stamp is random: with a per-key counter, a key that is deleted (invalidated,
    evicted, lost in a restart) starts over at the same value, and a fill that read that value
    before the deletion, with the old row, is accepted after it.

    The counter is modelled by its worst case here, the value 1 whenever the stamp is created.
    Coalescing is switched off so that only the stamp decides (see docs/consistency.md).
    """
    settings.CACHEASIDE = {**settings.CACHEASIDE, "LOCK_WAIT": 0.25}
    monkeypatch.setattr(backend, "new_stamp", lambda: (1).to_bytes(8, "big"))
    monkeypatch.setattr(coalescing.Flights, "run", lambda self, key, leader, wait: (True, leader()))
    report = run_history(rows=100, writers=8, readers=32, operations=3000)
    show(capsys, report, "stamps: a counter that starts over at 1")
    assert not report.errors, "\n".join(report.errors[:10])
    assert report.stale > 0
