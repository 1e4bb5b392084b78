"""The near cache behind ``CacheAsideManager(near_cache=...)``: served, copied, invalidated."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection, connections, transaction

from django_cacheaside import nearby
from django_cacheaside.backend import Backend
from tests.factories import update_behind_our_back
from tests.testapp.models import Gauge

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.single_redis]


class Reads:
    """Counts the backend's sync reads (``HGET``s of single objects)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = Backend.read

        def counted(backend: Backend, key: str) -> Any:
            self.count += 1
            return original(backend, key)

        monkeypatch.setattr(Backend, "read", counted)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)


@pytest.fixture(autouse=True)
def tracking() -> Iterator[None]:
    yield
    nearby.stop_tracking()


def warm(gauge: Gauge) -> None:
    """Read until the near cache holds ``gauge``: the tracker must be up first, and the message
    of the first read's own fill may arrive after the next read's ticket (its put is refused)."""
    Gauge.cached.get(pk=gauge.pk)
    tracker = nearby.tracker()
    assert tracker is not None and tracker.wait_ready(5)
    deadline = time.monotonic() + 5
    while not near_holds(gauge) and time.monotonic() < deadline:
        Gauge.cached.get(pk=gauge.pk)  # a Redis hit, kept near
        time.sleep(0.001)
    assert near_holds(gauge)


def near_holds(gauge: Gauge) -> bool:
    near = Gauge.cached._near
    assert near is not None
    return near.get(Gauge.cached.key_for_pk(gauge.pk)) is not None


def test_a_hit_is_served_from_process_memory_as_a_copy(reads: Reads) -> None:
    gauge = Gauge.objects.create(name="g", value=1, data={"series": [1, 2]})
    warm(gauge)
    reads.count = 0
    first = Gauge.cached.get(pk=gauge.pk)
    second = Gauge.cached.get(pk=gauge.pk)
    assert reads.count == 0  # no Redis read at all
    assert first == gauge and first.value == 1 and first is not second
    first.value = 99
    first.data["series"].append(3)  # a caller may change what it got...
    third = Gauge.cached.get(pk=gauge.pk)
    assert third.value == 1 and third.data == {"series": [1, 2]}  # ...the cache keeps its own
    assert third._state.db == "default" and not third._state.adding


def test_a_write_of_this_process_is_seen_at_once(reads: Reads) -> None:
    gauge = Gauge.objects.create(name="g", value=1)
    warm(gauge)
    gauge.value = 2
    gauge.save()  # its invalidation empties the near entry before save() returns
    assert not near_holds(gauge)
    assert Gauge.cached.get(pk=gauge.pk).value == 2


def test_a_write_of_another_process_is_pushed_by_redis(redis_client: Any) -> None:
    gauge = Gauge.objects.create(name="g", value=1)
    warm(gauge)
    assert near_holds(gauge)
    update_behind_our_back(Gauge, gauge.pk, value=3)
    redis_client.delete(Gauge.cached.key_for_pk(gauge.pk))  # what another process's save sends
    deadline = time.monotonic() + 5
    while near_holds(gauge) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not near_holds(gauge)
    assert Gauge.cached.get(pk=gauge.pk).value == 3


def test_without_a_tracker_nothing_is_served_near(reads: Reads) -> None:
    gauge = Gauge.objects.create(name="g", value=1)
    warm(gauge)
    tracker = nearby.tracker()
    assert tracker is not None
    tracker.stop()  # the listener is gone: every near cache is disabled at once
    reads.count = 0
    assert Gauge.cached.get(pk=gauge.pk).value == 1
    assert reads.count == 1 and not near_holds(gauge)


def test_after_a_requests_own_write_the_request_reads_past_it(reads: Reads) -> None:
    gauge = Gauge.objects.create(name="g", value=1)
    other = Gauge.objects.create(name="other", value=5)
    warm(gauge)
    warm(other)
    request_started.send(sender=None)
    try:
        reads.count = 0
        Gauge.cached.get(pk=other.pk)
        assert reads.count == 0  # before the write: near
        gauge.value = 2
        gauge.save()
        deadline = time.monotonic() + 2
        while nearby.behind() and time.monotonic() < deadline:  # its message applied: not why
            time.sleep(0.001)
        Gauge.cached.get(pk=other.pk)
        assert reads.count == 1  # after it: Redis, for the rest of the request
    finally:
        request_finished.send(sender=None)
    reads.count = 0
    Gauge.cached.get(pk=other.pk)
    Gauge.cached.get(pk=other.pk)
    assert reads.count <= 1  # the next request may keep it near again


def test_inside_a_transaction_that_wrote_reads_see_its_own_writes() -> None:
    gauge = Gauge.objects.create(name="g", value=1)
    warm(gauge)
    with transaction.atomic():
        Gauge.objects.filter(pk=gauge.pk).update(value=7)
        assert Gauge.cached.get(pk=gauge.pk).value == 7
    assert Gauge.cached.get(pk=gauge.pk).value == 7


def test_a_bad_near_cache_option_says_what_to_change() -> None:
    from django_cacheaside import CacheAsideManager

    with pytest.raises(ValueError, match="max_entries, max_bytes and ttl, not size"):
        CacheAsideManager(near_cache={"size": 10})
    with pytest.raises(ValueError, match="at most 60 seconds"):
        CacheAsideManager(near_cache={"ttl": 600})
    with pytest.raises(ValueError, match="True, False or a dict"):
        CacheAsideManager(near_cache="yes")  # type: ignore[arg-type]


PROCESSES = 4


def _child(pk: int, start_read: int, report_write: int) -> None:  # pragma: no cover - a child
    """Keep the gauge near, then poll its near entry (as a busy server reads, between its I/O)
    until it is gone; report when that was (CLOCK_MONOTONIC: the same clock in every process),
    or -1 if it never went or the next read did not find the new value."""
    try:
        connections.close_all()
        gauge = Gauge.objects.get(pk=pk)
        try:
            warm(gauge)
            ok = True
        except AssertionError:
            ok = False
        os.write(report_write, b"ready\n" if ok else b"cold\n")
        os.read(start_read, 8)  # the writer is about to save
        seen = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not near_holds(gauge):  # the write's invalidation arrived
                seen = time.monotonic()
                break
            time.sleep(0.0002)
        if seen is not None and Gauge.cached.get(pk=pk).value != 2:  # and the next read is new
            seen = None
        os.write(report_write, f"{seen if seen is not None else -1:.6f}\n".encode())
    finally:
        connections.close_all()
        os._exit(0)  # never back into pytest


def test_four_processes_see_a_write_within_the_delivery_time() -> None:
    """Four processes with the gauge near; a save in this one; each must stop serving the old value
    within the invalidation's delivery time (a bound of 1 s is asserted; p50/p99 are printed)."""
    if connection.vendor != "postgresql":
        pytest.skip("an in-memory SQLite test database cannot be shared between processes")
    gauge = Gauge.objects.create(name="g", value=1)
    delays: list[float] = []
    for _round in range(5):
        Gauge.objects.filter(pk=gauge.pk).update(value=1)
        Gauge.cached.get(pk=gauge.pk)  # filled before the children read it
        connections.close_all()
        children = []
        for _ in range(PROCESSES):
            go_r, go_w = os.pipe()
            rep_r, rep_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover
                _child(gauge.pk, go_r, rep_w)
            children.append((pid, go_w, os.fdopen(rep_r)))
        assert [f.readline().strip() for _p, _g, f in children] == ["ready"] * PROCESSES
        for _pid, go_w, _f in children:
            os.write(go_w, b"go")
        time.sleep(0.05)  # every child is reading the old value near by now
        gauge.value = 2
        gauge.save()
        saved = time.monotonic()
        seen = [float(f.readline()) for _p, _g, f in children]
        for pid, go_w, f in children:
            os.waitpid(pid, 0)
            os.close(go_w)
            f.close()
        assert all(s > 0 for s in seen), seen  # every process saw it (none kept the old row)
        delays += [max(0.0, s - saved) for s in seen]
    delays.sort()
    p50, p99 = statistics.median(delays), delays[int(0.99 * (len(delays) - 1))]
    print(
        f"\nnear cache, {PROCESSES} processes: delivery p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"
    )
    assert p99 < 1.0


def test_with_its_listener_cut_off_no_entry_outlives_the_ttl(redis_client: Any) -> None:
    """Both tracking connections killed, then a write whose message is lost with them: the old
    value stops being served within the near TTL (the heartbeat notices much sooner)."""
    gauge = Gauge.objects.create(name="g", value=1)
    warm(gauge)
    tracker = nearby.tracker()
    assert tracker is not None and tracker.listener_id and tracker.tracking_id
    for client_id in (tracker.listener_id, tracker.tracking_id):
        redis_client.execute_command("CLIENT", "KILL", "ID", client_id)
    update_behind_our_back(Gauge, gauge.pk, value=4)
    redis_client.delete(Gauge.cached.key_for_pk(gauge.pk))
    started = time.monotonic()
    while Gauge.cached.get(pk=gauge.pk).value != 4:
        assert time.monotonic() - started < 5, "served past the near TTL"
        time.sleep(0.01)
    assert time.monotonic() - started < 5


def test_aget_is_served_from_the_near_cache_too(monkeypatch: pytest.MonkeyPatch) -> None:
    gauge = Gauge.objects.create(name="g", value=1, data={"k": [1]})
    warm(gauge)

    async def no_read(self: Backend, key: str) -> Any:
        raise AssertionError("a near hit must not read Redis")

    monkeypatch.setattr(Backend, "aread", no_read)
    found = asyncio.run(Gauge.cached.aget(pk=gauge.pk))
    assert found.value == 1 and found.data == {"k": [1]}
    found.data["k"].append(2)
    assert asyncio.run(Gauge.cached.aget(pk=gauge.pk)).data == {"k": [1]}
